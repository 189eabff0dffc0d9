"""ai-toolkit (ostris) presets: its ``timestep_type`` and ``content_or_style`` options for flow models,
and the ``snr_gamma`` / ``min_snr_gamma`` loss weights for DDPM (Stable Diffusion) models.

Options mapped: ``timestep_type`` = ``linear``, ``sigmoid`` (the default), ``weighted``, ``shift`` (also
``flux_shift`` / ``lumina2_shift``, one code path), ``lognorm_blend``; ``content_or_style`` = ``content``,
``style``; ``snr_gamma``; ``min_snr_gamma``. Flow models use the flow-velocity loss; the weights multiply
the model's own loss and are converted to ε units.

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); weights in ε-MSE
units. Approximations: ai-toolkit's random 1000-point timestep grids are treated as the distribution
they are drawn from; ``weighted`` uses a smooth curve for the tool's table
(``noiselevels.training.tool_weightings.AiToolkitWeighted``); ``lognorm_blend`` replaces the batch
maximum by its median.
"""

from __future__ import annotations

import math

from noiselevels.components import check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _beta,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _flow_loss,
    _in_units,
    _logit_normal,
    _prediction_param,
    _sd_schedule,
    _uniform_flow,
    _w,
)
from noiselevels.schedules import flux_mu
from noiselevels.training.densities import lognorm_blend
from noiselevels.training.tool_weightings import AiToolkitWeighted

__all__ = ["TABLE"]

TABLE = ToolPresets("ai-toolkit")
_preset = TABLE.add


@_preset("ai-toolkit:linear", "uniform flow σ, plain flow loss")
def _ait_linear() -> NoiseConfig:
    """ai-toolkit ``timestep_type: linear``: σ uniform on [0, 1] (a fixed 1000-point grid, index drawn
    uniformly), rectified flow, flow-target MSE with weight 1. W(λ) = ½·e^(−λ/2)."""
    return _flow_cfg(_uniform_flow())


@_preset("ai-toolkit:sigmoid", "σ = sigmoid(n): logit-normal(0, 1) over flow σ (ai-toolkit's default)")
def _ait_sigmoid() -> NoiseConfig:
    """ai-toolkit ``timestep_type: sigmoid`` (its default): σ = sigmoid(n), n ~ N(0, 1), i.e.
    logit-normal(0, 1) over flow σ and λ ~ N(0, 2²). ai-toolkit draws a fresh 1000-point grid from this
    distribution and then picks grid indices uniformly, which has the same distribution."""
    return _flow_cfg(_logit_normal(0.0, 1.0))


@_preset("ai-toolkit:weighted", "uniform flow σ with a bell-shaped loss weight over σ (approximation)")
def _ait_weighted() -> NoiseConfig:
    """ai-toolkit ``timestep_type: weighted``: σ uniform, and the flow loss multiplied by a fixed
    bell-shaped table over σ (peak ≈1.5 near σ ≈ 0.88). The table is approximated by the smooth curve
    :class:`AiToolkitWeighted` (same shape, within ≈0.05 at the documented points)."""
    return _flow_cfg(_uniform_flow(), _flow_loss(AiToolkitWeighted()))


@_preset("ai-toolkit:shift", "uniform flow σ through the scheduler's shift (static s or Flux dynamic μ)")
def _ait_shift(shift: float = 3.0, image_seq_len: int | None = None) -> NoiseConfig:
    """ai-toolkit ``timestep_type: shift`` / ``flux_shift`` / ``lumina2_shift`` (one code path): an evenly
    spaced σ grid passed through the scheduler's shift: static σ' = sσ/(1 + (s − 1)σ) (λ − 2·log s), or,
    when the scheduler uses dynamic shifting, s = e^μ with μ linear in ``image_seq_len`` from (256, 0.5)
    to (4096, 1.16) — ai-toolkit's max_shift is 1.16 where diffusers, kohya and Flux use 1.15."""
    if image_seq_len is not None:
        shift = math.exp(flux_mu(image_seq_len, max_shift=1.16))
    check_positive("shift", shift)
    return _flow_cfg(_uniform_flow(shift))


@_preset("ai-toolkit:lognorm_blend", "75 % log-normal-derived σ + 25 % uniform σ (approximation)")
def _ait_lognorm_blend(alpha: float = 0.75, std: float = 0.333) -> NoiseConfig:
    """ai-toolkit ``timestep_type: lognorm_blend``: 750 of the 1000 grid points are σ = 1 − x/max(x) with
    x ~ LogNormal(0, 0.333), 250 are evenly spaced. The batch maximum is replaced by its median
    (``noiselevels.training.densities.lognorm_blend``), so this is a fixed mixture
    0.75·lognormal_alpha + 0.25·uniform σ."""
    return _flow_cfg(lognorm_blend(weight=float(alpha), std=float(std)))


@_preset("ai-toolkit:content", "index = u³·T: σ = 1 − u³, concentrated at high noise")
def _ait_content() -> NoiseConfig:
    """ai-toolkit ``content_or_style: content``: grid index u³·T on a grid sorted from noisy to clean,
    so σ = 1 − u³ ~ Beta(1, 1/3) over flow σ (mass near σ = 1: composition / content)."""
    return _flow_cfg(_beta(1.0, 1.0 / 3.0))


@_preset("ai-toolkit:style", "index = (1 − u³)·T: σ = u³, concentrated at low noise")
def _ait_style() -> NoiseConfig:
    """ai-toolkit ``content_or_style: style``: index (1 − u³)·T, so σ = u³ ~ Beta(1/3, 1) over flow σ
    (mass near σ = 0: detail / style)."""
    return _flow_cfg(_beta(1.0 / 3.0, 1.0))


@_preset("ai-toolkit:snr_gamma", "unclamped γ/SNR on the model's own loss (SD-style DDPM models)")
def _ait_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``snr_gamma``: the loss of the model's target multiplied by γ/SNR, *not* clamped
    (kohya's and diffusers' min-SNR clamp at 1) and with no v-prediction variant, on a DDPM model (the
    Stable Diffusion scaled_linear table, uniform timesteps)."""
    param = _prediction_param(prediction_type)
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("snr_gamma", gamma=float(gamma)), param, "vp")
    return _ddpm_cfg(param, sched, _ddpm_density(sched), w)


@_preset("ai-toolkit:min_snr_gamma", "min(γ/SNR, 1) on the model's own loss (no v variant)")
def _ait_min_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``min_snr_gamma``: the target loss multiplied by min(γ/SNR, 1) = min(SNR, γ)/SNR for
    every prediction type. For ε this is min-SNR-γ; for v it is w_ε = min(SNR, γ)·(SNR + 1)/SNR², which
    up-weights noisy levels relative to kohya's / diffusers' v formula min(SNR, γ)/(SNR + 1)."""
    param = _prediction_param(prediction_type)
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("min_snr", gamma=float(gamma)), param, "vp")
    return _ddpm_cfg(param, sched, _ddpm_density(sched), w)
