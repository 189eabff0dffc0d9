"""Shared pieces of the adaptive samplers: argument checks, λ binning, per-bin quadrature of the
effective weighting, a small checkpointable Adam and state-dict key checks.

Conventions: λ = log(α²/σ²) (large = clean). Everything here is float64 on the CPU (a few hundred
numbers), whatever device the model is on. Bins are ``edges[k] ≤ λ < edges[k+1]`` (the last one
closed), ``edges`` (K + 1,) strictly increasing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import Density, Weighting, check_finite, check_range
from noiselevels.training.weightings import weighting as _weighting

F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------------
def check_bins(bins: Any) -> int:
    """``bins`` as an integer ≥ 2 (ValueError otherwise)."""
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2; got {bins!r}")
    return bins


def check_lam_range(lo: Any, hi: Any) -> tuple[float, float]:
    """(logsnr_min, logsnr_max) as finite floats with logsnr_min < logsnr_max."""
    lo = check_finite("logsnr_min", lo)
    hi = check_finite("logsnr_max", hi)
    if not lo < hi:
        raise ValueError(f"the λ range is empty: need logsnr_min < logsnr_max; got [{lo!r}, {hi!r}]")
    return lo, hi


def check_decay(decay: Any) -> float:
    """An EMA decay in the open interval (0, 1)."""
    return check_range("decay", decay, 0.0, 1.0, closed=False)


def check_floor(floor: Any) -> float:
    """A proposal floor in (0, 1]."""
    floor = check_finite("floor", floor)
    if not 0.0 < floor <= 1.0:
        raise ValueError(f"floor must be in (0, 1]; got {floor!r}")
    return floor


def check_density(value: Any, owner: str) -> Density:
    """The target density p(λ) of ``owner`` (a sampler class name, for the message)."""
    if not isinstance(value, Density):
        raise ValueError(f"{owner} needs a target density p(λ) (a Density); got {value!r}")
    return value


def as_weighting(value: Any) -> Weighting:
    """A Weighting from a Weighting, a registered weighting name, or None (``"constant"``)."""
    if value is None:
        value = "constant"
    if isinstance(value, str):
        return _weighting(value)
    if not isinstance(value, Weighting):
        raise ValueError(f"weighting must be a Weighting or a weighting name; got {value!r}")
    return value


def require_keys(state: Mapping[str, Any], keys: Iterable[str], owner: str) -> None:
    """Raise ValueError naming every key of ``keys`` missing from a checkpointed ``state``."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"{owner} state is missing {', '.join(missing)} (a checkpoint of another kind?)")


# ----------------------------------------------------------------------------------------------
# λ bins
# ----------------------------------------------------------------------------------------------
def lam_loss(logsnr: Tensor, loss: Tensor) -> tuple[Tensor, Tensor]:
    """A batch of (λ, ε-unit loss) fed to ``update``, flattened to (B,) float64 on the CPU and checked
    (same shape, no NaN level, finite losses)."""
    lam = torch.as_tensor(logsnr).detach().to("cpu", F64).flatten()
    val = torch.as_tensor(loss).detach().to("cpu", F64).flatten()
    if lam.shape != val.shape:
        raise ValueError(
            f"logsnr and loss must have the same shape; got {tuple(lam.shape)} and {tuple(val.shape)}"
        )
    if torch.isnan(lam).any():
        raise ValueError("logsnr contains NaN")
    if not torch.isfinite(val).all():
        raise ValueError("loss contains non-finite values")
    return lam, val


def bin_index(lam: Tensor, edges: Tensor) -> tuple[Tensor, Tensor]:
    """Bin of each λ among the bins defined by ``edges`` and a mask of those inside [edges[0], edges[-1]]."""
    inside = (lam >= edges[0]) & (lam <= edges[-1])
    idx = torch.bucketize(lam, edges[1:-1], right=True).clamp(0, edges.numel() - 2)
    return idx, inside


def bin_means(lam: Tensor, val: Tensor, edges: Tensor) -> tuple[Tensor, Tensor] | None:
    """Per-bin count (K,) and mean (K,) of ``val`` over the levels ``lam`` inside the bins (mean 0 in an
    empty bin); None when no level falls inside."""
    idx, inside = bin_index(lam, edges)
    idx, val = idx[inside], val[inside]
    if idx.numel() == 0:
        return None
    bins = edges.numel() - 1
    cnt = torch.zeros(bins, dtype=F64).index_add_(0, idx, torch.ones_like(val))
    tot = torch.zeros(bins, dtype=F64).index_add_(0, idx, val)
    return cnt, tot / cnt.clamp_min(1)


def gauss_legendre(order: int = 8) -> tuple[Tensor, Tensor]:
    """Gauss–Legendre nodes and weights on [−1, 1], (order,) each, float64."""
    x, w = np.polynomial.legendre.leggauss(order)
    return torch.tensor(x, dtype=F64), torch.tensor(w, dtype=F64)


def bin_masses(fn: Callable[[Tensor], Tensor], edges: Tensor, order: int = 8) -> Tensor:
    """∫ fn(λ) dλ over each bin by Gauss–Legendre quadrature of ``order`` points (float64)."""
    x, w = gauss_legendre(order)
    lo, hi = edges[:-1, None], edges[1:, None]
    pts = 0.5 * (hi - lo) * x + 0.5 * (hi + lo)
    vals = fn(pts.flatten()).reshape(pts.shape)
    return 0.5 * (hi - lo)[:, 0] * (vals * w).sum(1)


def log_effective_weight(density: Density, weighting: Weighting, lam: Tensor) -> Tensor:
    """log W(λ) = log p(λ) + log w(λ), with W = 0 where p = 0 (even where w = ∞)."""
    logp = density.log_prob(lam).to(F64)
    w = weighting(lam).to(F64)
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


# ----------------------------------------------------------------------------------------------
# a small Adam with a flat, checkpointable state
# ----------------------------------------------------------------------------------------------
class Adam:
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
        """One bias-corrected Adam step on every parameter with a gradient; the gradients are cleared."""
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
        """``{prefix}t`` and the moments ``{prefix}m.i``, ``{prefix}v.i`` (cloned tensors)."""
        out: dict[str, Any] = {f"{prefix}t": self.t}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            out[f"{prefix}m.{i}"] = m.detach().clone()
            out[f"{prefix}v.{i}"] = v.detach().clone()
        return out

    def load_state_dict(self, state: Mapping[str, Any], prefix: str) -> None:
        """Restore what :meth:`state_dict` wrote under ``prefix``."""
        self.t = int(state[f"{prefix}t"])
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            m.copy_(torch.as_tensor(state[f"{prefix}m.{i}"]))
            v.copy_(torch.as_tensor(state[f"{prefix}v.{i}"]))
