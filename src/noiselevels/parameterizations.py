"""Model output parameterisations: ε, x₀, v, flow velocity and EDM-preconditioned F.

A network trained on z = α·x₀ + σ·ε predicts one *target*; every target used in practice is a
linear combination ``a·x₀ + b·ε`` whose coefficients depend only on (α, σ):

==========  ===============================  ====================  ==============================
name        target                           (a, b)                 ``loss_factor(λ)`` f(λ)
==========  ===============================  ====================  ==============================
``eps``     ε                                (0, 1)                1
``x0``      x₀                               (1, 0)                e^(−λ)
``v``       v = α·ε − σ·x₀ (Salimans & Ho)   (−σ, α)               1 + e^(−λ)  (vp; see below)
``flow``    u = ε − x₀ (rectified flow)      (−1, 1)               (1 + e^(−λ/2))²
``edm``     F = (x₀ − c_skip·z/α)/c_out      (σ/(σ_d r), −ασ_d/r)  1 + e^(−λ)/σ_d² = e^(−λ)/c_out²
==========  ===============================  ====================  ==============================

with r = √(σ² + α²σ_d²). Because z and the target are two independent linear combinations of
(x₀, ε), any prediction converts back exactly: solving [[α, σ], [a, b]]·(x₀, ε) = (z, pred) gives
x̂₀ = (b·z − σ·pred)/det and ε̂ = (α·pred − a·z)/det with det = α·b − σ·a (``to_x0_eps``).

**Loss units** (Kingma & Gao 2023, "Understanding diffusion objectives", §2–3 and appendix D).
For a fixed z, an error in ε̂ moves x̂₀ by x̂₀ − x₀ = −(σ/α)(ε̂ − ε) = −e^(−λ/2)(ε̂ − ε), so each target's
squared error is a fixed multiple f(λ) of the ε-MSE: ‖pred − target‖² = f(λ)·‖ε̂ − ε‖². The factors for
x₀, flow and EDM depend only on λ. v's factor is ((α² + σ²)/α)², which is 1 + e^(−λ) only for the
variance-preserving process (α² + σ² = 1); ``loss_factor(logsnr, process=...)`` takes the process for
that reason (default ``"vp"``, where v-prediction is used in practice). The flow target u = ε − x₀ is
the velocity dz/dt only for the ``flow`` process, but it is a well defined target for any process
and ``to_x0_eps`` is exact for any (α, σ).

**EDM** (Karras et al. 2022, "Elucidating the design space", Table 1 and eq. 7): with σ = σ_ve =
σ/α = e^(−λ/2), D(x; σ) = c_skip·x + c_out·F(c_in·x; c_noise) on the VE-scaled x = z/α, where
c_skip = σ_d²/(σ² + σ_d²), c_out = σσ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²), c_noise = ¼·ln σ.
The network is fed ``model_input`` = c_in·z/α = z/√(σ_proc² + α²σ_d²) and predicts F.

**λ = ±∞.** The factors are exact at the ends: at λ = +∞ (clean) every factor except x₀'s is finite
(x₀: 0, others 1); at λ = −∞ (pure noise) x₀, v, flow and EDM factors are +∞ and ε's is 1. The
conversion back is exact where the target still determines the missing quantity: ε-prediction
cannot give x̂₀ at α = 0 and x₀-prediction cannot give ε̂ at σ = 0 (those entries come out non-finite,
by IEEE arithmetic, on purpose: there is no right answer to fall back to); v, flow and EDM are exact
at both ends of the vp and flow processes.

Shapes: ``alpha`` and ``sigma`` passed to ``target``, ``to_x0_eps`` and ``model_input`` are already
broadcast against the data (see ``noiselevels.levels.broadcast``); ``logsnr`` passed to
``loss_factor`` and ``edm_preconditioning`` has shape (B,) (any shape works elementwise).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from noiselevels.components import Component, _registry_of, check_positive
from noiselevels.levels import check_process, to_tensor

__all__ = [
    "PARAMETERIZATIONS",
    "EDMPreconditioning",
    "Parameterization",
    "edm_preconditioning",
    "parameterization",
]

PARAMETERIZATIONS = _registry_of("parameterization")


def parameterization(name: str, **kw) -> Parameterization:
    """Build a registered parameterisation: ``eps``, ``x0``, ``v``, ``flow`` or ``edm(sigma_data=0.5)``.

    Passing an existing ``Parameterization`` returns it unchanged (so APIs can accept either).
    Unknown names and unknown parameters raise ``ValueError`` listing the valid ones.
    """
    if isinstance(name, Parameterization):
        if kw:
            raise ValueError(f"parameters {sorted(kw)} given together with a built parameterization {name!r}")
        return name
    return PARAMETERIZATIONS.create(name, **kw)


@dataclasses.dataclass(frozen=True)
class Parameterization(Component, abc.ABC):
    """Base: the target is ``a·x₀ + b·ε`` with coefficients from ``coefficients(alpha=, sigma=)``."""

    kind: ClassVar[str] = "parameterization"

    @abc.abstractmethod
    def coefficients(self, *, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(a, b) with target = a·x₀ + b·ε; shapes follow (alpha, sigma)."""

    def target(self, *, x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """The regression target for clean data ``x0`` and noise ``eps`` (shape of x0)."""
        a, b = self.coefficients(alpha=alpha, sigma=sigma)
        return a * x0 + b * eps

    def to_x0_eps(self, pred: Tensor, *, z: Tensor, alpha: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(x̂₀, ε̂) from a prediction of the target and the noisy input z = α·x₀ + σ·ε (exact solve)."""
        a, b = self.coefficients(alpha=alpha, sigma=sigma)
        det = alpha * b - sigma * a
        return (b * z - sigma * pred) / det, (alpha * pred - a * z) / det

    def model_input(self, z: Tensor, *, alpha: Tensor, sigma: Tensor) -> Tensor:
        """What the network is fed: z itself (EDM scales it, see ``EDM.model_input``)."""
        return z

    @abc.abstractmethod
    def loss_factor(self, logsnr: Tensor, *, process: str = "vp") -> Tensor:
        """f(λ) with ‖pred − target‖² = f(λ)·‖ε̂ − ε‖² (shape and dtype of ``logsnr``)."""


@PARAMETERIZATIONS.register("eps")
@dataclasses.dataclass(frozen=True)
class Eps(Parameterization):
    """ε-prediction (Ho et al. 2020): target ε, factor 1. x̂₀ = (z − σε̂)/α is undefined at α = 0."""

    def coefficients(self, *, alpha, sigma):
        return torch.zeros_like(alpha), torch.ones_like(alpha)

    def to_x0_eps(self, pred, *, z, alpha, sigma):
        return (z - sigma * pred) / alpha, pred

    def loss_factor(self, logsnr, *, process="vp"):
        check_process(process)
        return torch.ones_like(to_tensor(logsnr))


@PARAMETERIZATIONS.register("x0")
@dataclasses.dataclass(frozen=True)
class X0(Parameterization):
    """x₀-prediction: target x₀, factor e^(−λ) = σ²/α². ε̂ = (z − αx̂₀)/σ is undefined at σ = 0."""

    def coefficients(self, *, alpha, sigma):
        return torch.ones_like(alpha), torch.zeros_like(alpha)

    def to_x0_eps(self, pred, *, z, alpha, sigma):
        return pred, (z - alpha * pred) / sigma

    def loss_factor(self, logsnr, *, process="vp"):
        check_process(process)
        return torch.exp(-to_tensor(logsnr))


@PARAMETERIZATIONS.register("v")
@dataclasses.dataclass(frozen=True)
class V(Parameterization):
    """v-prediction (Salimans & Ho 2022, eq. in §4): v = α·ε − σ·x₀.

    Factor ((α² + σ²)/α)²: 1 + e^(−λ) for vp, (1 + e^(−λ))² for ve, and (1 + e^(−λ))²·sigmoid(λ/2)² for
    flow. x̂₀ = (α·z − σ·v̂)/(α² + σ²), ε̂ = (σ·z + α·v̂)/(α² + σ²).
    """

    def coefficients(self, *, alpha, sigma):
        return -sigma, alpha

    def to_x0_eps(self, pred, *, z, alpha, sigma):
        n = alpha * alpha + sigma * sigma
        return (alpha * z - sigma * pred) / n, (sigma * z + alpha * pred) / n

    def loss_factor(self, logsnr, *, process="vp"):
        check_process(process)
        lam = to_tensor(logsnr)
        if process == "vp":
            return 1.0 + torch.exp(-lam)
        if process == "ve":
            return (1.0 + torch.exp(-lam)) ** 2
        # flow: α = sigmoid(λ/2), ((α² + σ²)/α)² = ((1 + e^(−λ))·α)² = ((1 + h²)/(1 + h))², h = e^(−λ/2)
        h = torch.exp(-0.5 * lam)
        # (1 + h²)/(1 + h): finite at λ = +inf (1) and +inf at λ = −inf
        return torch.where(torch.isinf(h), h, (1.0 + h * h) / (1.0 + h)) ** 2


@PARAMETERIZATIONS.register("flow")
@dataclasses.dataclass(frozen=True)
class Flow(Parameterization):
    """Rectified-flow velocity u = ε − x₀ (Liu et al. 2022; Lipman et al. 2022; SD3 eq. 4).

    u = dz/dt for the flow process (α = 1 − t, σ = t); for any process x̂₀ = (z − σ·û)/(α + σ),
    ε̂ = (z + α·û)/(α + σ). Factor (1 + σ/α)² = (1 + e^(−λ/2))² for every process.
    """

    def coefficients(self, *, alpha, sigma):
        return -torch.ones_like(alpha), torch.ones_like(alpha)

    def to_x0_eps(self, pred, *, z, alpha, sigma):
        n = alpha + sigma
        return (z - sigma * pred) / n, (z + alpha * pred) / n

    def loss_factor(self, logsnr, *, process="vp"):
        check_process(process)
        return (1.0 + torch.exp(-0.5 * to_tensor(logsnr))) ** 2


class EDMPreconditioning(NamedTuple):
    """EDM's four scalings at a noise level; each has the shape of ``logsnr``."""

    c_skip: Tensor
    c_out: Tensor
    c_in: Tensor
    c_noise: Tensor


def edm_preconditioning(*, logsnr: Tensor, sigma_data: float = 0.5) -> EDMPreconditioning:
    """EDM preconditioning (Karras et al. 2022, Table 1) with σ = σ_ve = e^(−λ/2).

    c_skip = σ_d²/(σ² + σ_d²) = sigmoid(λ + 2·ln σ_d), c_out = σσ_d/√(σ² + σ_d²) = σ_d·√(1 − c_skip),
    c_in = 1/√(σ² + σ_d²) = √c_skip/σ_d, c_noise = ¼·ln σ = −λ/8. Written through sigmoid so that
    λ = +∞ gives (1, 0, 1/σ_d, −∞) and λ = −∞ gives (0, σ_d, 0, +∞) without NaN.
    """
    sigma_data = check_positive("sigma_data", sigma_data)
    lam = to_tensor(logsnr)
    shifted = lam + 2.0 * math.log(sigma_data)
    c_skip = torch.sigmoid(shifted)
    c_out = sigma_data * torch.sigmoid(-shifted).sqrt()
    c_in = c_skip.sqrt() / sigma_data
    return EDMPreconditioning(c_skip, c_out, c_in, -lam / 8.0)


@PARAMETERIZATIONS.register("edm")
@dataclasses.dataclass(frozen=True)
class EDM(Parameterization):
    """EDM-preconditioned network F (Karras et al. 2022, eq. 7–8): target F = (x₀ − c_skip·z/α)/c_out.

    In (α, σ) of any process, with r = √(σ² + α²σ_d²):
    F = (σ·x₀/σ_d − α·σ_d·ε)/r, model input c_in·z/α = z/r, x̂₀ = α·σ_d²·z/r² + σ·σ_d·F̂/r.
    Factor e^(−λ)/c_out² = 1 + e^(−λ)/σ_d². With σ_d = 1 and vp, F = −v.
    """

    sigma_data: float = 0.5

    def __post_init__(self):
        check_positive("sigma_data", self.sigma_data)

    def _r(self, alpha, sigma):
        return torch.sqrt(sigma * sigma + (alpha * self.sigma_data) ** 2)

    def coefficients(self, *, alpha, sigma):
        r = self._r(alpha, sigma)
        return sigma / (self.sigma_data * r), -alpha * self.sigma_data / r

    def to_x0_eps(self, pred, *, z, alpha, sigma):
        sd = self.sigma_data
        r = self._r(alpha, sigma)
        u = z / r  # = c_in · z/α
        return alpha * sd * sd * u / r + sigma * sd * pred / r, sigma * u / r - alpha * sd * pred / r

    def model_input(self, z, *, alpha, sigma):
        return z / self._r(alpha, sigma)

    def loss_factor(self, logsnr, *, process="vp"):
        check_process(process)
        return 1.0 + torch.exp(-to_tensor(logsnr)) / self.sigma_data**2
