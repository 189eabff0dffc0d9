"""Stable Diffusion 1.x / 2.x and SDXL: a ``UNet2DConditionModel`` on a DDPM β table.

**Noise** (``_ddpm_noise``): the scheduler config's ``num_train_timesteps``, ``beta_schedule``,
``beta_start``/``beta_end`` and ``rescale_betas_zero_snr`` become the project's ``ddpm`` schedule
(``noiselevels.schedules.ddpm.DDPM``, diffusers' table in float64); ``prediction_type`` gives the
parameterisation (``epsilon`` → eps, ``v_prediction`` → v, ``sample`` → x0). The default training
density is uniform over the table's timesteps with the plain MSE of that prediction — what diffusers'
train_text_to_image*.py scripts do (``torch.randint(0, T)``, ``F.mse_loss(model_pred, target)``).

**Timestep at λ** (``timestep``): the UNet was trained on integer timesteps i with ᾱ_i from the table;
for any λ the continuous timestep is the table inverted *in λ*: between consecutive entries λ_i > λ_{i+1}
it is i + (λ_i − λ)/(λ_i − λ_{i+1}), with the table λ_i = log(ᾱ_i/(1 − ᾱ_i)) of the pipeline scheduler's
own ``alphas_cumprod`` (float32 there; the project's float64 ``ddpm`` schedule in ``noise`` agrees to
3e-4 timesteps). At the table's timesteps it is exact (the tests check it at every i); between them it
is linear in λ — the same as
``EulerDiscreteScheduler`` given custom ``sigmas`` (``_sigma_to_t`` interpolates linearly in log σ = −λ/2,
scheduling_euler_discrete.py lines 483-516), so a project grid handed to the pipeline as
``pipe(sigmas=…)`` gets the adapter's timesteps (tested). The other direction differs: with
``timestep_spacing="linspace"`` the scheduler puts fractional timesteps first and interpolates σ
linearly in the timestep (``np.interp(timesteps, arange, sigmas)``, line 439), so those grids' σ lie
slightly off the λ-interpolation and the adapter feeds slightly different timesteps there. Levels
outside the table clamp to its ends, 0 and T − 1, as ``_sigma_to_t`` clamps. A zero-terminal-SNR table
(ᾱ_{T−1} = 0, λ = −∞) uses diffusers' own finite stand-in ᾱ_{T−1} = 2⁻²⁴ (σ ≈ 4096,
scheduling_euler_discrete.py line 251), so σ = 4096 and σ = ∞ both get timestep T − 1.

**SDXL** adds a pooled text embedding of ``text_encoder_2`` (``text_embeds``) and six micro-conditioning
``time_ids`` = (original height, width, crop top, left, target height, width) in pixels
(pipeline_stable_diffusion_xl.py ``_get_add_time_ids``); without ``time_ids`` in ``cond`` they default to
the pipeline's own default for the latent size: (8h, 8w, 0, 0, 8h, 8w) with 8 = ``vae_scale_factor``.
Without a negative prompt the unconditional branch is zeros when the pipeline's config says
``force_zeros_for_empty_prompt`` (its default), else the embedding of "" (encode_prompt there).

**LoRA targets**: the attention projections ``to_q``, ``to_k``, ``to_v``, ``to_out.0`` — diffusers'
examples/text_to_image/train_text_to_image_lora.py line 536 and train_text_to_image_lora_sdxl.py line 705
(``target_modules=["to_k", "to_q", "to_v", "to_out.0"]``; diffusers 58eb52c0).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from noiselevels.noise import NoiseConfig
from noiselevels.runs.families.base import LatentModel, SchedulerGrid
from noiselevels.schedules import schedule as make_schedule
from noiselevels.training.densities import density as make_density
from noiselevels.training.weightings import in_units
from noiselevels.training.weightings import weighting as make_weighting

__all__ = ["StableDiffusion", "StableDiffusionXL"]

_PREDICTION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}


def _ddpm_noise(config: Any) -> NoiseConfig:
    """The ``NoiseConfig`` of a DDPM-family scheduler config (module docstring)."""
    pred = config.get("prediction_type", "epsilon")
    if pred not in _PREDICTION:
        valid = ", ".join(_PREDICTION)
        raise ValueError(f"scheduler prediction_type {pred!r} is not supported; valid: {valid}")
    beta_schedule = config.get("beta_schedule", "linear")
    sched = make_schedule(
        "ddpm",
        num_train_timesteps=int(config.get("num_train_timesteps", 1000)),
        beta_start=float(config.get("beta_start", 0.0001)),
        beta_end=float(config.get("beta_end", 0.02)),
        beta_schedule=beta_schedule,
        rescale_betas_zero_snr=bool(config.get("rescale_betas_zero_snr", False)),
    )
    param = _PREDICTION[pred]
    weight = make_weighting("constant")
    return NoiseConfig(
        process="vp",
        parameterization=param,
        density=make_density("uniform_t", schedule=sched),
        weighting=weight if param == "eps" else in_units(weight, param, process="vp"),
        schedule=sched,
        description="from the pipeline's scheduler config; uniform timesteps, plain MSE of the prediction",
    )


def _table_timestep(lam: Tensor, table: Tensor) -> Tensor:
    """The fractional index i at which the decreasing table λ_i equals λ, linear in λ between entries,
    clamped to [0, T − 1]."""
    asc = table.flip(0)  # increasing: asc[k] = λ_{T−1−k}
    T = asc.numel()
    x = lam.clamp(float(asc[0]), float(asc[-1]))
    k = torch.searchsorted(asc, x.contiguous(), right=True).clamp(1, T - 1)
    lo, hi = asc[k - 1], asc[k]
    return (T - 1) - ((k - 1).to(torch.float64) + (x - lo) / (hi - lo))


class StableDiffusion(LatentModel):
    """Stable Diffusion 1.x / 2.x (``StableDiffusionPipeline``); see the module docstring."""

    family = "sd"
    pipeline_class = "StableDiffusionPipeline"
    default_lora_targets: ClassVar[list[str]] = ["to_q", "to_k", "to_v", "to_out.0"]
    cond_keys = ("encoder_hidden_states",)
    default_guidance = 7.5  # StableDiffusionPipeline.__call__'s guidance_scale

    def _network(self, pipe: Any) -> nn.Module:
        return pipe.unet

    def _noise_config(self) -> NoiseConfig:
        return _ddpm_noise(self.pipe.scheduler.config)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        embeds, _ = self.pipe.encode_prompt(list(prompts), self.device, 1, False)
        return {"encoder_hidden_states": embeds}

    def timestep(self, logsnr: Tensor) -> Tensor:
        lam = torch.as_tensor(logsnr).detach().to(device="cpu", dtype=torch.float64)
        if torch.isnan(lam).any():
            raise ValueError("logsnr contains NaN")
        return _table_timestep(lam, self._logsnr_table())

    def _logsnr_table(self) -> Tensor:
        """λ_i of the scheduler's ``alphas_cumprod`` (T,), decreasing, float64; ᾱ = 0 → 2⁻²⁴."""
        abar = torch.as_tensor(np.asarray(self.pipe.scheduler.alphas_cumprod), dtype=torch.float64)
        abar = abar.clamp_min(2.0**-24)
        return torch.log(abar) - torch.log1p(-abar)

    def sigma_range(self) -> tuple[float, float]:
        lam = self.noise.schedule.logsnr_table()
        lam = lam[torch.isfinite(lam)]
        return float(torch.exp(-0.5 * lam[0])), float(torch.exp(-0.5 * lam[-1]))

    def _unet_kwargs(self, z: Tensor, cond: dict[str, Any]) -> dict[str, Any]:
        return {"encoder_hidden_states": cond["encoder_hidden_states"]}

    def _predict(self, z: Tensor, logsnr: Tensor, cond: dict[str, Any]) -> Tensor:
        # float32 whatever the weights' dtype, as the pipeline passes its scheduler's timesteps (the UNet's
        # sinusoidal embedding is computed in float32; fp16 would round 785.95 to 786)
        t = self.timestep(logsnr).to(device=z.device, dtype=torch.float32)
        return self.network(z, t, return_dict=False, **self._unet_kwargs(z, cond))[0]

    def scheduler_grid(self, steps: int, *, height: int, width: int) -> SchedulerGrid:
        """The scheduler's timesteps for ``steps`` steps as VE σ = √((1 − ᾱ)/ᾱ) with a trailing 0 —
        the scheduler's own ``sigmas`` where it has them (Euler, Heun, DPM-Solver, …), else the distinct
        timesteps' table values (DDIM, PNDM: SD 1.5's own scheduler; its grid, not its multistep method,
        and the trailing 0 replaces DDIM's last step to ᾱ_0). The start scale is the scheduler's
        ``init_noise_sigma`` where it is not 1, else √(1 + σ₀²) (a scheduler that starts from z = noise
        of std 1)."""
        del height, width  # the DDPM families' grids do not depend on the image size
        sch = self._scheduler()
        sch.set_timesteps(steps)
        timesteps = torch.as_tensor(np.asarray(sch.timesteps), dtype=torch.float64)
        if getattr(sch, "sigmas", None) is not None:
            sigmas = torch.as_tensor(np.asarray(sch.sigmas), dtype=torch.float64)
        else:  # DDIM, PNDM (whose PLMS grid repeats a timestep), …: the distinct timesteps, decreasing
            timesteps = torch.unique(timesteps).flip(0)
            abar = torch.as_tensor(np.asarray(sch.alphas_cumprod), dtype=torch.float64)[timesteps.long()]
            sigmas = torch.cat([((1 - abar) / abar).sqrt(), torch.zeros(1, dtype=torch.float64)])
        init = float(sch.init_noise_sigma)
        if init == 1.0:
            init = float((1.0 + sigmas[0] ** 2).sqrt())
        return SchedulerGrid(sigmas=sigmas, init_noise_sigma=init, timesteps=timesteps)


class StableDiffusionXL(StableDiffusion):
    """Stable Diffusion XL (``StableDiffusionXLPipeline``); see the module docstring."""

    family = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    cond_keys = ("encoder_hidden_states", "text_embeds", "time_ids")
    default_guidance = 5.0  # StableDiffusionXLPipeline.__call__'s guidance_scale

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
        return {"encoder_hidden_states": embeds, "text_embeds": pooled}

    def unconditional(self, batch: int) -> dict[str, Tensor]:
        cond = self.encode_prompts([""] * batch)
        if self.pipe.config.get("force_zeros_for_empty_prompt", True):
            cond = {k: torch.zeros_like(v) for k, v in cond.items()}
        return cond

    def time_ids(self, z: Tensor) -> Tensor:
        """The default micro-conditioning (8h, 8w, 0, 0, 8h, 8w) for latents z (B, C, h, w)."""
        h, w = (int(n) * self.vae_scale_factor for n in z.shape[-2:])
        return torch.tensor([[h, w, 0, 0, h, w]], dtype=z.dtype, device=z.device).expand(z.shape[0], 6)

    def _unet_kwargs(self, z: Tensor, cond: dict[str, Any]) -> dict[str, Any]:
        missing = [k for k in ("encoder_hidden_states", "text_embeds") if k not in cond]
        if missing:
            raise TypeError(f"sdxl model needs conditioning {missing} (encode_prompts gives them)")
        time_ids = cond.get("time_ids")
        if time_ids is None:
            time_ids = self.time_ids(z)
        added = {"text_embeds": cond["text_embeds"], "time_ids": time_ids.to(device=z.device, dtype=z.dtype)}
        return {"encoder_hidden_states": cond["encoder_hidden_states"], "added_cond_kwargs": added}
