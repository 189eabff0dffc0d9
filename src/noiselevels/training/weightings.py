"""Loss weightings w(λ), all in ε-MSE units.

Convention (Kingma & Gao 2023, "Understanding diffusion objectives", eq. 4 and §2): the per-sample
loss is w(λ)·‖ε̂ − ε‖², whatever the network predicts. A weight that a tool applies to its own
target's loss converts with the parameterisation's factor f(λ) (``Parameterization.loss_factor``):
w_ε(λ) = w_own(λ)·f(λ), since ‖pred − target‖² = f(λ)·‖ε̂ − ε‖² (x₀: e^(−λ), v: 1 + e^(−λ) for vp,
flow: (1 + e^(−λ/2))², EDM F: 1 + e^(−λ)/σ_d²). ``in_units(weighting, parameterization)`` does that
conversion, so "min-SNR-5 on the v loss" and "min-SNR-5 on the ε loss" are compared as one object.

With SNR = e^λ:

=====================================  ==========================================  ==================
name                                   w(λ) in ε units                             source
=====================================  ==========================================  ==================
``constant(value)``                    value                                       ε-MSE, "simple"
``min_snr(gamma)``                     min(SNR, γ)/SNR = min(1, γ·e^(−λ))          Hang et al. 2023
``max_snr(gamma)``                     max(SNR, γ)/SNR = max(1, γ·e^(−λ))          Salimans & Ho 2022
``snr_gamma(gamma)``                   γ/SNR (unclamped)                           ai-toolkit
``soft_min_snr(sigma_data)``           e^(−λ)/(e^(−λ) + σ_d²)                      k-diffusion
``p2(k, gamma)``                       (k + SNR)^(−γ)                              Choi et al. 2022
``debiased(snr_max)``                  min(SNR, snr_max)^(−1/2)                    Yu et al. 2024
``debiased_v_kohya(snr_max)``          (1 + e^(−λ))/(min(SNR, snr_max) + 1)        kohya sd-scripts
``debiased_v_onetrainer(snr_max)``     (1 + e^(−λ))/√(min(SNR, snr_max) + 1)       OneTrainer
``edm(sigma_data)``                    1 + e^(−λ)/σ_d²                             Karras et al. 2022
``sigmoid(bias)``                      sigmoid(b − λ)                              Kingma & Gao 2023
``sigma_sqrt(units)``                  t^(−2) on the flow or x₀ loss, t = flow t   SD3 / diffusers
``cosmap(units)``                      2/(π(1 − 2t + 2t²)) on the flow or x₀ loss  SD3 / diffusers
``elbo(density)``                      1/p(λ), so W(λ) = p(λ)·w(λ) = 1             Kingma & Gao 2023
``scale_v_pred_loss_like_noise_pred``  SNR_c/(SNR_c + 1) on the v loss             kohya sd-scripts
``v_pred_like_loss(c)``                1 + c·(SNR_c + 1)/SNR_c on the ε loss       kohya sd-scripts
``product(a, b)``, ``scaled(w, f)``    a(λ)·b(λ), f·w(λ)                           —
``in_units(w, parameterization)``      w(λ)·f(λ)                                   —
=====================================  ==========================================  ==================

**Where the tools disagree** (tested in tests/training/test_weightings.py):

* ai-toolkit's ``min_snr_gamma`` = min(γ/SNR, 1) is exactly ``min_snr`` (min(SNR, γ)/SNR); its
  ``snr_gamma`` = γ/SNR is *not* clamped (``snr_gamma`` here). kohya's and OneTrainer's min-SNR for
  v-prediction, min(SNR, γ)/(SNR + 1) on the v loss, is also exactly ``min_snr`` once in ε units.
* Debiased estimation (Yu et al.): 1/√SNR on the ε loss. For v-prediction kohya uses 1/(SNR + 1) on the
  v loss, which is e^(−λ) = 1/SNR in ε units (not 1/√SNR), while OneTrainer uses 1/√(SNR + 1) on the
  v loss, which is √(SNR + 1)/SNR in ε units (→ 1/√SNR at high SNR, 1/SNR at low SNR). Both clamp
  SNR at 1000 before weighting (kohya PR 889; OneTrainer copies it); ``snr_max`` reproduces the
  clamp (``debiased`` defaults to no clamp, the paper's weight).
* kohya's ``scale_v_pred_loss_like_noise_pred`` multiplies the v loss by SNR/(SNR + 1), which is
  exactly the ε loss (weight 1) except above the SNR clamp.
* SD3's ``sigma_sqrt`` and ``cosmap`` weights multiply the loss of whatever the script predicts:
  diffusers' SD3 scripts with ``precondition_outputs`` (their default) apply them to an x₀ loss, kohya
  and others to the flow-velocity loss; ``units="x0"`` or ``"flow"`` picks one. With x₀ units,
  ``sigma_sqrt`` is exactly the plain flow-matching loss (1 + e^(−λ/2))². OneTrainer's flow ``SIGMA``
  weight is σ (not σ⁻²) on the flow loss: ``in_units(w_σ, "flow", process="flow")`` for a weight w_σ = t.
* OneTrainer's ``P2`` for v-prediction adds 1 to the SNR first: (2 + SNR)^(−γ) on the v loss, i.e.
  ``in_units(p2(k=2, gamma=γ), "v")``; for ε-prediction it is ``p2(k=1, gamma=γ)``.

**λ = ±∞.** Every weighting returns the exact limit where it is finite (e.g. ``min_snr`` gives 1 at
λ = −∞ and 0 at +∞) and +inf where the weight diverges (e.g. ``debiased`` at λ = −∞). Combinators
multiply values, so 0·∞ inside ``product``/``in_units`` gives NaN: build such a weight as one named
component instead.

Shapes: ``w(logsnr)`` takes λ of any shape (usually (B,)) and returns the same shape and floating
dtype (float64 for non-tensor input).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from noiselevels.components import WEIGHTINGS, Density, Weighting, check_finite, check_positive
from noiselevels.levels import check_process, log_sigmoid, to_tensor
from noiselevels.parameterizations import Parameterization, parameterization

__all__ = ["WEIGHTINGS", "in_units", "product", "scaled", "weighting"]

_FLOW_UNITS = ("flow", "x0")


def weighting(name: str, **kw) -> Weighting:
    """Build a registered weighting by name (see the module table). Unknown names or parameters raise
    ``ValueError`` listing the valid ones. A built ``Weighting`` passed as ``name`` is returned as is."""
    if isinstance(name, Weighting):
        if kw:
            raise ValueError(f"parameters {sorted(kw)} given together with a built weighting {name!r}")
        return name
    return WEIGHTINGS.create(name, **kw)


def _softplus(x: Tensor) -> Tensor:
    """log(1 + e^x), exact for all x (torch's ``softplus`` switches to x above a threshold of 20)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def _lam(logsnr) -> Tensor:
    lam = to_tensor(logsnr)
    if torch.isnan(lam).any():
        raise ValueError("logsnr contains NaN")
    return lam


def _check_snr_max(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return check_positive("snr_max", value)


def _clamp_lam(lam: Tensor, snr_max: float) -> Tensor:
    """λ clamped at log(snr_max) (the tools' "SNR clamped at 1000"); no-op for snr_max = inf."""
    return lam if snr_max == math.inf else lam.clamp(max=math.log(snr_max))


def _check_units(units) -> str:
    if units not in _FLOW_UNITS:
        raise ValueError(
            f"units must be one of {', '.join(_FLOW_UNITS)} (the loss the weight multiplies); got {units!r}"
        )
    return units


def _check_weighting(name: str, value) -> None:
    if not isinstance(value, Weighting):
        raise ValueError(f"{name} must be a Weighting (e.g. weighting('min_snr', gamma=5.0)); got {value!r}")


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------
@WEIGHTINGS.register("constant")
@dataclasses.dataclass(frozen=True)
class Constant(Weighting):
    """w(λ) = value: the plain ε-MSE ("L_simple", Ho et al. 2020)."""

    value: float = 1.0

    def __post_init__(self):
        check_positive("value", self.value, allow_zero=True)

    def __call__(self, logsnr):
        return torch.full_like(_lam(logsnr), self.value)


@WEIGHTINGS.register("min_snr")
@dataclasses.dataclass(frozen=True)
class MinSNR(Weighting):
    """Min-SNR-γ (Hang et al. 2023, eq. 12): x₀ weight min(SNR, γ), so w = min(SNR, γ)/SNR = min(1, γe^(−λ)).

    Equal to ai-toolkit's ``min_snr_gamma`` (min(γ/SNR, 1)) and, in ε units, to kohya's and
    OneTrainer's v variant min(SNR, γ)/(SNR + 1) on the v loss. 1 at λ = −∞, 0 at λ = +∞.
    """

    gamma: float = 5.0

    def __post_init__(self):
        check_positive("gamma", self.gamma)

    def __call__(self, logsnr):
        return torch.exp((math.log(self.gamma) - _lam(logsnr)).clamp(max=0.0))


@WEIGHTINGS.register("max_snr")
@dataclasses.dataclass(frozen=True)
class MaxSNR(Weighting):
    """Max-SNR-γ / "truncated SNR" (Salimans & Ho 2022, §4; Hang et al. 2023, Table 1): x₀ weight
    max(SNR, γ), i.e. w = max(1, γe^(−λ)). γ = 1 is Salimans & Ho's choice. +inf at λ = −∞, 1 at +∞."""

    gamma: float = 1.0

    def __post_init__(self):
        check_positive("gamma", self.gamma)

    def __call__(self, logsnr):
        return torch.exp((math.log(self.gamma) - _lam(logsnr)).clamp(min=0.0))


@WEIGHTINGS.register("snr_gamma")
@dataclasses.dataclass(frozen=True)
class SNRGamma(Weighting):
    """ai-toolkit's ``snr_gamma``: w = γ/SNR = γe^(−λ), not clamped (an x₀ loss scaled by γ)."""

    gamma: float = 5.0

    def __post_init__(self):
        check_positive("gamma", self.gamma)

    def __call__(self, logsnr):
        return torch.exp(math.log(self.gamma) - _lam(logsnr))


@WEIGHTINGS.register("soft_min_snr")
@dataclasses.dataclass(frozen=True)
class SoftMinSNR(Weighting):
    """k-diffusion's soft-min-SNR (Crowson et al. 2024, "Scalable high-resolution pixel-space image
    synthesis", §3): weight (σσ_d)²/(σ² + σ_d²)² on the EDM F loss, i.e. x₀ weight 1/(σ² + σ_d²) with
    σ = σ_ve = e^(−λ/2); in ε units w = e^(−λ)/(e^(−λ) + σ_d²) = sigmoid(−λ − 2 ln σ_d). 1 at −∞, 0 at +∞."""

    sigma_data: float = 0.5

    def __post_init__(self):
        check_positive("sigma_data", self.sigma_data)

    def __call__(self, logsnr):
        return torch.sigmoid(-_lam(logsnr) - 2.0 * math.log(self.sigma_data))


@WEIGHTINGS.register("p2")
@dataclasses.dataclass(frozen=True)
class P2(Weighting):
    """Perception-prioritised weighting (Choi et al. 2022, eq. 8 with L_simple): w = (k + SNR)^(−γ),
    computed as exp(−γ·logaddexp(ln k, λ)). k^(−γ) at λ = −∞, 0 at +∞ (1 when γ = 0).
    OneTrainer's ``P2`` is (1 + SNR)^(−γ) (k = 1) on the ε loss."""

    k: float = 1.0
    gamma: float = 1.0

    def __post_init__(self):
        check_positive("k", self.k)
        check_positive("gamma", self.gamma, allow_zero=True)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        if self.gamma == 0:
            return torch.ones_like(lam)
        return torch.exp(-self.gamma * torch.logaddexp(torch.full_like(lam, math.log(self.k)), lam))


@WEIGHTINGS.register("debiased")
@dataclasses.dataclass(frozen=True)
class Debiased(Weighting):
    """Debiased estimation (Yu et al. 2024, "Debias the training of diffusion models"): w = 1/√SNR,
    with SNR first clamped at ``snr_max`` (kohya and OneTrainer use 1000; default: no clamp).
    +inf at λ = −∞; 1/√snr_max (or 0) at +∞."""

    snr_max: float = math.inf

    def __post_init__(self):
        _check_snr_max(self.snr_max)

    def __call__(self, logsnr):
        return torch.exp(-0.5 * _clamp_lam(_lam(logsnr), self.snr_max))


@WEIGHTINGS.register("debiased_v_kohya")
@dataclasses.dataclass(frozen=True)
class DebiasedVKohya(Weighting):
    """kohya's ``--debiased_estimation_loss`` for v-prediction: 1/(SNR_c + 1) on the v loss, SNR_c =
    min(SNR, snr_max); in ε units (1 + e^(−λ))/(1 + SNR_c) = e^(−λ) below the clamp (1/SNR, not the
    paper's 1/√SNR)."""

    snr_max: float = 1000.0

    def __post_init__(self):
        _check_snr_max(self.snr_max)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        return torch.exp(_softplus(-lam) - _softplus(_clamp_lam(lam, self.snr_max)))


@WEIGHTINGS.register("debiased_v_onetrainer")
@dataclasses.dataclass(frozen=True)
class DebiasedVOneTrainer(Weighting):
    """OneTrainer's ``DEBIASED_ESTIMATION`` for v-prediction: 1/√(SNR_c + 1) on the v loss, SNR_c =
    min(SNR, snr_max); in ε units (1 + e^(−λ))/√(1 + SNR_c) = √(SNR + 1)/SNR below the clamp."""

    snr_max: float = 1000.0

    def __post_init__(self):
        _check_snr_max(self.snr_max)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        return torch.exp(_softplus(-lam) - 0.5 * _softplus(_clamp_lam(lam, self.snr_max)))


@WEIGHTINGS.register("edm")
@dataclasses.dataclass(frozen=True)
class EDMWeight(Weighting):
    """EDM's λ(σ) = (σ² + σ_d²)/(σσ_d)² = 1/c_out² on the x₀ (D) loss (Karras et al. 2022, eq. 8 and
    Table 1), i.e. uniform weight on the F loss; in ε units w = 1 + e^(−λ)/σ_d². 1 at +∞, +inf at −∞."""

    sigma_data: float = 0.5

    def __post_init__(self):
        check_positive("sigma_data", self.sigma_data)

    def __call__(self, logsnr):
        return torch.exp(_softplus(-_lam(logsnr) - 2.0 * math.log(self.sigma_data)))


@WEIGHTINGS.register("sigmoid")
@dataclasses.dataclass(frozen=True)
class SigmoidWeight(Weighting):
    """Kingma & Gao 2023 (§5, "sigmoid weighting"): w = sigmoid(b − λ). 1 at −∞, 0 at +∞.

    Not the "sigmoid" timestep sampling of kohya / ai-toolkit (a logit-normal *density*)."""

    bias: float = 2.0

    def __post_init__(self):
        check_finite("bias", self.bias)

    def __call__(self, logsnr):
        return torch.sigmoid(self.bias - _lam(logsnr))


@WEIGHTINGS.register("sigma_sqrt")
@dataclasses.dataclass(frozen=True)
class SigmaSqrt(Weighting):
    """SD3's ``sigma_sqrt`` (diffusers ``compute_loss_weighting_for_sd3``): σ_flow^(−2) = t^(−2) with
    t = sigmoid(−λ/2), on the loss named by ``units``.

    * ``units="flow"`` (kohya, flow-velocity target): w = t^(−2)·(1 + e^(−λ/2))² = 1/(tα)²
      = 16·cosh⁴(λ/4); +inf at both ends.
    * ``units="x0"`` (diffusers SD3 scripts with ``precondition_outputs``): w = t^(−2)·e^(−λ) = 1/α²
      = (1 + e^(−λ/2))², i.e. exactly the plain flow-matching loss; 1 at +∞, +inf at −∞.
    """

    units: str = "flow"

    def __post_init__(self):
        _check_units(self.units)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        log_a = log_sigmoid(0.5 * lam)
        if self.units == "x0":
            return torch.exp(-2.0 * log_a)
        return torch.exp(-2.0 * (log_a + log_sigmoid(-0.5 * lam)))


@WEIGHTINGS.register("cosmap")
@dataclasses.dataclass(frozen=True)
class CosMap(Weighting):
    """SD3's ``cosmap`` weight (Esser et al. 2024, eq. 20 used as a weight, as diffusers does):
    c(t) = 2/(π(1 − 2t + 2t²)) = 2/(π(α² + σ²)) with flow α = 1 − t, σ = t, t = sigmoid(−λ/2), on the
    loss named by ``units``: ``"flow"`` gives w = c/α², ``"x0"`` gives w = c·σ²/α² (= c·e^(−λ)).
    flow: 2/π at +∞, +inf at −∞; x0: 0 at +∞, +inf at −∞."""

    units: str = "flow"

    def __post_init__(self):
        _check_units(self.units)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        log_a, log_s = log_sigmoid(0.5 * lam), log_sigmoid(-0.5 * lam)
        log_c = math.log(2.0 / math.pi) - torch.logaddexp(2.0 * log_a, 2.0 * log_s)
        if self.units == "x0":
            # e^(−λ) = σ²/α², written from the flow (α, σ) so that both ends are exact
            return torch.exp(log_c + 2.0 * log_s - 2.0 * log_a)
        return torch.exp(log_c - 2.0 * log_a)


@WEIGHTINGS.register("elbo")
@dataclasses.dataclass(frozen=True)
class ELBO(Weighting):
    """The ELBO weighting for levels drawn from ``density``: w = 1/p(λ), so W(λ) = p(λ)w(λ) = 1
    (Kingma & Gao 2023, eq. 7 and §4: the negative ELBO is ½·E_p[‖ε̂ − ε‖²/p(λ)] + const; the factor
    ½ and the constant are left out). +inf where p(λ) = 0."""

    density: Density

    def __post_init__(self):
        if not isinstance(self.density, Density):
            raise ValueError(
                f"density must be a Density (e.g. density('logit_normal')); got {self.density!r}"
            )

    def __call__(self, logsnr):
        return torch.exp(-self.density.log_prob(_lam(logsnr)))


@WEIGHTINGS.register("scale_v_pred_loss_like_noise_pred")
@dataclasses.dataclass(frozen=True)
class ScaleVPredLikeNoisePred(Weighting):
    """kohya's ``--scale_v_pred_loss_like_noise_pred``: the v loss times SNR_c/(SNR_c + 1), SNR_c =
    min(SNR, snr_max). In ε units: exactly 1 for SNR ≤ snr_max, sigmoid(ln snr_max)·(1 + e^(−λ)) above."""

    snr_max: float = 1000.0

    def __post_init__(self):
        _check_snr_max(self.snr_max)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        if self.snr_max == math.inf:
            return torch.ones_like(lam)
        lam_max = math.log(self.snr_max)
        above = torch.sigmoid(torch.tensor(lam_max, dtype=lam.dtype)) * (1.0 + torch.exp(-lam))
        return torch.where(lam <= lam_max, torch.ones_like(lam), above)


@WEIGHTINGS.register("v_pred_like_loss")
@dataclasses.dataclass(frozen=True)
class VPredLikeLoss(Weighting):
    """kohya's ``--v_pred_like_loss c`` for ε-prediction models: loss + c·loss/scale with scale =
    SNR_c/(SNR_c + 1), i.e. w = 1 + c·(1 + e^(−λ_c)) on the ε loss (λ_c = min(λ, ln snr_max)): the ε
    loss plus c times a v-like loss. 1 + c·(1 + 1/snr_max) at +∞, +inf at −∞."""

    c: float = 0.0
    snr_max: float = 1000.0

    def __post_init__(self):
        check_positive("c", self.c, allow_zero=True)
        _check_snr_max(self.snr_max)

    def __call__(self, logsnr):
        lam = _clamp_lam(_lam(logsnr), self.snr_max)
        if self.c == 0:
            return torch.ones_like(lam)
        return 1.0 + self.c * torch.exp(_softplus(-lam))


# ----------------------------------------------------------------------------------------------
# combinators
# ----------------------------------------------------------------------------------------------
@WEIGHTINGS.register("product")
@dataclasses.dataclass(frozen=True)
class Product(Weighting):
    """w(λ) = a(λ)·b(λ) (e.g. min-SNR times a v-like term)."""

    a: Weighting
    b: Weighting

    def __post_init__(self):
        _check_weighting("a", self.a)
        _check_weighting("b", self.b)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        return self.a(lam) * self.b(lam)


@WEIGHTINGS.register("scaled")
@dataclasses.dataclass(frozen=True)
class Scaled(Weighting):
    """w(λ) = factor·weighting(λ)."""

    weighting: Weighting
    factor: float = 1.0

    def __post_init__(self):
        _check_weighting("weighting", self.weighting)
        check_positive("factor", self.factor, allow_zero=True)

    def __call__(self, logsnr):
        return self.factor * self.weighting(_lam(logsnr))


@WEIGHTINGS.register("in_units")
@dataclasses.dataclass(frozen=True)
class InUnits(Weighting):
    """A weight given on another parameterisation's own loss, in ε units: w_ε(λ) = w(λ)·f(λ) with
    f = ``parameterization.loss_factor(λ, process=process)`` (only v's factor depends on the process).

    ``in_units(weighting('sigmoid', bias=0.0), 'v')`` is kohya's debiased v weight 1/(SNR + 1) on the
    v loss. ``parameterization`` may be given by name; it is stored as a component."""

    weighting: Weighting
    parameterization: Parameterization
    process: str = "vp"

    def __post_init__(self):
        _check_weighting("weighting", self.weighting)
        if isinstance(self.parameterization, str):
            object.__setattr__(self, "parameterization", parameterization(self.parameterization))
        if not isinstance(self.parameterization, Parameterization):
            raise ValueError(
                f"parameterization must be a name or a Parameterization; got {self.parameterization!r}"
            )
        check_process(self.process)

    def __call__(self, logsnr):
        lam = _lam(logsnr)
        return self.weighting(lam) * self.parameterization.loss_factor(lam, process=self.process).to(
            lam.dtype
        )


def product(a: Weighting, b: Weighting) -> Weighting:
    """Shortcut for ``weighting("product", a=a, b=b)``."""
    return Product(a=a, b=b)


def scaled(w: Weighting, factor: float) -> Weighting:
    """Shortcut for ``weighting("scaled", weighting=w, factor=factor)``."""
    return Scaled(weighting=w, factor=factor)


def in_units(w: Weighting, parameterization: str | Parameterization, *, process: str = "vp") -> Weighting:
    """Shortcut for ``weighting("in_units", weighting=w, parameterization=..., process=...)``."""
    return InUnits(weighting=w, parameterization=parameterization, process=process)
