"""Stable Diffusion 3 / 3.5 and Flux: rectified-flow transformers.

**Noise**: the ``flow`` process z = (1 − σ)·x₀ + σ·ε with λ = 2·log((1 − σ)/σ), σ = sigmoid(−λ/2), and
the ``flow`` parameterisation u = ε − x₀ — what the transformers predict (the pipelines' Euler step is
z ← z + (σ_next − σ)·output, scheduling_flow_match_euler_discrete.py ``step``). The default training
density is uniform σ with the plain flow-matching MSE, the default (``--weighting_scheme none``) of
diffusers' examples/dreambooth/train_dreambooth_lora_flux.py; SD3's script defaults to logit-normal
(preset ``diffusers:sd3``) — a fine-tune chooses its own either way.

**Timestep at λ**: SD3's transformer takes t = 1000·σ (pipeline_stable_diffusion_3.py passes the
scheduler's ``timesteps`` = σ·``num_train_timesteps``); Flux's takes σ itself, multiplying by 1000 inside
(transformer_flux.py ``FluxTransformer2DModel.forward``: ``timestep * 1000``; the pipeline passes
``timestep / 1000``, pipeline_flux.py ``__call__``). The scheduler's shift (SD3's ``shift=3``, Flux's
resolution-dependent μ) moves only the grid, never this map.

**Flux** works on 2×2-packed latents: (B, C, h, w) ↔ (B, h/2·w/2, 4C) with channel order (C, 2, 2)
(pipeline_flux.py ``_pack_latents`` / ``_unpack_latents``), image position ids (0, row, column) per
token (``_prepare_latent_image_ids``) and zero text ids (``encode_prompt``). ``forward`` takes and returns
unpacked latents, so the objective and the VE solvers see (B, C, h, w) like every other family.
Flux-dev is guidance-distilled: its ``guidance`` embedding (``cond["guidance"]``, (B,)) replaces
classifier-free guidance, so ``denoiser(cond, guidance_scale=w)`` sets the embedding to w and calls the
network once; real CFG with a negative prompt is ``true_cfg_scale`` (pipeline_flux.py ``true_cfg_scale``).
In training, ``forward`` without ``cond["guidance"]`` feeds ``training_guidance`` = 3.5, as diffusers'
examples/dreambooth/train_dreambooth_lora_flux.py does (``--guidance_scale`` default 3.5, lines 497-501,
fed to the transformer at lines 1790-1791; diffusers 58eb52c0); pass ``guidance`` in cond for another recipe.
``image_seq_len`` is the number of packed tokens (what the dynamic shift μ reads); SD3's is
(h/p)·(w/p) latent patches of size p = ``patch_size``.

**LoRA targets** (diffusers 58eb52c0): examples/dreambooth/train_dreambooth_lora_sd3.py lines 1251-1259
(default ``--lora_layers``): the joint attention's ``attn.to_q/k/v``, ``attn.to_out.0``,
``attn.add_q_proj/add_k_proj/add_v_proj`` and ``attn.to_add_out``; train_dreambooth_lora_flux.py lines
1257-1269 adds the feed-forward layers ``ff.net.0.proj``, ``ff.net.2``, ``ff_context.net.0.proj``,
``ff_context.net.2``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from noiselevels.noise import NoiseConfig
from noiselevels.runs.families.base import LatentModel, PipelineDenoiser, SchedulerGrid, _batch
from noiselevels.schedules import schedule as make_schedule
from noiselevels.training.densities import density as make_density
from noiselevels.training.weightings import in_units
from noiselevels.training.weightings import weighting as make_weighting

__all__ = ["Flux", "StableDiffusion3", "image_ids", "pack_latents", "unpack_latents"]

_ATTN = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
         "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]


def _flow_noise() -> NoiseConfig:
    flow = make_schedule("flow")
    return NoiseConfig(
        process="flow",
        parameterization="flow",
        density=make_density("uniform_t", schedule=flow),
        weighting=in_units(make_weighting("constant"), "flow", process="flow"),
        schedule=flow,
        description="rectified flow; uniform σ, plain flow-matching MSE (diffusers' Flux LoRA default)",
    )


def _flow_sigma(logsnr: Tensor) -> Tensor:
    """σ = sigmoid(−λ/2), float64 (1 at λ = −∞, 0 at λ = +∞)."""
    return torch.sigmoid(-0.5 * torch.as_tensor(logsnr).detach().to(torch.float64))


def _calculate_shift(seq_len: int, config: Any, max_shift: float) -> float:
    """μ of the pipelines' resolution-dependent shift: linear in ``seq_len`` from base_shift at
    base_image_seq_len to max_shift at max_image_seq_len (pipeline_flux.py ``calculate_shift``)."""
    lo, hi = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    b0, b1 = config.get("base_shift", 0.5), config.get("max_shift", max_shift)
    m = (b1 - b0) / (hi - lo)
    return seq_len * m + (b0 - m * lo)


def _flow_grid(sch: Any) -> SchedulerGrid:
    """A flow scheduler's σ (trailing 0) as VE σ/(1 − σ) (∞ at σ = 1)."""
    s = torch.as_tensor(np.asarray(sch.sigmas), dtype=torch.float64)
    ve = torch.where(s >= 1.0, torch.full_like(s, math.inf), s / (1.0 - s).clamp_min(1e-300))
    init = 1.0 if s[0] >= 1.0 else float(1.0 / (1.0 - s[0]))
    timesteps = torch.as_tensor(np.asarray(sch.timesteps), dtype=torch.float64)
    return SchedulerGrid(sigmas=ve, init_noise_sigma=init, timesteps=timesteps)


class _FlowModel(LatentModel):
    """What SD3 and Flux share: the transformer, the flow NoiseConfig, the σ range."""

    def _network(self, pipe: Any) -> nn.Module:
        return pipe.transformer

    def _noise_config(self) -> NoiseConfig:
        return _flow_noise()

    def sigma_range(self) -> tuple[float, float]:
        T = int(self.pipe.scheduler.config.num_train_timesteps)
        return 1.0 / (T - 1), float(T - 1)


class StableDiffusion3(_FlowModel):
    """Stable Diffusion 3 / 3.5 (``StableDiffusion3Pipeline``); see the module docstring."""

    family = "sd3"
    pipeline_class = "StableDiffusion3Pipeline"
    default_lora_targets: ClassVar[list[str]] = list(_ATTN)
    cond_keys = ("encoder_hidden_states", "pooled_projections")
    default_guidance = 7.0  # StableDiffusion3Pipeline.__call__'s guidance_scale
    max_sequence_length = 256  # the pipeline's default T5 length

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        """CLIP-L and CLIP-G penultimate states (concatenated, padded to T5's width) then T5's states
        along the sequence, and both pooled outputs (``encode_prompt``); a pipeline without
        ``text_encoder_3`` gets zeros for T5 as diffusers does."""
        embeds, _, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, prompt_3=None, device=self.device, num_images_per_prompt=1,
            do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def timestep(self, logsnr: Tensor) -> Tensor:
        """t = 1000·σ (``num_train_timesteps``·σ)."""
        return _flow_sigma(logsnr) * float(self.pipe.scheduler.config.num_train_timesteps)

    def _predict(self, z: Tensor, logsnr: Tensor, cond: dict[str, Any]) -> Tensor:
        # float32 as the pipeline passes the scheduler's timesteps (Flux instead casts σ to the latents'
        # dtype, pipeline_flux.py ``t.expand(...).to(latents.dtype)``, and so does ``Flux._predict``)
        t = self.timestep(logsnr).to(device=z.device, dtype=torch.float32)
        return self.network(
            hidden_states=z, timestep=t, encoder_hidden_states=cond["encoder_hidden_states"],
            pooled_projections=cond["pooled_projections"], return_dict=False,
        )[0]

    def image_seq_len(self, height: int, width: int) -> int:
        p, f = int(self.network.config.patch_size), self.vae_scale_factor
        return (height // f // p) * (width // f // p)

    def scheduler_grid(self, steps: int, *, height: int, width: int) -> SchedulerGrid:
        """``set_timesteps(steps, mu=μ)`` as the pipeline calls it (μ only with dynamic shifting; its
        default max_shift there is 1.16, pipeline_stable_diffusion_3.py ``__call__``)."""
        sch = self._scheduler()
        kw = {}
        if sch.config.get("use_dynamic_shifting", False):
            kw["mu"] = _calculate_shift(self.image_seq_len(height, width), sch.config, 1.16)
        sch.set_timesteps(steps, **kw)
        return _flow_grid(sch)


def pack_latents(z: Tensor) -> Tensor:
    """(B, C, h, w) → (B, h/2·w/2, 4C): 2×2 patches, channel order (C, 2, 2), tokens row-major."""
    b, c, h, w = z.shape
    if h % 2 or w % 2:
        raise ValueError(f"Flux latents need an even height and width; got {h}×{w}")
    z = z.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return z.reshape(b, (h // 2) * (w // 2), 4 * c)


def unpack_latents(tokens: Tensor, h: int, w: int) -> Tensor:
    """The inverse of ``pack_latents`` for latents of height h and width w."""
    b, n, c4 = tokens.shape
    if n != (h // 2) * (w // 2) or c4 % 4:
        raise ValueError(f"cannot unpack {tuple(tokens.shape)} tokens into {h}×{w} latents")
    z = tokens.reshape(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return z.reshape(b, c4 // 4, h, w)


def image_ids(h: int, w: int, *, device=None, dtype=torch.float32) -> Tensor:
    """(h/2·w/2, 3) position ids (0, row, column) of the packed tokens of h×w latents."""
    rows = torch.arange(h // 2, device=device, dtype=dtype)[:, None].expand(h // 2, w // 2)
    cols = torch.arange(w // 2, device=device, dtype=dtype)[None, :].expand(h // 2, w // 2)
    return torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3)


class Flux(_FlowModel):
    """Flux.1 dev / schnell (``FluxPipeline``); see the module docstring."""

    family = "flux"
    pipeline_class = "FluxPipeline"
    default_lora_targets: ClassVar[list[str]] = [
        *_ATTN, "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"
    ]
    cond_keys = ("encoder_hidden_states", "pooled_projections", "guidance")
    default_guidance = 3.5  # FluxPipeline.__call__'s guidance_scale (the embedded guidance)
    training_guidance = 3.5
    max_sequence_length = 512  # the pipeline's default T5 length

    def _default_sample_size(self) -> int:
        return int(self.pipe.default_sample_size)

    @property
    def guidance_embeds(self) -> bool:
        return bool(self.network.config.get("guidance_embeds", False))

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> dict[str, Tensor]:
        """T5 states (``encoder_hidden_states``) and CLIP's pooled output (``pooled_projections``)."""
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=list(prompts), prompt_2=None, device=self.device, num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def timestep(self, logsnr: Tensor) -> Tensor:
        """σ itself (the transformer multiplies by 1000)."""
        return _flow_sigma(logsnr)

    def image_seq_len(self, height: int, width: int) -> int:
        f = self.vae_scale_factor * 2
        return (height // f) * (width // f)

    def _predict(self, z: Tensor, logsnr: Tensor, cond: dict[str, Any]) -> Tensor:
        b, _, h, w = z.shape
        guidance = cond.get("guidance")
        if guidance is not None and not self.guidance_embeds:
            raise TypeError("this Flux model has no guidance embedding (schnell): drop cond['guidance']")
        if guidance is None and self.guidance_embeds:
            guidance = torch.full((b,), self.training_guidance)
        if guidance is not None:
            guidance = torch.as_tensor(guidance, device=z.device, dtype=torch.float32).expand(b)
        text = cond["encoder_hidden_states"]
        out = self.network(
            hidden_states=pack_latents(z),
            timestep=self.timestep(logsnr).to(device=z.device, dtype=z.dtype),
            guidance=guidance,
            pooled_projections=cond["pooled_projections"],
            encoder_hidden_states=text,
            txt_ids=torch.zeros(text.shape[1], 3, device=z.device, dtype=text.dtype),
            img_ids=image_ids(h, w, device=z.device, dtype=z.dtype),
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

    def scheduler_grid(self, steps: int, *, height: int, width: int) -> SchedulerGrid:
        """σ = linspace(1, 1/N, N) through ``set_timesteps(sigmas=…, mu=μ)`` as pipeline_flux.py does
        (μ from the packed token count, default max_shift 1.15)."""
        sch = self._scheduler()
        mu = _calculate_shift(self.image_seq_len(height, width), sch.config, 1.15)
        if sch.config.get("use_flow_sigmas", False):
            sch.set_timesteps(steps, mu=mu)
        else:
            sch.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        return _flow_grid(sch)

    def denoiser(
        self, cond, *, guidance_scale=None, negative=None, true_cfg_scale: float = 1.0
    ) -> PipelineDenoiser:
        """Flux-dev: ``guidance_scale`` (default the pipeline's 3.5) is the embedded guidance, one call per
        step; schnell has none (``guidance_scale`` must be None). Real CFG: ``true_cfg_scale`` > 1 with
        ``negative`` (the pipeline's ``true_cfg_scale`` and ``negative_prompt``)."""
        cond = dict(cond)
        if self.guidance_embeds:
            g = self.default_guidance if guidance_scale is None else float(guidance_scale)
            cond["guidance"] = torch.full((_batch(cond),), g)
        elif guidance_scale is not None:
            raise ValueError("this Flux model has no guidance embedding (schnell): guidance_scale must be "
                             "None; use true_cfg_scale with a negative prompt for classifier-free guidance")
        if (true_cfg_scale != 1.0) != (negative is not None):
            raise ValueError("Flux's classifier-free guidance needs both true_cfg_scale != 1 and a negative")
        uncond = None
        if negative is not None:
            uncond = dict(negative)
            if "guidance" in cond:
                uncond["guidance"] = cond["guidance"]
        return PipelineDenoiser(
            self, process="flow", parameterization="flow", guidance=true_cfg_scale, uncond=uncond, cond=cond
        )
