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
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from noiselevels.components import (
    SCHEDULES,
    Schedule,
    _check_t,
    check_finite,
    check_positive,
)
from noiselevels.levels import flow_t, log_sigmoid, logsnr_from_flow_t, to_tensor

__all__ = [
    "DDPM",
    "EDM",
    "SCHEDULES",
    "Cauchy",
    "Cosine",
    "CosineInterpolated",
    "CosineShifted",
    "Flow",
    "Laplace",
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

    def _dlogsnr_dt(self, t: Tensor) -> Tensor:
        raise NotImplementedError

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


# ----------------------------------------------------------------------------------------------
# cosine family (Nichol & Dhariwal 2021; simple diffusion, Hoogeboom et al. 2023)
# ----------------------------------------------------------------------------------------------
def _check_bounds(logsnr_min, logsnr_max) -> None:
    for nm, v in (("logsnr_min", logsnr_min), ("logsnr_max", logsnr_max)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
            raise ValueError(f"{nm} must be a number (±inf allowed); got {v!r}")
    if not logsnr_min < logsnr_max:
        raise ValueError(f"logsnr_min must be < logsnr_max; got logsnr_min={logsnr_min!r}, "
                         f"logsnr_max={logsnr_max!r}")


def _cos_consts(lmin: float, lmax: float) -> tuple[float, float, float]:
    """(a, b', width) with a = atan e^(−λmax/2), b' = atan e^(λmin/2) = π/2 − b, width = b − a."""
    a = math.atan(math.exp(-0.5 * lmax))
    bc = math.atan(math.exp(0.5 * lmin))
    return a, bc, _HALF_PI - bc - a


def _cos_logsnr(t: Tensor, lmin: float, lmax: float) -> Tensor:
    """Truncated cosine λ(t) = −2·log tan(a + t(b − a)) (simple diffusion, methods.md §1).

    Evaluated as −2·log tan(x) for t ≤ ½ and as 2·log tan(π/2 − x) = 2·log tan(b' + (1−t)(b−a)) for
    t > ½, so both ends are accurate and give exactly λmax / λmin (±inf when untruncated).
    """
    a, bc, w = _cos_consts(lmin, lmax)
    lo = -2.0 * torch.log(torch.tan(a + t * w))
    hi = 2.0 * torch.log(torch.tan(bc + (1.0 - t) * w))
    return torch.where(t <= 0.5, lo, hi)


def _cos_t_of(lam: Tensor, lmin: float, lmax: float) -> Tensor:
    a, bc, w = _cos_consts(lmin, lmax)
    t_pos = (torch.atan(torch.exp(-0.5 * lam)) - a) / w
    t_neg = 1.0 - (torch.atan(torch.exp(0.5 * lam)) - bc) / w
    return torch.where(lam >= 0, t_pos, t_neg)


def _cos_dlogsnr_dt(t: Tensor, lmin: float, lmax: float) -> Tensor:
    """dλ/dt = −4(b − a)/sin(2x)."""
    a, bc, w = _cos_consts(lmin, lmax)
    x = torch.where(t <= 0.5, a + t * w, bc + (1.0 - t) * w)
    return -4.0 * w / torch.sin(2.0 * x)


@SCHEDULES.register("cosine")
@dataclasses.dataclass(frozen=True)
class Cosine(_ClosedForm):
    """Continuous cosine schedule λ(t) = −2·log tan(πt/2) (ᾱ = cos²(πt/2); Nichol & Dhariwal 2021 without
    the 0.008 offset), optionally truncated as in simple diffusion (Hoogeboom et al. 2023, eq. 5 ff.):
    λ(t) = −2·log tan(a + t(b − a)), a = atan e^(−λmax/2), b = atan e^(−λmin/2), so λ(0) = ``logsnr_max``
    and λ(1) = ``logsnr_min`` exactly. Defaults: untruncated (±inf); simple diffusion uses ±15.
    """

    logsnr_min: float = -math.inf
    logsnr_max: float = math.inf

    def __post_init__(self):
        _check_bounds(self.logsnr_min, self.logsnr_max)

    def _logsnr(self, t):
        return _cos_logsnr(t, self.logsnr_min, self.logsnr_max)

    def _t_of(self, logsnr):
        return _cos_t_of(logsnr, self.logsnr_min, self.logsnr_max)

    def _dlogsnr_dt(self, t):
        return _cos_dlogsnr_dt(t, self.logsnr_min, self.logsnr_max)


def _check_d(name: str, v) -> float:
    return check_positive(name, v)


@SCHEDULES.register("cosine_shifted")
@dataclasses.dataclass(frozen=True)
class CosineShifted(_ClosedForm):
    """Resolution-shifted cosine (simple diffusion, Hoogeboom et al. 2023, §3.1):
    λ(t) = λ_cos(t) + 2·log(noise_d/image_d).

    A base schedule tuned at resolution ``noise_d`` (64 in the paper) is moved to ``image_d`` so that
    the signal-to-noise ratio *per low-frequency patch* matches. The truncation bounds apply to the
    final (shifted) λ, as in k-diffusion: the cosine is truncated to [λmin − shift, λmax − shift] before
    the shift, so λ(0) = ``logsnr_max`` and λ(1) = ``logsnr_min``. Defaults ±15 as in the paper's code.
    """

    image_d: float = 64.0
    noise_d: float = 64.0
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0

    def __post_init__(self):
        _check_d("image_d", self.image_d)
        _check_d("noise_d", self.noise_d)
        _check_bounds(self.logsnr_min, self.logsnr_max)

    @property
    def offset(self) -> float:
        """The shift 2·log(noise_d/image_d) added to λ."""
        return 2.0 * math.log(self.noise_d / self.image_d)

    def _logsnr(self, t):
        s = self.offset
        return _cos_logsnr(t, self.logsnr_min - s, self.logsnr_max - s) + s

    def _t_of(self, logsnr):
        s = self.offset
        return _cos_t_of(logsnr - s, self.logsnr_min - s, self.logsnr_max - s)

    def _dlogsnr_dt(self, t):
        s = self.offset
        return _cos_dlogsnr_dt(t, self.logsnr_min - s, self.logsnr_max - s)


def _bisect_t(fn, lam: Tensor, lo_val: float, hi_val: float, iters: int = 72) -> Tensor:
    """t ∈ [0, 1] with fn(t) = λ for a decreasing fn, by vectorised bisection over u = logit t ∈
    [−800, 800], so t near 0 is found to relative (not only absolute) float64 precision."""
    lo = torch.full_like(lam, -800.0)
    hi = torch.full_like(lam, 800.0)
    for _ in range(iters):  # 1600 / 2^72 ≈ 3e-19 in u
        mid = 0.5 * (lo + hi)
        above = fn(torch.sigmoid(mid)) > lam  # λ(mid) too clean → root is at larger t
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    t = torch.sigmoid(0.5 * (lo + hi))
    t = torch.where(lam >= lo_val, torch.zeros_like(t), t)
    return torch.where(lam <= hi_val, torch.ones_like(t), t)


@SCHEDULES.register("cosine_interpolated")
@dataclasses.dataclass(frozen=True)
class CosineInterpolated(_ClosedForm):
    """Interpolated shifted cosine (simple diffusion, Hoogeboom et al. 2023, §3.1):
    λ(t) = t·λ_shift(noise_d_low)(t) + (1 − t)·λ_shift(noise_d_high)(t).

    Direction: the paper's formula. Near t = 1 (high noise, global structure) it follows the schedule
    shifted to the *low* reference resolution (more noise); near t = 0 (fine detail) the one shifted to
    the *high* reference resolution (less shift), so high frequencies keep their steps. k-diffusion's
    ``cosine_interpolated`` uses ``lerp(low, high, t)``, i.e. the opposite weights; with noise_d_low <
    noise_d_high the paper's direction is always monotone, the reversed one need not be.
    The inverse t(λ) has no closed form and is found by bisection in logit t (float64 precision).
    """

    image_d: float = 64.0
    noise_d_low: float = 32.0
    noise_d_high: float = 64.0
    logsnr_min: float = -15.0
    logsnr_max: float = 15.0

    def __post_init__(self):
        _check_d("image_d", self.image_d)
        _check_d("noise_d_low", self.noise_d_low)
        _check_d("noise_d_high", self.noise_d_high)
        if not self.noise_d_low <= self.noise_d_high:
            raise ValueError(f"noise_d_low must be <= noise_d_high; got noise_d_low={self.noise_d_low!r}, "
                             f"noise_d_high={self.noise_d_high!r}")
        _check_bounds(self.logsnr_min, self.logsnr_max)

    def _parts(self):
        lo = CosineShifted(self.image_d, self.noise_d_low, self.logsnr_min, self.logsnr_max)
        hi = CosineShifted(self.image_d, self.noise_d_high, self.logsnr_min, self.logsnr_max)
        return lo, hi

    def _logsnr(self, t):
        lo, hi = self._parts()
        ll, lh = lo._logsnr(t), hi._logsnr(t)
        # t·ll + (1−t)·lh, written so that the ends are exact and ±inf does not meet 0·inf
        out = lh + t * (ll - lh)
        out = torch.where(t == 0, lh, out)
        return torch.where(t == 1, ll, out)

    def _t_of(self, logsnr):
        return _bisect_t(self._logsnr, logsnr, self.logsnr_max, self.logsnr_min)

    def _dlogsnr_dt(self, t):
        lo, hi = self._parts()
        ll, lh = lo._logsnr(t), hi._logsnr(t)
        dl, dh = lo._dlogsnr_dt(t), hi._dlogsnr_dt(t)
        diff = torch.where(torch.isfinite(ll) & torch.isfinite(lh), ll - lh, torch.zeros_like(ll))
        return t * dl + (1.0 - t) * dh + diff


# ----------------------------------------------------------------------------------------------
# other continuous schedules
# ----------------------------------------------------------------------------------------------
@SCHEDULES.register("flow")
@dataclasses.dataclass(frozen=True)
class Flow(_ClosedForm):
    """Rectified flow (Liu et al. 2022; SD3): z = (1 − t)·x₀ + t·ε, λ(t) = 2·log((1 − t)/t).

    t here is the diffusion-convention time (0 clean), equal to the flow σ; t_of(λ) = sigmoid(−λ/2).
    """

    def _logsnr(self, t):
        return logsnr_from_flow_t(t=t)

    def _t_of(self, logsnr):
        return flow_t(logsnr=logsnr)

    def _dlogsnr_dt(self, t):
        return -2.0 / (t * (1.0 - t))


@SCHEDULES.register("sigmoid")
@dataclasses.dataclass(frozen=True)
class Sigmoid(_ClosedForm):
    """Sigmoid schedule of Chen (2023), "On the importance of noise scheduling", Alg. 1:
    γ(t) = (v_end − sigmoid((t(e − s) + s)/τ))/(v_end − v_start), v_start = sigmoid(s/τ),
    v_end = sigmoid(e/τ), and γ = ᾱ, so λ = logit γ.

    Chen clips γ at 1e-9 for numerical safety; here λ is computed in log space as
    λ = log(v_end − σ(x)) − log(σ(x) − v_start), so λ(0) = +inf and λ(1) = −inf are exact and no clip
    is needed (the schedule stays strictly monotone and invertible). Scaling the input by b moves λ
    by 2·log b: use :func:`shift` with factor 1/b.
    """

    start: float = -3.0
    end: float = 3.0
    tau: float = 1.0

    def __post_init__(self):
        check_finite("start", self.start)
        check_finite("end", self.end)
        check_positive("tau", self.tau)
        if not self.start < self.end:
            raise ValueError(f"start must be < end; got start={self.start!r}, end={self.end!r}")

    @staticmethod
    def _log_sig_diff(b: Tensor | float, a: Tensor | float) -> Tensor:
        """log(sigmoid(b) − sigmoid(a)) for b > a, stably: logσ(b) + logσ(−a) + log(−expm1(a − b))."""
        b, a = to_tensor(b), to_tensor(a)
        return log_sigmoid(b) + log_sigmoid(-a) + torch.log(-torch.expm1(a - b))

    def _logsnr(self, t):
        s, e = self.start / self.tau, self.end / self.tau
        x = (t * (self.end - self.start) + self.start) / self.tau
        return self._log_sig_diff(e, x) - self._log_sig_diff(x, s)

    def _t_of(self, logsnr):
        s, e = self.start / self.tau, self.end / self.tau
        g, h = torch.sigmoid(logsnr), torch.sigmoid(-logsnr)  # γ, 1 − γ
        p = h * _sig(e) + g * _sig(s)  # sigmoid(x) = (1 − γ)·v_end + γ·v_start
        q = h * _sig(-e) + g * _sig(-s)  # 1 − sigmoid(x)
        x = torch.log(p) - torch.log(q)
        return (x * self.tau - self.start) / (self.end - self.start)

    def _dlogsnr_dt(self, t):
        s, e = self.start / self.tau, self.end / self.tau
        x = (t * (self.end - self.start) + self.start) / self.tau
        dx = (self.end - self.start) / self.tau
        # λ = log(v_end − σ(x)) − log(σ(x) − v_start); dσ/dx = σ(x)σ(−x)
        ds = torch.exp(log_sigmoid(x) + log_sigmoid(-x))
        return -dx * ds * (torch.exp(-self._log_sig_diff(e, x)) + torch.exp(-self._log_sig_diff(x, s)))


@SCHEDULES.register("laplace")
@dataclasses.dataclass(frozen=True)
class Laplace(_ClosedForm):
    """Laplace schedule of Hang & Gu (2024), "Improved noise schedule for diffusion training":
    λ(t) = μ − b·sgn(½ − t)·ln(1 − 2|t − ½|); uniform t then gives the Laplace density
    e^(−|λ−μ|/b)/(2b) over λ. Defaults μ = 0, b = 0.5 (λ(0.1) = 0.80472, λ(0.25) = 0.34657).
    """

    mu: float = 0.0
    b: float = 0.5

    def __post_init__(self):
        check_finite("mu", self.mu)
        check_positive("b", self.b)

    def _logsnr(self, t):
        clean = self.mu - self.b * torch.log(2.0 * t)  # t ≤ ½
        noisy = self.mu + self.b * torch.log(2.0 * (1.0 - t))  # t > ½
        return torch.where(t <= 0.5, clean, noisy)

    def _t_of(self, logsnr):
        z = (logsnr - self.mu) / self.b
        return torch.where(z >= 0, 0.5 * torch.exp(-z), 1.0 - 0.5 * torch.exp(z))

    def _dlogsnr_dt(self, t):
        return torch.where(t <= 0.5, -self.b / t, -self.b / (1.0 - t))


@SCHEDULES.register("cauchy")
@dataclasses.dataclass(frozen=True)
class Cauchy(_ClosedForm):
    """Cauchy schedule of Hang & Gu (2024): λ(t) = μ + γ·tan(π(½ − t)); uniform t gives the Cauchy
    density over λ. Evaluated as μ + γ·cot(πt) for t ≤ ½ and μ − γ·cot(π(1 − t)) above, so the ends
    are exactly ±inf. Defaults μ = 0, γ = 1.
    """

    mu: float = 0.0
    gamma: float = 1.0

    def __post_init__(self):
        check_finite("mu", self.mu)
        check_positive("gamma", self.gamma)

    def _logsnr(self, t):
        clean = self.mu + self.gamma / torch.tan(math.pi * t)
        noisy = self.mu - self.gamma / torch.tan(math.pi * (1.0 - t))
        return torch.where(t <= 0.5, clean, noisy)

    def _t_of(self, logsnr):
        y = (logsnr - self.mu) / self.gamma
        pos = torch.atan(1.0 / y) / math.pi  # y > 0
        neg = 1.0 - torch.atan(-1.0 / y) / math.pi  # y < 0
        return torch.where(y > 0, pos, torch.where(y < 0, neg, torch.full_like(y, 0.5)))

    def _dlogsnr_dt(self, t):
        # d/dt γ tan(π(½ − t)) = −πγ / sin²(πt)
        return -math.pi * self.gamma / torch.sin(math.pi * torch.minimum(t, 1.0 - t)) ** 2


@SCHEDULES.register("edm")
@dataclasses.dataclass(frozen=True)
class EDM(_ClosedForm):
    """EDM / Karras et al. (2022) noise levels on the VE scale, eq. 5 made continuous:
    σ(t) = (σ_min^(1/ρ) + t·(σ_max^(1/ρ) − σ_min^(1/ρ)))^ρ, λ = −2·log σ.

    Choice: t ∈ [0, 1] runs from ``sigma_min`` (t = 0) to ``sigma_max`` (t = 1), so an evenly spaced
    t grid is the Karras ρ-spacing (ρ = 7, σ ∈ [0.002, 80] by default) and uniform t is EDM's sampling
    discretisation seen as a schedule. ρ = 1 gives EDM's "σ(t) = t" VE schedule rescaled to
    [σ_min, σ_max]. ``sigma_min = 0`` is allowed (λ(0) = +inf).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __post_init__(self):
        check_positive("sigma_min", self.sigma_min, allow_zero=True)
        check_positive("sigma_max", self.sigma_max)
        check_positive("rho", self.rho)
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max; got sigma_min={self.sigma_min!r}, "
                             f"sigma_max={self.sigma_max!r}")

    def _ends(self) -> tuple[float, float]:
        lo = self.sigma_min ** (1.0 / self.rho)
        return lo, self.sigma_max ** (1.0 / self.rho) - lo

    def _logsnr(self, t):
        lo, w = self._ends()
        return -2.0 * self.rho * torch.log(lo + t * w)

    def _t_of(self, logsnr):
        lo, w = self._ends()
        return (torch.exp(-logsnr / (2.0 * self.rho)) - lo) / w

    def _dlogsnr_dt(self, t):
        lo, w = self._ends()
        return -2.0 * self.rho * w / (lo + t * w)


# ----------------------------------------------------------------------------------------------
# discrete schedules: diffusers' DDPMScheduler
# ----------------------------------------------------------------------------------------------
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


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


@functools.lru_cache(maxsize=32)
def _ddpm_tables(T: int, beta_start: float, beta_end: float, beta_schedule: str, zero_snr: bool):
    """(betas, alphas_cumprod, logsnr) in float64, as diffusers' DDPMScheduler builds them."""
    if beta_schedule == "linear":
        betas = torch.linspace(beta_start, beta_end, T, dtype=_F64)
    elif beta_schedule == "scaled_linear":
        betas = torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=_F64) ** 2
    else:  # squaredcos_cap_v2: diffusers' betas_for_alpha_bar (iDDPM cosine, s = 0.008, β ≤ 0.999)

        def abar(x):
            return math.cos((x + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)], dtype=_F64)
    log_abar = torch.cumsum(torch.log1p(-betas), 0)
    lam = log_abar - torch.log(-torch.expm1(log_abar))
    if zero_snr:
        lam = _rescale_logsnr(lam, float(lam[0]), float(lam[-1]))
        lam[-1] = -math.inf
    abar = torch.sigmoid(lam)
    if zero_snr:
        betas = 1.0 - torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return betas, abar, lam


def timestep_to_t(timesteps, *, num_train_timesteps: int) -> Tensor:
    """Continuous t = (i + 1)/T of diffusers integer timestep(s) i ∈ {0, …, T−1} (float64).

    Fractional timesteps are allowed (they map linearly); values outside [0, T−1] raise ValueError.
    """
    T = _check_T(num_train_timesteps)
    i = to_tensor(timesteps)
    if torch.isnan(i).any() or (i < 0).any() or (i > T - 1).any():
        raise ValueError(f"timesteps must be in [0, {T - 1}] (num_train_timesteps={T}); got "
                         f"{i[torch.isnan(i) | (i < 0) | (i > T - 1)].flatten()[0].item()!r}")
    return (i.to(_F64) + 1.0) / T


def t_to_timestep(t, *, num_train_timesteps: int) -> Tensor:
    """The (fractional) diffusers timestep i = t·T − 1 of continuous t ∈ [0, 1] (float64).

    t ∈ [0, 1/T) gives i ∈ [−1, 0): noise levels cleaner than diffusers' first timestep. Round (and
    clamp to 0) for an integer index.
    """
    T = _check_T(num_train_timesteps)
    return _check_t(t).to(_F64) * T - 1.0


def _check_T(T) -> int:
    if not isinstance(T, int) or isinstance(T, bool) or T < 2:
        raise ValueError(f"num_train_timesteps must be an integer >= 2; got {T!r}")
    return T


@SCHEDULES.register("ddpm")
@dataclasses.dataclass(frozen=True)
class DDPM(_ClosedForm):
    """Discrete DDPM schedule; arguments mirror diffusers' ``DDPMScheduler``.

    ``beta_schedule``: ``linear`` (β = linspace(beta_start, beta_end, T); Ho et al. 2020),
    ``scaled_linear`` (β = linspace(√beta_start, √beta_end, T)²; Stable Diffusion) or
    ``squaredcos_cap_v2`` (iDDPM cosine ᾱ(t) = cos²(((t + 0.008)/1.008)·π/2), β clipped at 0.999;
    beta_start / beta_end are ignored). ``rescale_betas_zero_snr`` applies Lin et al. (2024) Alg. 1
    exactly like diffusers' ``rescale_zero_terminal_snr`` (λ of the last timestep becomes −inf).
    Tables are computed in float64 (diffusers uses float32; ᾱ agrees to < 1e-6 absolute).

    Table: ``logsnr_table()[i]`` = log(ᾱ_i/(1 − ᾱ_i)) with ᾱ_i = ``alphas_cumprod()[i]``, indexed like
    diffusers' integer timesteps i = 0 … T−1.

    As a continuous schedule: t_i = (i + 1)/T ↔ table[i], with λ linear in t between consecutive
    t_i. Choice for t ∈ [0, 1/T): σ² = 1 − ᾱ grows linearly from 0 at t = 0 to 1 − ᾱ₀ at t = 1/T
    (ᾱ = 1 − (1 − ᾱ₀)·tT), so λ(0) = +inf like every continuous schedule here and the map stays
    monotone and exactly invertible. With zero terminal SNR the last segment, whose end is λ = −inf,
    interpolates ᾱ linearly to 0 instead (ᾱ = ᾱ_{T−2}·(T − tT)). ``t_of`` is the exact inverse.
    """

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    rescale_betas_zero_snr: bool = False

    def __post_init__(self):
        _check_T(self.num_train_timesteps)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"unknown beta_schedule {self.beta_schedule!r}; valid: {', '.join(BETA_SCHEDULES)}"
            )
        check_finite("beta_start", self.beta_start)
        check_finite("beta_end", self.beta_end)
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ValueError("beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1; got "
                             f"beta_start={self.beta_start!r}, beta_end={self.beta_end!r}")
        if not isinstance(self.rescale_betas_zero_snr, bool):
            raise ValueError(f"rescale_betas_zero_snr must be a bool; got {self.rescale_betas_zero_snr!r}")

    def _tables(self):
        return _ddpm_tables(self.num_train_timesteps, float(self.beta_start), float(self.beta_end),
                            self.beta_schedule, self.rescale_betas_zero_snr)

    def betas(self) -> Tensor:
        """β_i, shape (T,), float64 (after the zero-terminal-SNR rescale if enabled)."""
        return self._tables()[0].clone()

    def alphas_cumprod(self) -> Tensor:
        """ᾱ_i = Π_{j≤i}(1 − β_j), shape (T,), float64; diffusers' ``alphas_cumprod``."""
        return self._tables()[1].clone()

    def logsnr_table(self) -> Tensor:
        """λ_i = log(ᾱ_i/(1 − ᾱ_i)), shape (T,), float64, indexed like diffusers' timesteps."""
        return self._tables()[2].clone()

    def timestep_to_t(self, timesteps) -> Tensor:
        """t = (i + 1)/T of diffusers timestep(s) i; ``logsnr(timestep_to_t(i)) == logsnr_table()[i]``."""
        return timestep_to_t(timesteps, num_train_timesteps=self.num_train_timesteps)

    def t_to_timestep(self, t) -> Tensor:
        """Fractional diffusers timestep i = t·T − 1 of t."""
        return t_to_timestep(t, num_train_timesteps=self.num_train_timesteps)

    # --- continuous view -----------------------------------------------------------------------
    def _segments(self, t: Tensor):
        T = self.num_train_timesteps
        p = t * T - 1.0  # fractional table index
        i = torch.floor(p).clamp(0, T - 2).to(torch.long)
        return p, i, p - i.to(_F64)

    def _logsnr(self, t):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        p, i, f = self._segments(t)
        lo, hi = lam[i], lam[i + 1]
        hi_f = torch.where(torch.isfinite(hi), hi, lo)
        mid = lo + f * (hi_f - lo)
        # first segment: ᾱ = 1 − c·t, c = (1 − ᾱ₀)·T
        c = float(torch.sigmoid(-lam[0])) * T
        ct = c * t
        first = torch.log1p(-ct) - torch.log(ct)
        out = torch.where(p < 0, first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            last_f = (t * T - (T - 1)).clamp(0.0, 1.0)
            abar = A * (1.0 - last_f)
            last = torch.log(abar) - torch.log1p(-abar)
            out = torch.where(p > T - 2, last, out)
        return out

    def _t_of(self, logsnr):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        asc = lam.flip(0)  # increasing
        finite_asc = torch.where(torch.isfinite(asc), asc, torch.full_like(asc, -math.inf))
        # j: number of table entries <= λ  → λ between lam[i+1] and lam[i] with i = T - j - 1
        j = torch.searchsorted(finite_asc.contiguous(), logsnr.contiguous(), right=True)
        i = (T - 1 - j).clamp(0, T - 2)
        lo, hi = lam[i], lam[i + 1]
        f = (logsnr - lo) / (hi - lo)
        mid = (i.to(_F64) + 1.0 + f) / T
        first = torch.sigmoid(-logsnr) / (float(torch.sigmoid(-lam[0])) * T)
        out = torch.where(logsnr >= lam[0], first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            last = (T - 1 + (1.0 - torch.sigmoid(logsnr) / A)) / T
            out = torch.where(logsnr < lam[-2], last, out)
        else:
            out = torch.where(logsnr < lam[-1], torch.ones_like(out), out)
        return out

    def _dlogsnr_dt(self, t):
        T = self.num_train_timesteps
        lam = self._tables()[2]
        p, i, _ = self._segments(t)
        lo, hi = lam[i], lam[i + 1]
        mid = (torch.where(torch.isfinite(hi), hi, lo) - lo) * T
        c = float(torch.sigmoid(-lam[0])) * T
        abar = 1.0 - c * t
        first = -c / (abar * (1.0 - abar))
        out = torch.where(p < 0, first, mid)
        if self.rescale_betas_zero_snr:
            A = float(torch.sigmoid(lam[-2]))
            abar = A * (1.0 - (t * T - (T - 1)).clamp(0.0, 1.0))
            last = -A * T / (abar * (1.0 - abar))
            out = torch.where(p > T - 2, last, out)
        return out


# ----------------------------------------------------------------------------------------------
# transforms: shift and zero terminal SNR
# ----------------------------------------------------------------------------------------------
def _check_schedule(s) -> Schedule:
    if not isinstance(s, Schedule):
        raise ValueError(f"schedule must be a Schedule (e.g. noiselevels.schedule('flow')); got {s!r}")
    return s


def _dlogsnr_of(s: Schedule, t: Tensor) -> Tensor:
    d = getattr(s, "_dlogsnr_dt", None)
    if d is not None:
        return d(t)
    return s.dlogsnr_dt(t).to(_F64)


@SCHEDULES.register("shift")
@dataclasses.dataclass(frozen=True)
class Shift(_ClosedForm):
    """λ(t) = λ_inner(t) − 2·log(factor): a constant move of every level towards noise (factor > 1).

    On ``flow`` this is exactly SD3's / Flux's static shift t' = s·t/(1 + (s − 1)·t) (Esser et al.
    2024, eq. 23) and diffusers' ``FlowMatchEulerDiscreteScheduler(shift=s)``; on the cosine it is the
    resolution shift of simple diffusion with factor = image_d/noise_d; SD3's resolution rule for m vs
    n pixels is factor = √(m/n).
    """

    schedule: Schedule = dataclasses.field(default_factory=Flow)
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
