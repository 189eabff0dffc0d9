"""`noiselevels sample PIPELINE --prompt …`: diffusers pipelines (tiny random ones built here)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from noiselevels.cli import main
from noiselevels.runs.run import initial_noise, sample_generators

pytestmark = pytest.mark.usefixtures("one_thread")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from noiselevels.runs.families.tiny import build_tiny_pipeline

    built = {}

    def get(family):
        if family not in built:
            built[family] = build_tiny_pipeline(family, tmp_path_factory.mktemp(family))
        return built[family]

    return get


def test_sample_on_the_schedulers_grid_is_the_pipelines_image(tiny, tmp_path, capsys):
    """--scheduler diffusers --solver euler from sample 0's noise = the pipeline's own decoded image."""
    from diffusers import DiffusionPipeline

    folder = tiny("sd")
    out = tmp_path / "imgs"
    args = ["sample", str(folder), "--prompt", "a red cat", "--negative-prompt", "blue", "--guidance", "6",
            "--steps", "3", "--scheduler", "diffusers", "--solver", "euler", "--size", "32x32",
            "--out", str(out), "--save-tensor", str(tmp_path / "s.safetensors")]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 image(s) 32x32 of sd (the pipeline's scheduler, 3 steps, euler)" in printed
    ours = load_file(tmp_path / "s.safetensors")["samples"]
    pipe = DiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    noise = initial_noise(sample_generators(0, [0]), (4, 16, 16))
    ref = pipe("a red cat", negative_prompt="blue", guidance_scale=6.0, num_inference_steps=3, height=32,
               width=32, latents=noise, output_type="pt").images
    torch.testing.assert_close(ours, ref * 2 - 1, rtol=0, atol=1e-3)
    from PIL import Image

    png = np.asarray(Image.open(out / "0000.png"))
    assert png.shape == (32, 32, 3)


@pytest.mark.parametrize(("family", "extra"), [
    ("sdxl", ["--spacing", "karras", "--solver", "heun", "--negative-prompt", "dog"]),
    ("sd3", ["--spacing", "uniform_t", "--solver", "dpmpp_2m"]),
    ("flux", ["--scheduler", "diffusers", "--solver", "euler", "--guidance", "2.5"]),
])
def test_sample_writes_pngs_of_the_asked_size(tiny, tmp_path, family, extra):
    out = tmp_path / "o"
    args = ["sample", str(tiny(family)), "--prompt", "a cat", "--steps", "2", "--num", "2",
            "--size", "48x32", "--out", str(out), *extra]
    assert main(args) == 0
    from PIL import Image

    files = sorted(p.name for p in out.iterdir())
    assert files == ["0000.png", "0001.png"]
    assert Image.open(out / "0001.png").size == (48, 32)


@pytest.mark.parametrize(("extra", "message"), [
    ([], "is a diffusers pipeline: give --prompt TEXT"),
    (["--prompt", "x", "--size", "32"], "--size must be WIDTHxHEIGHT"),
    (["--prompt", "x", "--size", "31x32"], "width must be a positive multiple of 2"),
    (["--prompt", "x", "--class", "3"], "--class is for run folders"),
    (["--prompt", "x", "--true-cfg", "2"], "true_cfg is Flux's"),
    (["--prompt", "x", "--scheduler", "diffusers", "--sigma-max", "3"], "drop sigmas / sigma_min /"),
])
def test_pipeline_errors_are_one_line(tiny, tmp_path, capsys, extra, message):
    assert main(["sample", str(tiny("sd")), "--steps", "1", "--out", str(tmp_path / "o"), *extra]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (library warnings may come before it)
    assert last.startswith("noiselevels: error:") and message in last


def test_pipeline_out_must_be_a_folder_and_hub_ids_are_offline(tiny, tmp_path, capsys):
    args = ["sample", str(tiny("sd")), "--prompt", "x", "--steps", "1", "--out", str(tmp_path / "a.png")]
    assert main(args) == 2
    assert "--out for a pipeline is a folder" in capsys.readouterr().err
    assert main(["sample", "nobody-here/no-such-model", "--prompt", "x", "--out", str(tmp_path / "o")]) == 2
    assert "not in the local Hugging Face cache (offline" in capsys.readouterr().err


def test_sample_with_adapter_is_diffusers_load_lora_weights(tiny, tmp_path):
    """--adapter DIR (a LoRA in diffusers form) samples what the pipeline samples after
    pipe.load_lora_weights(DIR), and differs from the base."""
    from diffusers import DiffusionPipeline

    from noiselevels.runs.families import load_pipeline
    from noiselevels.runs.families.lora import add_lora, save_lora

    folder = tiny("sd")
    model = load_pipeline(folder)
    params = add_lora(model, rank=2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    save_lora(model, tmp_path / "lora")
    common = ["--prompt", "a red cat", "--steps", "3", "--scheduler", "diffusers", "--solver", "euler",
              "--size", "32x32"]
    for name, extra in (("with", ["--adapter", str(tmp_path / "lora")]), ("without", [])):
        args = ["sample", str(folder), *common, *extra, "--out", str(tmp_path / name),
                "--save-tensor", str(tmp_path / f"{name}.safetensors")]
        assert main(args) == 0
    ours = load_file(tmp_path / "with.safetensors")["samples"]
    base = load_file(tmp_path / "without.safetensors")["samples"]
    pipe = DiffusionPipeline.from_pretrained(folder, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(tmp_path / "lora")
    noise = initial_noise(sample_generators(0, [0]), (4, 16, 16))
    ref = pipe("a red cat", num_inference_steps=3, height=32, width=32, latents=noise,
               output_type="pt").images
    torch.testing.assert_close(ours, ref * 2 - 1, rtol=0, atol=1e-3)
    assert (ours - base).abs().max() > 1e-2
