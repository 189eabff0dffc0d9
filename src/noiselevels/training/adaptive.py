"""Adaptive noise levels: the training levels (or their weights) adapt to the loss during training.

Four mechanisms, each usable on its own and through the trainer's ``[adaptive]`` section
(:func:`from_config`). All of them plug into :class:`~noiselevels.training.objective.Objective` as a
*sampler*: an object with ``sample(n, *, generator=None) -> (logsnr, importance_weight)`` (both (n,),
float64), ``update(logsnr, loss)`` (fed, after every step, the levels and the unweighted ε-unit loss
‖ε̂ − ε‖²/D of the batch), ``state_dict()`` / ``load_state_dict()`` (checkpointed by the trainer) and
``profile_overlay()`` (the curve the trainer draws over its loss profile). The objective multiplies
its weighting w(λ) by the importance weight, so a sampler whose proposal is q(λ) and which returns
p(λ)/q(λ) keeps the effective weighting W(λ) = p(λ)·w(λ) exactly: per sample W(λ)/q(λ)·‖ε̂ − ε‖².

==========================  ==================================================  ======================
mechanism                   what adapts                                         effective weighting
==========================  ==================================================  ======================
:class:`LossImportanceSampler`  proposal q ∝ W·EMA(loss) per λ bin, weight W/q   unchanged (unbiased)
:class:`UncertaintySampler`     per-level weight e^(−u(λ)), u learned           changes: → W/E[loss]
    (+ :class:`UncertaintyWeighting`, the u(λ) module)
:class:`TimeWarp`               density ∝ |dL/dλ| (monotone fit of the loss)    changes: q_warp·w
:class:`LearnedScheduleSampler` λ(t) of a monotone net, t ~ U, weight W·|λ'|     unchanged (unbiased)
    (+ :class:`LearnedSchedule`, the λ(t) network)
==========================  ==================================================  ======================

Sources: Kingma & Gao 2023, "Understanding diffusion objectives", App. F (importance sampling of
λ from a loss EMA); Karras et al. 2024 (EDM2), "Analyzing and improving the training dynamics",
§5 / eq. 21 (learned uncertainty u(σ), loss w/e^u·‖D − y‖² + u); Dieleman et al. 2022 (CDCD),
"Continuous diffusion for categorical data", §3.3 (time warping); Kingma et al. 2021 (VDM),
"Variational diffusion models", App. I.2 / eq. 22 (learned γ(t) with positive weights, interior
trained to minimise the variance of the loss estimator).

Conventions: λ = log(α²/σ²) (large = clean); t ∈ [0, 1], t = 0 clean. The losses fed to
``update`` are ε-unit MSEs per sample (``ObjectiveOutput.eps_mse``). Everything here is float64 on
the CPU (a few hundred numbers), whatever device the model is on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from noiselevels.components import (
    DENSITIES,
    SCHEDULES,
    Density,
    Schedule,
    Weighting,
    check_finite,
    check_positive,
    check_range,
)
from noiselevels.levels import to_tensor

__all__ = [
    "LearnedSchedule",
    "LearnedScheduleSampler",
    "LossImportanceSampler",
    "PiecewiseConstant",
    "TimeWarp",
    "UncertaintySampler",
    "UncertaintyWeighting",
    "from_config",
    "load_adaptive",
]

_F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def _check_bins(bins: Any) -> int:
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2; got {bins!r}")
    return bins


def _check_lam_range(lo: Any, hi: Any) -> tuple[float, float]:
    lo = check_finite("logsnr_min", lo)
    hi = check_finite("logsnr_max", hi)
    if not lo < hi:
        raise ValueError(f"the λ range is empty: need logsnr_min < logsnr_max; got [{lo!r}, {hi!r}]")
    return lo, hi


def _check_decay(decay: Any) -> float:
    return check_range("decay", decay, 0.0, 1.0, closed=False)


def _check_floor(floor: Any) -> float:
    floor = check_finite("floor", floor)
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"floor must be in (0, 1]; got {floor!r}")
    return floor


def _check_density(value: Any, owner: str) -> Density:
    if not isinstance(value, Density):
        raise ValueError(f"{owner} needs a target density p(λ) (a Density); got {value!r}")
    return value


def _as_weighting(value: Any) -> Weighting:
    from noiselevels.training.weightings import weighting

    if value is None:
        value = "constant"
    if isinstance(value, str):
        return weighting(value)
    if not isinstance(value, Weighting):
        raise ValueError(f"weighting must be a Weighting or a weighting name; got {value!r}")
    return value


def _lam_loss(logsnr: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
    lam = torch.as_tensor(logsnr).detach().to("cpu", _F64).flatten()
    val = torch.as_tensor(loss).detach().to("cpu", _F64).flatten()
    if lam.shape != val.shape:
        raise ValueError(
            f"logsnr and loss must have the same shape; got {tuple(lam.shape)} and {tuple(val.shape)}"
        )
    if torch.isnan(lam).any():
        raise ValueError("logsnr contains NaN")
    if not torch.isfinite(val).all():
        raise ValueError("loss contains non-finite values")
    return lam, val


def _bin_index(lam: Tensor, edges: Tensor) -> tuple[Tensor, Tensor]:
    """Bin of each λ among the bins defined by ``edges`` and a mask of those inside [edges[0], edges[-1]]."""
    inside = (lam >= edges[0]) & (lam <= edges[-1])
    idx = torch.bucketize(lam, edges[1:-1], right=True).clamp(0, edges.numel() - 2)
    return idx, inside


def _gauss_legendre(order: int = 8) -> tuple[Tensor, Tensor]:
    x, w = np.polynomial.legendre.leggauss(order)
    return torch.tensor(x, dtype=_F64), torch.tensor(w, dtype=_F64)


def _log_effective_weight(density: Density, weighting: Weighting, lam: Tensor) -> Tensor:
    """log W(λ) = log p(λ) + log w(λ), with W = 0 where p = 0 (even where w = ∞)."""
    logp = density.log_prob(lam).to(_F64)
    w = weighting(lam).to(_F64)
    if torch.isnan(w).any() or (w < 0).any():
        raise ValueError(f"weighting {weighting.describe()} gives NaN or negative values inside the λ range")
    logw = torch.log(w)
    out = torch.where(torch.isneginf(logp), -math.inf, logp + logw)
    if torch.isposinf(out).any() or torch.isnan(out).any():
        raise ValueError(
            f"the effective weighting p·w of {density.describe()} and {weighting.describe()} is infinite "
            "inside the λ range; narrow logsnr_min/logsnr_max"
        )
    return out


def _bin_masses(fn, edges: Tensor, order: int = 8) -> Tensor:
    """∫ fn(λ) dλ over each bin by Gauss–Legendre quadrature of ``order`` points (float64)."""
    x, w = _gauss_legendre(order)
    lo, hi = edges[:-1, None], edges[1:, None]
    pts = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    vals = fn(pts.flatten()).reshape(pts.shape)
    return 0.5 * (hi - lo)[:, 0] * (vals * w).sum(1)


class _Adam:
    """A minimal Adam (Kingma & Ba 2015) over a list of tensors with a flat, checkpointable state."""

    def __init__(
        self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            mh = m / (1 - b1**self.t)
            vh = v / (1 - b2**self.t)
            p.sub_(self.lr * mh / (vh.sqrt() + self.eps))
            p.grad = None

    def state_dict(self, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {f"{prefix}t": self.t}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"{prefix}m.{i}"] = m.detach().clone()
            out[f"{prefix}v.{i}"] = v.detach().clone()
        return out

    def load_state_dict(self, state: Mapping[str, Any], prefix: str) -> None:
        self.t = int(state[f"{prefix}t"])
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m.copy_(torch.as_tensor(state[f"{prefix}m.{i}"]))
            v.copy_(torch.as_tensor(state[f"{prefix}v.{i}"]))


def _require_keys(state: Mapping[str, Any], keys, owner: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{owner} state is missing {', '.join(missing)} (a checkpoint of another kind?)")


# ----------------------------------------------------------------------------------------------
# the piecewise-constant density (proposals and warps)
# ----------------------------------------------------------------------------------------------
@DENSITIES.register("piecewise_constant")
@dataclasses.dataclass(frozen=True)
class PiecewiseConstant(Density):
    """A density constant on each of K bins ``edges[k] ≤ λ < edges[k+1]``, with exact cdf and icdf.

    ``masses`` (K,) are the relative bin probabilities (normalised here; ≥ 0, positive sum). Without
    ``tails`` the support is [edges[0], edges[K]]: p(λ) = m_k/(Σm·width_k), cdf piecewise linear.
    With a density ``tails`` the levels outside the bins follow ``tails`` exactly: below edges[0]
    p = tails, above edges[K] p = tails, and the bins share the mass M = tails.cdf(edges[K]) −
    tails.cdf(edges[0]) that ``tails`` puts inside (used by :class:`LossImportanceSampler`, whose
    proposal equals the target outside its λ range so that its importance weight is 1 there).
    """

    edges: tuple = ()
    masses: tuple = ()
    tails: Density | None = None
    _e: Any = dataclasses.field(init=False, repr=False, compare=False, default=None)
    _cum: Any = dataclasses.field(init=False, repr=False, compare=False, default=None)
    _p: Any = dataclasses.field(init=False, repr=False, compare=False, default=None)
    _lo_mass: float = dataclasses.field(init=False, repr=False, compare=False, default=0.0)
    _in_mass: float = dataclasses.field(init=False, repr=False, compare=False, default=1.0)

    def __post_init__(self) -> None:
        edges = tuple(check_finite("edges", float(e)) for e in self.edges)
        masses = tuple(check_positive("masses", float(m), allow_zero=True) for m in self.masses)
        if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(
                f"edges must be at least 2 strictly increasing finite values; got {self.edges!r}"
            )
        if len(masses) != len(edges) - 1:
            raise ValueError(f"masses must have len(edges) − 1 = {len(edges) - 1} entries; got {len(masses)}")
        total = math.fsum(masses)
        if not total > 0:
            raise ValueError("masses must have a positive sum")
        if self.tails is not None and not isinstance(self.tails, Density):
            raise ValueError(f"tails must be a Density or None; got {self.tails!r}")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "masses", masses)
        e = torch.tensor(edges, dtype=_F64)
        p = torch.tensor(masses, dtype=_F64) / total
        lo_mass, in_mass = 0.0, 1.0
        if self.tails is not None:
            ends = self.tails.cdf(e[[0, -1]]).to(_F64)
            lo_mass, in_mass = float(ends[0]), float(ends[1] - ends[0])
            if not in_mass > 0:
                raise ValueError(
                    f"tails {self.tails.describe()} puts no mass inside [{edges[0]}, {edges[-1]}]"
                )
        cum = torch.cat([torch.zeros(1, dtype=_F64), torch.cumsum(p, 0)])
        cum = cum / cum[-1]
        object.__setattr__(self, "_e", e)
        object.__setattr__(self, "_p", p)
        object.__setattr__(self, "_cum", cum)
        object.__setattr__(self, "_lo_mass", lo_mass)
        object.__setattr__(self, "_in_mass", in_mass)

    @property
    def support(self) -> tuple[float, float]:
        if self.tails is not None:
            lo, hi = self.tails.support
            return (min(lo, self.edges[0]), max(hi, self.edges[-1]))
        return (self.edges[0], self.edges[-1])

    @property
    def bin_probs(self) -> Tensor:
        """(K,) probability of each bin (summing to the mass inside the bins)."""
        return self._p * self._in_mass

    def bin_log_density(self) -> Tensor:
        """(K,) log q on each bin (per unit λ)."""
        widths = self._e[1:] - self._e[:-1]
        return torch.log(self._p * self._in_mass) - torch.log(widths)

    def log_prob(self, logsnr: Tensor) -> Tensor:
        """log p(λ); −inf where p = 0 (outside the bins without tails, at λ = ±inf)."""
        lam0 = to_tensor(logsnr)
        if torch.isnan(lam0).any():
            raise ValueError("logsnr contains NaN")
        lam = lam0.to(_F64)
        idx, inside = _bin_index(lam, self._e)
        out = torch.where(inside, self.bin_log_density()[idx], -math.inf)
        if self.tails is not None:
            out = torch.where(inside, out, self.tails.log_prob(lam).to(_F64))
        return out.to(lam0.dtype)

    def cdf(self, logsnr: Tensor) -> Tensor:
        """P(Λ ≤ λ): piecewise linear over the bins (the tails' cdf outside them)."""
        lam0 = to_tensor(logsnr)
        if torch.isnan(lam0).any():
            raise ValueError("logsnr contains NaN")
        lam = lam0.to(_F64)
        e = self._e
        idx, inside = _bin_index(lam, e)
        frac = ((lam.clamp(e[0], e[-1]) - e[idx]) / (e[idx + 1] - e[idx])).clamp(0.0, 1.0)
        inner = self._cum[idx] + frac * self._p[idx]
        out = self._lo_mass + self._in_mass * inner.clamp(0.0, 1.0)
        if self.tails is None:
            out = torch.where(lam < e[0], 0.0, torch.where(lam > e[-1], 1.0, out))
        else:
            out = torch.where(inside, out, self.tails.cdf(lam).to(_F64))
        return out.clamp(0.0, 1.0).to(lam0.dtype)

    def icdf(self, u: Tensor) -> Tensor:
        """cdf⁻¹(u) for u ∈ [0, 1]: linear inside a bin (bins of zero mass are never returned)."""
        u0 = to_tensor(u)
        bad = torch.isnan(u0) | (u0 < 0) | (u0 > 1)
        if bad.any():
            raise ValueError(f"u must be a probability in [0, 1]; got {u0[bad].flatten()[0].item()!r}")
        uu = u0.to(_F64)
        v = ((uu - self._lo_mass) / self._in_mass).clamp(0.0, 1.0)
        k = self._p.numel()
        # the bin k with cum[k] < v <= cum[k+1] among bins of positive mass
        idx = torch.searchsorted(self._cum[1:].contiguous(), v.contiguous(), right=False).clamp(0, k - 1)
        pos = self._p > 0
        first, last = int(torch.nonzero(pos)[0]), int(torch.nonzero(pos)[-1])
        idx = idx.clamp(first, last)
        # skip empty bins (v on a flat stretch of the cdf) to the next bin with mass
        nxt = torch.arange(k)
        nxt = torch.where(pos, nxt, k)
        nxt = torch.flip(torch.cummin(torch.flip(nxt, [0]), 0).values, [0]).clamp(max=last)
        idx = nxt[idx]
        e = self._e
        frac = ((v - self._cum[idx]) / self._p[idx]).clamp(0.0, 1.0)
        out = e[idx] + frac * (e[idx + 1] - e[idx])
        if self.tails is not None:
            lo_t = uu < self._lo_mass
            hi_t = uu > self._lo_mass + self._in_mass
            if lo_t.any() or hi_t.any():
                tail = self.tails.icdf(uu.clamp(0.0, 1.0)).to(_F64)
                out = torch.where(lo_t | hi_t, tail, out)
        return out.to(u0.dtype)


# ----------------------------------------------------------------------------------------------
# 1. importance sampling from a loss EMA (Kingma & Gao 2023, App. F)
# ----------------------------------------------------------------------------------------------
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
        self.target = _check_density(density, "LossImportanceSampler")
        self.weighting = _as_weighting(weighting)
        self.bins = _check_bins(bins)
        self.logsnr_min, self.logsnr_max = _check_lam_range(logsnr_min, logsnr_max)
        self.decay = _check_decay(decay)
        self.floor = _check_floor(floor)
        if statistic not in ("mean", "rms"):
            raise ValueError(f"statistic must be 'mean' or 'rms'; got {statistic!r}")
        self.statistic = statistic
        if not isinstance(stratified, bool):
            raise ValueError(f"stratified must be True or False; got {stratified!r}")
        self.stratified = stratified
        self.edges = torch.linspace(self.logsnr_min, self.logsnr_max, self.bins + 1, dtype=_F64)
        self.w_mass = _bin_masses(
            lambda x: _log_effective_weight(self.target, self.weighting, x).exp(), self.edges
        )
        if not self.w_mass.sum() > 0:
            raise ValueError(
                f"the target {self.target.describe()} × {self.weighting.describe()} has no weight in "
                f"λ ∈ [{self.logsnr_min}, {self.logsnr_max}]"
            )
        self.ema = torch.zeros(self.bins, dtype=_F64)
        self.seen = torch.zeros(self.bins, dtype=torch.bool)
        self.updates = 0
        self._q: PiecewiseConstant | None = None

    # -- the proposal --------------------------------------------------------------------------
    def bin_statistic(self) -> Tensor:
        """(K,) the per-bin loss statistic E_k the proposal uses (unseen bins: the largest seen)."""
        if not self.seen.any():
            return torch.ones(self.bins, dtype=_F64)
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

    # -- the sampler protocol ------------------------------------------------------------------
    def importance_weight(self, logsnr: Tensor) -> Tensor:
        """p(λ)/q(λ) (1 outside the λ range, where q = p)."""
        lam = to_tensor(logsnr).to(_F64)
        q = self.density()
        _, inside = _bin_index(lam, self.edges)
        logp = self.target.log_prob(lam).to(_F64)
        logq = q.log_prob(lam).to(_F64)
        iw = torch.where(torch.isneginf(logp), 0.0, (logp - logq).exp())
        return torch.where(inside, iw, 1.0)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n levels λ ~ q and their importance weights p(λ)/q(λ), both (n,) float64."""
        lam = self.density().sample(n, generator=generator, stratified=self.stratified)
        return lam, self.importance_weight(lam)

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        """Fold a batch of (λ, ε-unit loss) into the per-bin EMAs (levels outside the range are ignored)."""
        lam, val = _lam_loss(logsnr, loss)
        if self.statistic == "rms":
            val = val * val
        idx, inside = _bin_index(lam, self.edges)
        idx, val = idx[inside], val[inside]
        if idx.numel() == 0:
            return
        cnt = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, torch.ones_like(val))
        tot = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, val)
        hit = cnt > 0
        mean = tot / cnt.clamp_min(1)
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
        _require_keys(state, ("ema", "seen"), "LossImportanceSampler")
        ema = torch.as_tensor(state["ema"], dtype=_F64)
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


# ----------------------------------------------------------------------------------------------
# 2. learned uncertainty weighting (EDM2)
# ----------------------------------------------------------------------------------------------
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
        self.register_buffer("freqs", torch.randn(features, generator=g, dtype=_F64))
        self.register_buffer("phases", torch.rand(features, generator=g, dtype=_F64))
        self.linear = nn.Linear(features, 1, dtype=_F64)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def fourier(self, logsnr: Tensor) -> Tensor:
        """(B,) → (B, features) Fourier features of c_noise = −λ/8."""
        lam = torch.as_tensor(logsnr).to(self.freqs.device, _F64)
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
        self.target = _check_density(density, "UncertaintySampler")
        self.weighting = _as_weighting(weighting)
        self.stratified = bool(stratified)
        self.module = module if module is not None else UncertaintyWeighting(features, seed=seed)
        if not isinstance(self.module, UncertaintyWeighting):
            raise ValueError(f"module must be an UncertaintyWeighting; got {self.module!r}")
        self._opt = _Adam(list(self.module.parameters()), lr=check_positive("lr", lr))
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
            iw = torch.exp(-self.module(lam)).to(_F64)
        return lam, iw

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        lam, val = _lam_loss(logsnr, loss)
        ell = self.weighting(lam).to(_F64) * val
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
        _require_keys(state, keys, "UncertaintySampler")
        self.module.load_state_dict({k[len("module.") :]: torch.as_tensor(state[k]) for k in keys})
        self._opt.load_state_dict(state, "adam.")
        self.updates = int(state.get("updates", 0))

    def profile_overlay(self, lo: float = -15.0, hi: float = 15.0) -> dict[str, Any]:
        lam = torch.linspace(lo, hi, 121, dtype=_F64)
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


# ----------------------------------------------------------------------------------------------
# 3. time warping (CDCD)
# ----------------------------------------------------------------------------------------------
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
        self.bins = _check_bins(bins)
        self.logsnr_min, self.logsnr_max = _check_lam_range(logsnr_min, logsnr_max)
        self.decay = _check_decay(decay)
        self.floor = _check_floor(floor)
        self.stratified = bool(stratified)
        self.edges = torch.linspace(self.logsnr_min, self.logsnr_max, self.bins + 1, dtype=_F64)
        self.ema = torch.zeros(self.bins, dtype=_F64)
        self.count = torch.zeros(self.bins, dtype=_F64)
        self.updates = 0
        self._q: PiecewiseConstant | None = None

    @property
    def centers(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def fit(self) -> Tensor:
        """The monotone fit F̃ at the K + 1 bin edges (zeros before any data)."""
        seen = (self.count > 0).numpy()
        if seen.sum() == 0:
            return torch.zeros(self.bins + 1, dtype=_F64)
        c = self.centers.numpy()[seen]
        y = self.ema.numpy()[seen]
        w = np.minimum(self.count.numpy()[seen], 1.0 / (1.0 - self.decay))  # EMA's effective sample size
        up = _pav(y, w)
        down = -_pav(-y, w)
        fit = up if np.sum(w * (up - y) ** 2) <= np.sum(w * (down - y) ** 2) else down
        return torch.tensor(np.interp(self.edges.numpy(), c, fit), dtype=_F64)

    def bin_probs(self) -> Tensor:
        inc = self.fit().diff().abs()
        uniform = torch.full((self.bins,), 1.0 / self.bins, dtype=_F64)
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
        lam, val = _lam_loss(logsnr, loss)
        idx, inside = _bin_index(lam, self.edges)
        idx, val = idx[inside], val[inside]
        if idx.numel() == 0:
            return
        cnt = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, torch.ones_like(val))
        tot = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, val)
        hit = cnt > 0
        mean = tot / cnt.clamp_min(1)
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
        _require_keys(state, ("ema", "count"), "TimeWarp")
        ema = torch.as_tensor(state["ema"], dtype=_F64)
        if ema.shape != (self.bins,):
            raise ValueError(f"TimeWarp state has {ema.numel()} bins; this warp has {self.bins}")
        self.ema = ema.clone()
        self.count = torch.as_tensor(state["count"], dtype=_F64).clone()
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


# ----------------------------------------------------------------------------------------------
# 4. learned schedule (VDM)
# ----------------------------------------------------------------------------------------------
def _monotone_net(
    t: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor
) -> tuple[Tensor, Tensor]:
    """VDM's monotone γ̃(t) = l1(t) + l3(sigmoid(l2(l1(t)))) with positive weights w1, w2, w3 (biases
    free) and its derivative dγ̃/dt, both of t's shape."""
    h = w1 * t + b1
    a = h[..., None] * w2 + b2
    s = torch.sigmoid(a)
    g = h + (s * w3).sum(-1)
    dg = w1 * (1.0 + (s * (1.0 - s) * w2 * w3).sum(-1))
    return g, dg


def _normalised(t: Tensor, lam_min, lam_max, params) -> tuple[Tensor, Tensor]:
    """λ(t) = λ_max − (λ_max − λ_min)·(γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)) and dλ/dt."""
    g, dg = _monotone_net(t, *params)
    ends = torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device)
    g01, _ = _monotone_net(ends, *params)
    span = g01[1] - g01[0]
    ghat = (g - g01[0]) / span
    lam = lam_max - (lam_max - lam_min) * ghat
    dlam = -(lam_max - lam_min) * dg / span
    return lam, dlam


class LearnedSchedule(nn.Module):
    """VDM's learned noise schedule (Kingma et al. 2021, App. I.2): a monotone network λ(t).

    γ̃(t) = l1(t) + l3(sigmoid(l2(l1(t)))) with l1: 1→1, l2: 1→``hidden``, l3: ``hidden``→1 and
    positive weights (softplus of free parameters), so γ̃ is strictly increasing; normalised to
    λ(0) = ``logsnr_max``, λ(1) = ``logsnr_min``:  λ(t) = λ_max − (λ_max − λ_min)·(γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)).
    The endpoints are fixed, or parameters (``learn_endpoints=True``; trained by whatever loss the
    caller backpropagates, e.g. VDM's bound — :class:`LearnedScheduleSampler` trains only the interior).

    ``logsnr(t)``, ``dlogsnr_dt(t)`` are differentiable in the parameters; ``t_of(λ)`` inverts by
    bisection/Newton. ``schedule()`` freezes the current network into a registered
    :class:`~noiselevels.components.Schedule` (``"learned"``), usable anywhere a schedule is, e.g.
    ``density("uniform_t", schedule=net.schedule())``.
    """

    def __init__(
        self,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        *,
        hidden: int = 64,
        learn_endpoints: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        lo, hi = _check_lam_range(logsnr_min, logsnr_max)
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer; got {hidden!r}")
        g = torch.Generator().manual_seed(int(seed))
        self.hidden = hidden
        end = torch.tensor([lo, hi], dtype=_F64)
        if learn_endpoints:
            self.endpoints = nn.Parameter(end)
        else:
            self.register_buffer("endpoints", end)
        # start near linear in t (the hidden branch small): λ(t) ≈ λ_max − (λ_max − λ_min)·t
        self.w1_raw = nn.Parameter(torch.tensor([math.log(math.expm1(1.0))], dtype=_F64))
        self.b1 = nn.Parameter(torch.zeros(1, dtype=_F64))
        self.w2_raw = nn.Parameter(torch.randn(hidden, generator=g, dtype=_F64) + 1.0)
        self.b2 = nn.Parameter(torch.randn(hidden, generator=g, dtype=_F64) * 2.0)
        self.w3_raw = nn.Parameter(torch.randn(hidden, generator=g, dtype=_F64) - 4.0)

    def params(self) -> tuple[Tensor, ...]:
        sp = nn.functional.softplus
        return (sp(self.w1_raw), self.b1, sp(self.w2_raw), self.b2, sp(self.w3_raw))

    @property
    def logsnr_min(self) -> float:
        return float(self.endpoints[0])

    @property
    def logsnr_max(self) -> float:
        return float(self.endpoints[1])

    def _check_t(self, t) -> Tensor:
        t = torch.as_tensor(t, dtype=_F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        return t

    def logsnr_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = self._check_t(t)
        return _normalised(t, self.endpoints[0], self.endpoints[1], self.params())

    def forward(self, t: Tensor) -> Tensor:
        return self.logsnr(t)

    def logsnr(self, t: Tensor) -> Tensor:
        """λ(t) (differentiable in the parameters), decreasing from logsnr_max to logsnr_min."""
        return self.logsnr_and_derivative(t)[0]

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        """dλ/dt < 0 (differentiable in the parameters)."""
        return self.logsnr_and_derivative(t)[1]

    @torch.no_grad()
    def t_of(self, logsnr: Tensor) -> Tensor:
        return self.schedule().t_of(logsnr)

    def schedule(self) -> LearnedScheduleSnapshot:
        """The current λ(t) frozen into a serialisable Schedule component."""
        with torch.no_grad():
            w1, b1, w2, b2, w3 = (p.detach().cpu() for p in self.params())
        return LearnedScheduleSnapshot(
            logsnr_min=self.logsnr_min,
            logsnr_max=self.logsnr_max,
            w1=float(w1[0]),
            b1=float(b1[0]),
            w2=tuple(w2.tolist()),
            b2=tuple(b2.tolist()),
            w3=tuple(w3.tolist()),
        )


@SCHEDULES.register("learned")
@dataclasses.dataclass(frozen=True)
class LearnedScheduleSnapshot(Schedule):
    """A :class:`LearnedSchedule` frozen: VDM's monotone γ̃ with given positive weights (see there)."""

    logsnr_min: float = -15.0  # type: ignore[assignment]
    logsnr_max: float = 15.0  # type: ignore[assignment]
    w1: float = 1.0
    b1: float = 0.0
    w2: tuple = ()
    b2: tuple = ()
    w3: tuple = ()

    def __post_init__(self) -> None:
        lo, hi = _check_lam_range(self.logsnr_min, self.logsnr_max)
        object.__setattr__(self, "logsnr_min", lo)
        object.__setattr__(self, "logsnr_max", hi)
        if not (isinstance(self.w1, (int, float)) and self.w1 > 0):
            raise ValueError(f"w1 must be > 0; got {self.w1!r}")
        for name in ("w2", "b2", "w3"):
            object.__setattr__(self, name, tuple(check_finite(name, float(v)) for v in getattr(self, name)))
        if not len(self.w2) == len(self.b2) == len(self.w3):
            raise ValueError("w2, b2 and w3 must have the same length")
        if any(v < 0 for v in self.w2 + self.w3):
            raise ValueError("w2 and w3 must be >= 0 (a monotone network has positive weights)")

    def _params(self) -> tuple[Tensor, ...]:
        return (
            torch.tensor(float(self.w1), dtype=_F64),
            torch.tensor(float(self.b1), dtype=_F64),
            torch.tensor(self.w2, dtype=_F64),
            torch.tensor(self.b2, dtype=_F64),
            torch.tensor(self.w3, dtype=_F64),
        )

    def _logsnr(self, t: Tensor) -> Tensor:
        return _normalised(t, self.logsnr_min, self.logsnr_max, self._params())[0]

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=_F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        return _normalised(t, self.logsnr_min, self.logsnr_max, self._params())[1]

    def _t_of(self, logsnr: Tensor) -> Tensor:
        from noiselevels.training.densities import solve_increasing

        lam = logsnr.clamp(self.logsnr_min, self.logsnr_max)
        p = self._params()

        def fn(t):
            return -_normalised(t, self.logsnr_min, self.logsnr_max, p)[0]

        def dfn(t):
            return -_normalised(t, self.logsnr_min, self.logsnr_max, p)[1]

        return solve_increasing(fn, -lam, 0.0, 1.0, dfn=dfn, tol=1e-14)


class LearnedScheduleSampler:
    """Train a :class:`LearnedSchedule` to minimise the variance of the loss estimate (VDM).

    Draws t with VDM's low-discrepancy rule t_i = (u + i/n) mod 1, λ = λ(t), and returns the
    importance weight p(λ)·|λ'(t)| (= p/q for the schedule's density q = |dt/dλ|), so the objective's
    per-sample weight is W(λ)·|λ'(t)|: unbiased for ∫ W(λ)·L(λ) dλ over the schedule's range, whatever
    its interior shape. The interior is trained on the estimator's second moment

        V = E_t[(W(λ(t))·|λ'(t)|)²·M₂(λ(t))] = ∫ W(λ)²·M₂(λ)/q(λ) dλ,

    with M₂(λ) = E[L² | λ] an EMA (``decay``) per bin (``bins`` over the range, interpolated
    linearly): ``update`` folds in the batch and takes one Adam step (``lr``) on log V, estimated by
    ``grid``-point midpoint quadrature in t. (VDM takes the same gradient stochastically, 2ℓ·∂ℓ/∂η
    through the network; the binned M₂ avoids the second backward pass.) The minimiser is
    q ∝ W·√M₂, the same proposal as :class:`LossImportanceSampler` with ``statistic="rms"``.
    """

    kind: ClassVar[str] = "learned_schedule"

    def __init__(
        self,
        schedule: LearnedSchedule,
        density: Density,
        weighting: Weighting | str | None = None,
        *,
        bins: int = 100,
        decay: float = 0.9,
        lr: float = 1e-2,
        grid: int = 256,
    ):
        if not isinstance(schedule, LearnedSchedule):
            raise ValueError(f"schedule must be a LearnedSchedule; got {schedule!r}")
        self.net = schedule
        self.target = _check_density(density, "LearnedScheduleSampler")
        self.weighting = _as_weighting(weighting)
        self.bins = _check_bins(bins)
        self.decay = _check_decay(decay)
        self.lr = check_positive("lr", lr)
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
            raise ValueError(f"grid must be an integer >= 2; got {grid!r}")
        self.grid = grid
        self.edges = torch.linspace(schedule.logsnr_min, schedule.logsnr_max, self.bins + 1, dtype=_F64)
        self.m2 = torch.zeros(self.bins, dtype=_F64)
        self.seen = torch.zeros(self.bins, dtype=torch.bool)
        self.updates = 0
        self._opt = _Adam([p for n, p in schedule.named_parameters() if n != "endpoints"], lr=self.lr)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        gdev = generator.device if generator is not None else None
        u = torch.rand(1, generator=generator, dtype=_F64, device=gdev).cpu()
        t = torch.remainder(u + torch.arange(n, dtype=_F64) / n, 1.0).clamp(1e-9, 1 - 1e-9)
        with torch.no_grad():
            lam, dlam = self.net.logsnr_and_derivative(t)
            lam, dlam = lam.detach().to(_F64), dlam.detach().to(_F64)
            logp = self.target.log_prob(lam).to(_F64)
            iw = torch.where(torch.isneginf(logp), 0.0, (logp + dlam.abs().log()).exp())
        return lam, iw

    def _m2_at(self, lam: Tensor) -> Tensor:
        if not self.seen.any():
            return torch.ones_like(lam)
        m2 = torch.where(self.seen, self.m2, self.m2[self.seen].max())
        c = 0.5 * (self.edges[1:] + self.edges[:-1])
        return torch.tensor(np.interp(lam.detach().numpy(), c.numpy(), m2.numpy()), dtype=_F64)

    def variance_objective(self) -> Tensor:
        """log V (differentiable in the schedule's parameters), V as in the class docstring."""
        t = (torch.arange(self.grid, dtype=_F64) + 0.5) / self.grid
        lam, dlam = self.net.logsnr_and_derivative(t)
        lam_c = lam.detach()

        def log_integrand(x: Tensor) -> Tensor:  # log(W(λ)²·M₂(λ)), not differentiable itself
            return 2.0 * _log_effective_weight(self.target, self.weighting, x) + torch.log(self._m2_at(x))

        # λ(t) enters W and M₂ too: first order, with the slope of log(W²M₂) by a central difference
        h = 1e-4
        base = log_integrand(lam_c)
        slope = ((log_integrand(lam_c + h) - log_integrand(lam_c - h)) / (2 * h)).nan_to_num(0.0, 0.0, 0.0)
        finite = torch.isfinite(base)
        terms = base.nan_to_num(0.0, 0.0, 0.0) + slope * (lam - lam_c) + 2.0 * torch.log(dlam.abs())
        terms = torch.where(finite, terms, torch.full_like(terms, -math.inf))
        return torch.logsumexp(terms, 0) - math.log(self.grid)

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        lam, val = _lam_loss(logsnr, loss)
        idx, inside = _bin_index(lam, self.edges)
        idx, val = idx[inside], val[inside]
        if idx.numel() == 0:
            return
        cnt = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, torch.ones_like(val))
        tot = torch.zeros(self.bins, dtype=_F64).index_add_(0, idx, val * val)
        hit = cnt > 0
        mean = tot / cnt.clamp_min(1)
        new = torch.where(self.seen, self.decay * self.m2 + (1 - self.decay) * mean, mean)
        self.m2 = torch.where(hit, new, self.m2)
        self.seen = self.seen | hit
        with torch.enable_grad():
            self.variance_objective().backward()
        self._opt.step()
        self.updates += 1

    def density(self) -> Density:
        """The current training density over λ: uniform t under the frozen schedule."""
        from noiselevels.training.densities import density

        return density("uniform_t", schedule=self.net.schedule())

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        out.update(self._opt.state_dict("adam."))
        out.update({"m2": self.m2.clone(), "seen": self.seen.to(torch.uint8), "updates": self.updates})
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = [f"net.{k}" for k in self.net.state_dict()]
        _require_keys(state, [*keys, "m2", "seen"], "LearnedScheduleSampler")
        with torch.no_grad():
            self.net.load_state_dict({k[4:]: torch.as_tensor(state[k]) for k in keys})
        self._opt.load_state_dict(state, "adam.")
        m2 = torch.as_tensor(state["m2"], dtype=_F64)
        if m2.shape != (self.bins,):
            raise ValueError(f"LearnedScheduleSampler state has {m2.numel()} bins; this one has {self.bins}")
        self.m2 = m2.clone()
        self.seen = torch.as_tensor(state["seen"]).to(torch.bool).clone()
        self.updates = int(state.get("updates", 0))

    def profile_overlay(self) -> dict[str, Any]:
        c = 0.5 * (self.edges[1:] + self.edges[:-1])
        q = self.density()
        return {
            "kind": self.kind,
            "label": "learned-schedule density q(λ)",
            "logsnr": c.tolist(),
            "value": q.prob(c).tolist(),
            "schedule": self.net.schedule().to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "density": self.target.to_dict(),
            "weighting": self.weighting.to_dict(),
            "bins": self.bins,
            "decay": self.decay,
            "lr": self.lr,
            "grid": self.grid,
            "logsnr_min": self.net.logsnr_min,
            "logsnr_max": self.net.logsnr_max,
            "hidden": self.net.hidden,
        }


# ----------------------------------------------------------------------------------------------
# the trainer's [adaptive] section
# ----------------------------------------------------------------------------------------------
_PARAMS: dict[str, tuple[str, ...]] = {
    "importance": ("bins", "logsnr_min", "logsnr_max", "decay", "floor", "statistic", "stratified"),
    "uncertainty": ("features", "lr", "seed", "stratified"),
    "timewarp": ("bins", "logsnr_min", "logsnr_max", "decay", "floor", "stratified"),
    "learned_schedule": ("bins", "logsnr_min", "logsnr_max", "decay", "lr", "grid", "hidden", "seed"),
}


def from_config(
    section: Mapping[str, Any],
    *,
    objective=None,
    density: Density | None = None,
    weighting: Weighting | str | None = None,
):
    """Build the sampler of a trainer's ``[adaptive]`` section.

    ``kind`` = ``"importance"`` | ``"uncertainty"`` | ``"timewarp"`` | ``"learned_schedule"`` plus that
    kind's parameters (unknown keys are errors). The target p and w are the ``objective``'s density and
    weighting (or ``density``/``weighting``). Example::

        [adaptive]
        kind = "importance"
        bins = 100
        logsnr_min = -15.0
        logsnr_max = 15.0
        decay = 0.9
    """
    sec = dict(section)
    kind = sec.pop("kind", None)
    if kind not in _PARAMS:
        raise ValueError(f"[adaptive] kind must be one of {', '.join(map(repr, _PARAMS))}; got {kind!r}")
    bad = [k for k in sec if k not in _PARAMS[kind]]
    if bad:
        raise ValueError(
            f"unknown [adaptive] parameter(s) {', '.join(map(repr, bad))} for kind {kind!r}; "
            f"valid: {', '.join(_PARAMS[kind])}"
        )
    if objective is not None:
        density = objective.density if density is None else density
        weighting = objective.weighting if weighting is None else weighting
    if kind == "timewarp":
        return TimeWarp(**sec)
    if density is None:
        raise ValueError(f"[adaptive] kind {kind!r} needs the objective's density p(λ) as its target")
    if kind == "importance":
        return LossImportanceSampler(density, weighting, **sec)
    if kind == "uncertainty":
        return UncertaintySampler(density, weighting, **sec)
    net_kw = {k: sec.pop(k) for k in ("logsnr_min", "logsnr_max", "hidden", "seed") if k in sec}
    return LearnedScheduleSampler(LearnedSchedule(**net_kw), density, weighting, **sec)


def load_adaptive(run_dir) -> Any:
    """The adaptive sampler of a run folder, restored from its newest checkpoint.

    E.g. a time warp exported as a sampling spacing:
    ``spacing("from_density", density=load_adaptive("runs/x").density())``.
    """
    from pathlib import Path

    from noiselevels.runs.checkpoint import load_checkpoint
    from noiselevels.runs.train import load_train_config, noise_config

    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run folder (no config.json)")
    cfg = load_train_config(path / "config.json")
    if not cfg.adaptive:
        raise ValueError(f"run {path} has no [adaptive] section")
    sampler = from_config(cfg.adaptive, objective=noise_config(cfg.noise).objective())
    ck = load_checkpoint(path / "checkpoints")
    state = dict(ck.state.get("sampler", {}))
    state.update({k[len("sampler.") :]: v for k, v in ck.extra.items() if k.startswith("sampler.")})
    sampler.load_state_dict(state)
    return sampler
