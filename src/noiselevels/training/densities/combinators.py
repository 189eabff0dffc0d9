"""Density combinators: ``shifted`` (a density moved by the flow shift), ``rescaled_t`` (flow time mapped
affinely onto [t_min, t_max]), ``mixture`` (Σ_k w_k p_k), and ai-toolkit's ``lognorm_blend`` as an exact
mixture. (``truncated`` lives beside the base,
:mod:`noiselevels.training.densities.base`, because ``ExactDensity.truncate`` returns it.)

Conventions: every density is a :class:`~noiselevels.components.Density` over the noise level
λ = ``logsnr`` = log(α²/σ²) (natural log; large λ = clean) with an exact ``log_prob``, ``cdf`` (in
increasing λ, from noisy to clean) and ``icdf``; maths in float64, the caller's floating dtype kept;
λ = ±inf are legal inputs (density 0, cdf 0 or 1). Flow time t = σ = sigmoid(−λ/2) (t = 0 clean).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, Density, check_positive, check_range
from noiselevels.training.densities.base import ExactDensity, _check_density, _require
from noiselevels.training.densities.flow_time import Beta, LognormalAlpha

__all__ = ["Mixture", "RescaledT", "Shifted", "lognorm_blend", "mixture"]


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


@DENSITIES.register("rescaled_t")
@dataclasses.dataclass(frozen=True)
class RescaledT(ExactDensity):
    """``base`` with its flow time t = sigmoid(−λ/2) mapped affinely: t' = t_min + (t_max − t_min)·t.

    kohya's SD3 trainer draws σ = (u·(max_timestep − min_timestep) + min_timestep)/1000 from the scheme's
    u (library/sd3_train_utils.py l. 930-940 at 48d368fa), which is this map with t_min = min/1000,
    t_max = max/1000. With b = t_max − t_min and t = (t' − t_min)/b:

        P(Λ' ≤ λ') = P(T' ≥ t') = P(T ≥ t) = base.cdf(λ(t)),
        log p'(λ') = base.log_prob(λ(t)) − log b + log t' + log(1 − t') − log t − log(1 − t)

    (the two Jacobians |dt/dλ| = t(1 − t)/2 and dt'/dt = b). The map is increasing in λ, so quantiles
    map one to one: icdf'(u) = λ(t_min + b·t(base.icdf(u))).
    """

    base: Density | None = None
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self) -> None:
        _check_density("base", _require("rescaled_t", "base", self.base))
        for name in ("t_min", "t_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number; got {v!r}")
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(f"need 0 <= t_min < t_max <= 1; got t_min={self.t_min!r}, t_max={self.t_max!r}")

    @property
    def support(self) -> tuple[float, float]:
        lo, hi = self.base.support
        t_noisy, t_clean = self._map_t(_t_of(lo)), self._map_t(_t_of(hi))
        return (_lam_of(t_noisy), _lam_of(t_clean))

    def _map_t(self, t: Tensor | float) -> Tensor | float:
        return self.t_min + (self.t_max - self.t_min) * t

    def _base_t(self, lam: Tensor) -> Tensor:
        """t = (t' − t_min)/b for the t' of λ', clipped to [0, 1]."""
        t_new = torch.sigmoid(-0.5 * lam)
        return ((t_new - self.t_min) / (self.t_max - self.t_min)).clamp(0.0, 1.0)

    def _log_prob(self, lam: Tensor) -> Tensor:
        t_new = torch.sigmoid(-0.5 * lam)
        t = (t_new - self.t_min) / (self.t_max - self.t_min)
        inside = (t > 0) & (t < 1)
        tc = t.clamp(1e-300, 1.0 - 1e-16)
        base = self.base.log_prob(_lam_of(tc)).to(torch.float64)
        out = (base - math.log(self.t_max - self.t_min) + torch.log(t_new) + torch.log1p(-t_new)
               - torch.log(tc) - torch.log1p(-tc))
        return torch.where(inside, out, torch.full_like(out, -math.inf))

    def _cdf(self, lam: Tensor) -> Tensor:
        return self.base.cdf(_lam_of(self._base_t(lam))).to(torch.float64)

    def _icdf(self, u: Tensor) -> Tensor:
        t = torch.sigmoid(-0.5 * self.base.icdf(u).to(torch.float64))
        return _lam_of(self._map_t(t))


def _t_of(lam: float) -> float:
    return 1.0 / (1.0 + math.exp(0.5 * lam)) if lam < 700 else 0.0


def _lam_of(t):
    """λ of flow time t: 2·log((1 − t)/t) (±inf at t = 1, 0); floats or float64 tensors."""
    if isinstance(t, Tensor):
        return 2.0 * (torch.log1p(-t) - torch.log(t))
    if t <= 0.0:
        return math.inf
    if t >= 1.0:
        return -math.inf
    return 2.0 * (math.log1p(-t) - math.log(t))


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
