"""``runs.families.generate``: sample i depends only on (seed, i); grids from spacings and schedulers."""

from __future__ import annotations

import math

import pytest
import torch

from noiselevels.runs.families.generate import generate_images, pipeline_sigmas


def test_sample_i_depends_only_on_seed_and_i(latent_model):
    model = latent_model("sd")
    kw = dict(steps=2, height=32, width=32, solver="euler", seed=3, latents_only=True)
    a = generate_images(model, "a cat", num=2, batch_size=1, **kw)
    b = generate_images(model, "a cat", num=3, batch_size=2, **kw)
    # equal up to float32 batched arithmetic (latents of size ~15 on the VE scale: ~1e-4)
    torch.testing.assert_close(a, b[:2], rtol=0, atol=1e-3)
    assert not torch.allclose(b[0], b[1])


def test_spacing_grid_spans_the_models_table(latent_model):
    model = latent_model("sd")
    sigmas, init = pipeline_sigmas(model, steps=5, height=32, width=32, spacing="karras")
    lam = model.noise.schedule.logsnr_table()
    want_hi, want_lo = math.exp(-0.5 * float(lam[-1])), math.exp(-0.5 * float(lam[0]))
    assert init is None and sigmas[-1] == 0
    torch.testing.assert_close(sigmas[[0, -2]], torch.tensor([want_hi, want_lo], dtype=torch.float64))
    lo, hi = latent_model("flux").sigma_range()
    assert (lo, hi) == pytest.approx((1 / 999, 999.0))


def test_flux_schedulers_grid_is_the_dynamically_shifted_one(latent_model):
    """σ_i = e^μ/(e^μ + 1/s − 1) of s = linspace(1, 1/N, N), μ linear in the packed token count."""
    model = latent_model("flux")
    grid = model.scheduler_grid(4, height=64, width=64)
    s = torch.linspace(1, 0.25, 4, dtype=torch.float64)
    seq = model.image_seq_len(64, 64)
    mu = 0.5 + (1.15 - 0.5) * (seq - 256) / (4096 - 256)
    flow = math.exp(mu) / (math.exp(mu) + 1 / s - 1)
    ve = flow[1:] / (1 - flow[1:])
    assert math.isinf(grid.sigmas[0]) and grid.sigmas[-1] == 0
    torch.testing.assert_close(grid.sigmas[1:-1], ve, rtol=1e-6, atol=0)


def test_bad_arguments(latent_model):
    model = latent_model("sd")
    with pytest.raises(ValueError, match="scheduler must be 'diffusers'"):
        pipeline_sigmas(model, steps=2, height=32, width=32, scheduler="ddim")
    with pytest.raises(ValueError, match="num must be an integer >= 1"):
        generate_images(model, "x", num=0)
    with pytest.raises(ValueError, match="true_cfg is Flux's"):
        generate_images(model, "x", steps=1, true_cfg=2.0)
    with pytest.raises(ValueError, match="Flux's classifier-free guidance needs both"):
        generate_images(latent_model("flux"), "x", steps=1, height=32, width=32, negative_prompt="y")


def test_pndm_grid_is_its_distinct_timesteps(tiny_pipeline):
    """SD 1.5 ships PNDMScheduler, whose PLMS grid repeats a timestep: the σ grid is the distinct
    timesteps' √((1 − ᾱ)/ᾱ), decreasing, then 0; the start scale √(1 + σ₀²) (z = noise)."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from noiselevels.runs.families.sd import StableDiffusion

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline("sd"), use_safetensors=True)
    pipe.scheduler = PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True,
                                               set_alpha_to_one=False)
    grid = StableDiffusion(pipe).scheduler_grid(5, height=32, width=32)
    abar = pipe.scheduler.alphas_cumprod.to(torch.float64)[[801, 601, 401, 201, 1]]
    want = torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=torch.float64)])
    torch.testing.assert_close(grid.sigmas, want)
    assert grid.init_noise_sigma == pytest.approx(math.sqrt(1 + float(want[0]) ** 2))
