"""OneTrainer's integer timestep sampler (``ModelSetupNoiseMixin._get_timestep_discrete``) as an exact
density, and its flow loss weight ``SIGMA``.

Source: Nerogar/OneTrainer @ 23df3832e8f2, ``modules/modelSetup/mixin/ModelSetupNoiseMixin.py`` lines 122–253
(sampler), ``ModelSetupFlowMatchingMixin.py`` lines 14–36 (σ_i = (i + 1)/T), ``ModelSetupDiffusionMixin.py``
lines 15–37 (DDPM: ᾱ[i] of the model's β table), ``ModelSetupDiffusionLossMixin.py`` lines 255–260 (SIGMA).

The tool draws an integer timestep i ∈ [min_timestep, max_timestep), min/max =
int(T·min/max_noising_strength):

* UNIFORM, LOGIT_NORMAL, HEAVY_TAIL, BETA draw u ∈ [0, 1] (U(0, 1); sigmoid(N(b, w + 1)); SD3's mode map with
  scale w; Beta(max(1e-4, w), max(1e-4, b))), x = min + u·(max − min), then shift x' = T·s·x/((s − 1)x + T)
  and truncate to an integer: P(i = k) = F_u(u(k + 1)) − F_u(u(k)) exactly.
* COS_MAP, SIGMOID, INVERTED_PARABOLA draw j ∈ [0, n) with torch.multinomial over n = max − min weights
  q(L_j)·s/(s + ℓ_j − sℓ_j)², ℓ_j = j/(n − 1), L_j = ℓ_j/(s − sℓ_j + ℓ_j) (the inverse shift); i = min + j.
  SIGMOID applies the inverse shift twice (line 238: its argument is L_j shifted once more), which this
  reproduces. The tool computes these weights in float32; here in float64 (relative difference ~1e-7).

Each integer i is read as the cell t ∈ (i/T, (i + 1)/T] of the schedule's continuous view, with its mass
spread uniformly in t: the cdf at the table's own level λ(t = (i + 1)/T) is exactly P(timestep > i), so the
discrete distribution's cdf is met at every atom (the within-cell spread is the only representation choice).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, WEIGHTINGS, Schedule, Weighting, check_positive
from noiselevels.training.densities import density
from noiselevels.training.densities.base import ExactDensity, _lam_of_t

__all__ = ["TIMESTEP_DISTRIBUTIONS", "OneTrainerSigma", "OneTrainerTimesteps"]

_F64 = torch.float64
TIMESTEP_DISTRIBUTIONS = (
    "UNIFORM",
    "LOGIT_NORMAL",
    "HEAVY_TAIL",
    "BETA",
    "COS_MAP",
    "SIGMOID",
    "INVERTED_PARABOLA",
)
_CONTINUOUS = TIMESTEP_DISTRIBUTIONS[:4]


def _flow_time_cdf(name: str, **kw) -> callable:
    """P(t ≤ x) of a flow-time density, from its cdf over λ."""
    d = density(name, **kw)

    def cdf(x: Tensor) -> Tensor:
        lam = torch.tensor([_lam_of_t(float(v)) for v in x], dtype=_F64)
        return 1.0 - d.cdf(lam)

    return cdf


def _u_cdf(dist: str, w: float, b: float):
    """F_u of the tool's u ∈ [0, 1] for the continuous distributions (lines 153–211)."""
    if dist == "UNIFORM":
        return lambda x: x.clamp(0.0, 1.0)
    if dist == "LOGIT_NORMAL":
        check_positive("noising_weight + 1 (LOGIT_NORMAL's std)", w + 1.0)
        return lambda x: torch.special.ndtr((torch.logit(x) - b) / (w + 1.0))
    if dist == "HEAVY_TAIL":
        return _flow_time_cdf("mode", scale=float(w))
    return _flow_time_cdf("beta", a=max(1e-4, float(w)), b=max(1e-4, float(b)))  # BETA, line 177–178


def _discrete_weights(dist: str, w: float, b: float, s: float, n: int) -> Tensor:
    """The multinomial weights of lines 221–249 (float64)."""
    lin = torch.linspace(0.0, 1.0, n, dtype=_F64)
    inv = lin / (s - s * lin + lin)
    deriv = s / (s + lin - lin * s) ** 2
    if dist == "COS_MAP":
        q = 2.0 / (math.pi - 2.0 * math.pi * inv + 2.0 * math.pi * inv**2)
    elif dist == "SIGMOID":
        twice = inv / (s - s * inv + inv)  # the inverse shift applied a second time (line 238)
        q = torch.sigmoid(w * (twice - (b + 0.5)))
    else:
        q = torch.clamp(-w * (inv - (b + 0.5)) ** 2 + 2.0, min=0.0)
    return q * deriv


@DENSITIES.register("onetrainer_timesteps")
@dataclasses.dataclass(frozen=True)
class OneTrainerTimesteps(ExactDensity):
    """OneTrainer's integer timesteps i ∈ [0, T) into ``schedule`` (flow: σ = (i + 1)/T; DDPM: the β table's
    ᾱ[i]), drawn as ``_get_timestep_discrete`` draws them; parameters named as OneTrainer's config keys
    (``timestep_shift`` is the shift actually used: the config's, or the dynamic one)."""

    schedule: Schedule | None = None
    timestep_distribution: str = "UNIFORM"
    noising_weight: float = 0.0
    noising_bias: float = 0.0
    timestep_shift: float = 1.0
    min_noising_strength: float = 0.0
    max_noising_strength: float = 1.0
    num_train_timesteps: int = 1000

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule; got {self.schedule!r}")
        if self.timestep_distribution not in TIMESTEP_DISTRIBUTIONS:
            raise ValueError(
                f"unknown timestep_distribution {self.timestep_distribution!r}; "
                f"valid: {', '.join(TIMESTEP_DISTRIBUTIONS)}"
            )
        check_positive("timestep_shift", self.timestep_shift)
        lo, hi, T = self.min_noising_strength, self.max_noising_strength, self.num_train_timesteps
        if not (isinstance(T, int) and T >= 2 and 0.0 <= lo < hi <= 1.0 and int(T * hi) > int(T * lo)):
            raise ValueError(
                "need 0 <= min_noising_strength < max_noising_strength <= 1 selecting at least one of "
                f"{T} timesteps; got min_noising_strength={lo!r}, max_noising_strength={hi!r}"
            )
        self.probs  # noqa: B018 — refuse parameters whose weights are all zero now, not at first use

    @functools.cached_property
    def probs(self) -> Tensor:
        """P(timestep = i), i = 0 … T − 1 (float64)."""
        T = self.num_train_timesteps
        lo, hi = int(T * self.min_noising_strength), int(T * self.max_noising_strength)
        n, s = hi - lo, float(self.timestep_shift)
        w, b, dist = float(self.noising_weight), float(self.noising_bias), self.timestep_distribution
        p = torch.zeros(T, dtype=_F64)
        if dist in _CONTINUOUS:
            k = torch.arange(T + 1, dtype=_F64)
            x = k * T / (s * T - (s - 1.0) * k)  # the x whose shifted value is the integer k
            F = _u_cdf(dist, w, b)(((x - lo) / n).clamp(0.0, 1.0))
            p = (F[1:] - F[:-1]).clamp(min=0.0)
        else:
            q = _discrete_weights(dist, w, b, s, n)
            if not (q.sum() > 0) or not torch.isfinite(q).all():
                raise ValueError(
                    f"timestep_distribution {dist} with noising_weight={w!r}, noising_bias={b!r} gives no "
                    "positive weight (torch.multinomial refuses it)"
                )
            p[lo:hi] = q
        return p / p.sum()

    @functools.cached_property
    def _cum(self) -> Tensor:
        return torch.cat([torch.zeros(1, dtype=_F64), torch.cumsum(self.probs, 0)]).clamp(max=1.0)

    @property
    def support(self) -> tuple[float, float]:
        nz = torch.nonzero(self.probs > 0).flatten()
        T = self.num_train_timesteps
        t_lo, t_hi = int(nz[0]) / T, (int(nz[-1]) + 1) / T
        lam = self.schedule.logsnr(torch.tensor([t_lo, t_hi], dtype=_F64))
        return float(lam[1]), float(lam[0])

    def _cell(self, t: Tensor) -> tuple[Tensor, Tensor]:
        T = self.num_train_timesteps
        x = t * T
        k = torch.ceil(x).to(torch.long).clamp(1, T) - 1  # t ∈ (k/T, (k + 1)/T]
        return k, x - k.to(_F64)

    def _log_prob(self, lam: Tensor) -> Tensor:
        t = self.schedule.t_of(lam)
        k, _ = self._cell(t)
        jac = self.schedule.dlogsnr_dt(t).to(_F64).abs()
        return torch.log(self.probs[k] * self.num_train_timesteps) - torch.log(jac)

    def _cdf(self, lam: Tensor) -> Tensor:
        t = self.schedule.t_of(lam)
        k, f = self._cell(t)
        return 1.0 - (self._cum[k] + self.probs[k] * f)

    def _icdf(self, u: Tensor) -> Tensor:
        v = 1.0 - u  # P(t ≤ ·)
        cum, T = self._cum, self.num_train_timesteps
        k = torch.searchsorted(cum[1:].contiguous(), v.contiguous()).clamp(0, T - 1)
        f = ((v - cum[k]) / self.probs[k]).nan_to_num(1.0).clamp(0.0, 1.0)
        return self.schedule.logsnr((k.to(_F64) + f) / T)


@WEIGHTINGS.register("onetrainer_sigma")
@dataclasses.dataclass(frozen=True)
class OneTrainerSigma(Weighting):
    """OneTrainer's flow loss weight ``SIGMA`` (``ModelSetupDiffusionLossMixin.py`` lines 255–260, 338–339):
    the flow loss times σ_i = (i + 1)/T, the timestep's own σ = t = sigmoid(−λ/2). In ε units
    w = t·(1 + e^(−λ/2))² = t/(1 − t)² = e^(−λ/2)/sigmoid(λ/2) (0 at λ = +∞, +∞ at λ = −∞)."""

    def __call__(self, logsnr):
        lam = torch.as_tensor(logsnr)
        lam64 = lam.to(_F64)
        out = torch.nn.functional.logsigmoid(-0.5 * lam64) - 2.0 * torch.nn.functional.logsigmoid(0.5 * lam64)
        return out.exp().to(lam.dtype if lam.is_floating_point() else _F64)
