"""``LatentModel``: a diffusers pipeline as the project's model at noise level λ, and sampling from it.

A family adapter (``sd.py``, ``flow.py``) subclasses ``LatentModel`` and fills in five things: which
module is the denoising ``network`` (the UNet or transformer; LoRA attaches there), the ``NoiseConfig``
of the model's scheduler, ``encode_prompts``, the map from λ to the network's own timestep
(``timestep``), and ``_predict`` (the network call with the family's extra inputs). Everything else —
the VAE, the objective contract, the denoiser with classifier-free guidance, the scheduler's own grid —
is shared here.

**The objective's model contract** (``noiselevels.training.objective``): ``model(z, λ, **cond)`` with z of
shape (B, C, h, w) (unpacked latents, also for Flux), λ of shape (B,), returns the prediction of
``self.noise.parameterization``'s target — the network's raw output, since the NoiseConfig is read from
the scheduler's ``prediction_type`` (ε, v, x₀) or is ``flow`` (u = ε − x₀, exactly what diffusers' flow
transformers predict: ``FlowMatchEulerDiscreteScheduler.step`` moves z by (σ_next − σ)·output,
scheduling_flow_match_euler_discrete.py ``step``; dz/dσ = ε − x₀ for z = (1 − σ)x₀ + σε).

**Latents**: ``encode_images`` takes the VAE posterior's *mean* (deterministic, so cached latents do not
depend on a seed; diffusers' training scripts draw ``latent_dist.sample()`` instead, which adds noise of
the posterior's std — small next to the diffusion noise at every level the objective draws) and
returns (mean − shift_factor)·scaling_factor with both factors from the VAE config (shift 0 when the
config has none: SD 1.x/2.x/XL). ``decode_latents`` inverts it.

**Sampling** (``solve_latents``): the project's solvers work on the VE scale x = z/α with σ_ve = σ/α.
A flow model's own grid starts at flow σ = 1 (pure noise, σ_ve = ∞), which no VE solver can start from;
its first step is taken exactly as the flow Euler / DDIM step from pure noise does it: at σ = 1 the
noisy latent is the noise itself, so ε̂ = noise and x₁ = x̂₀(noise) + σ_ve,1·noise. The remaining
steps use the chosen solver. A VP scheduler's pipeline starts at z = noise (std 1), which on the VE
scale is noise·√(1 + σ₀²) — diffusers' ``init_noise_sigma`` for ``timestep_spacing="leading"``
(scheduling_euler_discrete.py ``init_noise_sigma``); ``scheduler_grid`` returns that start scale so
``--scheduler diffusers`` reproduces the pipeline.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from noiselevels.levels import broadcast
from noiselevels.noise import NoiseConfig
from noiselevels.sampling.denoiser import ModelDenoiser
from noiselevels.sampling.solvers import solve

__all__ = ["LatentModel", "PipelineDenoiser", "SchedulerGrid", "solve_latents"]


class SchedulerGrid(NamedTuple):
    """A pipeline scheduler's own grid: ``sigmas`` (N+1,) VE σ, float64, decreasing, trailing 0
    (``sigmas[0]`` is ∞ for a flow grid that starts at σ = 1); ``init_noise_sigma``: the VE scale the
    pipeline's initial noise has (irrelevant when sigmas[0] is ∞); ``timesteps``: the scheduler's own
    timesteps (N,), for reference."""

    sigmas: Tensor
    init_noise_sigma: float
    timesteps: Tensor


class PipelineDenoiser(ModelDenoiser):
    """``ModelDenoiser`` (D(x, σ_ve) → x̂₀, with CFG) plus ``at_pure_noise`` for flow grids from σ = 1."""

    def at_pure_noise(self, noise: Tensor) -> Tensor:
        """x̂₀ at λ = −∞ (flow σ = 1), where the noisy latent z is ``noise`` itself (flow process only)."""
        if self.process != "flow":
            raise ValueError(f"a grid starting at σ_ve = inf needs a flow model; this one is {self.process}")
        out = self._x0_noise(noise, self.cond)
        if self.guidance != 1.0:
            uncond = self._x0_noise(noise, self.uncond)
            out = uncond + self.guidance * (out - uncond)
        return out

    def _x0_noise(self, noise: Tensor, kw: Mapping[str, Any]) -> Tensor:
        lam = torch.full((noise.shape[0],), -math.inf, dtype=torch.float64, device=noise.device)
        a = broadcast(torch.zeros_like(lam), noise).to(noise.dtype)
        s = broadcast(torch.ones_like(lam), noise).to(noise.dtype)
        pred = self.model(self.param.model_input(noise, alpha=a, sigma=s), lam.to(noise.dtype), **kw)
        return self.param.to_x0_eps(pred, z=noise, alpha=a, sigma=s)[0]


@torch.no_grad()
def solve_latents(
    denoiser: PipelineDenoiser,
    noise: Tensor,
    sigmas: Tensor | Sequence[float],
    *,
    solver: str = "euler",
    init_noise_sigma: float | None = None,
    generator: Any = None,
    **options: Any,
) -> Tensor:
    """Sample latents from standard-normal ``noise`` (B, C, h, w) along the VE grid ``sigmas``.

    A grid starting at ∞ takes its first step from pure noise exactly (module docstring), then
    ``noiselevels.sampling.solve``; otherwise x starts at noise·``init_noise_sigma`` (default
    sigmas[0]). Returns the latents at sigmas[-1] (x = z/α; at a trailing 0, the clean latents).
    """
    s = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
    if s.numel() < 2:
        raise ValueError(f"sigmas must have at least 2 values; got {s.tolist()}")
    if math.isinf(float(s[0])):
        x = denoiser.at_pure_noise(noise) + float(s[1]) * noise
        s = s[1:]
        if s.numel() == 1:
            return x
    else:
        x = noise * float(s[0] if init_noise_sigma is None else init_noise_sigma)
    return solve(denoiser, x, sigmas=s, solver=solver, generator=generator, **options)


def _rows(cond: Mapping[str, Any], batch: int) -> dict[str, Any]:
    """Conditioning tensors with a first dimension of 1 repeated to ``batch`` rows."""
    out = {}
    for k, v in cond.items():
        if isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] == 1 and batch != 1:
            v = v.expand(batch, *v.shape[1:])
        elif isinstance(v, Tensor) and v.ndim >= 1 and v.shape[0] != batch:
            raise ValueError(f"cond[{k!r}] has {v.shape[0]} rows; the latents have {batch}")
        out[k] = v
    return out


class LatentModel(nn.Module):
    """A diffusers pipeline as ``model(z, λ, **cond)`` (see the module docstring).

    Attributes: ``family`` (sd, sdxl, sd3, flux), ``native_resolution`` (pixels; the pipeline's
    default height), ``noise`` (the ``NoiseConfig`` of its scheduler: process and parameterisation, with
    the family's default training density), ``network`` (the UNet / transformer — the only registered
    sub-module, so ``parameters()`` are the denoiser's), ``default_lora_targets`` (module names for
    peft's ``target_modules``), ``pipe`` (the diffusers pipeline; VAE and text encoders frozen),
    ``cond_keys`` (the keyword arguments ``forward`` accepts).
    """

    family: ClassVar[str] = ""
    pipeline_class: ClassVar[str] = ""
    default_lora_targets: ClassVar[list[str]] = []
    cond_keys: ClassVar[tuple[str, ...]] = ()
    default_guidance: ClassVar[float] = 1.0  # the pipeline's own default guidance_scale

    def __init__(self, pipe: Any):
        super().__init__()
        self.pipe = pipe
        self.network = self._network(pipe)
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.requires_grad_(False)
        if pipe.vae.dtype == torch.float16 and pipe.vae.config.get("force_upcast", False):
            # SDXL's VAE overflows in float16; its pipeline upcasts it around every decode
            # (pipeline_stable_diffusion_xl.py ``needs_upcasting``): keep it in float32 here
            pipe.vae.to(torch.float32)
        self.noise = self._noise_config()
        self.native_resolution = int(self._default_sample_size() * self.vae_scale_factor)

    # -- what a family defines ----------------------------------------------------------------
    def _network(self, pipe: Any) -> nn.Module:
        raise NotImplementedError

    def _noise_config(self) -> NoiseConfig:
        raise NotImplementedError

    def _default_sample_size(self) -> int:
        return int(self.network.config.sample_size)

    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        """Per-row conditioning tensors (first dimension len(prompts)) for ``forward``."""
        raise NotImplementedError

    def unconditional(self, batch: int) -> dict[str, Tensor]:
        """The conditioning of the pipeline's unconditional branch without a negative prompt."""
        return self.encode_prompts([""] * batch)

    def timestep(self, logsnr: Tensor) -> Tensor:
        """The network's own timestep at λ (B,), float64."""
        raise NotImplementedError

    def _predict(self, z: Tensor, logsnr: Tensor, cond: dict[str, Any]) -> Tensor:
        raise NotImplementedError

    def scheduler_grid(self, steps: int, *, height: int, width: int) -> SchedulerGrid:
        """The grid the pipeline's scheduler visits in ``steps`` steps at this image size (pixels)."""
        raise NotImplementedError

    def sigma_range(self) -> tuple[float, float]:
        """(σ_min, σ_max) on the VE scale the model was trained over, the default range of the project's
        spacings for it: the DDPM table's first and last finite entries; for flow models
        σ = 1/T and 1 − 1/T (T = ``num_train_timesteps``, 1000: σ_ve from 0.001 to 999)."""
        raise NotImplementedError

    @property
    def latent_channels(self) -> int:
        return int(self.pipe.vae.config.latent_channels)

    def image_seq_len(self, height: int, width: int) -> int:
        """Tokens the network sees for an image of height × width pixels (latent positions for a UNet)."""
        f = self.vae_scale_factor
        return (height // f) * (width // f)

    # -- shared ---------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    def to(self, *args: Any, **kwargs: Any) -> LatentModel:
        """``nn.Module.to`` for the network; the VAE and text encoders (not sub-modules, so that
        ``parameters()`` are the network's) follow it to its device and keep their dtypes."""
        super().to(*args, **kwargs)
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(self.pipe, name, None)
            if module is not None:
                module.to(self.device)
        return self

    def forward(self, z: Tensor, logsnr: Tensor, **cond: Any) -> Tensor:
        """The prediction of ``noise.parameterization``'s target at λ = ``logsnr`` (B,) for latents z
        (any float dtype: the network runs in its own, the prediction comes back in z's)."""
        unknown = sorted(set(cond) - set(self.cond_keys))
        if unknown:
            raise TypeError(f"{self.family} model got unknown conditioning {unknown}; it takes "
                            f"{', '.join(self.cond_keys)}")
        logsnr = torch.as_tensor(logsnr, device=z.device)
        if logsnr.ndim == 0:
            logsnr = logsnr.expand(z.shape[0])
        dtype = self.dtype  # latents and conditioning in the network's dtype, the prediction in z's
        cond = {k: v.to(dtype) if isinstance(v, Tensor) and v.is_floating_point() and k != "guidance" else v
                for k, v in _rows(cond, z.shape[0]).items()}  # fmt: skip
        return self._predict(z.to(dtype), logsnr, cond).to(z.dtype)

    @torch.no_grad()
    def encode_images(self, pixels: Tensor) -> Tensor:
        """Latents (B, C, H/f, W/f) of images (B, 3, H, W) in [−1, 1]: (posterior mean − shift)·scale."""
        vae = self.pipe.vae
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must have shape (B, 3, H, W); got {tuple(pixels.shape)}")
        mean = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mean
        return (mean - self._shift_factor()) * vae.config.scaling_factor

    @torch.no_grad()
    def decode_latents(self, latents: Tensor) -> Tensor:
        """Images (B, 3, H, W) in about [−1, 1] (not clamped) of latents from ``encode_images``."""
        vae = self.pipe.vae
        z = latents.to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor + self._shift_factor()
        return vae.decode(z, return_dict=False)[0]

    def _shift_factor(self) -> float:
        shift = getattr(self.pipe.vae.config, "shift_factor", None)
        return float(shift) if shift is not None else 0.0

    def denoiser(
        self,
        cond: Mapping[str, Tensor],
        *,
        guidance_scale: float = 1.0,
        negative: Mapping[str, Tensor] | None = None,
    ) -> PipelineDenoiser:
        """D(x, σ_ve) → x̂₀ (``noiselevels.sampling.denoiser`` contract) with classifier-free guidance
        D = D_u + w·(D_c − D_u) when ``guidance_scale`` w ≠ 1 (equal to the pipelines' guidance of ε or
        velocity, x̂₀ being affine in the prediction). ``negative``: the unconditional branch's
        conditioning (``encode_prompts([negative prompt])``); default: the pipeline's own
        (``unconditional``)."""
        cond = dict(cond)
        if guidance_scale == 1.0:
            if negative is not None:
                raise ValueError("a negative prompt needs guidance_scale != 1 (no guidance to apply)")
            uncond = None
        else:
            uncond = dict(negative) if negative is not None else self.unconditional(_batch(cond))
        return PipelineDenoiser(
            self, process=self.noise.process, parameterization=self.noise.parameterization,
            guidance=guidance_scale, uncond=uncond, cond=cond,
        )

    def _scheduler(self):
        """A private copy of the pipeline's scheduler (``set_timesteps`` mutates it)."""
        return copy.deepcopy(self.pipe.scheduler)


def _batch(cond: Mapping[str, Any]) -> int:
    rows = {v.shape[0] for v in cond.values() if isinstance(v, Tensor) and v.ndim >= 1}
    if len(rows) != 1:
        raise ValueError(f"conditioning tensors must share their number of rows; got {sorted(rows)}")
    return rows.pop()
