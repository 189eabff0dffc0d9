"""Training densities p(λ): the distribution the training noise levels are drawn from.

Every density here is a :class:`~noiselevels.components.Density` over the noise level
λ = ``logsnr`` = log(α²/σ²) (natural log; large λ = clean) with an exact ``log_prob``, ``cdf`` and
``icdf``, and ``sample(n, generator=, stratified=)`` by inversion (one draw per 1/n cdf stratum when
``stratified``). The cdf is taken in increasing λ (from noisy to clean). All maths runs in float64; the
caller's floating dtype is kept. λ = ±inf are legal inputs (density 0, cdf 0 or 1).

Densities that the literature states over rectified-flow time t = σ = sigmoid(−λ/2) (t = 0 clean,
t = 1 noise) are written once over t and carried to λ by :class:`FlowTimeDensity` with the exact
Jacobian |dt/dλ| = t(1 − t)/2, so that

    p(λ) = p_t(t) · t(1 − t)/2,    cdf(λ) = P(T > t(λ)),    icdf(u) = λ(t) with P(T > t) = u.

Registered names (``density(name, **kw)``):

=====================  ======================================================================
``uniform_t``          t ~ U(0, 1) under any schedule: p(λ) = |dt/dλ| (rectified flow: ⅛·sech²(λ/4);
                       cosine: sech(λ/2)/(2π)); a shifted flow schedule gives "shift" sampling
``normal_logsnr``      λ ~ N(mean, std²)
``logit_normal``       flow t = sigmoid(N(mean, std²)) (SD3 Eq. 19) ⇔ λ ~ N(−2·mean, (2·std)²) exactly
``lognormal_sigma``    EDM: ln σ_ve ~ N(P_mean, P_std²) ⇔ λ ~ N(−2·P_mean, (2·P_std)²) (Karras 2022, Tab. 1)
``mode``               SD3 "mode" / "heavy tail": t = 1 − u − s·(cos²(πu/2) − 1 + u) (SD3 Eq. 20)
``cosmap``             density over flow t ∝ 2/(π(1 − 2t + 2t²)) (SD3 Eq. 21) = sech(λ/2)/(2π) over λ
``beta``               flow t ~ Beta(a, b); t = u^k is Beta(1/k, 1) (ai-toolkit ``style`` with k = 3),
                       1 − u^k is Beta(1, 1/k) (ai-toolkit ``content``)
``sigmoid_t``          OneTrainer SIGMOID: density over flow t ∝ sigmoid(w·(t − b − ½))
``inverted_parabola``  OneTrainer INVERTED_PARABOLA: density over flow t ∝ max(0, 2 − w·(t − b − ½)²)
``lognormal_alpha``    flow α = 1 − t with ln α ~ N(mean, std²) truncated to α ≤ 1 (ai-toolkit lognorm_blend)
``laplace``            λ ~ Laplace(μ, b) (Hang & Gu 2024)
``cauchy``             λ ~ Cauchy(μ, γ) (Hang & Gu 2024)
``uniform_logsnr``     λ ~ U(λ_min, λ_max)
``truncated``          a density restricted to [λ_min, λ_max] and renormalised (``d.truncate(lo, hi)``)
``shifted``            a density moved by the flow shift s: λ → λ − 2·log s (t' = s·t/(1 + (s − 1)·t))
``mixture``            Σ_k w_k p_k(λ) (weights normalised to sum 1)
=====================  ======================================================================

Where no closed-form inverse exists the inverse is found by Newton's method safeguarded by
bisection in float64 (:func:`solve_increasing`), to a relative tolerance of 1e-12.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn.functional import softplus as _torch_softplus

from noiselevels.components import DENSITIES, Density, Schedule, check_finite, check_positive, check_range
from noiselevels.levels import log_sigmoid, to_tensor

__all__ = [
    "DENSITIES",
    "Beta",
    "Cauchy",
    "Cosmap",
    "ExactDensity",
    "FlowTimeDensity",
    "InvertedParabola",
    "Laplace",
    "LogitNormal",
    "LognormalAlpha",
    "LognormalSigma",
    "Mixture",
    "Mode",
    "NormalLogsnr",
    "Shifted",
    "SigmoidT",
    "Truncated",
    "UniformLogsnr",
    "UniformT",
    "density",
    "lognorm_blend",
    "mixture",
    "solve_increasing",
    "truncated",
]

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
_MODE_SCALE_MAX = 1.0 / (math.pi / 2.0 - 1.0)  # ≈ 1.7519: the largest s for which SD3's mode map is monotone


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


def solve_increasing(
    fn: Callable[[Tensor], Tensor],
    target: Tensor,
    lo: Tensor | float,
    hi: Tensor | float,
    *,
    dfn: Callable[[Tensor], Tensor] | None = None,
    x0: Tensor | None = None,
    tol: float = 1e-12,
    max_iter: int = 400,
) -> Tensor:
    """Solve fn(x) = target elementwise for a nondecreasing ``fn`` on the bracket [lo, hi].

    Newton's method with derivative ``dfn`` where it stays inside the current bracket, bisection
    otherwise (or always, without ``dfn``); the bracket shrinks at every step, so the iteration
    cannot diverge. ``x0`` is the starting point (default: the bracket's midpoint). Stops when every
    step is below ``tol``·(1 + |x|). Targets outside [fn(lo), fn(hi)] give the nearer end of the
    bracket. All tensors float64, any shape.
    """
    target = to_tensor(target).to(torch.float64)
    lo = torch.as_tensor(lo, dtype=torch.float64).expand_as(target).clone()
    hi = torch.as_tensor(hi, dtype=torch.float64).expand_as(target).clone()
    x = 0.5 * (lo + hi) if x0 is None else torch.minimum(torch.maximum(x0, lo), hi)
    for _ in range(max_iter):
        f = fn(x) - target
        lo = torch.where(f < 0, x, lo)
        hi = torch.where(f > 0, x, hi)
        mid = 0.5 * (lo + hi)
        if dfn is None:
            xn = mid
        else:
            xn = x - f / dfn(x)
            xn = torch.where(torch.isfinite(xn) & (xn >= lo) & (xn <= hi), xn, mid)
        xn = torch.where(f == 0, x, xn)
        step = (xn - x).abs()
        x = xn
        scale = tol * (1.0 + x.abs())
        if bool(((step <= scale) | (hi - lo <= scale)).all()):
            break
    return x


# ----------------------------------------------------------------------------------------------
# the base: float64 maths, the caller's dtype, support and edge handling in one place
# ----------------------------------------------------------------------------------------------
class ExactDensity(Density):
    """Base of this module's densities.

    Subclasses implement on float64 tensors, for λ inside the support (finite) and u ∈ (0, 1):
    ``_log_prob(lam)``, ``_cdf(lam)`` and optionally ``_icdf(u)`` (default: the cdf inverted by
    :func:`solve_increasing` over λ, bracketed by ``_icdf_bracket``). The public methods check
    their input, handle λ = ±inf / λ outside the support / u ∈ {0, 1}, and keep the caller's dtype.
    """

    def _log_prob(self, lam: Tensor) -> Tensor:
        raise NotImplementedError

    def _cdf(self, lam: Tensor) -> Tensor:
        raise NotImplementedError

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


def _check_density(name: str, value: Any) -> None:
    if not isinstance(value, Density):
        raise ValueError(f"{name} must be a Density (e.g. density('logit_normal')); got {value!r}")


def _require(owner: str, name: str, value: Any) -> Any:
    if value is None:
        raise ValueError(f"density {owner!r} needs the parameter {name!r}")
    return value


# ----------------------------------------------------------------------------------------------
# uniform time under a schedule
# ----------------------------------------------------------------------------------------------
@DENSITIES.register("uniform_t")
@dataclasses.dataclass(frozen=True)
class UniformT(ExactDensity):
    """t ~ U(0, 1) under a schedule λ(t): p(λ) = |dt/dλ|, cdf(λ) = 1 − t(λ), icdf(u) = λ(1 − u).

    Rectified flow gives p(λ) = ⅛·sech²(λ/4); the cosine schedule sech(λ/2)/(2π) (Kingma & Gao 2023,
    App. D). Under ``shift(flow, s)`` this is SD3 / Flux "shift" sampling (λ moved by −2·log s).
    """

    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        if not isinstance(_require("uniform_t", "schedule", self.schedule), Schedule):
            raise ValueError(f"schedule must be a Schedule (e.g. schedule('flow')); got {self.schedule!r}")

    @property
    def support(self) -> tuple[float, float]:
        return (self.schedule.logsnr_min, self.schedule.logsnr_max)

    def _log_prob(self, lam: Tensor) -> Tensor:
        t = self.schedule.t_of(lam)
        return -torch.log(self.schedule.dlogsnr_dt(t).to(torch.float64).abs())

    def _cdf(self, lam: Tensor) -> Tensor:
        return 1.0 - self.schedule.t_of(lam)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.schedule.logsnr(1.0 - u)


# ----------------------------------------------------------------------------------------------
# normal over λ: normal_logsnr, logit_normal (flow t), lognormal_sigma (EDM)
# ----------------------------------------------------------------------------------------------
class _NormalOverLogsnr(ExactDensity):
    """λ ~ N(loc, scale²); subclasses define ``loc`` and ``scale``."""

    @property
    def loc(self) -> float:
        raise NotImplementedError

    @property
    def scale(self) -> float:
        raise NotImplementedError

    def _log_prob(self, lam: Tensor) -> Tensor:
        z = (lam - self.loc) / self.scale
        return -0.5 * z * z - math.log(self.scale) - _LOG_SQRT_2PI

    def _cdf(self, lam: Tensor) -> Tensor:
        return torch.special.ndtr((lam - self.loc) / self.scale)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.loc + self.scale * torch.special.ndtri(u)


@DENSITIES.register("normal_logsnr")
@dataclasses.dataclass(frozen=True)
class NormalLogsnr(_NormalOverLogsnr):
    """λ ~ N(mean, std²)."""

    mean: float = 0.0
    std: float = 2.0

    def __post_init__(self) -> None:
        check_finite("mean", self.mean)
        check_positive("std", self.std)

    @property
    def loc(self) -> float:
        return float(self.mean)

    @property
    def scale(self) -> float:
        return float(self.std)


@DENSITIES.register("logit_normal")
@dataclasses.dataclass(frozen=True)
class LogitNormal(_NormalOverLogsnr):
    """Flow t = sigmoid(n), n ~ N(mean, std²) (SD3, Esser et al. 2024, Eq. 19; kohya/ai-toolkit
    "sigmoid"). Since λ = 2·log((1 − t)/t) = −2n, this is exactly λ ~ N(−2·mean, (2·std)²).

    Here t is the noise level (t = σ, the SD3 paper's convention). diffusers' SD3 script draws
    u = sigmoid(N(m, s)) but then indexes its descending timestep table with u, so its σ ≈ 1 − u:
    diffusers' ``logit_mean = m`` is ``logit_normal(mean=-m)`` here (the same for m = 0).
    """

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        check_finite("mean", self.mean)
        check_positive("std", self.std)

    @property
    def loc(self) -> float:
        return -2.0 * float(self.mean)

    @property
    def scale(self) -> float:
        return 2.0 * float(self.std)


@DENSITIES.register("lognormal_sigma")
@dataclasses.dataclass(frozen=True)
class LognormalSigma(_NormalOverLogsnr):
    """EDM training density: ln σ_ve ~ N(p_mean, p_std²) (Karras et al. 2022, Table 1). Since
    λ = −2·ln σ_ve, exactly λ ~ N(−2·p_mean, (2·p_std)²). EDM2 uses (−0.4, 1.0) and (−0.8, 1.6)."""

    p_mean: float = -1.2
    p_std: float = 1.2

    def __post_init__(self) -> None:
        check_finite("p_mean", self.p_mean)
        check_positive("p_std", self.p_std)

    @property
    def loc(self) -> float:
        return -2.0 * float(self.p_mean)

    @property
    def scale(self) -> float:
        return 2.0 * float(self.p_std)


# ----------------------------------------------------------------------------------------------
# other densities stated over λ
# ----------------------------------------------------------------------------------------------
@DENSITIES.register("uniform_logsnr")
@dataclasses.dataclass(frozen=True)
class UniformLogsnr(ExactDensity):
    """λ ~ U(logsnr_min, logsnr_max): the density under which the ε-MSE weight is the ELBO weight
    (Kingma et al. 2021)."""

    logsnr_min: float | None = None
    logsnr_max: float | None = None

    def __post_init__(self) -> None:
        lo = check_finite("logsnr_min", _require("uniform_logsnr", "logsnr_min", self.logsnr_min))
        hi = check_finite("logsnr_max", _require("uniform_logsnr", "logsnr_max", self.logsnr_max))
        if not lo < hi:
            raise ValueError(f"logsnr_min must be < logsnr_max; got logsnr_min={lo!r}, logsnr_max={hi!r}")

    @property
    def support(self) -> tuple[float, float]:
        return (float(self.logsnr_min), float(self.logsnr_max))

    def _log_prob(self, lam: Tensor) -> Tensor:
        return torch.full_like(lam, -math.log(self.logsnr_max - self.logsnr_min))

    def _cdf(self, lam: Tensor) -> Tensor:
        return (lam - self.logsnr_min) / (self.logsnr_max - self.logsnr_min)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.logsnr_min + u * (self.logsnr_max - self.logsnr_min)


@DENSITIES.register("laplace")
@dataclasses.dataclass(frozen=True)
class Laplace(ExactDensity):
    """λ ~ Laplace(mu, b): p = e^(−|λ−μ|/b)/(2b) (Hang & Gu 2024, "Improved noise schedule")."""

    mu: float = 0.0
    b: float = 0.5

    def __post_init__(self) -> None:
        check_finite("mu", self.mu)
        check_positive("b", self.b)

    def _log_prob(self, lam: Tensor) -> Tensor:
        return -(lam - self.mu).abs() / self.b - math.log(2.0 * self.b)

    def _cdf(self, lam: Tensor) -> Tensor:
        z = (lam - self.mu) / self.b
        return torch.where(z < 0, 0.5 * torch.exp(z.clamp(max=0.0)), 1.0 - 0.5 * torch.exp(-z.clamp(min=0.0)))

    def _icdf(self, u: Tensor) -> Tensor:
        d = u - 0.5
        return self.mu - self.b * torch.sign(d) * torch.log1p(-2.0 * d.abs())


@DENSITIES.register("cauchy")
@dataclasses.dataclass(frozen=True)
class Cauchy(ExactDensity):
    """λ ~ Cauchy(mu, gamma): p = 1/(πγ(1 + ((λ−μ)/γ)²)) (Hang & Gu 2024)."""

    mu: float = 0.0
    gamma: float = 1.0

    def __post_init__(self) -> None:
        check_finite("mu", self.mu)
        check_positive("gamma", self.gamma)

    def _log_prob(self, lam: Tensor) -> Tensor:
        z = (lam - self.mu) / self.gamma
        return -math.log(math.pi * self.gamma) - torch.log1p(z * z)

    def _cdf(self, lam: Tensor) -> Tensor:
        return 0.5 + torch.atan((lam - self.mu) / self.gamma) / math.pi

    def _icdf(self, u: Tensor) -> Tensor:
        return self.mu + self.gamma * torch.tan(math.pi * (u - 0.5))


# ----------------------------------------------------------------------------------------------
# densities over flow time t
# ----------------------------------------------------------------------------------------------
class FlowTimeDensity(ExactDensity):
    """A density stated over rectified-flow time t = σ = sigmoid(−λ/2) (t = 0 clean), carried to λ.

    Subclasses give the law of T on float64 tensors, each called with t, s = 1 − t, log t, log s
    (all computed from λ without cancellation):

    * ``_log_prob_t(t, s, log_t, log_s)``: log p_t(t), per unit t;
    * ``_sf_t(t, s, log_t, log_s)``: P(T > t) (this is the cdf over λ, since λ decreases in t);
    * optionally ``_icdf`` (closed forms); otherwise the cdf is inverted numerically;
    * ``support_t``: (t_lo, t_hi) outside of which p_t = 0 (default (0, 1)).

    The change of variables (with |dt/dλ| = t(1 − t)/2) lives here only:
    log p(λ) = log p_t(t) + log t + log(1 − t) − log 2.
    """

    @property
    def support_t(self) -> tuple[float, float]:
        return (0.0, 1.0)

    @property
    def support(self) -> tuple[float, float]:
        t_lo, t_hi = self.support_t
        return (_lam_of_t(t_hi), _lam_of_t(t_lo))

    def _log_prob_t(self, t: Tensor, s: Tensor, log_t: Tensor, log_s: Tensor) -> Tensor:
        raise NotImplementedError

    def _sf_t(self, t: Tensor, s: Tensor, log_t: Tensor, log_s: Tensor) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def _times(lam: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        log_t, log_s = log_sigmoid(-0.5 * lam), log_sigmoid(0.5 * lam)
        return log_t.exp(), log_s.exp(), log_t, log_s

    def _log_prob(self, lam: Tensor) -> Tensor:
        t, s, log_t, log_s = self._times(lam)
        return self._log_prob_t(t, s, log_t, log_s) + log_t + log_s - _LOG2

    def _cdf(self, lam: Tensor) -> Tensor:
        return self._sf_t(*self._times(lam))


@DENSITIES.register("cosmap")
@dataclasses.dataclass(frozen=True)
class Cosmap(FlowTimeDensity):
    """SD3's "cosmap" (Esser et al. 2024, Eq. 21) as a density over flow t:
    p_t(t) = 2/(π(1 − 2t + 2t²)) = 2/(π(t² + (1 − t)²)), already normalised (∫₀¹ = 1).

    Exact forms: P(T ≤ t) = ½ + (2/π)·atan(2t − 1); with 1 − 2t = tanh(λ/4) the cdf over λ is
    ½ + (2/π)·atan(tanh(λ/4)), the density sech(λ/2)/(2π) (the cosine schedule's uniform-t density)
    and icdf(u) = 4·atanh(tan(π(u − ½)/2)).
    """

    def _log_prob_t(self, t, s, log_t, log_s):
        return math.log(2.0 / math.pi) - torch.log(t * t + s * s)

    def _sf_t(self, t, s, log_t, log_s):
        return 0.5 + (2.0 / math.pi) * torch.atan(s - t)

    def _icdf(self, u: Tensor) -> Tensor:
        return 4.0 * torch.atanh(torch.tan(0.5 * math.pi * (u - 0.5)))


@DENSITIES.register("mode")
@dataclasses.dataclass(frozen=True)
class Mode(FlowTimeDensity):
    """SD3's mode sampling with heavy tails (Esser et al. 2024, Eq. 20; OneTrainer HEAVY_TAIL):
    u ~ U(0, 1), t = f(u) = 1 − u − s·(cos²(πu/2) − 1 + u).

    With h(u) = u + s·(u − sin²(πu/2)) one has 1 − t = h(u) and t = h(1 − u) (f(1 − u) = 1 − f(u)), so
    λ(u) = 2·(log h(u) − log h(1 − u)) is increasing in u and icdf(u) = λ(u) in closed form. The map
    is monotone iff f′(u) = −1 − s + (sπ/2)·sin(πu) ≤ 0 on [0, 1], i.e. s ∈ [−1, 1/(π/2 − 1)] ≈
    [−1, 1.7519] (at the ends f′ vanishes at one point and the density is infinite there). The cdf
    inverts λ(u) numerically (over logit u, float64); the density is the derivative of the inverse,
    p_t(t) = 1/h′(u) with h′(u) = 1 + s·(1 − (π/2)·sin(πu)). s = 0 is uniform t.
    """

    scale: float = 1.29

    def __post_init__(self) -> None:
        check_range("scale", self.scale, -1.0, _MODE_SCALE_MAX)

    def _h(self, u: Tensor) -> Tensor:
        return u + self.scale * (u - torch.sin(0.5 * math.pi * u) ** 2)

    def _dh(self, u: Tensor, v: Tensor) -> Tensor:
        return 1.0 + self.scale * (1.0 - 0.5 * math.pi * torch.sin(math.pi * torch.minimum(u, v)))

    def _lam_of(self, u: Tensor, v: Tensor) -> Tensor:
        """λ at u (v = 1 − u, passed separately for precision)."""
        return 2.0 * (torch.log(self._h(u)) - torch.log(self._h(v)))

    def _u_of(self, lam: Tensor) -> tuple[Tensor, Tensor]:
        """(u, 1 − u) with λ(u) = lam, solved over x = logit u."""

        def fn(x):
            return self._lam_of(torch.sigmoid(x), torch.sigmoid(-x))

        def dfn(x):
            u, v = torch.sigmoid(x), torch.sigmoid(-x)
            return 2.0 * self._dh(u, v) * u * v / (self._h(u) * self._h(v))

        x = solve_increasing(fn, lam, -700.0, 700.0, dfn=dfn)
        return torch.sigmoid(x), torch.sigmoid(-x)

    def _log_prob_t(self, t, s, log_t, log_s):
        # t = f(u) ⇔ u = cdf(λ); only used through _log_prob below
        u, v = self._u_of(2.0 * (log_s - log_t))
        return -torch.log(self._dh(u, v))

    def _sf_t(self, t, s, log_t, log_s):
        return self._u_of(2.0 * (log_s - log_t))[0]

    def _icdf(self, u: Tensor) -> Tensor:
        return self._lam_of(u, 1.0 - u)

    def flow_t(self, u: Tensor) -> Tensor:
        """The SD3 map itself, t = f(u) = 1 − u − s·(cos²(πu/2) − 1 + u) (float64)."""
        u = _u64(u)[0]
        return 1.0 - u - self.scale * (torch.cos(0.5 * math.pi * u) ** 2 - 1.0 + u)


def _betainc_cf(a: float, b: float, x: Tensor, log_x: Tensor, log_y: Tensor) -> Tensor:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (modified Lentz), accurate for
    x < (a + 1)/(a + b + 2); log_x = log x, log_y = log(1 − x)."""
    tiny = 1e-300
    lbeta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    front = torch.exp(a * log_x + b * log_y - lbeta) / a
    f = torch.ones_like(x)
    c = torch.ones_like(x)
    d = torch.zeros_like(x)
    for i in range(0, 1000):
        m = i // 2
        if i == 0:
            num = torch.ones_like(x)
        elif i % 2 == 0:
            num = (m * (b - m) / ((a + 2 * m - 1) * (a + 2 * m))) * x
        else:
            num = (-(a + m) * (a + b + m) / ((a + 2 * m) * (a + 2 * m + 1))) * x
        d = 1.0 + num * d
        d = torch.where(d.abs() < tiny, tiny, d).reciprocal()
        c = 1.0 + num / c
        c = torch.where(c.abs() < tiny, tiny, c)
        cd = c * d
        f = f * cd
        if i > 0 and bool(((cd - 1.0).abs() < 1e-15).all()):
            break
    return front * (f - 1.0)


@DENSITIES.register("beta")
@dataclasses.dataclass(frozen=True)
class Beta(FlowTimeDensity):
    """Flow t ~ Beta(a, b) (OneTrainer BETA, SimpleTuner's beta schedule):
    p_t(t) = t^(a−1)(1 − t)^(b−1)/B(a, b), so p(λ) = t^a (1 − t)^b/(2·B(a, b)) with t = sigmoid(−λ/2).

    Beta(1, 1) is uniform flow t. If u ~ U(0, 1) then u^k ~ Beta(1/k, 1) and 1 − u^k ~ Beta(1, 1/k):
    ai-toolkit's ``style`` (index (1 − u³)·T of a noisy-to-clean grid, i.e. t ≈ u³) is Beta(⅓, 1) and
    ``content`` (t ≈ 1 − u³) is Beta(1, ⅓) — continuous approximations of its 1000-level index grid.
    The cdf is the regularised incomplete beta function (continued fraction, float64).
    """

    a: float = 1.0
    b: float = 1.0

    def __post_init__(self) -> None:
        check_positive("a", self.a)
        check_positive("b", self.b)

    def _log_prob_t(self, t, s, log_t, log_s):
        lbeta = math.lgamma(self.a) + math.lgamma(self.b) - math.lgamma(self.a + self.b)
        return (self.a - 1.0) * log_t + (self.b - 1.0) * log_s - lbeta

    def _sf_t(self, t, s, log_t, log_s):
        a, b = float(self.a), float(self.b)
        left = t < (a + 1.0) / (a + b + 2.0)
        # P(T ≤ t) = I_t(a, b) on the left, P(T > t) = I_{1−t}(b, a) on the right
        half = torch.full_like(t, 0.5)
        log_half = torch.full_like(t, -_LOG2)
        lt, ls = torch.where(left, log_t, log_half), torch.where(left, log_s, log_half)
        cdf_left = _betainc_cf(a, b, torch.where(left, t, half), lt, ls)
        rt, rs = torch.where(left, log_half, log_t), torch.where(left, log_half, log_s)
        sf_right = _betainc_cf(b, a, torch.where(left, half, s), rs, rt)
        return torch.where(left, 1.0 - cdf_left, sf_right)


@DENSITIES.register("sigmoid_t")
@dataclasses.dataclass(frozen=True)
class SigmoidT(FlowTimeDensity):
    """OneTrainer's SIGMOID timestep distribution: a density over flow t ∝ sigmoid(w·(t − c)), c = b + ½
    (``noising_weight`` w, ``noising_bias`` b). Not logit-normal (others' "sigmoid").

    Exact: with Z = softplus(w(1 − c)) − softplus(−wc), P(T ≤ t) = (softplus(w(t − c)) − softplus(−wc))/Z
    and p_t = w·sigmoid(w(t − c))/Z; w = 0 is uniform t. The inverse is found numerically.
    """

    weight: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        check_finite("weight", self.weight)
        check_finite("bias", self.bias)

    def _parts(self, t: Tensor) -> tuple[float, Tensor, Tensor, Tensor]:
        w, c = float(self.weight), float(self.bias) + 0.5
        x0 = torch.full_like(t, -w * c)
        x1 = torch.full_like(t, w * (1.0 - c))
        return w, x0, w * (t - c), x1

    def _log_prob_t(self, t, s, log_t, log_s):
        if self.weight == 0:
            return torch.zeros_like(t)
        w, x0, xt, x1 = self._parts(t)
        # ∫₀¹ sigmoid(w(t − c)) dt = (softplus(x1) − softplus(x0))/w > 0
        return log_sigmoid(xt) - torch.log(_softplus_diff(x1, x0) / w)

    def _sf_t(self, t, s, log_t, log_s):
        if self.weight == 0:
            return s
        _, x0, xt, x1 = self._parts(t)
        return _softplus_diff(x1, xt) / _softplus_diff(x1, x0)


@DENSITIES.register("inverted_parabola")
@dataclasses.dataclass(frozen=True)
class InvertedParabola(FlowTimeDensity):
    """OneTrainer's INVERTED_PARABOLA: a density over flow t ∝ q(t) = max(0, 2 − w·(t − c)²), c = b + ½.

    For w > 0, q > 0 on |t − c| < √(2/w); the support is that interval cut to [0, 1], and a
    (weight, bias) whose positive part misses [0, 1] is an error. With G(t) = 2t − w(t − c)³/3 the
    normaliser is Z = G(t_hi) − G(t_lo) and P(T ≤ t) = (G(t) − G(t_lo))/Z on the support (exact);
    the inverse (a cubic) is found numerically.
    """

    weight: float = 1.0
    bias: float = 0.0

    def __post_init__(self) -> None:
        check_finite("weight", self.weight)
        check_finite("bias", self.bias)
        t_lo, t_hi = self.support_t
        if not t_lo < t_hi:
            raise ValueError(
                f"inverted_parabola(weight={self.weight!r}, bias={self.bias!r}) has zero mass on "
                "t in [0, 1]: "
                f"its positive part is |t - {self.bias + 0.5!r}| < sqrt(2/weight); choose bias in "
                f"(-0.5 - sqrt(2/weight), 0.5 + sqrt(2/weight))"
            )

    @property
    def support_t(self) -> tuple[float, float]:
        w, c = float(self.weight), float(self.bias) + 0.5
        if w <= 0:
            return (0.0, 1.0)
        r = math.sqrt(2.0 / w)
        return (max(0.0, c - r), min(1.0, c + r))

    def _g(self, t):
        c = float(self.bias) + 0.5
        return 2.0 * t - self.weight * (t - c) ** 3 / 3.0

    def _z(self) -> float:
        t_lo, t_hi = self.support_t
        return self._g(t_hi) - self._g(t_lo)

    def _log_prob_t(self, t, s, log_t, log_s):
        q = (2.0 - self.weight * (t - (self.bias + 0.5)) ** 2).clamp(min=0.0)
        return torch.log(q) - math.log(self._z())

    def _sf_t(self, t, s, log_t, log_s):
        t_lo, t_hi = self.support_t
        return (self._g(t_hi) - self._g(t.clamp(t_lo, t_hi))) / self._z()


@DENSITIES.register("lognormal_alpha")
@dataclasses.dataclass(frozen=True)
class LognormalAlpha(FlowTimeDensity):
    """Flow α = 1 − t with ln α ~ N(mean, std²) truncated to α ≤ 1 (the log-normal part of ai-toolkit's
    ``lognorm_blend``, see :func:`lognorm_blend`).

    Exact: with Z = Φ(−mean/std) and z = (ln(1 − t) − mean)/std, P(T > t) = Φ(z)/Z — over λ,
    cdf(λ) = Φ((logsigmoid(λ/2) − mean)/std)/Z — and p_t(t) = φ(z)/(std·(1 − t)·Z);
    icdf(u): ln α = mean + std·Φ⁻¹(u·Z), λ = 2·(ln α − ln(1 − α)).
    """

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        check_finite("mean", self.mean)
        check_positive("std", self.std)
        if self._log_z() == -math.inf:
            raise ValueError(
                f"lognormal_alpha(mean={self.mean!r}, std={self.std!r}) has no mass at alpha <= 1"
            )

    def _log_z(self) -> float:
        return float(torch.special.log_ndtr(torch.tensor(-self.mean / self.std, dtype=torch.float64)))

    def _log_prob_t(self, t, s, log_t, log_s):
        z = (log_s - self.mean) / self.std
        return -0.5 * z * z - _LOG_SQRT_2PI - math.log(self.std) - log_s - self._log_z()

    def _sf_t(self, t, s, log_t, log_s):
        return torch.exp(torch.special.log_ndtr((log_s - self.mean) / self.std) - self._log_z())

    def _icdf(self, u: Tensor) -> Tensor:
        log_a = (self.mean + self.std * torch.special.ndtri(u * math.exp(self._log_z()))).clamp(max=0.0)
        return 2.0 * (log_a - torch.log(-torch.expm1(log_a)))


# ----------------------------------------------------------------------------------------------
# combinators: truncated, shifted, mixture
# ----------------------------------------------------------------------------------------------
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


@DENSITIES.register("shifted")
@dataclasses.dataclass(frozen=True)
class Shifted(ExactDensity):
    """``base`` moved by the flow shift s (SD3/Flux): t' = s·t/(1 + (s − 1)·t) is exactly
    λ' = λ − 2·log s, so p'(λ) = p(λ + 2·log s). s > 1 moves mass to noisier levels. Flux's dynamic
    shift with μ is s = e^μ."""

    base: Density | None = None
    factor: float = 1.0

    def __post_init__(self) -> None:
        _check_density("base", _require("shifted", "base", self.base))
        check_positive("factor", self.factor)

    @property
    def offset(self) -> float:
        """λ' − λ = −2·log s."""
        return -2.0 * math.log(self.factor)

    @property
    def support(self) -> tuple[float, float]:
        lo, hi = self.base.support
        return (lo + self.offset, hi + self.offset)

    def _log_prob(self, lam: Tensor) -> Tensor:
        return self.base.log_prob(lam - self.offset).to(torch.float64)

    def _cdf(self, lam: Tensor) -> Tensor:
        return self.base.cdf(lam - self.offset).to(torch.float64)

    def _icdf(self, u: Tensor) -> Tensor:
        return self.base.icdf(u).to(torch.float64) + self.offset


@DENSITIES.register("mixture")
@dataclasses.dataclass(frozen=True)
class Mixture(ExactDensity):
    """Σ_k w_k p_k(λ) with weights w_k > 0 normalised to sum 1 (given weights are divided by their sum).

    log_prob by log-sum-exp and the cdf Σ w_k F_k exactly; the icdf is solved numerically inside the
    bracket [min_k F_k⁻¹(u), max_k F_k⁻¹(u)], which always holds the mixture's quantile.
    """

    components: tuple[Density, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        comps = tuple(self.components) if isinstance(self.components, (list, tuple)) else self.components
        weights = tuple(self.weights) if isinstance(self.weights, (list, tuple)) else self.weights
        if not isinstance(comps, tuple) or len(comps) == 0:
            raise ValueError(f"components must be a non-empty sequence of densities; got {self.components!r}")
        for i, c in enumerate(comps):
            _check_density(f"components[{i}]", c)
        if not isinstance(weights, tuple) or len(weights) != len(comps):
            raise ValueError(
                f"weights must be a sequence of {len(comps)} positive numbers (one per component); "
                f"got {self.weights!r}"
            )
        for i, w in enumerate(weights):
            check_positive(f"weights[{i}]", w)
        object.__setattr__(self, "components", comps)
        object.__setattr__(self, "weights", tuple(float(w) for w in weights))

    @property
    def probs(self) -> tuple[float, ...]:
        """The normalised weights."""
        total = math.fsum(self.weights)
        return tuple(w / total for w in self.weights)

    @property
    def support(self) -> tuple[float, float]:
        sup = [c.support for c in self.components]
        return (min(s[0] for s in sup), max(s[1] for s in sup))

    def _log_prob(self, lam: Tensor) -> Tensor:
        terms = [c.log_prob(lam).to(torch.float64) + math.log(p) for c, p in zip(self.components, self.probs)]
        return torch.logsumexp(torch.stack(terms), dim=0)

    def _cdf(self, lam: Tensor) -> Tensor:
        return sum(p * c.cdf(lam).to(torch.float64) for c, p in zip(self.components, self.probs))

    def _icdf_bracket(self, u: Tensor) -> tuple[Tensor, Tensor]:
        qs = torch.stack([c.icdf(u).to(torch.float64) for c in self.components])
        return qs.min(dim=0).values, qs.max(dim=0).values


def mixture(components, weights) -> Mixture:
    """Σ_k w_k p_k(λ) (see :class:`Mixture`)."""
    return Mixture(components=tuple(components), weights=tuple(weights))


def lognorm_blend(weight: float = 0.75, std: float = 0.333, num_timesteps: int = 1000) -> Mixture:
    """ai-toolkit's ``lognorm_blend`` timesteps as an exact density over λ.

    ai-toolkit fills a table of ``num_timesteps`` flow levels with n = int(weight·num_timesteps) draws
    x ~ LogNormal(0, std) mapped to t = 1 − x/max(x), plus the rest evenly spaced in t, and trains on
    table entries picked uniformly. max(x) is a random sample maximum; we replace it by its median
    M = exp(std·Φ⁻¹(2^(−1/n))) (the value the table's max falls below half the time; for n = 750,
    std = 0.333: M ≈ 2.82). Then α = 1 − t = x/M with ln α ~ N(−ln M, std²), truncated to α ≤ 1 (the
    table holds no t < 0), and the evenly spaced part is uniform flow t (Beta(1, 1)):

        p = weight · lognormal_alpha(mean = −ln M, std) + (1 − weight) · beta(1, 1).

    The finite table (and the one entry with t = 0 exactly) is approximated by this continuous law;
    against the pooled entries of simulated ai-toolkit tables its cdf is off by at most ≈ 0.023 (the
    spread of the table maximum, which this fixed M ignores).
    """
    check_range("weight", weight, 0.0, 1.0, closed=False)
    check_positive("std", std)
    if not isinstance(num_timesteps, int) or isinstance(num_timesteps, bool) or num_timesteps < 2:
        raise ValueError(f"num_timesteps must be an integer >= 2; got {num_timesteps!r}")
    n = max(1, int(num_timesteps * weight))
    q = torch.tensor(2.0 ** (-1.0 / n), dtype=torch.float64)
    log_m = std * float(torch.special.ndtri(q))
    return mixture([LognormalAlpha(mean=-log_m, std=std), Beta(a=1.0, b=1.0)], [weight, 1.0 - weight])
