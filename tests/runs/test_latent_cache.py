"""The latent / text-embedding cache: computed once, keyed by content + model + bucket, atomic files."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from noiselevels.runs.captions import read_caption_folder
from noiselevels.runs.latent_cache import LatentCache, default_cache_dir, model_identity, prepare_latent_data

pytest.importorskip("safetensors")
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


class _Counting:
    """A stand-in latent model: 2× average-pool 'VAE', a caption-length 'text encoder'; counts calls."""

    def __init__(self):
        self.vae_calls = 0
        self.text_calls = 0

    def encode_images(self, px):
        self.vae_calls += 1
        return F.avg_pool2d(px, 2)

    def encode_prompts(self, captions):
        self.text_calls += 1
        return {"prompt_embeds": torch.tensor([[float(len(c)), 1.0] for c in captions])}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(d / "a.png")
    Image.new("RGB", (64, 32), (0, 255, 0)).save(d / "b.png")
    Image.new("RGB", (20, 40), (0, 0, 255)).save(d / "c.png")
    (d / "a.txt").write_text("red")
    (d / "b.txt").write_text("green wide")
    return d


def test_second_run_reads_everything(folder, tmp_path):
    items = read_caption_folder(folder, trigger="tok")
    m = _Counting()
    data = prepare_latent_data(m, items, resolution=32, step=4, cache=LatentCache(tmp_path / "c", "id1"))
    assert m.vae_calls >= 1 and data.stats["encoded_images"] == 3 and data.stats["encoded_prompts"] == 4
    assert set(data.text) == {"tok red", "tok green wide", "tok ", ""}
    # each latent equals the encoder applied to the bucketed image
    assert data.buckets[0] == (32, 32) and data.latents[0].shape == (3, 16, 16)
    torch.testing.assert_close(data.latents[0][0], torch.ones(16, 16))
    torch.testing.assert_close(data.latents[0][1:], -torch.ones(2, 16, 16))
    bw, bh = data.buckets[1]
    assert bw / bh > 1.5 and data.latents[1].shape == (3, bh // 2, bw // 2)
    m2 = _Counting()
    again = prepare_latent_data(m2, items, resolution=32, step=4, cache=LatentCache(tmp_path / "c", "id1"))
    assert (m2.vae_calls, m2.text_calls) == (0, 0)
    assert again.stats == {"encoded_images": 0, "read_images": 3, "encoded_prompts": 0, "read_prompts": 4}
    for x, y in zip(data.latents, again.latents):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    for k in data.text:
        torch.testing.assert_close(data.text[k]["prompt_embeds"], again.text[k]["prompt_embeds"])
    # another model identity, another resolution, or changed image bytes: recomputed
    m3 = _Counting()
    prepare_latent_data(m3, items, resolution=32, step=4, cache=LatentCache(tmp_path / "c", "id2"))
    assert m3.vae_calls >= 1 and m3.text_calls == 4
    m4 = _Counting()
    d4 = prepare_latent_data(m4, items, resolution=16, step=4, cache=LatentCache(tmp_path / "c", "id1"))
    assert d4.stats["encoded_images"] == 3 and d4.stats["encoded_prompts"] == 0
    Image.new("RGB", (32, 32), (9, 9, 9)).save(folder / "a.png")
    m5 = _Counting()
    d5 = prepare_latent_data(m5, read_caption_folder(folder, trigger="tok"), resolution=32, step=4,
                             cache=LatentCache(tmp_path / "c", "id1"))  # fmt: skip
    assert d5.stats["encoded_images"] == 1 and d5.stats["read_images"] == 2
    # no temporary files are left behind
    assert not [p for p in (tmp_path / "c").rglob("*") if p.name.endswith(".tmp")]


def test_damaged_entry_is_recomputed(folder, tmp_path):
    items = read_caption_folder(folder)
    cache = LatentCache(tmp_path / "c", "id")
    prepare_latent_data(_Counting(), items, resolution=32, step=4, cache=cache)
    path = next((tmp_path / "c" / "latents").iterdir())
    path.write_bytes(b"garbage")
    cache2 = LatentCache(tmp_path / "c", "id")
    prepare_latent_data(_Counting(), items, resolution=32, step=4, cache=cache2)
    assert cache2.stats["encoded_images"] == 1 and cache2.stats["read_images"] == 2


def test_text_batch_and_bad_encoder(folder, tmp_path):
    items = read_caption_folder(folder)
    data = prepare_latent_data(_Counting(), items, resolution=32, step=4, cache=LatentCache(tmp_path, "i"))
    tb = data.text_batch(["red", "", "red"])
    torch.testing.assert_close(tb["prompt_embeds"], torch.tensor([[3.0, 1.0], [0.0, 1.0], [3.0, 1.0]]))
    assert list(data.by_bucket().values()) and sum(len(v) for v in data.by_bucket().values()) == 3

    class Bad(_Counting):
        def encode_prompts(self, captions):
            return [1]

    with pytest.raises(TypeError, match="dict of tensors"):
        prepare_latent_data(Bad(), items, resolution=32, step=4, cache=LatentCache(tmp_path / "x", "i"))


def test_model_identity_and_default_dir(tmp_path, monkeypatch):
    (tmp_path / "vae").mkdir()
    w = tmp_path / "vae" / "w.safetensors"
    w.write_bytes(b"1234")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"x")
    a = model_identity(tmp_path, "sd")
    assert a == model_identity(tmp_path, "sd") and a != model_identity(tmp_path, "sdxl")
    (tmp_path / "unet" / "w.safetensors").write_bytes(b"yy")  # the denoiser does not matter
    assert model_identity(tmp_path, "sd") == a
    w.write_bytes(b"12345")
    assert model_identity(tmp_path, "sd") != a
    with pytest.raises(ValueError, match="does not exist"):
        model_identity(tmp_path / "none", "sd")
    monkeypatch.setenv("NOISELEVELS_CACHE", str(tmp_path / "cc"))
    assert default_cache_dir() == tmp_path / "cc"
    monkeypatch.delenv("NOISELEVELS_CACHE")
    home = os.path.expanduser("~")
    assert str(default_cache_dir()) == os.path.join(home, ".cache", "noiselevels", "latents")
