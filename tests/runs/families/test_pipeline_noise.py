"""runs.pipeline_noise: a pipeline's fine-tune noise from its config files alone equals what
finetune_latent builds from the loaded pipeline; `inspect --base PIPELINE` prints it."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from noiselevels.cli import main
from noiselevels.runs.finetune_latent import bucket_noise
from noiselevels.runs.pipeline_noise import pipeline_noise

LAM = torch.linspace(-12, 12, 97, dtype=torch.float64)


@pytest.mark.parametrize("family", ["sd", "sdxl", "sd3", "flux"])
@pytest.mark.parametrize("timestep_type", [None, "ai-toolkit:flux_shift", "sigmoid"])
def test_config_files_agree_with_the_loaded_pipeline(family, timestep_type, tiny_pipeline, latent_model):
    lm = latent_model(family)
    info = pipeline_noise(tiny_pipeline(family), timestep_type, (48, 32))
    assert info.family == family and info.image_seq_len == lm.image_seq_len(32, 48)
    assert (info.width, info.height) == (48, 32)
    dyn = bool(lm.pipe.scheduler.config.get("use_dynamic_shifting", False))
    tokens = lm.image_seq_len(32, 48)
    want = lm.noise
    if timestep_type is not None:
        want = bucket_noise(timestep_type, lm.noise, tokens, dynamic_shifting=dyn)
    assert (info.noise.process, info.noise.parameterization) == (want.process, want.parameterization)
    assert_close(info.noise.density.log_prob(LAM), want.density.log_prob(LAM), rtol=1e-12, atol=0)
    assert_close(info.noise.weighting(LAM), want.weighting(LAM), rtol=1e-12, atol=0)
    native = pipeline_noise(tiny_pipeline(family))
    assert native.width == native.height == lm.native_resolution


def test_inspect_base_prints_the_bucket(tiny_pipeline, capsys):
    folder = tiny_pipeline("flux")
    args = ["--preset", "ai-toolkit:flux_shift", "--resolution", "64x32", "--no-plots"]
    rc = main(["inspect", "--base", str(folder), *args])
    out = capsys.readouterr().out
    assert rc == 0
    tokens = pipeline_noise(folder, None, (64, 32)).image_seq_len
    assert out.startswith("read as: flux pipeline") and f"64×32 ({tokens} image tokens, --resolution" in out
    assert "preset: ai-toolkit:flux_shift" in out


def test_inspect_base_bad_inputs(tiny_pipeline, tmp_path, capsys):
    assert main(["inspect", "--base", str(tmp_path), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model_index.json" in err[0]


def _flux_dev_configs(folder):
    """The config files of a FLUX.1-dev-shaped folder (no weights; the values its configs hold)."""
    import json

    files = {
        "model_index.json": {"_class_name": "FluxPipeline"},
        "scheduler/scheduler_config.json": {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0,
                                            "use_dynamic_shifting": True, "base_image_seq_len": 256,
                                            "max_image_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15},
        "vae/config.json": {"block_out_channels": [128, 256, 512, 512], "latent_channels": 16},
        "transformer/config.json": {"patch_size": 1, "in_channels": 64, "guidance_embeds": True},
    }  # fmt: skip
    for name, doc in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(doc))
    return folder


def test_flux_dev_shaped_folder_at_1024_is_4096_tokens(tmp_path):
    """Closed form: 1024² on Flux = (1024/16)² = 4096 tokens, μ = 1.15: exactly ai-toolkit:flux_shift's
    default; 512² = 1024 tokens."""
    from noiselevels.analysis import compare
    from noiselevels.presets import preset

    folder = _flux_dev_configs(tmp_path)
    info = pipeline_noise(folder, "ai-toolkit:flux_shift")
    assert (info.width, info.height, info.image_seq_len) == (1024, 1024, 4096) and info.dynamic_shifting
    assert compare(info.noise, preset("ai-toolkit:flux_shift", image_seq_len=4096)).tv < 1e-9
    assert pipeline_noise(folder, "ai-toolkit:flux_shift", (512, 512)).image_seq_len == 1024
