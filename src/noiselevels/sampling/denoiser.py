"""Turn a model trained with an ``Objective`` into a k-diffusion denoiser D(x, σ) → x̂₀.

A model trained by ``noiselevels.training.objective.Objective`` is called as
``model(param.model_input(z, alpha=α, sigma=σ), logsnr, **cond)`` on z = α·x₀ + σ·ε of its process
(vp / ve / flow) and predicts its parameterisation's target. The samplers in
``noiselevels.sampling.solvers`` work on the VE scale instead: x = z/α = x₀ + σ_ve·ε with σ_ve = σ/α.
Every process shares λ = log(α²/σ²) = −2·log σ_ve, so the adapter is exact for any process:

    λ = −2 log σ_ve,  (α, σ) = process(λ),  z = α·x,
    pred = model(param.model_input(z, alpha=α, sigma=σ), λ, **cond),
    D(x, σ_ve) = x̂₀ = param.to_x0_eps(pred, z=z, alpha=α, sigma=σ)[0].

σ_ve = 0 (a clean input) returns x unchanged without calling the model on those rows' values
(λ = +∞ may be outside what a network accepts; the model is called with a placeholder level there
and its output discarded).

σ_ve = inf (λ = −∞, zero terminal SNR; ``noiselevels.sampling.solvers``' convention): x·α is 0·∞, so a
row at σ = inf reads x as the pure noise z = ε of a process with α = 0 and σ = 1 there (vp and flow),
the model is called at λ = −inf and x̂₀ = ``param.to_x0_eps(pred, z=ε, alpha=0, sigma=1)``: −v for
v-prediction (Salimans & Ho 2022), ε − u for flow, the output itself for x₀ and EDM's F·σ_d. It is
refused with a ValueError for ε-prediction (x̂₀ = (z − σ·ε̂)/α has α = 0; Lin et al. 2024, §3.2) and
for the ve process (σ = inf has no finite input there).

Classifier-free guidance (Ho & Salimans 2022, eq. 6): with ``guidance`` w and ``uncond`` (the keyword
arguments of the unconditional call), D = D_u + w·(D_c − D_u). Because x̂₀ is affine in the prediction
for every parameterisation, this equals guiding ε̂, v̂ or the flow velocity with the same w.
w = 1 is the conditional model alone (no second call).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from noiselevels.levels import alpha_sigma, broadcast, check_process
from noiselevels.parameterizations import parameterization as make_param

__all__ = ["ModelDenoiser", "as_denoiser"]


class ModelDenoiser:
    """A model wrapped as D(x, σ_ve) → x̂₀ (see the module docstring). Build it with ``as_denoiser``."""

    def __init__(
        self,
        model: Callable[..., Tensor],
        *,
        process: str,
        parameterization: Any,
        guidance: float = 1.0,
        uncond: Mapping[str, Any] | None = None,
        cond: Mapping[str, Any] | None = None,
    ):
        self.model = model
        self.process = check_process(process)
        self.param = make_param(parameterization)
        is_number = isinstance(guidance, (int, float)) and not isinstance(guidance, bool)
        if not is_number or not math.isfinite(guidance):
            raise ValueError(f"guidance must be a finite number (1 = no guidance); got {guidance!r}")
        if guidance != 1.0 and uncond is None:
            raise ValueError(
                f"guidance = {guidance!r} needs uncond= (the keyword arguments of the unconditional call, "
                "e.g. {'label': null_label} or {} for a model that takes no condition)"
            )
        if uncond is not None and not isinstance(uncond, Mapping):
            raise ValueError(f"uncond must be a dict of keyword arguments; got {type(uncond).__name__}")
        self.guidance = float(guidance)
        self.uncond = dict(uncond) if uncond is not None else None
        self.cond = dict(cond or {})

    def _x0(self, x: Tensor, sigma: Tensor, kw: Mapping[str, Any]) -> Tensor:
        lam = -2.0 * torch.log(sigma.to(torch.float64))
        alpha, sig = alpha_sigma(logsnr=lam, process=self.process)
        a, s = broadcast(alpha, x), broadcast(sig, x)
        z = a * x
        pure = torch.isinf(sigma)
        if pure.any():  # x is the unit noise z = ε at σ = inf (the module docstring)
            z = torch.where(broadcast(pure, x).bool(), x.to(z.dtype), z)
        pred = self.model(self.param.model_input(z, alpha=a, sigma=s), lam.to(x.dtype), **kw)
        return self.param.to_x0_eps(pred, z=z, alpha=a, sigma=s)[0]

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """x̂₀ for x of shape (B, ...) on the VE scale and σ_ve of shape (B,) (or a number)."""
        sigma = torch.as_tensor(sigma, device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        if sigma.shape != (x.shape[0],):
            raise ValueError(f"sigma must have shape (B,) = ({x.shape[0]},); got {tuple(sigma.shape)}")
        if (sigma < 0).any() or torch.isnan(sigma).any():
            raise ValueError("sigma must be finite and >= 0, or inf (pure noise: zero terminal SNR)")
        if torch.isinf(sigma).any():
            self._check_pure_noise()
        zero = sigma == 0
        if zero.all():
            return x
        safe = torch.where(zero, torch.ones_like(sigma), sigma)
        out = self._x0(x, safe, self.cond)
        if self.guidance != 1.0:
            uncond = self._x0(x, safe, self.uncond)
            out = uncond + self.guidance * (out - uncond)
        if zero.any():
            out = torch.where(broadcast(zero, x).bool(), x, out)
        return out.to(x.dtype)

    def _check_pure_noise(self) -> None:
        """Refuse σ = inf where x̂₀ is undefined: ε-prediction (α = 0) or the ve process."""
        if self.param.name == "eps":
            raise ValueError(
                "an ε-prediction model cannot predict x₀ from pure noise (σ = inf, λ = −inf: "
                "x̂₀ = (z − σ·ε̂)/α with α = 0); start the grid at a finite σ or use a v-, x0- or "
                "flow-prediction model"
            )
        if self.process == "ve":
            raise ValueError("the ve process has no finite input at σ = inf; start the grid at a finite σ")


def as_denoiser(
    model: Callable[..., Tensor],
    *,
    process: str,
    parameterization: Any,
    guidance: float = 1.0,
    uncond: Mapping[str, Any] | None = None,
    **cond: Any,
) -> ModelDenoiser:
    """Wrap ``model(model_input, logsnr, **cond) -> target`` as a k-diffusion denoiser.

    Args:
        model: the network as the ``Objective`` calls it (input of shape (B, ...), λ of shape (B,)).
        process: ``vp``, ``ve`` or ``flow`` — the process it was trained on.
        parameterization: a name (``eps``, ``x0``, ``v``, ``flow``, ``edm``) or a ``Parameterization``.
        guidance: classifier-free guidance scale w (1 = none); needs ``uncond``.
        uncond: keyword arguments for the unconditional call (e.g. ``{"labels": None}``).
        **cond: keyword arguments passed to every conditional call (e.g. ``labels=y``).

    Returns:
        D(x, σ_ve) → x̂₀ with x on the VE scale, shape (B, ...), σ_ve of shape (B,).
    """
    return ModelDenoiser(
        model, process=process, parameterization=parameterization, guidance=guidance, uncond=uncond, cond=cond
    )
