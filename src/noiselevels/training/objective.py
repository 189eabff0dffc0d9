"""The diffusion training loss, composed from a process, a parameterisation, p(λ) and w(λ).

For a batch x₀ of shape (B, …) the objective (Kingma & Gao 2023, eq. 4; EDM's ``loss.py`` in spirit):

1. draws λ ~ p(λ), shape (B,) (one cdf stratum per sample with ``stratified=True``), or takes
   (λ, importance weight) from a ``sampler`` (see below);
2. draws ε ~ N(0, I) like x₀ and, with ``noise_offset`` = c > 0, adds c·n with n ~ N(0, 1) of shape
   (B, C, 1, …, 1) (the "noise offset" of diffusers' example scripts; the offset noise is part of ε
   and of the target);
3. forms z = α·x₀ + σ·ε for the process, calls ``model(parameterization.model_input(z), λ, **cond)``,
   which returns a prediction of the parameterisation's target;
4. returns the per-sample loss w(λ)·‖ε̂ − ε‖² in ε-MSE units, computed as
   (w(λ)/f(λ))·mean((pred − target)²) with f = ``parameterization.loss_factor`` (the identities
   ‖pred − target‖² = f(λ)·‖ε̂ − ε‖² are exact, see ``noiselevels.parameterizations``).

Random draws use ``generator`` in a fixed order: λ (``density.sample``), then ε, then the offset
noise, so a run is reproducible from the generator's seed.

**Samplers** (adaptive importance sampling, noiselevels.training.adaptive): any object with
``sample(n, *, generator=None) -> (logsnr, importance_weight)`` (both (B,)). The per-sample loss
becomes importance_weight·w(λ)·‖ε̂ − ε‖²; an unbiased sampler returns importance_weight = p(λ)/q(λ)
so that the effective weighting W(λ) = p(λ)·w(λ) is unchanged and only the variance changes. The
objective keeps ``density`` as the target p for analysis; it may be None when a sampler is given.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import Tensor

from noiselevels.components import Component, Density, Weighting, _registry_of, check_positive
from noiselevels.levels import alpha_sigma, broadcast, check_process
from noiselevels.parameterizations import Parameterization, parameterization
from noiselevels.training.densities import density as _density
from noiselevels.training.weightings import weighting as _weighting

__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput"]

OBJECTIVES = _registry_of("objective")


@dataclasses.dataclass(frozen=True)
class ObjectiveOutput:
    """Per-sample results of one objective evaluation; every field has shape (B,).

    ``loss``: the weighted loss (differentiable; x₀'s dtype); ``logsnr``: the levels used (float64);
    ``eps_mse``: the unweighted ε-unit MSE (mean over non-batch dims; differentiable);
    ``weight``: the ε-unit weight applied (w(λ) times the sampler's importance weight; float64).
    """

    loss: Tensor
    logsnr: Tensor
    eps_mse: Tensor
    weight: Tensor


@OBJECTIVES.register("objective")
@dataclasses.dataclass(frozen=True)
class Objective(Component):
    """The loss ``objective(model, x0, generator=None, **cond) -> ObjectiveOutput``.

    Fields: ``process`` (vp, ve, flow), ``parameterization`` (name or component), ``density`` p(λ)
    (a ``Density`` or a registered name without parameters), ``weighting`` w(λ) in ε units (name or
    component; default constant 1), ``noise_offset`` c ≥ 0, ``stratified`` draws, and an optional
    ``sampler`` that replaces the draws from ``density`` (see the module docstring).
    """

    kind: ClassVar[str] = "objective"

    process: str = "vp"
    parameterization: Parameterization | str = "eps"
    density: Density | str | None = None
    weighting: Weighting | str = "constant"
    noise_offset: float = 0.0
    stratified: bool = False
    sampler: Any = None

    def __post_init__(self):
        check_process(self.process)
        object.__setattr__(self, "parameterization", parameterization(self.parameterization))
        object.__setattr__(self, "weighting", _weighting(self.weighting))
        if isinstance(self.density, str):
            object.__setattr__(self, "density", _density(self.density))
        if self.density is not None and not isinstance(self.density, Density):
            raise ValueError(f"density must be a Density or a density name; got {self.density!r}")
        if self.density is None and self.sampler is None:
            raise ValueError("an Objective needs a density p(λ) to draw levels from (or a sampler)")
        if self.sampler is not None and not callable(getattr(self.sampler, "sample", None)):
            raise ValueError(
                f"sampler must have a sample(n, generator=) -> (logsnr, importance_weight) method; "
                f"got {self.sampler!r}"
            )
        object.__setattr__(
            self, "noise_offset", check_positive("noise_offset", self.noise_offset, allow_zero=True)
        )
        if not isinstance(self.stratified, bool):
            raise ValueError(f"stratified must be True or False; got {self.stratified!r}")

    # ------------------------------------------------------------------------------------------
    def draw(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n levels and their importance weights (float64, CPU unless the sampler says otherwise)."""
        if self.sampler is not None:
            lam, iw = self.sampler.sample(n, generator=generator)
            lam, iw = torch.as_tensor(lam, dtype=torch.float64), torch.as_tensor(iw, dtype=torch.float64)
            if lam.shape != (n,) or iw.shape != (n,):
                raise ValueError(
                    f"sampler.sample({n}) must return two tensors of shape ({n},); "
                    f"got {tuple(lam.shape)} and {tuple(iw.shape)}"
                )
            return lam, iw
        lam = self.density.sample(n, generator=generator, stratified=self.stratified)
        return lam, torch.ones_like(lam)

    def __call__(
        self,
        model,
        x0: Tensor,
        generator: torch.Generator | None = None,
        *,
        logsnr: Tensor | None = None,
        noise: Tensor | None = None,
        **cond,
    ) -> ObjectiveOutput:
        """Evaluate the loss on the batch ``x0`` (B, C, …).

        ``logsnr`` (B,) fixes the levels instead of drawing them (importance weight 1); ``noise``
        (shape of x0) fixes ε (the noise offset is still added when ``noise_offset`` > 0).
        ``cond`` is passed to the model unchanged.
        """
        if x0.ndim < 2:
            raise ValueError(f"x0 must have shape (B, C, ...) with at least 2 dims; got {tuple(x0.shape)}")
        b, dev = x0.shape[0], x0.device
        gdev = generator.device if generator is not None else dev
        if logsnr is None:
            lam, iw = self.draw(b, generator=generator)
        else:
            lam = torch.as_tensor(logsnr, dtype=torch.float64)
            iw = torch.ones_like(lam)
        lam, iw = lam.to(dev), iw.to(dev)
        if lam.shape != (b,):
            raise ValueError(f"logsnr must have shape ({b},) to match x0 of shape {tuple(x0.shape)}")
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype).to(dev)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise must have the shape of x0 {tuple(x0.shape)}; got {tuple(noise.shape)}")
        if self.noise_offset > 0:
            shape = (*x0.shape[:2], *([1] * (x0.ndim - 2)))
            offset = torch.randn(shape, generator=generator, device=gdev, dtype=x0.dtype).to(dev)
            noise = noise + self.noise_offset * offset

        p = self.parameterization
        a, s = (broadcast(c, x0) for c in alpha_sigma(logsnr=lam, process=self.process))
        z = a * x0 + s * noise
        pred = model(p.model_input(z, alpha=a, sigma=s), lam.to(x0.dtype), **cond)
        target = p.target(x0=x0, eps=noise, alpha=a, sigma=s)
        if pred.shape != target.shape:
            raise ValueError(f"model output has shape {tuple(pred.shape)}; expected {tuple(target.shape)}")
        own_mse = (pred - target).pow(2).flatten(1).mean(1)
        factor = p.loss_factor(lam, process=self.process)
        weight = self.weighting(lam) * iw
        return ObjectiveOutput(
            loss=(weight / factor).to(own_mse.dtype) * own_mse,
            logsnr=lam,
            eps_mse=own_mse / factor.to(own_mse.dtype),
            weight=weight,
        )

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """As ``Component.to_dict``; a sampler is written with its own ``to_dict()`` when it has one,
        otherwise as ``{"type": "module.Class"}`` (recorded, but not rebuilt by ``from_dict``)."""
        out = {k: v for k, v in super().to_dict().items() if k != "sampler"}
        if self.sampler is None:
            out["sampler"] = None
        elif callable(getattr(self.sampler, "to_dict", None)):
            out["sampler"] = self.sampler.to_dict()
        else:
            cls = type(self.sampler)
            out["sampler"] = {"type": f"{cls.__module__}.{cls.__qualname__}"}
        return out
