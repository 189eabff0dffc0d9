"""CDCD time warping (Dieleman et al. 2022, "Continuous diffusion for categorical data", §3.3):
:class:`TimeWarp` samples λ where the loss changes, with density ∝ |dL/dλ| from a monotone
(pool-adjacent-violators) fit of the loss over λ.

The warp replaces the objective's density, so the effective weighting becomes q_warp(λ)·w(λ).
Conventions: λ = log(α²/σ²) (large = clean); float64 on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.training.adaptive._common import (
    F64,
    bin_means,
    check_bins,
    check_decay,
    check_floor,
    check_lam_range,
    lam_loss,
    require_keys,
)
from noiselevels.training.adaptive.piecewise import PiecewiseConstant

__all__ = ["TimeWarp"]


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted isotonic (nondecreasing) regression by pool-adjacent-violators."""
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y.tolist(), w.tolist()):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            v = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            s = sizes[-2] + sizes[-1]
            vals[-2:], wts[-2:], sizes[-2:] = [v], [wsum], [s]
    return np.repeat(np.array(vals), np.array(sizes))


class TimeWarp:
    """CDCD time warping (Dieleman et al. 2022, §3.3): sample λ where the loss changes.

    ``bins`` equal bins over [``logsnr_min``, ``logsnr_max``] keep an EMA (``decay``) of the observed
    ε-unit loss; a monotone fit F̃ of the loss over λ (weighted isotonic regression of the bin
    means at the bin centres, nondecreasing or nonincreasing — whichever fits better — linear in
    between) is the unnormalised cdf of the training density: bin k gets probability
    ∝ (1 − floor)·|F̃(e_{k+1}) − F̃(e_k)| / |F̃(e_K) − F̃(e_0)| + floor/K. So the density is
    ∝ |dL/dλ| (plus a floor): equal increments of loss per unit of sampled "time". Before any data it
    is uniform over the range.

    ``density()`` is that density (a :class:`PiecewiseConstant`, exact cdf/icdf). As a sampler
    (``sample`` → (λ, 1)) it replaces the objective's density, so the effective weighting becomes
    q_warp(λ)·w(λ). For sampling, ``spacing("from_density", density=warp.density())`` puts the
    solver's steps at the warp's quantiles (CDCD's "reuse F⁻¹ as the sampling schedule").
    """

    kind: ClassVar[str] = "timewarp"

    def __init__(
        self,
        bins: int = 100,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        decay: float = 0.9,
        floor: float = 0.05,
        *,
        stratified: bool = False,
    ):
        self.bins = check_bins(bins)
        self.logsnr_min, self.logsnr_max = check_lam_range(logsnr_min, logsnr_max)
        self.decay = check_decay(decay)
        self.floor = check_floor(floor)
        self.stratified = bool(stratified)
        self.edges = torch.linspace(self.logsnr_min, self.logsnr_max, self.bins + 1, dtype=F64)
        self.ema = torch.zeros(self.bins, dtype=F64)
        self.count = torch.zeros(self.bins, dtype=F64)
        self.updates = 0
        self._q: PiecewiseConstant | None = None

    @property
    def centers(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def fit(self) -> Tensor:
        """The monotone fit F̃ at the K + 1 bin edges (zeros before any data)."""
        seen = (self.count > 0).numpy()
        if seen.sum() == 0:
            return torch.zeros(self.bins + 1, dtype=F64)
        c = self.centers.numpy()[seen]
        y = self.ema.numpy()[seen]
        w = np.minimum(self.count.numpy()[seen], 1.0 / (1.0 - self.decay))  # EMA's effective sample size
        up = _pav(y, w)
        down = -_pav(-y, w)
        fit = up if np.sum(w * (up - y) ** 2) <= np.sum(w * (down - y) ** 2) else down
        return torch.tensor(np.interp(self.edges.numpy(), c, fit), dtype=F64)

    def bin_probs(self) -> Tensor:
        inc = self.fit().diff().abs()
        uniform = torch.full((self.bins,), 1.0 / self.bins, dtype=F64)
        if not inc.sum() > 0:
            return uniform
        return (1.0 - self.floor) * inc / inc.sum() + self.floor * uniform

    def density(self) -> PiecewiseConstant:
        """The warped training density over [logsnr_min, logsnr_max]."""
        if self._q is None:
            self._q = PiecewiseConstant(
                edges=tuple(self.edges.tolist()), masses=tuple(self.bin_probs().tolist())
            )
        return self._q

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        lam = self.density().sample(n, generator=generator, stratified=self.stratified)
        return lam, torch.ones_like(lam)

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        lam, val = lam_loss(logsnr, loss)
        binned = bin_means(lam, val, self.edges)
        if binned is None:
            return
        cnt, mean = binned
        hit = cnt > 0
        new = torch.where(self.count > 0, self.decay * self.ema + (1 - self.decay) * mean, mean)
        self.ema = torch.where(hit, new, self.ema)
        self.count = self.count + cnt
        self.updates += 1
        self._q = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema.clone(),
            "count": self.count.clone(),
            "updates": self.updates,
            "bins": self.bins,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("ema", "count"), "TimeWarp")
        ema = torch.as_tensor(state["ema"], dtype=F64)
        if ema.shape != (self.bins,):
            raise ValueError(f"TimeWarp state has {ema.numel()} bins; this warp has {self.bins}")
        self.ema = ema.clone()
        self.count = torch.as_tensor(state["count"], dtype=F64).clone()
        self.updates = int(state.get("updates", 0))
        self._q = None

    def profile_overlay(self) -> dict[str, Any]:
        q = self.density()
        return {
            "kind": self.kind,
            "label": "warped density q(λ)",
            "logsnr": self.centers.tolist(),
            "value": q.prob(self.centers).tolist(),
            "fit": self.fit().tolist(),
            "edges": self.edges.tolist(),
            "density": q.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "bins": self.bins,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
            "decay": self.decay,
            "floor": self.floor,
            "stratified": self.stratified,
        }
