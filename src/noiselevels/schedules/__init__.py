"""Noise schedules: monotone maps from time t ∈ [0, 1] (0 clean, 1 noise) to the noise level λ.

λ = ``logsnr`` = log(α²/σ²). A schedule is only a change of variables t ↔ λ: the same λ means the same
corruption whatever the schedule, so everything downstream (densities, weightings, spacings) is
written in λ and a schedule is needed only where a tool's own time axis appears.

Every schedule is a frozen dataclass registered in :data:`SCHEDULES` with closed-form ``_logsnr``
(t → λ), ``_t_of`` (λ → t, its exact inverse) and ``_dlogsnr_dt``; the public ``logsnr(t)``,
``t_of(logsnr)`` and ``dlogsnr_dt(t)`` check their input (t ∈ [0, 1]) and keep the caller's floating
dtype. All arithmetic is float64. λ = ±inf at the ends (t = 0 clean, t = 1 zero terminal SNR) is
returned as ±inf without NaN.

========================  ==============================================================================
name                      λ(t)
========================  ==============================================================================
``ddpm``                  diffusers' ``DDPMScheduler`` table (linear / scaled_linear / squaredcos_cap_v2),
                          λ-linear interpolation between t_i = (i+1)/T (see :class:`DDPM`)
``cosine``                −2·log tan(πt/2), optionally truncated to [logsnr_min, logsnr_max]
``cosine_shifted``        cosine + 2·log(noise_d/image_d)  (simple diffusion, Hoogeboom et al. 2023)
``cosine_interpolated``   t·λ_shift(noise_d_low) + (1−t)·λ_shift(noise_d_high)  (simple diffusion)
``sigmoid``               logit γ(t), γ = Chen (2023) sigmoid schedule, γ = ᾱ
``laplace``               μ − b·sgn(½−t)·ln(1 − 2|t−½|)  (Hang & Gu 2024)
``cauchy``                μ + γ·tan(π(½ − t))  (Hang & Gu 2024)
``flow``                  2·log((1−t)/t)  (rectified flow, α = 1−t, σ = t)
``edm``                   −2·log σ(t), σ(t) = (σ_min^(1/ρ) + t(σ_max^(1/ρ) − σ_min^(1/ρ)))^ρ  (Karras 2022)
``shift``                 λ_inner(t) − 2·log s  (SD3 / Flux static shift on ``flow``)
``zero_terminal_snr``     Lin et al. (2024) √ᾱ rescale of the inner schedule under vp
========================  ==============================================================================

The package: :mod:`~noiselevels.schedules.base` (``schedule(name)``, the closed-form base, vp helpers),
:mod:`~noiselevels.schedules.continuous` (cosine family, flow, sigmoid, Laplace, Cauchy, EDM),
:mod:`~noiselevels.schedules.ddpm` (diffusers' tables and timestep conversions) and
:mod:`~noiselevels.schedules.transforms` (shift, flux shift, zero terminal SNR); every public name is
re-exported here.
"""

from noiselevels.components import SCHEDULES
from noiselevels.schedules.base import schedule
from noiselevels.schedules.continuous import (
    CauchySchedule,
    Cosine,
    CosineInterpolated,
    CosineShifted,
    EDMSchedule,
    FlowSchedule,
    LaplaceSchedule,
    Sigmoid,
)
from noiselevels.schedules.ddpm import BETA_SCHEDULES, DDPM, t_to_timestep, timestep_to_t
from noiselevels.schedules.transforms import (
    Shift,
    ZeroTerminalSNR,
    flux_mu,
    flux_shift,
    shift,
    zero_terminal_snr,
)

__all__ = [
    "BETA_SCHEDULES",
    "DDPM",
    "SCHEDULES",
    "CauchySchedule",
    "Cosine",
    "CosineInterpolated",
    "CosineShifted",
    "EDMSchedule",
    "FlowSchedule",
    "LaplaceSchedule",
    "Shift",
    "Sigmoid",
    "ZeroTerminalSNR",
    "flux_mu",
    "flux_shift",
    "schedule",
    "shift",
    "t_to_timestep",
    "timestep_to_t",
    "zero_terminal_snr",
]
