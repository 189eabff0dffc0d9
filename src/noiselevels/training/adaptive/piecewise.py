"""The piecewise-constant density over λ: the proposals of the loss importance sampler and the time
warp, registered as ``density("piecewise_constant", edges=..., masses=..., tails=...)``.

Conventions: λ = log(α²/σ²) (large = clean); bins ``edges[k] ≤ λ < edges[k+1]``; arithmetic in
float64, results cast to the input's dtype.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, Density, check_finite, check_positive
from noiselevels.levels import to_tensor
from noiselevels.training.adaptive._common import F64, bin_index

__all__ = ["PiecewiseConstant"]


@DENSITIES.register("piecewise_constant")
@dataclasses.dataclass(frozen=True)
class PiecewiseConstant(Density):
    """A density constant on each of K bins ``edges[k] ≤ λ < edges[k+1]``, with exact cdf and icdf.

    ``masses`` (K,) are the relative bin probabilities (normalised here; ≥ 0, positive sum). Without
    ``tails`` the support is [edges[0], edges[K]]: p(λ) = m_k/(Σm·width_k), cdf piecewise linear.
    With a density ``tails`` the levels outside the bins follow ``tails`` exactly: below edges[0]
    p = tails, above edges[K] p = tails, and the bins share the mass M = tails.cdf(edges[K]) −
    tails.cdf(edges[0]) that ``tails`` puts inside (used by
    :class:`~noiselevels.training.adaptive.importance.LossImportanceSampler`, whose proposal equals the
    target outside its λ range so that its importance weight is 1 there).
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
        e = torch.tensor(edges, dtype=F64)
        p = torch.tensor(masses, dtype=F64) / total
        lo_mass, in_mass = 0.0, 1.0
        if self.tails is not None:
            ends = self.tails.cdf(e[[0, -1]]).to(F64)
            lo_mass, in_mass = float(ends[0]), float(ends[1] - ends[0])
            if not in_mass > 0:
                raise ValueError(
                    f"tails {self.tails.describe()} puts no mass inside [{edges[0]}, {edges[-1]}]"
                )
        cum = torch.cat([torch.zeros(1, dtype=F64), torch.cumsum(p, 0)])
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
        lam = lam0.to(F64)
        idx, inside = bin_index(lam, self._e)
        out = torch.where(inside, self.bin_log_density()[idx], -math.inf)
        if self.tails is not None:
            out = torch.where(inside, out, self.tails.log_prob(lam).to(F64))
        return out.to(lam0.dtype)

    def cdf(self, logsnr: Tensor) -> Tensor:
        """P(Λ ≤ λ): piecewise linear over the bins (the tails' cdf outside them)."""
        lam0 = to_tensor(logsnr)
        if torch.isnan(lam0).any():
            raise ValueError("logsnr contains NaN")
        lam = lam0.to(F64)
        e = self._e
        idx, inside = bin_index(lam, e)
        frac = ((lam.clamp(e[0], e[-1]) - e[idx]) / (e[idx + 1] - e[idx])).clamp(0.0, 1.0)
        inner = self._cum[idx] + frac * self._p[idx]
        out = self._lo_mass + self._in_mass * inner.clamp(0.0, 1.0)
        if self.tails is None:
            out = torch.where(lam < e[0], 0.0, torch.where(lam > e[-1], 1.0, out))
        else:
            out = torch.where(inside, out, self.tails.cdf(lam).to(F64))
        return out.clamp(0.0, 1.0).to(lam0.dtype)

    def icdf(self, u: Tensor) -> Tensor:
        """cdf⁻¹(u) for u ∈ [0, 1]: linear inside a bin (bins of zero mass are never returned)."""
        u0 = to_tensor(u)
        bad = torch.isnan(u0) | (u0 < 0) | (u0 > 1)
        if bad.any():
            raise ValueError(f"u must be a probability in [0, 1]; got {u0[bad].flatten()[0].item()!r}")
        uu = u0.to(F64)
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
                tail = self.tails.icdf(uu.clamp(0.0, 1.0)).to(F64)
                out = torch.where(lo_t | hi_t, tail, out)
        return out.to(u0.dtype)
