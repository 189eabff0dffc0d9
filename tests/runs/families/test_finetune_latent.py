"""``noiselevels finetune --base PIPELINE``: LoRA on each tiny pipeline, loaded back by diffusers.

Tiny pipelines: conftest.py's session fixture ``tiny_pipeline(family)`` (built once per session)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")
from PIL import Image

from noiselevels.cli import main
from noiselevels.presets import preset
from noiselevels.runs.families import load_pipeline
from noiselevels.runs.families.lora import KOHYA_FILE, apply_adapter
from noiselevels.runs.finetune import resolve_noise
from noiselevels.runs.finetune_latent import _sdxl_time_ids, bucket_noise, finetune_latent
from noiselevels.runs.latent_cache import LatentData

# Flux: the layers both files hold (diffusers' kohya reader maps attention projections only)
FLUX_ATTN = "attn.to_q,attn.to_k,attn.to_v,attn.to_out.0"


@pytest.fixture(scope="module")
def caption_dir(tmp_path_factory):
    """Five small images as fine-tuners keep them: odd sizes and modes, captions with [trigger]."""
    d = tmp_path_factory.mktemp("captioned")
    rng = np.random.default_rng(0)
    sizes = [(32, 32), (48, 32), (32, 40), (20, 20), (64, 32)]
    for i, (w, h) in enumerate(sizes):
        arr = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        im = Image.fromarray(arr)
        (im.convert("RGBA") if i == 3 else im).save(d / f"img{i}.png")
        if i != 4:
            (d / f"img{i}.txt").write_text(f"a photo of [trigger] number {i}")
    return d


def _pipe_out(pipe, seed=0):
    with torch.no_grad():
        return pipe("a photo of zqx", num_inference_steps=2, height=32, width=32, output_type="np",
                    generator=torch.Generator().manual_seed(seed)).images  # fmt: skip


def _run(folder, images, out, cache, *extra):
    args = ["finetune", "--base", str(folder), "--images", str(images), "--timestep-type", "sigmoid",
            "--steps", "3", "--resolution", "32", "--out", str(out), "--cache-dir", str(cache),
            "--trigger", "zqx", "--rank", "4", "--alpha", "2", "--lr", "0.05", *extra]  # fmt: skip
    return main(args)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
def test_cli_adapter_loads_in_diffusers(family, tiny_pipeline, caption_dir, tmp_path, monkeypatch, capsys):
    from diffusers import AutoencoderKL, DiffusionPipeline

    folder = tiny_pipeline(family)
    targets = ["--targets", FLUX_ATTN] if family == "flux" else []
    extra = ["--gradient-checkpointing", "--mixed-precision", "bf16", "--ema", "0.5",
             "--caption-dropout", "0.3"] if family == "sdxl" else []  # fmt: skip
    assert _run(folder, caption_dir, tmp_path / "d", tmp_path / "cache", *targets, *extra) == 0
    text = capsys.readouterr().out
    assert "5 latents + 6 prompts encoded" in text and "pipe.load_lora_weights(" in text
    info = json.loads((tmp_path / "d" / "finetune.json").read_text())
    assert info["family"] == family and info["cache"]["encoded_images"] == 5 and info["steps"] == 3
    # the same data a second time (another format): no VAE call at all
    def no_vae(*a, **k):
        raise AssertionError("the VAE was called on cached data")

    monkeypatch.setattr(AutoencoderKL, "encode", no_vae)
    assert _run(folder, caption_dir, tmp_path / "k", tmp_path / "cache", *targets, *extra,
                "--lora-format", "kohya") == 0  # fmt: skip
    assert "0 latents + 0 prompts encoded, 5 + 6 read" in capsys.readouterr().out
    monkeypatch.undo()
    pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    base = _pipe_out(pipe)
    pipe.load_lora_weights(str(tmp_path / "d" / "adapter"))
    tuned = _pipe_out(pipe)
    assert np.abs(tuned - base).max() > 1e-4  # the adapter changes the pipeline's output
    if family != "sd3":  # diffusers 0.42.1 cannot read SD3 kohya keys (runs.families.lora docstring)
        pipe.unload_lora_weights()
        pipe.load_lora_weights(str(tmp_path / "k" / "adapter"), weight_name=KOHYA_FILE)
        np.testing.assert_allclose(_pipe_out(pipe), tuned, rtol=0, atol=1e-5)
    else:  # diffusers loads nothing from SD3 kohya keys; both files read by our loader agree
        pipe.unload_lora_weights()
        pipe.load_lora_weights(str(tmp_path / "k" / "adapter"), weight_name=KOHYA_FILE)
        np.testing.assert_allclose(_pipe_out(pipe), base, rtol=0, atol=0)
        z, lam = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.0, 2.0])
        outs = []
        for sub in ("d", "k"):
            lm = apply_adapter(load_pipeline(folder), tmp_path / sub)
            with torch.no_grad():
                outs.append(lm(z, lam, **lm.encode_prompts(["zqx", "a"])))
        torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    if family == "sdxl":
        assert info["mixed_precision_applied"] is False and info["ema"] == 0.5


def test_resume_equals_uninterrupted(tiny_pipeline, caption_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from noiselevels.runs import finetune_latent as ftl

    folder = tiny_pipeline("sd")
    kw = dict(timestep_type="sigmoid", steps=4, resolution=32, rank=2, lr=0.05, cache_dir=tmp_path / "c",
              checkpoint_every=2, progress=False, ema=0.5)  # fmt: skip
    finetune_latent(folder, caption_dir, out_dir=tmp_path / "full", **kw)
    real_save = ftl._State.save

    def save_then_stop(self, root):
        real_save(self, root)
        raise KeyboardInterrupt

    monkeypatch.setattr(ftl._State, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        finetune_latent(folder, caption_dir, out_dir=tmp_path / "cut", **kw)
    monkeypatch.undo()
    assert (tmp_path / "cut" / "checkpoint").is_dir() and not (tmp_path / "cut" / "adapter").exists()
    with pytest.raises(ValueError, match=r"another configuration \(rank 2, now 3\)"):
        finetune_latent(folder, caption_dir, out_dir=tmp_path / "cut", **{**kw, "rank": 3})
    res = finetune_latent(folder, caption_dir, out_dir=tmp_path / "cut", **kw)
    assert res.info["resumed"] is True and not (tmp_path / "cut" / "checkpoint").exists()
    a = load_file(str(tmp_path / "full" / "adapter" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(tmp_path / "cut" / "adapter" / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    full_log = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    cut_log = [json.loads(x) for x in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in full_log] == [r["loss"] for r in cut_log]


def test_dynamic_shift_per_bucket(tiny_pipeline, caption_dir, tmp_path):
    lm = load_pipeline(tiny_pipeline("flux"))
    res = finetune_latent(lm, caption_dir, timestep_type="ai-toolkit:flux_shift", steps=1, resolution=32,
                          rank=2, cache_dir=tmp_path, identity="flux-test", progress=False)  # fmt: skip
    assert len(res.noise) >= 2
    for (w, h), nc in res.noise.items():
        n = lm.image_seq_len(h, w)
        expected = resolve_noise(preset("ai-toolkit:flux_shift", image_seq_len=n), lm.noise)
        assert nc.to_dict() == expected.to_dict()
    # different token counts, different densities; a static preset is the same in every bucket
    assert len({json.dumps(nc.to_dict(), sort_keys=True) for nc in res.noise.values()}) == len(res.noise)
    s1, s2 = (bucket_noise("ai-toolkit:shift", lm.noise, n, dynamic_shifting=False) for n in (64, 4096))
    assert s1.to_dict() == s2.to_dict() == resolve_noise("ai-toolkit:shift", lm.noise).to_dict()
    d1 = bucket_noise("ai-toolkit:shift", lm.noise, 4096, dynamic_shifting=True)
    assert d1.to_dict() == resolve_noise(preset("ai-toolkit:shift", image_seq_len=4096), lm.noise).to_dict()
    fixed = {"preset": "kohya:flux_shift", "preset_params": {"image_seq_len": 1024}}
    assert bucket_noise(fixed, lm.noise, 64).to_dict() == resolve_noise(fixed, lm.noise).to_dict()


def test_sdxl_time_ids_are_diffusers_compute_time_ids():
    from noiselevels.runs.captions import CaptionedImage

    item = CaptionedImage(path=None, caption="", raw_caption="", sha256="", size=(64, 32))
    data = LatentData([item], [torch.zeros(1)], [(48, 32)], {}, {}, 0)
    # 64×32 covers 48×32 at scale 1: 8 columns cropped on each side; (orig h, w, top, left, target h, w)
    torch.testing.assert_close(_sdxl_time_ids(data, 0), torch.tensor([32.0, 64.0, 0.0, 8.0, 32.0, 48.0]))


def test_bad_input_one_line(tiny_pipeline, caption_dir, tmp_path, capsys):
    folder, flux = str(tiny_pipeline("sd")), str(tiny_pipeline("flux"))
    capsys.readouterr()  # building a pipeline prints to stderr
    cases = [
        (["--class", "3"], "--class is for the MNIST bases"),
        (["--images", str(caption_dir), "--label", "1"], "--label is for the MNIST bases"),
        (["--images", str(caption_dir), "--targets", "nope"], "LoRA target 'nope' matches no"),
        (["--images", str(caption_dir), "--caption-dropout", "2"], "caption dropout must be a probability"),
        (["--images", str(tmp_path)], "holds no image"),
    ]
    for extra, msg in cases:
        assert main(["finetune", "--base", folder, "--out", str(tmp_path / "o"), "--steps", "1",
                     "--cache-dir", str(tmp_path / "c"), *extra]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert main(["finetune", "--base", "mnist-base", "--class", "7", "--trigger", "x", "--out", "o"]) == 2
    assert "--trigger is for diffusers pipelines" in capsys.readouterr().err
    assert main(["finetune", "--base", flux, "--images", str(caption_dir), "--steps", "1", "--lora-format",
                 "kohya", "--targets", "attn.to_q,ff.net.2", "--out", str(tmp_path / "f"), "--cache-dir",
                 str(tmp_path / "c")]) == 2  # fmt: skip
    assert "cannot hold Flux modules" in capsys.readouterr().err


def test_half_precision_base(tiny_pipeline, caption_dir, tmp_path):
    """A bfloat16 pipeline: the VAE encodes in float32 (then returns to bfloat16), the adapter trains in
    float32, the loss is finite."""
    from noiselevels.runs.families.lora import lora_layers

    res = finetune_latent(tiny_pipeline("sd"), caption_dir, dtype=torch.bfloat16, steps=2, resolution=32,
                          rank=2, cache_dir=tmp_path, progress=False)  # fmt: skip
    lm = res.model
    assert lm.pipe.vae.dtype == torch.bfloat16 and lm.dtype == torch.bfloat16
    assert all(z.dtype == torch.float32 for z in res.data.latents)
    assert all(v.dtype == torch.bfloat16 for t in res.data.text.values() for v in t.values())
    layers = list(lora_layers(lm.network))
    assert layers and all(m.lora_A["default"].weight.dtype == torch.float32 for _, m in layers)
    assert np.isfinite(res.info["final_loss"])
