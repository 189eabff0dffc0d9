"""Shared parts of the schedules: the builder ``schedule(name)``, the closed-form base class and the vp
helpers (α and 1 − α kept separately so that λ near +inf stays exact, Lin et al.'s rescale in λ).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); t ∈ [0, 1] with t = 0 clean, t = 1 noise;
all arithmetic float64.
"""

from __future__ import annotations

import abc
import dataclasses
import math

import torch
from torch import Tensor

from noiselevels.components import SCHEDULES, Schedule, _check_t, check_positive
from noiselevels.levels import log_sigmoid

_F64 = torch.float64
_HALF_PI = math.pi / 2


def schedule(name: str, **kw) -> Schedule:
    """Build the schedule registered as ``name`` (see :data:`SCHEDULES`), e.g. ``schedule("cosine")``.

    Unknown names and unknown parameters raise ``ValueError`` listing the valid ones.
    """
    return SCHEDULES.create(name, **kw)

@dataclasses.dataclass(frozen=True)
class _ClosedForm(Schedule):
    """A schedule with a closed-form derivative ``_dlogsnr_dt`` (float64 in, float64 out)."""

    @abc.abstractmethod
    def _dlogsnr_dt(self, t: Tensor) -> Tensor:
        """dλ/dt on a float64 tensor t ∈ [0, 1]."""

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        """dλ/dt (≤ 0) in closed form; −inf where λ → ±inf at an end point."""
        t = _check_t(t)
        return self._dlogsnr_dt(t.to(_F64)).to(t.dtype)


def _vp_alpha_d(lam: Tensor) -> tuple[Tensor, Tensor]:
    """(α, 1 − α) under vp at λ, both accurate: 1 − α = sigmoid(−λ)/(1 + α)."""
    alpha = torch.exp(0.5 * log_sigmoid(lam))
    return alpha, torch.sigmoid(-lam) / (1.0 + alpha)


def _logsnr_from_alpha_d(alpha: Tensor, d: Tensor) -> Tensor:
    """λ = log(α²/(1 − α²)) from α and d = 1 − α, i.e. 2 log α − log d − log(1 + α)."""
    return 2.0 * torch.log(alpha) - torch.log(d) - torch.log1p(alpha)


def _sig(x: float) -> float:
    """sigmoid of a Python float without overflow."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _check_bounds(logsnr_min, logsnr_max) -> None:
    for nm, v in (("logsnr_min", logsnr_min), ("logsnr_max", logsnr_max)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            raise ValueError(f"{nm} must be a number (±inf allowed); got {v!r}")
    if not logsnr_min < logsnr_max:
        raise ValueError(f"logsnr_min must be < logsnr_max; got logsnr_min={logsnr_min!r}, "
                         f"logsnr_max={logsnr_max!r}")

def _check_d(name: str, v) -> float:
    return check_positive(name, v)


def _check_schedule(s) -> Schedule:
    if not isinstance(s, Schedule):
        raise ValueError(f"schedule must be a Schedule (e.g. noiselevels.schedule('flow')); got {s!r}")
    return s


def _dlogsnr_of(s: Schedule, t: Tensor) -> Tensor:
    d = getattr(s, "_dlogsnr_dt", None)
    if d is not None:
        return d(t)
    return s.dlogsnr_dt(t).to(_F64)



def _rescale_logsnr(lam: Tensor, lam0: float, lamT: float) -> Tensor:
    """Lin et al. (2024) Alg. 1 in λ: √ᾱ ← (√ᾱ − √ᾱ_T)·√ᾱ₀/(√ᾱ₀ − √ᾱ_T), written with d = 1 − √ᾱ so that
    λ near +inf stays accurate. ``lam0`` / ``lamT`` are the λ of the first and last level."""
    a0, d0 = (float(v) for v in _vp_alpha_d(torch.tensor(lam0, dtype=_F64)))
    aT, _ = (float(v) for v in _vp_alpha_d(torch.tensor(lamT, dtype=_F64)))
    alpha, d = _vp_alpha_d(lam)
    k = a0 / (a0 - aT)
    alpha_new = ((alpha - aT) * k).clamp(min=0.0)
    d_new = (a0 * d - aT * d0) / (a0 - aT)
    return _logsnr_from_alpha_d(alpha_new, d_new)


def _unrescale_logsnr(lam_new: Tensor, lam0: float, lamT: float) -> Tensor:
    """Inverse of :func:`_rescale_logsnr`."""
    a0, d0 = (float(v) for v in _vp_alpha_d(torch.tensor(lam0, dtype=_F64)))
    aT, _ = (float(v) for v in _vp_alpha_d(torch.tensor(lamT, dtype=_F64)))
    alpha_new, d_new = _vp_alpha_d(lam_new)
    alpha = alpha_new * (a0 - aT) / a0 + aT
    d = (aT * d0 + d_new * (a0 - aT)) / a0
    return _logsnr_from_alpha_d(alpha, d)
