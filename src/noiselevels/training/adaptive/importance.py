"""Importance sampling of λ from a loss EMA (Kingma & Gao 2023, "Understanding diffusion objectives",
App. F): :class:`LossImportanceSampler`.

The proposal q ∝ W·EMA(loss) per λ bin, and each sample is weighted by p/q, so the objective's
per-sample ε-unit weight is W(λ)/q(λ) and the effective weighting W(λ) = p(λ)·w(λ) is unchanged
(unbiased). Conventions: λ = log(α²/σ²) (large = clean); float64 on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from noiselevels.components import Density, Weighting
from noiselevels.levels import to_tensor
from noiselevels.training.adaptive._common import (
    F64,
    as_weighting,
    bin_index,
    bin_masses,
    bin_means,
    check_bins,
    check_decay,
    check_density,
    check_floor,
    check_lam_range,
    lam_loss,
    log_effective_weight,
    require_keys,
)
from noiselevels.training.adaptive.piecewise import PiecewiseConstant

__all__ = ["LossImportanceSampler"]


class LossImportanceSampler:
    """Draw λ from a proposal q ∝ W·EMA(loss) and weight each sample by W/q (Kingma & Gao, App. F).

    The target is the effective weighting W(λ) = p(λ)·w(λ) of ``density`` p and ``weighting`` w (the
    objective's own). ``bins`` equal bins over [``logsnr_min``, ``logsnr_max``] each keep an EMA
    (``decay``) of the observed ε-unit loss L (``statistic="mean"``, the paper's choice) or of L²
    (``"rms"``, whose square root is the variance-optimal proposal for a noisy loss). The proposal
    puts on bin k the probability

        P_k = M · [(1 − floor)·W_k·E_k / Σ_j W_j·E_j + floor·W_k / Σ_j W_j],   W_k = ∫_bin_k W dλ,

    spread uniformly over the bin (E_k: the bin's EMA, or the largest EMA while the bin is unseen;
    M: the mass p puts inside the range). Outside the range q = p, so the importance weight is 1 there
    and nothing is lost: the estimator is unbiased for ∫ W(λ)·L(λ) dλ over all λ. The ``floor`` keeps
    q ≥ floor·M·W_k/(ΣW·width) where W > 0 (bounded weights).

    ``sample(n, generator=)`` returns (λ, p(λ)/q(λ)); the :class:`Objective` multiplies by w(λ),
    giving the per-sample ε-unit weight W(λ)/q(λ). ``density()`` is the current q (exact
    log_prob/cdf/icdf, a :class:`PiecewiseConstant`). With ``stratified`` the n draws are
    stratified in q's cdf.
    """

    kind: ClassVar[str] = "importance"

    def __init__(
        self,
        density: Density,
        weighting: Weighting | str | None = None,
        bins: int = 100,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        decay: float = 0.9,
        floor: float = 0.05,
        *,
        statistic: str = "mean",
        stratified: bool = False,
    ):
        self.target = check_density(density, "LossImportanceSampler")
        self.weighting = as_weighting(weighting)
        self.bins = check_bins(bins)
        self.logsnr_min, self.logsnr_max = check_lam_range(logsnr_min, logsnr_max)
        self.decay = check_decay(decay)
        self.floor = check_floor(floor)
        if statistic not in ("mean", "rms"):
            raise ValueError(f"statistic must be 'mean' or 'rms'; got {statistic!r}")
        self.statistic = statistic
        if not isinstance(stratified, bool):
            raise ValueError(f"stratified must be True or False; got {stratified!r}")
        self.stratified = stratified
        self.edges = torch.linspace(self.logsnr_min, self.logsnr_max, self.bins + 1, dtype=F64)
        self.w_mass = bin_masses(
            lambda x: log_effective_weight(self.target, self.weighting, x).exp(), self.edges
        )
        if not self.w_mass.sum() > 0:
            raise ValueError(
                f"the target {self.target.describe()} × {self.weighting.describe()} has no weight in "
                f"λ ∈ [{self.logsnr_min}, {self.logsnr_max}]"
            )
        self.ema = torch.zeros(self.bins, dtype=F64)
        self.seen = torch.zeros(self.bins, dtype=torch.bool)
        self.updates = 0
        self._q: PiecewiseConstant | None = None

    # -- the proposal --------------------------------------------------------------------------
    def bin_statistic(self) -> Tensor:
        """(K,) the per-bin loss statistic E_k the proposal uses (unseen bins: the largest seen)."""
        if not self.seen.any():
            return torch.ones(self.bins, dtype=F64)
        e = self.ema.sqrt() if self.statistic == "rms" else self.ema
        return torch.where(self.seen, e, e[self.seen].max())

    def bin_probs(self) -> Tensor:
        """(K,) P_k / M: the proposal's relative bin probabilities (sum 1)."""
        wk = self.w_mass
        adapt = wk * self.bin_statistic()
        adapt = adapt / adapt.sum() if adapt.sum() > 0 else wk / wk.sum()
        return (1.0 - self.floor) * adapt + self.floor * wk / wk.sum()

    def density(self) -> PiecewiseConstant:
        """The current proposal q(λ) (target p outside the λ range)."""
        if self._q is None:
            self._q = PiecewiseConstant(
                edges=tuple(self.edges.tolist()), masses=tuple(self.bin_probs().tolist()), tails=self.target
            )
        return self._q

    # -- the AdaptiveSampler protocol ----------------------------------------------------------
    def importance_weight(self, logsnr: Tensor) -> Tensor:
        """p(λ)/q(λ) (1 outside the λ range, where q = p)."""
        lam = to_tensor(logsnr).to(F64)
        q = self.density()
        _, inside = bin_index(lam, self.edges)
        logp = self.target.log_prob(lam).to(F64)
        logq = q.log_prob(lam).to(F64)
        iw = torch.where(torch.isneginf(logp), 0.0, (logp - logq).exp())
        return torch.where(inside, iw, 1.0)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n levels λ ~ q and their importance weights p(λ)/q(λ), both (n,) float64."""
        lam = self.density().sample(n, generator=generator, stratified=self.stratified)
        return lam, self.importance_weight(lam)

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        """Fold a batch of (λ, ε-unit loss) into the per-bin EMAs (levels outside the range are ignored)."""
        lam, val = lam_loss(logsnr, loss)
        if self.statistic == "rms":
            val = val * val
        binned = bin_means(lam, val, self.edges)
        if binned is None:
            return
        cnt, mean = binned
        hit = cnt > 0
        new = torch.where(self.seen, self.decay * self.ema + (1 - self.decay) * mean, mean)
        self.ema = torch.where(hit, new, self.ema)
        self.seen = self.seen | hit
        self.updates += 1
        self._q = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema.clone(),
            "seen": self.seen.to(torch.uint8),
            "updates": self.updates,
            "bins": self.bins,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        require_keys(state, ("ema", "seen"), "LossImportanceSampler")
        ema = torch.as_tensor(state["ema"], dtype=F64)
        if ema.shape != (self.bins,):
            raise ValueError(
                f"LossImportanceSampler state has {ema.numel()} bins; this sampler has {self.bins}"
            )
        self.ema = ema.clone()
        self.seen = torch.as_tensor(state["seen"]).to(torch.bool).clone()
        self.updates = int(state.get("updates", 0))
        self._q = None

    def profile_overlay(self) -> dict[str, Any]:
        q = self.density()
        c = 0.5 * (self.edges[1:] + self.edges[:-1])
        return {
            "kind": self.kind,
            "label": "proposal q(λ)",
            "logsnr": c.tolist(),
            "value": q.prob(c).tolist(),
            "target": (self.target.prob(c) * self.weighting(c)).tolist(),
            "density": q.to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "density": self.target.to_dict(),
            "weighting": self.weighting.to_dict(),
            "bins": self.bins,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
            "decay": self.decay,
            "floor": self.floor,
            "statistic": self.statistic,
            "stratified": self.stratified,
        }
