"""``noiselevels evaluate PIPELINE --adapter DIR --images DIR --json FILE`` on a tiny random SD pipeline
with a LoRA: the validation loss at fixed levels as JSON (adapter, base, paired difference), the trigger and
resolution the adapter recorded, retention on base samples of the captions without the trigger, the same
numbers twice (cache hit the second time), the features of a tiny CLIP."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from noiselevels.cli import main

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from noiselevels.runs.families import load_pipeline
    from noiselevels.runs.families.lora import add_lora, save_lora
    from noiselevels.runs.families.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("cp")
    pipe = build_tiny_pipeline("sd", root / "sd")
    lm = load_pipeline(pipe)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in add_lora(lm, rank=2):
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    save_lora(lm, root / "adapter", info={"trigger": "sks", "resolution": 32})
    imgs = root / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(imgs / f"im{i}.png")
        (imgs / f"im{i}.txt").write_text(f"a photo of [trigger] toy {i}")
    return pipe, root / "adapter", imgs


def test_evaluate_pipeline_adapter_json(setup, tmp_path, monkeypatch, capsys):
    pipe, adapter, imgs = setup
    monkeypatch.setenv("NOISELEVELS_CACHE", str(tmp_path / "cache"))
    args = ["evaluate", str(pipe), "--adapter", str(adapter), "--images", str(imgs), "--steps", "1",
            "--retention-images", "2", "--levels=-6,0,6", "--json", str(tmp_path / "a.json")]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "sd pipeline" in text and "adapter − base (paired)" in text and "retention on 2 samples" in text
    res = json.loads((tmp_path / "a.json").read_text())
    v = res["validation"]
    assert [c["logsnr"] for c in v["model"]["curve"]] == [-6.0, 0.0, 6.0]
    assert v["model"]["num_items"] == 1 and "1 of 5 images" in res["validation_source"]
    d = v["model"]["overall"]["mean"] - v["baseline"]["overall"]["mean"]
    assert v["difference"]["overall"]["mean"] == pytest.approx(d, rel=1e-9) and d != 0.0
    assert "'a photo of toy 0'" in res["retention"]["settings"]["source"]  # the trigger removed
    assert res["retention"]["change"]["overall"]["mean"] > 0
    # again, from the cache: the same numbers
    assert main([*args[:-1], str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text()) == res


def test_evaluate_pipeline_base_with_features(setup, tmp_path, monkeypatch, capsys):
    from test_features import CROP, _tokenizer
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    pipe, _, imgs = setup
    monkeypatch.setenv("NOISELEVELS_CACHE", str(tmp_path / "cache"))
    tok, n = _tokenizer()
    small = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 1}
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config={**small, "vocab_size": n, "bos_token_id": 0, "eos_token_id": 1,
                                      "pad_token_id": 1},
                         vision_config={**small, "image_size": 32, "patch_size": 8},
                         projection_dim=16)).save_pretrained(tmp_path / "clip")  # fmt: skip
    tok.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=CROP).save_pretrained(tmp_path / "clip")
    clip = str(tmp_path / "clip")
    assert main(["evaluate", str(pipe), "--validation-images", str(imgs), "--features", clip,
                 "--prompt", "a photo of a toy", "--steps", "1", "--levels", "0",
                 "--json", str(tmp_path / "f.json")]) == 0  # fmt: skip
    res = json.loads((tmp_path / "f.json").read_text())
    assert "baseline" not in res["validation"] and res["validation"]["model"]["num_items"] == 5
    f = res["features"]
    assert f["num_samples"] == 2 and f["num_reference"] == 5 and -1 <= f["image_text"] <= 1
    assert "image–text" in capsys.readouterr().out
