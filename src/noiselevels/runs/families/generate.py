"""Images from a pipeline's ``LatentModel`` along any grid of noise levels: ``generate_images``.

The grid is the scheduler's own (``scheduler="diffusers"``: ``LatentModel.scheduler_grid``, started
like the pipeline starts, so the Euler solver reproduces the pipeline, tests/runs/families), an explicit
VE σ list, or any registered spacing over the model's trained range (``LatentModel.sigma_range``;
spacings that take a schedule get the model's own: the DDPM table for SD / SDXL, so ``uniform_t`` with
``rule=trailing`` is diffusers' trailing spacing). Any solver of ``noiselevels.sampling`` runs it;
flow grids that start at pure noise (σ_ve = ∞) take their first step exactly
(``families.base.solve_latents``). Sample i's initial noise (and a stochastic solver's noise) comes from
its own generator seeded by (seed, i) (``noiselevels.runs.run.sample_generators``), so it does not
depend on ``num`` or ``batch_size``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from noiselevels.runs.families.base import LatentModel, solve_latents
from noiselevels.runs.run import initial_noise, sample_generators, spacing_for_run

__all__ = ["generate_images", "pipeline_sigmas"]


def pipeline_sigmas(
    model: LatentModel,
    *,
    steps: int,
    height: int,
    width: int,
    scheduler: str | None = None,
    spacing: str = "karras",
    spacing_params: Mapping[str, Any] | None = None,
    sigmas: Tensor | Sequence[float] | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
) -> tuple[Tensor, float | None]:
    """(VE σ grid (N+1,) float64, start scale or None for σ₀) — see the module docstring."""
    if scheduler not in (None, "diffusers"):
        raise ValueError(f"scheduler must be 'diffusers' (the pipeline's own) or None; got {scheduler!r}")
    if scheduler == "diffusers":
        if sigmas is not None or sigma_min is not None or sigma_max is not None:
            raise ValueError("the pipeline's own scheduler sets the grid: drop sigmas / sigma_min / "
                             "sigma_max")
        grid = model.scheduler_grid(steps, height=height, width=width)
        return grid.sigmas, grid.init_noise_sigma
    if sigmas is not None:
        return torch.as_tensor(sigmas, dtype=torch.float64), None
    lo, hi = model.sigma_range()
    sp = spacing_for_run(model.noise, spacing, spacing_params)
    if getattr(sp, "fixed_range", False) and sigma_min is None and sigma_max is None:
        lo = hi = None
    lo = lo if sigma_min is None else sigma_min
    hi = hi if sigma_max is None else sigma_max
    return torch.as_tensor(sp.sigmas(steps, sigma_min=lo, sigma_max=hi), dtype=torch.float64), None


def _check_size(model: LatentModel, height: int, width: int) -> tuple[int, int]:
    f = model.vae_scale_factor * (2 if model.family == "flux" else 1)
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < f or v % f:
            raise ValueError(f"{name} must be a positive multiple of {f} for this {model.family} pipeline; "
                             f"got {v!r}")  # fmt: skip
    return height // model.vae_scale_factor, width // model.vae_scale_factor


def _denoiser(model: LatentModel, cond, negative, guidance, true_cfg):
    if model.family == "flux":
        return model.denoiser(cond, guidance_scale=guidance, negative=negative,
                              true_cfg_scale=1.0 if true_cfg is None else float(true_cfg))  # fmt: skip
    if true_cfg is not None:
        raise ValueError(f"true_cfg is Flux's; a {model.family} pipeline uses guidance (real CFG)")
    g = model.default_guidance if guidance is None else float(guidance)
    return model.denoiser(cond, guidance_scale=g, negative=negative)


@torch.no_grad()
def generate_images(
    model: LatentModel,
    prompt: str,
    *,
    num: int = 1,
    negative_prompt: str | None = None,
    guidance: float | None = None,
    true_cfg: float | None = None,
    height: int | None = None,
    width: int | None = None,
    steps: int = 20,
    solver: str = "euler",
    seed: int = 0,
    batch_size: int = 4,
    latents_only: bool = False,
    **grid: Any,
) -> Tensor:
    """``num`` images (num, 3, H, W) in [−1, 1] (float32, CPU) of ``prompt``; the latents with
    ``latents_only``. ``guidance``: the classifier-free guidance scale (default the pipeline's: 7.5 SD,
    5 SDXL, 7 SD3) — for Flux-dev the embedded guidance (default 3.5), with real CFG as ``true_cfg``
    and a ``negative_prompt``. Size default: the model's native resolution. ``grid``: the keywords of
    ``pipeline_sigmas`` (scheduler, spacing, spacing_params, sigmas, sigma_min, sigma_max)."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1; got {num!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    height = model.native_resolution if height is None else height
    width = model.native_resolution if width is None else width
    h, w = _check_size(model, height, width)
    sigmas, init = pipeline_sigmas(model, steps=steps, height=height, width=width, **grid)
    outs = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        cond = model.encode_prompts([prompt] * n)
        negative = None if negative_prompt is None else model.encode_prompts([negative_prompt] * n)
        den = _denoiser(model, cond, negative, guidance, true_cfg)
        gens = sample_generators(seed, range(start, start + n))
        noise = initial_noise(gens, (model.latent_channels, h, w)).to(device=model.device, dtype=model.dtype)
        x = solve_latents(den, noise, sigmas, solver=solver, init_noise_sigma=init, generator=gens)
        outs.append((x if latents_only else model.decode_latents(x).clamp(-1, 1)).float().cpu())
    return torch.cat(outs)
