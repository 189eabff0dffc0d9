"""noiselevels.runs.features on tiny random-initialised CLIP and DINOv2 folders built here (nothing
downloaded): image–text similarity against CLIPModel's own logits, image–image similarity and FD by hand,
a vision-only model, bad input."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch

from noiselevels.runs.features import FeatureModel, feature_metrics
from noiselevels.runs.metrics import frechet_distance

pytest.importorskip("transformers")
CROP = {"height": 32, "width": 32}


def _tokenizer():
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77), len(vocab)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tok, n_vocab = _tokenizer()
    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2}
    cfg = CLIPConfig(
        text_config={**small, "vocab_size": n_vocab, "max_position_embeddings": 77, "bos_token_id": 0,
                     "eos_token_id": 1, "pad_token_id": 1},
        vision_config={**small, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip")
    CLIPModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=CROP).save_pretrained(folder)
    return folder


def images(n, seed, channels=3, size=24):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, channels, size, size), generator=g) * 2 - 1


def test_clip_metrics_match_clipmodel(clip_dir):
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    fm = FeatureModel(clip_dir)
    x, ref = images(4, 0), images(5, 1)
    prompts = ["a cat", "a dog", "sks toy", "x"]
    m = feature_metrics(fm, x, prompts=prompts, reference=ref)
    # reference: CLIPModel's own forward — logits_per_image = exp(logit_scale)·cos(image, text)
    model = CLIPModel.from_pretrained(clip_dir).eval()
    proc, tok = CLIPImageProcessor.from_pretrained(clip_dir), CLIPTokenizer.from_pretrained(clip_dir)
    u8 = [((a.permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy() for a in x]
    with torch.no_grad():
        out = model(**tok(prompts, padding=True, return_tensors="pt"),
                    pixel_values=proc(images=u8, return_tensors="pt")["pixel_values"])  # fmt: skip
    cos = (out.logits_per_image.diagonal() / model.logit_scale.exp()).detach().double()
    assert m["image_text"] == pytest.approx(float(cos.mean()), abs=1e-6)
    assert m["image_text_stderr"] == pytest.approx(float(cos.std() / 2), abs=1e-6)
    # image–image: mean cosine over all pairs; FD on the same features
    fs, fr = fm.image_features(x), fm.image_features(ref)
    # CLIPModel's forward returns the normalised embeddings
    torch.testing.assert_close(torch.nn.functional.normalize(fs, dim=-1), out.image_embeds.double(),
                               atol=1e-5, rtol=1e-5)  # fmt: skip
    pairs = [float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a in fs for b in fr]
    assert m["image_image"] == pytest.approx(float(np.mean(pairs)), abs=1e-9)
    assert m["fd"] == pytest.approx(frechet_distance(fs, fr), rel=1e-9)
    assert m["num_samples"] == 4 and m["num_reference"] == 5


def test_grey_images_and_self_distance(clip_dir):
    fm = FeatureModel(clip_dir)
    g = images(3, 2, channels=1)
    torch.testing.assert_close(fm.image_features(g), fm.image_features(g.expand(-1, 3, -1, -1)))
    m = feature_metrics(fm, g, reference=g)
    assert m["fd"] == pytest.approx(0.0, abs=1e-6) and m["image_text"] is None


def test_vision_only_model(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                             image_size=32, patch_size=8)).save_pretrained(tmp_path)  # fmt: skip
    BitImageProcessor(size={"shortest_edge": 32}, crop_size=CROP).save_pretrained(tmp_path)
    fm = FeatureModel(tmp_path)
    assert not fm.has_text
    m = feature_metrics(fm, images(3, 0), prompts=["a", "b", "c"], reference=images(2, 1))
    assert m["image_text"] is None and m["image_image"] is not None and m["fd"] is not None
    with pytest.raises(ValueError, match="has no text model"):
        fm.text_features(["a"])


def test_bad_input(clip_dir, tmp_path):
    with pytest.raises(ValueError, match="not a transformers model folder"):
        FeatureModel(tmp_path)
    fm = FeatureModel(clip_dir)
    with pytest.raises(ValueError, match="one prompt per sample"):
        feature_metrics(fm, images(2, 0), prompts=["a"])
    with pytest.raises(ValueError, match="images must have shape"):
        fm.image_features(torch.zeros(2, 2, 8, 8))
