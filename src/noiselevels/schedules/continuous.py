"""Continuous schedules t → λ with closed forms: the cosine family (Nichol & Dhariwal 2021; simple
diffusion, Hoogeboom et al. 2023), rectified flow, Chen's sigmoid, Hang & Gu's Laplace and Cauchy, and
EDM's ρ-spacing made continuous.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); t ∈ [0, 1] with t = 0 clean, t = 1 noise;
all arithmetic float64; λ = ±inf at the ends is returned without NaN.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from noiselevels._numerics import solve_increasing
from noiselevels.components import SCHEDULES, check_finite, check_positive, check_range
from noiselevels.levels import flow_t, log_sigmoid, logsnr_from_flow_t, to_tensor
from noiselevels.schedules.base import _HALF_PI, _check_bounds, _check_d, _ClosedForm, _sig

__all__ = [
    "CauchySchedule",
    "Cosine",
    "CosineInterpolated",
    "CosineShifted",
    "EDMSchedule",
    "FlowSchedule",
    "LaplaceSchedule",
    "Sigmoid",
]


# ----------------------------------------------------------------------------------------------
# cosine family (Nichol & Dhariwal 2021; simple diffusion, Hoogeboom et al. 2023)
# ----------------------------------------------------------------------------------------------
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
    """t ∈ [0, 1] with fn(t) = λ for a decreasing fn, by bisection over u = logit t ∈ [−800, 800]
    (:func:`~noiselevels._numerics.solve_increasing` on −fn, exactly ``iters`` halvings: 1600/2^72 ≈
    3e-19 in u), so t near 0 is found to relative (not only absolute) float64 precision. λ at or above
    ``lo_val`` gives t = 0, at or below ``hi_val`` t = 1."""

    def neg_fn(u: Tensor) -> Tensor:
        return -fn(torch.sigmoid(u))

    u = solve_increasing(neg_fn, -lam, -800.0, 800.0, tol=0.0, max_iter=iters)
    t = torch.sigmoid(u)
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
class FlowSchedule(_ClosedForm):
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
class LaplaceSchedule(_ClosedForm):
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
class CauchySchedule(_ClosedForm):
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
class EDMSchedule(_ClosedForm):
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
        check_range("rho", self.rho, 1e-3, 1e3)  # 1/rho is an exponent
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

