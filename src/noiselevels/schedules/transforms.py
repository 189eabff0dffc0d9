"""Schedule transforms: the flow shift (SD3 / Flux static and dynamic shifting) and the zero-terminal-SNR
rescale (Lin et al. 2024).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); t ∈ [0, 1] with t = 0 clean; float64.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from noiselevels.components import SCHEDULES, Schedule, check_finite, check_positive
from noiselevels.schedules.base import (
    _F64,
    _check_schedule,
    _ClosedForm,
    _dlogsnr_of,
    _rescale_logsnr,
    _unrescale_logsnr,
    _vp_alpha_d,
)
from noiselevels.schedules.continuous import Cosine, FlowSchedule
from noiselevels.schedules.ddpm import DDPM

__all__ = ["Shift", "ZeroTerminalSNR", "flux_mu", "flux_shift", "shift", "zero_terminal_snr"]


@SCHEDULES.register("shift")
@dataclasses.dataclass(frozen=True)
class Shift(_ClosedForm):
    """λ(t) = λ_inner(t) − 2·log(factor): a constant move of every level towards noise (factor > 1).

    On ``flow`` this is exactly SD3's / Flux's static shift t' = s·t/(1 + (s − 1)·t) (Esser et al.
    2024, eq. 23) and diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s)``; on the cosine it is the
    resolution shift of simple diffusion with factor = image_d/noise_d; SD3's resolution rule for m vs
    n pixels is factor = √(m/n).
    """

    schedule: Schedule = dataclasses.field(default_factory=FlowSchedule)
    factor: float = 1.0

    def __post_init__(self):
        _check_schedule(self.schedule)
        check_positive("factor", self.factor)

    @property
    def offset(self) -> float:
        return -2.0 * math.log(self.factor)

    def _logsnr(self, t):
        return self.schedule._logsnr(t) + self.offset

    def _t_of(self, logsnr):
        return self.schedule._t_of(logsnr - self.offset)

    def _dlogsnr_dt(self, t):
        return _dlogsnr_of(self.schedule, t)


def shift(schedule: Schedule, factor: float) -> Schedule:
    """``schedule`` with every λ moved by −2·log(factor) (factor > 1: noisier). See :class:`Shift`.

    Shifting a :class:`Shift` multiplies the factors; factor = 1 returns ``schedule`` unchanged.
    """
    _check_schedule(schedule)
    check_positive("factor", factor)
    if isinstance(schedule, Shift):
        factor, schedule = schedule.factor * factor, schedule.schedule
    if factor == 1.0:
        return schedule
    return Shift(schedule=schedule, factor=float(factor))


def flux_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096,
            base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """Flux's resolution-dependent shift μ: linear in the image token count from (base_seq_len →
    base_shift) to (max_seq_len → max_shift) (diffusers ``calculate_shift``). The shift factor is e^μ,
    i.e. λ moves by −2μ; t' = e^μ/(e^μ + (1/t − 1)). ai-toolkit uses max_shift 1.16.
    """
    check_positive("image_seq_len", image_seq_len)
    check_positive("base_seq_len", base_seq_len)
    check_positive("max_seq_len", max_seq_len)
    check_finite("base_shift", base_shift)
    check_finite("max_shift", max_shift)
    if max_seq_len == base_seq_len:
        raise ValueError(f"max_seq_len must differ from base_seq_len; both are {base_seq_len!r}")
    m = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(image_seq_len * m + (base_shift - m * base_seq_len))


def flux_shift(schedule: Schedule, image_seq_len: int, **kw) -> Schedule:
    """``shift(schedule, exp(flux_mu(image_seq_len, **kw)))`` (Flux dynamic shifting)."""
    return shift(schedule, math.exp(flux_mu(image_seq_len, **kw)))


@SCHEDULES.register("zero_terminal_snr")
@dataclasses.dataclass(frozen=True)
class ZeroTerminalSNR(_ClosedForm):
    """Lin et al. (2024), "Common diffusion noise schedules and sample steps are flawed", Alg. 1, for a
    continuous schedule under vp: α(t) = √sigmoid(λ(t)) is replaced by the affine rescale
    α'(t) = (α(t) − α(1))·α(0)/(α(0) − α(1)), so α'(0) = α(0) and α'(1) = 0, i.e. λ'(1) = −inf.
    Computed with 1 − α kept separately so λ near +inf is exact; ``t_of`` is the exact inverse.
    For :class:`DDPM` use :func:`zero_terminal_snr`, which rescales the betas like diffusers.
    """

    schedule: Schedule = dataclasses.field(default_factory=Cosine)

    def __post_init__(self):
        _check_schedule(self.schedule)
        if not self.schedule.logsnr_min < self.schedule.logsnr_max:
            raise ValueError(f"cannot rescale a schedule with logsnr_min >= logsnr_max: {self.schedule!r}")

    def _ends(self) -> tuple[float, float]:
        return self.schedule.logsnr_max, self.schedule.logsnr_min

    def _logsnr(self, t):
        l0, lT = self._ends()
        out = _rescale_logsnr(self.schedule._logsnr(t), l0, lT)
        return torch.where(t == 1, torch.full_like(out, -math.inf), out)

    def _t_of(self, logsnr):
        l0, lT = self._ends()
        return self.schedule._t_of(_unrescale_logsnr(logsnr, l0, lT))

    def _dlogsnr_dt(self, t):
        l0, lT = self._ends()
        a0, d0 = (float(v) for v in _vp_alpha_d(torch.tensor(l0, dtype=_F64)))
        aT, _ = (float(v) for v in _vp_alpha_d(torch.tensor(lT, dtype=_F64)))
        k = a0 / (a0 - aT)
        lam = self.schedule._logsnr(t)
        alpha, d = _vp_alpha_d(lam)
        alpha_new = (alpha - aT) * k
        d_new = (a0 * d - aT * d0) / (a0 - aT)
        # dλ'/dλ = α(1−α²)·k / (α'(1−α'²)) = k·(α/α')·(d/d')·((1+α)/(1+α'))
        ratio_d = torch.where(d_new > 0, d / d_new, torch.full_like(d, (a0 - aT) / a0))
        # α/α' at α' = 0 (t = 1): 1/k when α(1) = 0 already (identity rescale), else +inf
        ratio_a = torch.where(alpha_new > 0, alpha / alpha_new,
                              torch.full_like(alpha, 1.0 / k if aT == 0 else math.inf))
        factor = k * ratio_d * ratio_a * (1.0 + alpha) / (1.0 + alpha_new)
        return factor * _dlogsnr_of(self.schedule, t)


def zero_terminal_snr(schedule: Schedule) -> Schedule:
    """The schedule rescaled to zero terminal SNR (λ(1) = −inf; Lin et al. 2024, Alg. 1).

    :class:`DDPM`: the same schedule with ``rescale_betas_zero_snr=True`` (exactly diffusers'
    ``rescale_zero_terminal_snr`` on the betas). A schedule whose λ(1) is already −inf is returned
    unchanged (the rescale is the identity then). Anything else: :class:`ZeroTerminalSNR`.
    """
    _check_schedule(schedule)
    if isinstance(schedule, DDPM):
        return dataclasses.replace(schedule, rescale_betas_zero_snr=True)
    if schedule.logsnr_min == -math.inf:
        return schedule
    return ZeroTerminalSNR(schedule=schedule)
