"""The base of the training densities: :class:`ExactDensity` (float64 maths, the caller's dtype, support and
edge handling in one place), the builder ``density(name)``, their small numerics, and :class:`Truncated`
(``d.truncate(lo, hi)``, defined beside the base whose method returns it).

Conventions: every density is a :class:`~noiselevels.components.Density` over the noise level
λ = ``logsnr`` = log(α²/σ²) (natural log; large λ = clean) with an exact ``log_prob``, ``cdf`` (in
increasing λ, from noisy to clean) and ``icdf``; maths in float64, the caller's floating dtype kept;
λ = ±inf are legal inputs (density 0, cdf 0 or 1). Flow time t = σ = sigmoid(−λ/2) (t = 0 clean).

Where no closed-form inverse exists the inverse is found by Newton's method safeguarded by bisection in
float64 (:func:`~noiselevels._numerics.solve_increasing`), to a relative tolerance of 1e-12.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import softplus as _torch_softplus

from noiselevels._numerics import solve_increasing
from noiselevels.components import DENSITIES, Density
from noiselevels.levels import to_tensor

__all__ = ["ExactDensity", "Truncated", "density", "truncated"]

_LOG2 = math.log(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# |λ| beyond which flow t = sigmoid(−λ/2) leaves the normal float64 range; root finds over λ are
# bracketed by it when the support is unbounded.
_LAM_BRACKET = 1400.0
_ICDF_GRID = torch.cat(
    [
        -torch.tensor([1400.0, 1000.0, 700.0, 500.0, 350.0, 250.0, 180.0, 130.0, 100.0, 80.0, 64.0]),
        torch.linspace(-60.0, 60.0, 241),
        torch.tensor([64.0, 80.0, 100.0, 130.0, 180.0, 250.0, 350.0, 500.0, 700.0, 1000.0, 1400.0]),
    ]
).to(torch.float64)


def density(name: str, **kw: Any) -> Density:
    """Build a registered training density by name, e.g. ``density("logit_normal", mean=0, std=1)``.

    Unknown names and unknown parameters raise ``ValueError`` listing the valid ones.
    """
    return DENSITIES.create(name, **kw)


# ----------------------------------------------------------------------------------------------
# small numerics
# ----------------------------------------------------------------------------------------------
def _lam64(logsnr: Tensor) -> tuple[Tensor, torch.dtype]:
    lam = to_tensor(logsnr)
    if torch.isnan(lam).any():
        raise ValueError("logsnr contains NaN")
    return lam.to(torch.float64), lam.dtype


def _u64(u: Tensor) -> tuple[Tensor, torch.dtype]:
    u = to_tensor(u)
    bad = torch.isnan(u) | (u < 0) | (u > 1)
    if bad.any():
        raise ValueError(f"u must be a probability in [0, 1]; got {u[bad].flatten()[0].item()!r}")
    return u.to(torch.float64), u.dtype


def _lam_of_t(t: float) -> float:
    """λ = 2·log((1 − t)/t) for a Python float t ∈ [0, 1]."""
    if t <= 0.0:
        return math.inf
    if t >= 1.0:
        return -math.inf
    return 2.0 * (math.log1p(-t) - math.log(t))


def _softplus(x: Tensor) -> Tensor:
    """log(1 + eˣ), exact to float64 rounding (torch's default threshold of 20 is not)."""
    return _torch_softplus(x, beta=1.0, threshold=40.0)


def _softplus_diff(x: Tensor, y: Tensor) -> Tensor:
    """softplus(x) − softplus(y) without cancellation: log1p(expm1(x − y)·sigmoid(y)) when |x − y| is
    moderate, the plain difference otherwise (where it does not cancel)."""
    d = x - y
    near = d.abs() < 30.0
    a = torch.log1p(torch.expm1(d.clamp(-30.0, 30.0)) * torch.sigmoid(y))
    return torch.where(near, a, _softplus(x) - _softplus(y))


# ----------------------------------------------------------------------------------------------
# the base: float64 maths, the caller's dtype, support and edge handling in one place
# ----------------------------------------------------------------------------------------------
class ExactDensity(Density, abc.ABC):
    """Base of the library's densities.

    Subclasses implement on float64 tensors, for λ inside the support (finite) and u ∈ (0, 1):
    ``_log_prob(lam)``, ``_cdf(lam)`` and optionally ``_icdf(u)`` (default: the cdf inverted by
    :func:`solve_increasing` over λ, bracketed by ``_icdf_bracket``). The public methods check
    their input, handle λ = ±inf / λ outside the support / u ∈ {0, 1}, and keep the caller's dtype.
    ``truncate(lo, hi)`` restricts any of them to [lo, hi] (:class:`Truncated`).
    """

    @abc.abstractmethod
    def _log_prob(self, lam: Tensor) -> Tensor:
        """log p(λ) for finite λ inside the support (float64)."""

    @abc.abstractmethod
    def _cdf(self, lam: Tensor) -> Tensor:
        """P(Λ ≤ λ) for finite λ inside the support (float64)."""

    def _icdf_bracket(self, u: Tensor) -> tuple[Tensor | float, Tensor | float]:
        lo, hi = self.support
        return max(lo, -_LAM_BRACKET), min(hi, _LAM_BRACKET)

    def _icdf(self, u: Tensor) -> Tensor:
        """cdf⁻¹ by :func:`solve_increasing`: the bracket from ``_icdf_bracket`` is narrowed to the
        neighbouring points of a fixed λ grid (one cdf evaluation of ~200 points), and Newton starts
        from the linear interpolation of the cdf between them."""
        lo, hi = self._icdf_bracket(u)
        lo = torch.as_tensor(lo, dtype=torch.float64).expand_as(u)
        hi = torch.as_tensor(hi, dtype=torch.float64).expand_as(u)
        s_lo, s_hi = self.support
        grid = _ICDF_GRID[(_ICDF_GRID > s_lo) & (_ICDF_GRID < s_hi)]
        x0 = None
        if grid.numel() > 0:
            f_grid = self._cdf(grid).clamp(0.0, 1.0).cummax(dim=0).values
            i = torch.searchsorted(f_grid, u.contiguous())  # f_grid[i − 1] < u <= f_grid[i]
            n = grid.numel()
            has_lo, has_hi = i > 0, i < n
            g_lo, g_hi = grid[(i - 1).clamp(0, n - 1)], grid[i.clamp(0, n - 1)]
            f_lo, f_hi = f_grid[(i - 1).clamp(0, n - 1)], f_grid[i.clamp(0, n - 1)]
            lo = torch.where(has_lo, torch.maximum(lo, g_lo), lo)
            hi = torch.where(has_hi, torch.minimum(hi, g_hi), hi)
            frac = ((u - f_lo) / (f_hi - f_lo)).nan_to_num(0.5).clamp(0.0, 1.0)
            x0 = torch.where(has_lo & has_hi, g_lo + frac * (g_hi - g_lo), 0.5 * (lo + hi))
        return solve_increasing(self._cdf, u, lo, hi, dfn=lambda x: self._log_prob(x).exp(), x0=x0)

    def _inner_point(self) -> float:
        lo, hi = self.support
        if math.isfinite(lo) and math.isfinite(hi):
            return 0.5 * (lo + hi)
        if math.isfinite(lo):
            return lo + 1.0
        if math.isfinite(hi):
            return hi - 1.0
        return 0.0

    def log_prob(self, logsnr: Tensor) -> Tensor:
        """log p(λ) (natural log, per unit λ); −inf outside the support and at λ = ±inf."""
        lam, dtype = _lam64(logsnr)
        lo, hi = self.support
        inside = (lam >= lo) & (lam <= hi) & torch.isfinite(lam)
        out = self._log_prob(torch.where(inside, lam, self._inner_point()))
        return torch.where(inside, out, -math.inf).to(dtype)

    def cdf(self, logsnr: Tensor) -> Tensor:
        """P(Λ ≤ λ), increasing from 0 (noisy end) to 1 (clean end)."""
        lam, dtype = _lam64(logsnr)
        lo, hi = self.support
        below, above = lam <= lo, lam >= hi
        out = self._cdf(torch.where(below | above, self._inner_point(), lam)).clamp(0.0, 1.0)
        out = torch.where(below, 0.0, torch.where(above, 1.0, out))
        return out.to(dtype)

    def icdf(self, u: Tensor) -> Tensor:
        """The quantile λ(u) = cdf⁻¹(u) for u ∈ [0, 1] (u = 0, 1 give the support's ends)."""
        u, dtype = _u64(u)
        lo, hi = self.support
        inner = (u > 0) & (u < 1)
        out = self._icdf(torch.where(inner, u, 0.5)).clamp(lo, hi)
        out = torch.where(u <= 0, lo, torch.where(u >= 1, hi, out))
        return out.to(dtype)

    def truncate(self, logsnr_min: float = -math.inf, logsnr_max: float = math.inf) -> Truncated:
        """This density restricted to [logsnr_min, logsnr_max] and renormalised (:class:`Truncated`)."""
        return Truncated(base=self, logsnr_min=logsnr_min, logsnr_max=logsnr_max)


def _check_density(name: str, value: Any) -> None:
    if not isinstance(value, Density):
        raise ValueError(f"{name} must be a Density (e.g. density('logit_normal')); got {value!r}")


def _require(owner: str, name: str, value: Any) -> Any:
    if value is None:
        raise ValueError(f"density {owner!r} needs the parameter {name!r}")
    return value


@DENSITIES.register("truncated")
@dataclasses.dataclass(frozen=True)
class Truncated(ExactDensity):
    """``base`` restricted to [logsnr_min, logsnr_max] and renormalised by its mass
    M = F(λ_max) − F(λ_min): p(λ)/M inside, cdf (F(λ) − F(λ_min))/M, icdf(u) = F⁻¹(F(λ_min) + u·M).
    (kohya's ``--min_timestep``/``--max_timestep``, OneTrainer's min/max noising strength.)"""

    base: Density | None = None
    logsnr_min: float = -math.inf
    logsnr_max: float = math.inf
    _f_lo: float = dataclasses.field(init=False, repr=False, compare=False, default=0.0)
    _mass: float = dataclasses.field(init=False, repr=False, compare=False, default=1.0)

    def __post_init__(self) -> None:
        _check_density("base", _require("truncated", "base", self.base))
        for name in ("logsnr_min", "logsnr_max"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
                raise ValueError(f"{name} must be a number (±inf allowed); got {v!r}")
        if not self.logsnr_min < self.logsnr_max:
            raise ValueError(
                f"logsnr_min must be < logsnr_max; got logsnr_min={self.logsnr_min!r}, "
                f"logsnr_max={self.logsnr_max!r}"
            )
        ends = self.base.cdf(torch.tensor([self.logsnr_min, self.logsnr_max], dtype=torch.float64))
        f_lo, mass = float(ends[0]), float(ends[1] - ends[0])
        if not mass > 0:
            raise ValueError(
                f"the interval [{self.logsnr_min!r}, {self.logsnr_max!r}] has zero probability under "
                f"{self.base.describe()}; its support is {self.base.support}"
            )
        object.__setattr__(self, "_f_lo", f_lo)
        object.__setattr__(self, "_mass", mass)

    @property
    def support(self) -> tuple[float, float]:
        lo, hi = self.base.support
        return (max(lo, float(self.logsnr_min)), min(hi, float(self.logsnr_max)))

    def _log_prob(self, lam: Tensor) -> Tensor:
        return self.base.log_prob(lam).to(torch.float64) - math.log(self._mass)

    def _cdf(self, lam: Tensor) -> Tensor:
        return (self.base.cdf(lam).to(torch.float64) - self._f_lo) / self._mass

    def _icdf(self, u: Tensor) -> Tensor:
        return self.base.icdf((self._f_lo + u * self._mass).clamp(0.0, 1.0)).to(torch.float64)


def truncated(base: Density, logsnr_min: float = -math.inf, logsnr_max: float = math.inf) -> Truncated:
    """``base`` restricted to [logsnr_min, logsnr_max] and renormalised (see :class:`Truncated`)."""
    return Truncated(base=base, logsnr_min=logsnr_min, logsnr_max=logsnr_max)

