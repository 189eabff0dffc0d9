"""Learned uncertainty weighting (Karras et al. 2024, EDM2, "Analyzing and improving the training
dynamics of diffusion models", §5 / eq. 21): :class:`UncertaintyWeighting` (the u(λ) module) and
:class:`UncertaintySampler` (its trainer-facing sampler).

The loss of a sample becomes w/e^u·‖ε̂ − ε‖² + u, so the effective weighting moves towards
W(λ)/E[loss | λ]. Conventions: λ = log(α²/σ²) (large = clean); EDM's c_noise = ln(σ_ve)/4 = −λ/8;
float64 on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from noiselevels.components import Density, Weighting, check_positive
from noiselevels.training.adaptive._common import (
    F64,
    Adam,
    as_weighting,
    check_density,
    lam_loss,
    require_keys,
)

__all__ = ["UncertaintySampler", "UncertaintyWeighting"]


_C_NOISE_CLIP = 40.0


class UncertaintyWeighting(nn.Module):
    """EDM2's learned per-level uncertainty u(λ) (Karras et al. 2024, §5, eq. 21).

    u(λ) = linear(φ(c_noise)), c_noise = ln(σ_ve)/4 = −λ/8 (EDM's noise conditioning; λ clamped to
    ±40 so λ = ±inf gives a finite u), with ``features`` fixed Fourier features
    φ_i(c) = √2·cos(2π(f_i·c + φ_i)), f_i ~ N(0, 1), φ_i ~ U(0, 1) drawn from ``seed``. The linear
    layer starts at zero (u ≡ 0). ``u = module(logsnr)`` maps (B,) → (B,).

    The loss of a sample with weighted ε-unit loss ℓ = w(λ)·‖ε̂ − ε‖²/D becomes ℓ/e^u + u
    (:meth:`loss`), minimised over u at u(λ) = log E[ℓ | λ]: the network then sees every level's loss
    normalised to about 1, i.e. the effective weighting moves towards W(λ)/E[ℓ | λ].
    """

    def __init__(self, features: int = 128, *, seed: int = 0):
        super().__init__()
        if not isinstance(features, int) or isinstance(features, bool) or features < 1:
            raise ValueError(f"features must be a positive integer; got {features!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        g = torch.Generator().manual_seed(seed)
        self.features, self.seed = features, seed
        self.register_buffer("freqs", torch.randn(features, generator=g, dtype=F64))
        self.register_buffer("phases", torch.rand(features, generator=g, dtype=F64))
        self.linear = nn.Linear(features, 1, dtype=F64)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def fourier(self, logsnr: Tensor) -> Tensor:
        """(B,) → (B, features) Fourier features of c_noise = −λ/8."""
        lam = torch.as_tensor(logsnr).to(self.freqs.device, F64)
        if torch.isnan(lam).any():
            raise ValueError("logsnr contains NaN")
        c = -lam.clamp(-_C_NOISE_CLIP, _C_NOISE_CLIP) / 8.0
        return math.sqrt(2.0) * torch.cos(2.0 * math.pi * (c[..., None] * self.freqs + self.phases))

    def forward(self, logsnr: Tensor) -> Tensor:
        """u(λ), shape of ``logsnr``, float64."""
        return self.linear(self.fourier(logsnr)).squeeze(-1)

    def loss(self, loss: Tensor, logsnr: Tensor) -> Tensor:
        """ℓ/e^u(λ) + u(λ) per sample (B,): ``loss`` is the weighted ε-unit loss ℓ (B,)."""
        u = self(logsnr).to(loss.device)
        return loss * torch.exp(-u).to(loss.dtype) + u.to(loss.dtype)


class UncertaintySampler:
    """The trainer-facing form of :class:`UncertaintyWeighting`.

    Levels come from the target ``density`` p unchanged; the importance weight is e^(−u(λ))
    (detached), so the objective's loss is w(λ)/e^u·‖ε̂ − ε‖² and the network's gradient is EDM2's.
    ``update(λ, ε-loss)`` takes one Adam step (``lr``) of u on mean(ℓ/e^u + u) with ℓ = w·loss —
    the u-gradient of EDM2's loss, which needs only the loss values. u is one step behind the network
    (it is updated after the network's step with the same batch).
    """

    kind: ClassVar[str] = "uncertainty"

    def __init__(
        self,
        density: Density,
        weighting: Weighting | str | None = None,
        *,
        features: int = 128,
        lr: float = 1e-2,
        seed: int = 0,
        stratified: bool = False,
        module: UncertaintyWeighting | None = None,
    ):
        self.target = check_density(density, "UncertaintySampler")
        self.weighting = as_weighting(weighting)
        self.stratified = bool(stratified)
        self.module = module if module is not None else UncertaintyWeighting(features, seed=seed)
        if not isinstance(self.module, UncertaintyWeighting):
            raise ValueError(f"module must be an UncertaintyWeighting; got {self.module!r}")
        self._opt = Adam(list(self.module.parameters()), lr=check_positive("lr", lr))
        self.updates = 0

    @property
    def lr(self) -> float:
        """u's learning rate (settable, e.g. for a decay schedule)."""
        return self._opt.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._opt.lr = check_positive("lr", value)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        lam = self.target.sample(n, generator=generator, stratified=self.stratified)
        with torch.no_grad():
            iw = torch.exp(-self.module(lam)).to(F64)
        return lam, iw

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        lam, val = lam_loss(logsnr, loss)
        ell = self.weighting(lam).to(F64) * val
        ok = torch.isfinite(ell)
        if not ok.any():
            return
        with torch.enable_grad():
            obj = self.module.loss(ell[ok], lam[ok]).mean()
            obj.backward()
        self._opt.step()
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"module.{k}": v.detach().clone() for k, v in self.module.state_dict().items()}
        out.update(self._opt.state_dict("adam."))
        out["updates"] = self.updates
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = [f"module.{k}" for k in self.module.state_dict()]
        require_keys(state, keys, "UncertaintySampler")
        self.module.load_state_dict({k[len("module.") :]: torch.as_tensor(state[k]) for k in keys})
        self._opt.load_state_dict(state, "adam.")
        self.updates = int(state.get("updates", 0))

    def profile_overlay(self, lo: float = -15.0, hi: float = 15.0) -> dict[str, Any]:
        lam = torch.linspace(lo, hi, 121, dtype=F64)
        with torch.no_grad():
            u = self.module(lam)
        return {
            "kind": self.kind,
            "label": "exp u(λ) (learned E[loss])",
            "logsnr": lam.tolist(),
            "value": u.exp().tolist(),
            "u": u.tolist(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "density": self.target.to_dict(),
            "weighting": self.weighting.to_dict(),
            "features": self.module.features,
            "seed": self.module.seed,
            "lr": self.lr,
            "stratified": self.stratified,
        }
