"""A diffusers pipeline as the model a grid is optimised for (``noiselevels.runs.grid_target``, behind
``spacing optimize --run PIPELINE``): prompts drawn for the batch, guidance part of the problem, the
gradient search through the UNet."""

from __future__ import annotations

import pytest
import torch

from noiselevels.runs.grid_target import grid_target
from noiselevels.sampling.optimize import optimize_spacing

pytestmark = pytest.mark.usefixtures("one_thread")


def test_optimize_for_a_tiny_sd_pipeline(latent_model):
    model = latent_model("sd")
    target = grid_target(model, num_samples=2, prompts=["a cat", "a dog"], guidance=3.0)
    assert target.shape == (model.latent_channels, 16, 16) and target.x0 is None
    assert target.conditions.endswith("guidance 3") and target.source.startswith("pipeline")
    res = optimize_spacing(target.denoiser, steps=3, solver="uni_pc", sigma_min=0.03, sigma_max=14.0,
                           shape=target.shape, num_samples=2, iters=2, init="karras", reference_steps=3,
                           dtype=torch.float32, generator=torch.Generator().manual_seed(0), return_info=True)
    assert res.method == "gradient" and res.error_after <= res.error_before
    assert res.sigmas[0] == 14.0 and res.sigmas[-1] == 0.0 and (res.sigmas[1:] < res.sigmas[:-1]).all()


def test_a_pipeline_needs_prompts(latent_model):
    with pytest.raises(ValueError, match="a pipeline needs prompts"):
        grid_target(latent_model("sd"), num_samples=2)
