"""Tight schedules: λ(t) that spends t where an image's frequencies drown (construction ours).

Follows ``research/methods.md``'s "sweep a cutoff frequency". Each ring k is *drowned* to a degree
d_k(λ) = clip((λ_k − λ)/Δ, 0, 1), λ_k = log τ_hi − log P_k, Δ = log(τ_hi/τ_lo): 0 while its SNR ≥ τ_hi,
1 once it is ≤ τ_lo, linear in λ in between. The fraction drowned is F(λ) = Σ_k w_k d_k(λ) / Σ_k w_k,
with weights

* ``frequency``: w_k = the ring's width in log f (each octave gets the same share of t);
* ``power``: w_k = the ring's energy count_k·P_k (t is the fraction of the image's power destroyed);
* ``mixed``: (1 − m)·F_frequency + m·F_power.

F is 0 at λ_max and 1 at λ_min (:mod:`noiselevels.spectral.bounds`); the schedule is its inverse,
λ(t) = F⁻¹(t), from λ_max at t = 0 to λ_min at t = 1 (F is renormalised to [0, 1] when the quantisation
floor caps λ_max, and mixed with a small λ-linear part, ``linear_mix``, so that λ(t) is continuous and
strictly decreasing even where no ring is in transition). With τ_lo = τ_hi and a monotone spectrum this
is exactly methods.md's cutoff sweep λ(t) = log τ − log P(f_c(t)) with f_c geometric in t (frequency)
or with t the fraction of power above f_c (power); for a power law P = A·f^(−β) the frequency-focused
schedule is linear in λ. F is piecewise linear in λ, so the schedule is exact and tabulated
(:class:`TightSchedule`, registered as ``"tight"``). The global tight schedule of a data set inverts
the mean of the per-image F.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any

import torch
from torch import Tensor

from noiselevels._numerics import interp
from noiselevels.components import SCHEDULES, Schedule, check_range
from noiselevels.spectral.bounds import _ring_mask, bounds_from_power
from noiselevels.spectral.rapsd import _check_images, _ring_table, rapsd

__all__ = ["SCHEDULE_KINDS", "TightSchedule", "global_tight_schedule", "tight_schedule", "tight_schedules"]

SCHEDULE_KINDS = ("frequency", "power", "mixed")
_F64 = torch.float64


@SCHEDULES.register("tight")
@dataclasses.dataclass(frozen=True)
class TightSchedule(Schedule):
    """A tabulated schedule: λ(t) piecewise linear through the knots (t_i, λ_i).

    ``t_knots`` increase strictly from 0 to 1, ``logsnr_knots`` decrease strictly (finite), so
    λ(0) = logsnr_knots[0] = λ_max and λ(1) = logsnr_knots[-1] = λ_min. The spectral constructions
    (:func:`tight_schedule`, :func:`global_tight_schedule`) produce these exactly (F⁻¹ of a piecewise-
    linear F); ``t_of`` is the exact inverse, clamped to [0, 1] outside [λ_min, λ_max].
    """

    t_knots: tuple[float, ...] = (0.0, 1.0)
    logsnr_knots: tuple[float, ...] = (10.0, -10.0)

    def __post_init__(self):
        t = tuple(float(v) for v in self.t_knots)
        lam = tuple(float(v) for v in self.logsnr_knots)
        if len(t) < 2 or len(t) != len(lam):
            raise ValueError(
                f"t_knots and logsnr_knots must have the same length >= 2; got {len(t)} and {len(lam)}"
            )
        if t[0] != 0.0 or t[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError("t_knots must increase strictly from 0 to 1")
        if not all(math.isfinite(v) for v in lam) or any(b >= a for a, b in itertools.pairwise(lam)):
            raise ValueError("logsnr_knots must be finite and strictly decreasing (λ_max first)")
        object.__setattr__(self, "t_knots", t)
        object.__setattr__(self, "logsnr_knots", lam)

    @functools.cached_property
    def _tables(self) -> tuple[Tensor, Tensor]:
        return torch.tensor(self.t_knots, dtype=_F64), torch.tensor(self.logsnr_knots, dtype=_F64)

    def _logsnr(self, t: Tensor) -> Tensor:
        tk, lk = self._tables
        return interp(t, tk, lk)

    def _t_of(self, logsnr: Tensor) -> Tensor:
        tk, lk = self._tables
        return interp(-logsnr, -lk, tk)

    def describe(self) -> str:
        lam = self.logsnr_knots
        return f"tight({len(self.t_knots)} knots, λ from {lam[0]:.3g} to {lam[-1]:.3g})"


def _check_kind(kind: str, mix: float) -> float:
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SCHEDULE_KINDS)}; got {kind!r}")
    m = check_range("mix", mix, 0.0, 1.0)
    return {"frequency": 0.0, "power": 1.0}.get(kind, m)


@dataclasses.dataclass
class _Drowning:
    """Per-image piecewise-linear fraction drowned F_b(λ), normalised to [0, 1] on [lo_b, hi_b]."""

    lam_k: Tensor  # (B, K) λ at which ring k starts drowning (SNR = τ_hi); +inf for empty rings
    delta: float
    w_freq: Tensor  # (K,)
    w_pow: Tensor  # (B, K)
    mix: float
    linear_mix: float
    lo: Tensor  # (B,)
    hi: Tensor  # (B,)

    def _raw(self, lam: Tensor) -> Tensor:
        """Unnormalised F at lam (B, M) → (B, M)."""
        d = ((self.lam_k[:, None, :] - lam[:, :, None]) / self.delta).clamp(0.0, 1.0)
        d = torch.where(torch.isnan(d), torch.ones_like(d), d)  # inf − inf cannot occur; guard anyway
        f_freq = (d * self.w_freq).sum(-1) / self.w_freq.sum()
        f_pow = (d * self.w_pow[:, None, :]).sum(-1) / self.w_pow.sum(-1, keepdim=True)
        return (1.0 - self.mix) * f_freq + self.mix * f_pow

    def __call__(self, lam: Tensor) -> Tensor:
        """F at lam (B, M): 0 at λ ≥ hi, 1 at λ ≤ lo, strictly decreasing in between."""
        lam_c = torch.maximum(torch.minimum(lam, self.hi[:, None]), self.lo[:, None])
        f_lo = self._raw(self.lo[:, None])
        f_hi = self._raw(self.hi[:, None])
        span = (f_lo - f_hi).clamp_min(1e-300)
        f = ((self._raw(lam_c) - f_hi) / span).clamp(0.0, 1.0)
        lin = (self.hi[:, None] - lam_c) / (self.hi - self.lo)[:, None]
        return (1.0 - self.linear_mix) * f + self.linear_mix * lin

    def breakpoints(self) -> Tensor:
        """All λ where F changes slope, clipped to [lo, hi], sorted: (B, 2K + 2)."""
        pts = torch.cat([self.lam_k, self.lam_k - self.delta, self.lo[:, None], self.hi[:, None]], dim=1)
        pts = torch.maximum(torch.minimum(pts, self.hi[:, None]), self.lo[:, None])
        return pts.sort(dim=1).values


def _drowning(
    images: Tensor,
    *,
    kind: str,
    mix: float,
    tau_lo: float,
    tau_hi: float,
    dc: str,
    quantisation_floor: bool | float,
    linear_mix: float,
) -> _Drowning:
    m = _check_kind(kind, mix)
    linear_mix = check_range("linear_mix", linear_mix, 0.0, 1.0, closed=True)
    x = _check_images(images)
    freqs, power = rapsd(x)
    lo, hi = bounds_from_power(
        freqs, power, tau_lo=tau_lo, tau_hi=tau_hi, dc=dc, quantisation_floor=quantisation_floor
    )
    if not torch.isfinite(hi).all():
        raise ValueError("an image has a ring with zero power, so λ_max = +inf: use quantisation_floor")
    mask = _ring_mask(freqs, dc)
    f = freqs[mask]
    p = power[:, mask]
    _, _, counts = _ring_table(x.shape[2], x.shape[3])
    n = max(x.shape[2], x.shape[3])
    k = (f * n).round()
    # ring k covers radii [k − ½, k + ½)/N: width in log f; the DC ring gets ring 1's width
    w_freq = torch.where(
        k > 0, torch.log((k + 0.5) / (k - 0.5).clamp_min(0.5)), torch.full_like(k, math.log(3.0))
    )
    w_pow = p * counts[mask]
    lam_k = math.log(tau_hi) - torch.log(p)
    return _Drowning(lam_k, math.log(tau_hi / tau_lo), w_freq, w_pow, m, linear_mix, lo, hi)


def tight_schedules(
    images: Tensor,
    *,
    kind: str = "mixed",
    mix: float = 0.5,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
    linear_mix: float = 0.02,
) -> list[TightSchedule]:
    """One tight schedule per image of (B, C, H, W): λ(t) = F⁻¹(t) from λ_max (t = 0) to λ_min (t = 1).

    ``kind``: ``"frequency"`` (each octave of frequency gets an equal share of t), ``"power"`` (t is the
    fraction of the image's power drowned) or ``"mixed"`` ((1 − mix)·frequency + mix·power, in F).
    ``linear_mix`` ∈ [0, 1] blends in a λ-linear F so λ(t) stays continuous where no ring is in
    transition. Bounds options as in :func:`bounds`. The schedules are exact (F is piecewise linear in λ).
    """
    dr = _drowning(
        images,
        kind=kind,
        mix=mix,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        dc=dc,
        quantisation_floor=quantisation_floor,
        linear_mix=linear_mix,
    )
    lam = dr.breakpoints()
    t = dr(lam)
    out = []
    for b in range(lam.shape[0]):
        lb, tb = lam[b].flip(0), t[b].flip(0)  # λ decreasing, t increasing
        keep = torch.ones_like(lb, dtype=torch.bool)
        keep[1:] = (lb[1:] < lb[:-1]) & (tb[1:] > tb[:-1])
        lb, tb = lb[keep], tb[keep]
        tb[0], tb[-1] = 0.0, 1.0
        lb[0], lb[-1] = dr.hi[b], dr.lo[b]
        out.append(TightSchedule(t_knots=tuple(tb.tolist()), logsnr_knots=tuple(lb.tolist())))
    return out


def tight_schedule(image: Tensor, **kw: Any) -> TightSchedule:
    """The tight schedule of one image (C, H, W) (or (1, C, H, W)); options as :func:`tight_schedules`."""
    x = torch.as_tensor(image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"image must have shape (C, H, W) or (1, C, H, W); got {tuple(x.shape)}")
    return tight_schedules(x, **kw)[0]


def global_tight_schedule(
    images: Tensor,
    *,
    kind: str = "mixed",
    mix: float = 0.5,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
    linear_mix: float = 0.02,
    knots: int = 257,
    batch_size: int = 512,
) -> TightSchedule:
    """The tight schedule of a data set: the inverse of the mean fraction drowned F̄(λ) = mean_b F_b(λ),
    tabulated at ``knots`` λ values spaced evenly over [min_b λ_min,b, max_b λ_max,b] (ours). Options as
    :func:`tight_schedules`."""
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 3:
        raise ValueError(f"knots must be an integer >= 3; got {knots!r}")
    x = _check_images(images)
    parts = []
    for s in range(0, x.shape[0], batch_size):
        parts.append(
            _drowning(
                x[s : s + batch_size],
                kind=kind,
                mix=mix,
                tau_lo=tau_lo,
                tau_hi=tau_hi,
                dc=dc,
                quantisation_floor=quantisation_floor,
                linear_mix=linear_mix,
            )
        )
    lo = min(float(d.lo.min()) for d in parts)
    hi = max(float(d.hi.max()) for d in parts)
    grid = torch.linspace(hi, lo, knots, dtype=_F64)
    total = torch.zeros(knots, dtype=_F64)
    for d in parts:
        total += d(grid.expand(d.lo.shape[0], -1)).sum(0)
    t = total / x.shape[0]
    t[0], t[-1] = 0.0, 1.0
    keep = torch.ones(knots, dtype=torch.bool)
    keep[1:] = t[1:] > t[:-1]
    keep[-1] = True
    return TightSchedule(t_knots=tuple(t[keep].tolist()), logsnr_knots=tuple(grid[keep].tolist()))
