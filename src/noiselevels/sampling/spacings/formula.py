"""Formula-based spacings: a closed form in the step index over a σ range (default EDM's [0.002, 80]).

``karras``, ``exponential``, ``polyexponential``, ``vp``, ``kl_optimal``, ``linear_quadratic``,
``laplace`` and ``beta`` (Beta quantiles, continuous or over a discrete schedule's σ table). Every grid
is σ_ve = e^(−λ/2), float64, decreasing; ``Spacing.sigmas`` appends the trailing 0.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels._numerics import beta_ppf
from noiselevels.components import SPACINGS, check_finite, check_positive, check_range
from noiselevels.sampling.spacings.base import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    Spacing,
    _check_sigma,
    _check_steps,
    _discrete_logsnr_table,
    _ramp,
    _sigma_of_logsnr,
)

__all__ = [
    "VP",
    "BetaSpacing",
    "Exponential",
    "KLOptimal",
    "Karras",
    "LaplaceSpacing",
    "LinearQuadratic",
    "PolyExponential",
]


@SPACINGS.register("karras")
@dataclasses.dataclass(frozen=True)
class Karras(Spacing):
    """Karras et al. (EDM): σ^(1/ρ) linear in the step index; ρ = 7 (ρ = 1: linear σ; ρ → ∞: exponential).

    σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, i = 0..N−1, then 0
    (Karras et al. 2022, eq. 5; k-diffusion ``get_sigmas_karras``).
    """

    rho: float = 7.0

    def __post_init__(self):
        check_positive("rho", self.rho)
        check_range("rho", self.rho, 1e-3, 1e3)  # 1/rho is an exponent

    def _sigmas(self, n, sigma_min, sigma_max):
        inv = 1.0 / self.rho
        lo, hi = sigma_min**inv, sigma_max**inv
        return (hi + _ramp(n) * (lo - hi)) ** self.rho


@SPACINGS.register("exponential")
@dataclasses.dataclass(frozen=True)
class Exponential(Spacing):
    """Uniform in log σ, i.e. uniform in λ (DPM-Solver's logSNR spacing; k-diffusion).

    log σ_i = log σ_max + i/(N−1)·(log σ_min − log σ_max), then 0.
    """

    def _sigmas(self, n, sigma_min, sigma_max):
        lo, hi = math.log(sigma_min), math.log(sigma_max)
        return torch.exp(hi + _ramp(n) * (lo - hi))


@SPACINGS.register("polyexponential")
@dataclasses.dataclass(frozen=True)
class PolyExponential(Spacing):
    """Polynomial in log σ: log σ_i = log σ_min + (1 − i/(N−1))^ρ·(log σ_max − log σ_min) (k-diffusion).

    ρ = 1 is ``exponential``; ρ > 1 spends more steps at low noise.
    """

    rho: float = 1.0

    def __post_init__(self):
        check_positive("rho", self.rho)
        check_range("rho", self.rho, 1e-3, 1e3)  # 1/rho is an exponent

    def _sigmas(self, n, sigma_min, sigma_max):
        ramp = torch.linspace(1.0, 0.0, n, dtype=torch.float64) ** self.rho
        lo, hi = math.log(sigma_min), math.log(sigma_max)
        return torch.exp(ramp * (hi - lo) + lo)


@SPACINGS.register("vp")
@dataclasses.dataclass(frozen=True)
class VP(Spacing):
    """The continuous VP SDE's levels at uniform time (Song et al. 2021; k-diffusion ``get_sigmas_vp``).

    σ(t) = √(exp(β_d·t²/2 + β_min·t) − 1), t uniform from t(σ_max) to t(σ_min). The default range is
    (σ(ε_s), σ(1)) so that t runs from 1 to ε_s exactly as in k-diffusion; a given range is mapped to
    t by the exact inverse t(σ) = (−β_min + √(β_min² + 2β_d·log(1 + σ²)))/β_d.
    """

    beta_d: float = 19.9
    beta_min: float = 0.1
    eps_s: float = 1e-3

    def __post_init__(self):
        check_positive("beta_d", self.beta_d)
        check_positive("beta_min", self.beta_min, allow_zero=True)
        check_range("eps_s", self.eps_s, 0.0, 1.0, closed=False)

    def _sigma_of_t(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(self.beta_d * t**2 / 2 + self.beta_min * t))

    def _t_of_sigma(self, sigma: float) -> float:
        return (
            -self.beta_min + math.sqrt(self.beta_min**2 + 2 * self.beta_d * math.log1p(sigma**2))
        ) / self.beta_d

    def sigma_range(self):
        ends = self._sigma_of_t(torch.tensor([self.eps_s, 1.0], dtype=torch.float64))
        return (float(ends[0]), float(ends[1]))

    def _sigmas(self, n, sigma_min, sigma_max):
        t_hi, t_lo = self._t_of_sigma(sigma_max), self._t_of_sigma(sigma_min)
        t = torch.linspace(t_hi, t_lo, n, dtype=torch.float64)
        return self._sigma_of_t(t)


@SPACINGS.register("kl_optimal")
@dataclasses.dataclass(frozen=True)
class KLOptimal(Spacing):
    """arctan σ linear in the step index (Sabour et al. 2024; ComfyUI / A1111 ``kl_optimal``).

    σ_i = tan((1 − i/(N−1))·atan σ_max + i/(N−1)·atan σ_min), then 0.
    """

    def _sigmas(self, n, sigma_min, sigma_max):
        r = _ramp(n)
        return torch.tan(r * math.atan(sigma_min) + (1 - r) * math.atan(sigma_max))


@SPACINGS.register("linear_quadratic")
@dataclasses.dataclass(frozen=True)
class LinearQuadratic(Spacing):
    """Mochi's linear-then-quadratic grid (ComfyUI ``linear_quadratic``): σ_i = σ_max·(1 − s_i).

    s rises linearly from 0 to ``threshold_noise`` over the first ``linear_steps`` (default N // 2)
    steps, then quadratically to 1 at step N (continuous value and slope at the joint). The last
    nonzero level is set by the profile, so this spacing takes no ``sigma_min``; N = 1 gives [σ_max, 0].
    """

    threshold_noise: float = 0.025
    linear_steps: int | None = None

    def __post_init__(self):
        check_range("threshold_noise", self.threshold_noise, 0.0, 1.0, closed=False)
        if self.linear_steps is not None and (
            isinstance(self.linear_steps, bool)
            or not isinstance(self.linear_steps, numbers.Integral)
            or self.linear_steps < 1
        ):
            raise ValueError(f"linear_steps must be an integer >= 1 or None; got {self.linear_steps!r}")

    def sigma_range(self):
        return (0.0, DEFAULT_SIGMA_MAX)

    def _resolve_range(self, sigma_min, sigma_max):
        if sigma_min is not None:
            raise ValueError(
                "linear_quadratic takes no sigma_min (logsnr_max): its last nonzero level is "
                f"sigma_max·threshold_noise·(...) by construction; got sigma_min={sigma_min!r}"
            )
        hi = DEFAULT_SIGMA_MAX if sigma_max is None else _check_sigma("sigma_max", sigma_max)
        return 0.0, hi

    def profile(self, n: int) -> Tensor:
        """The fractions s_0..s_N (s_0 = 0, s_N = 1), float64 (N + 1,)."""
        n = _check_steps(n)
        if n == 1:
            return torch.tensor([0.0, 1.0], dtype=torch.float64)
        m = n // 2 if self.linear_steps is None else int(self.linear_steps)
        if m >= n:
            raise ValueError(f"linear_steps must be < the number of steps n={n}; got {m}")
        thr = self.threshold_noise
        i = torch.arange(n, dtype=torch.float64)
        diff = m - thr * n
        q = n - m
        quad_coef = diff / (m * q**2)
        lin_coef = thr / m - 2 * diff / q**2
        const = quad_coef * m**2
        s = torch.where(i < m, i * thr / m, quad_coef * i**2 + lin_coef * i + const)
        return torch.cat([s, torch.ones(1, dtype=torch.float64)])

    def _sigmas(self, n, sigma_min, sigma_max):
        return sigma_max * (1.0 - self.profile(n)[:-1])


@SPACINGS.register("laplace")
@dataclasses.dataclass(frozen=True)
class LaplaceSpacing(Spacing):
    """log σ at Laplace(μ, β) quantiles of the step index (Hang & Gu 2024; ComfyUI's ``get_sigmas_laplace``).

    u_i = i/(N−1), i = 0..N−1 (u = 0 when N = 1), and
    log σ_i = μ − β·sgn(½ − u_i)·log(1 − 2|½ − u_i| + ε), ε = 1e−5, σ_i clipped to [σ_min, σ_max], then 0
    (k-diffusion's sampling.py as ComfyUI ships it, ``get_sigmas_laplace``; its ``LaplaceScheduler``
    node). Without ε and the clip this is the Laplace(μ, β) quantile of log σ at probability 1 − u_i;
    in λ = −2 log σ it is the Laplace(−2μ, 2β) quantile at u_i, i.e. ``schedule("laplace", mu=−2μ,
    b=2β)`` at uniform t = 1 − u_i. ε caps the ends at log σ = μ ± β·log(1/ε) (σ ∈ [0.00316, 316] for
    the defaults μ = 0, β = 0.5), so the grid ends at σ_max (clipped) and at max(σ_min, e^μ·ε^β) — not
    at σ_min unless the clip reaches it. ComfyUI returns the N levels without a trailing 0 (its node
    stops at the last one); here the 0 is appended like every grid. A clip that makes two levels equal
    (too many steps for the range) raises instead of returning a repeated level.
    """

    mu: float = 0.0
    beta: float = 0.5
    eps: ClassVar[float] = 1e-5

    def __post_init__(self):
        check_finite("mu", self.mu)
        check_positive("beta", self.beta)

    def _sigmas(self, n, sigma_min, sigma_max):
        d = 0.5 - _ramp(n)
        log_sigma = self.mu - self.beta * torch.sign(d) * torch.log(1.0 - 2.0 * d.abs() + self.eps)
        out = torch.exp(log_sigma).clamp(sigma_min, sigma_max)
        for end, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
            if int((out == value).sum()) > 1:
                raise ValueError(
                    f"laplace(mu={self.mu!r}, beta={self.beta!r}) with n={n} clips more than one level "
                    f"to {end}={value:.6g}, which would repeat it; use fewer steps, a wider σ range or "
                    "a smaller beta"
                )
        return out


@SPACINGS.register("beta")
@dataclasses.dataclass(frozen=True)
class BetaSpacing(Spacing):
    """Beta(α, β) quantiles of the step index (Lee et al. 2024); α = β = 0.6 puts steps at both ends.

    Without a schedule (diffusers' ``use_beta_sigmas``): σ_i = σ_min + F⁻¹(1 − i/(N−1))·(σ_max − σ_min),
    F the Beta(α, β) cdf, i = 0..N−1. With a discrete ``schedule`` (ComfyUI's ``beta`` scheduler): the
    indices k_i = round(F⁻¹(1 − i/N)·(T − 1)) into the schedule's σ table (T entries), i = 0..N−1;
    repeated indices (N too large for the table) raise instead of shortening the grid.
    """

    alpha: float = 0.6
    beta: float = 0.6
    schedule: Any = None

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        check_positive("beta", self.beta)
        if self.schedule is not None:
            _discrete_logsnr_table(self.schedule, "beta spacing")

    @property
    def fixed_range(self) -> bool:  # type: ignore[override]
        return self.schedule is not None

    def sigma_range(self):
        if self.schedule is None:
            return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)
        s = _sigma_of_logsnr(_discrete_logsnr_table(self.schedule, "beta spacing"))
        return (float(s[0]), float(s[-1]))

    def _sigmas(self, n, sigma_min, sigma_max):
        if self.schedule is None:
            u = 1.0 - _ramp(n)
            ppf = torch.tensor([beta_ppf(float(x), self.alpha, self.beta) for x in u], dtype=torch.float64)
            return sigma_min + ppf * (sigma_max - sigma_min)
        table = _sigma_of_logsnr(_discrete_logsnr_table(self.schedule, "beta spacing"))
        t_last = table.numel() - 1
        u = 1.0 - np.linspace(0.0, 1.0, n, endpoint=False)
        idx = np.rint(np.array([beta_ppf(float(x), self.alpha, self.beta) for x in u]) * t_last).astype(
            np.int64
        )
        if len(np.unique(idx)) != n:
            raise ValueError(
                f"beta spacing: {n} steps repeat indices of the schedule's {t_last + 1}-entry table; "
                "use fewer steps (ComfyUI would silently return a shorter grid)"
            )
        return table[torch.from_numpy(idx)]
