"""Training densities stated over rectified-flow time t = σ = sigmoid(−λ/2) (t = 0 clean, t = 1 noise),
written once over t and carried to λ by :class:`FlowTimeDensity` with the exact Jacobian
|dt/dλ| = t(1 − t)/2:

    p(λ) = p_t(t) · t(1 − t)/2,    cdf(λ) = P(T > t(λ)),    icdf(u) = λ(t) with P(T > t) = u.

``cosmap`` and ``mode`` (SD3), ``beta``, OneTrainer's ``sigmoid_t`` and ``inverted_parabola``, and
``lognormal_alpha`` (ai-toolkit's lognorm_blend part).

Conventions: every density is a :class:`~noiselevels.components.Density` over the noise level
λ = ``logsnr`` = log(α²/σ²) (natural log; large λ = clean) with an exact ``log_prob``, ``cdf`` (in
increasing λ, from noisy to clean) and ``icdf``; maths in float64, the caller's floating dtype kept;
λ = ±inf are legal inputs (density 0, cdf 0 or 1). Flow time t = σ = sigmoid(−λ/2) (t = 0 clean).
"""

from __future__ import annotations

import abc
import dataclasses
import math

import torch
from torch import Tensor

from noiselevels._numerics import betainc_pair, solve_increasing
from noiselevels.components import DENSITIES, check_finite, check_positive, check_range
from noiselevels.levels import log_sigmoid
from noiselevels.training.densities.base import (
    _LOG2,
    _LOG_SQRT_2PI,
    ExactDensity,
    _lam_of_t,
    _softplus_diff,
    _u64,
)

__all__ = [
    "Beta",
    "Cosmap",
    "FlowTimeDensity",
    "InvertedParabola",
    "LognormalAlpha",
    "Mode",
    "SigmoidT",
]

_MODE_SCALE_MAX = 1.0 / (math.pi / 2.0 - 1.0)  # ≈ 1.7519: the largest s for which SD3's mode map is monotone


# ----------------------------------------------------------------------------------------------
# densities over flow time t
# ----------------------------------------------------------------------------------------------
class FlowTimeDensity(ExactDensity, abc.ABC):
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

    @abc.abstractmethod
    def _log_prob_t(self, t: Tensor, s: Tensor, log_t: Tensor, log_s: Tensor) -> Tensor:
        """log p_t(t), per unit t."""

    @abc.abstractmethod
    def _sf_t(self, t: Tensor, s: Tensor, log_t: Tensor, log_s: Tensor) -> Tensor:
        """P(T > t), the cdf over λ."""

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
        # P(T > t) = 1 − I_t(a, b), evaluated as I_{1−t}(b, a) where that side converges
        return betainc_pair(float(self.a), float(self.b), t, s, log_t, log_s)[1]


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

