"""Training densities stated over λ itself: uniform time under a schedule (p(λ) = |dt/dλ|), normal over λ
(``normal_logsnr``, SD3's ``logit_normal``, EDM's ``lognormal_sigma``), ``uniform_logsnr``, and Hang &
Gu's ``laplace`` and ``cauchy``.

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

from noiselevels.components import DENSITIES, Schedule, check_finite, check_positive
from noiselevels.training.densities.base import _LOG_SQRT_2PI, ExactDensity, _require

__all__ = [
    "CauchyDensity",
    "LaplaceDensity",
    "LogitNormal",
    "LognormalSigma",
    "NormalLogsnr",
    "UniformLogsnr",
    "UniformTDensity",
]


# ----------------------------------------------------------------------------------------------
# uniform time under a schedule
# ----------------------------------------------------------------------------------------------
@DENSITIES.register("uniform_t")
@dataclasses.dataclass(frozen=True)
class UniformTDensity(ExactDensity):
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
class _NormalOverLogsnr(ExactDensity, abc.ABC):
    """λ ~ N(loc, scale²); subclasses define ``loc`` and ``scale``."""

    @property
    @abc.abstractmethod
    def loc(self) -> float:
        """The mean of λ."""

    @property
    @abc.abstractmethod
    def scale(self) -> float:
        """The standard deviation of λ."""

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
class LaplaceDensity(ExactDensity):
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
class CauchyDensity(ExactDensity):
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

