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
``rescaled_t``         a density with flow time mapped affinely onto [t_min, t_max] (kohya SD3 min/max)
``mixture``            Σ_k w_k p_k(λ) (weights normalised to sum 1)
``flow_time_atoms``    a few flow times with probabilities, each spread over a 1/1000 cell
=====================  ======================================================================

Where no closed-form inverse exists the inverse is found by Newton's method safeguarded by
bisection in float64 (:func:`solve_increasing`), to a relative tolerance of 1e-12.

The package: :mod:`~noiselevels.training.densities.base` (``ExactDensity``, ``density(name)``,
``Truncated``), :mod:`~noiselevels.training.densities.logsnr` (densities stated over λ),
:mod:`~noiselevels.training.densities.flow_time` (densities stated over flow t) and
:mod:`~noiselevels.training.densities.combinators` (shifted, rescaled_t, mixture, lognorm_blend) and
:mod:`~noiselevels.training.densities.atoms` (flow_time_atoms); every public name is re-exported here.
"""

from noiselevels._numerics import solve_increasing
from noiselevels.components import DENSITIES
from noiselevels.training.densities.atoms import FlowTimeAtoms
from noiselevels.training.densities.base import ExactDensity, Truncated, density, truncated
from noiselevels.training.densities.combinators import Mixture, RescaledT, Shifted, lognorm_blend, mixture
from noiselevels.training.densities.flow_time import (
    Beta,
    Cosmap,
    FlowTimeDensity,
    InvertedParabola,
    LognormalAlpha,
    Mode,
    SigmoidT,
)
from noiselevels.training.densities.logsnr import (
    CauchyDensity,
    LaplaceDensity,
    LogitNormal,
    LognormalSigma,
    NormalLogsnr,
    UniformLogsnr,
    UniformTDensity,
)

__all__ = [
    "DENSITIES",
    "Beta",
    "CauchyDensity",
    "Cosmap",
    "ExactDensity",
    "FlowTimeAtoms",
    "FlowTimeDensity",
    "InvertedParabola",
    "LaplaceDensity",
    "LogitNormal",
    "LognormalAlpha",
    "LognormalSigma",
    "Mixture",
    "Mode",
    "NormalLogsnr",
    "RescaledT",
    "Shifted",
    "SigmoidT",
    "Truncated",
    "UniformLogsnr",
    "UniformTDensity",
    "density",
    "lognorm_blend",
    "mixture",
    "solve_increasing",
    "truncated",
]
