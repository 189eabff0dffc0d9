"""The loss profile over λ: where, across noise levels, a model is still learning.

The training loss is an average over noise levels of very different difficulty; its total hides where
the model is still learning. :class:`LossProfile` bins the unweighted ε-unit loss ‖ε̂ − ε‖²/D of every
sample by its λ = log(α²/σ²) and records, per bin and log interval, count, mean and variance — the
diagnostic that shows which levels the objective's effective weighting W(λ) = p(λ)·w(λ) neglects.
The trainer and the fine-tune write it as ``loss_profile.json`` / ``.npz`` (and ``.png``, drawn by
``noiselevels.plots.plot_loss_profile``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.plots.profile import plot_loss_profile
from noiselevels.runs.checkpoint import write_json_atomic

__all__ = ["LossProfile", "nan_to_none", "profile_range"]


def nan_to_none(obj: Any) -> Any:
    """``obj`` with every float NaN (in nested lists and dicts) replaced by None, for JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, list):
        return [nan_to_none(x) for x in obj]
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    return obj


def profile_range(density, *, q: float = 1e-3, clip: float = 20.0) -> tuple[float, float]:
    """The training λ range for the loss profile: the density's [q, 1−q] quantiles within ±clip."""
    u = torch.tensor([q, 1.0 - q], dtype=torch.float64)
    lo, hi = (float(v) for v in density.icdf(u))
    lo = max(lo, -clip) if math.isfinite(lo) else -clip
    hi = min(hi, clip) if math.isfinite(hi) else clip
    if not lo < hi:
        lo, hi = lo - 1.0, lo + 1.0
    return lo, hi


class LossProfile:
    """Binned statistics of the ε-unit loss over λ (count, mean, variance per bin and log interval).

    Bins: ``num_bins`` equal-width bins over [lo, hi]; levels outside go into the edge bins.
    ``add(logsnr, eps_mse)`` accumulates the current interval; ``close(step)`` appends the interval
    to ``history`` (mean and unbiased variance per bin; NaN for empty bins) and starts a new one.
    """

    def __init__(self, lo: float, hi: float, num_bins: int):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"loss profile range must be finite with lo < hi; got [{lo}, {hi}]")
        self.edges = torch.linspace(lo, hi, num_bins + 1, dtype=torch.float64)
        self.acc = torch.zeros(3, num_bins, dtype=torch.float64)  # count, sum, sum of squares
        self.history: list[dict[str, Any]] = []
        # [adaptive]: the sampler's current curve (proposal / exp u(λ) / warp), saved to adaptive.json
        # and drawn over the profile (noiselevels.training.adaptive, ``profile_overlay()``)
        self.overlay: Callable[[], dict[str, Any]] | None = None

    @property
    def centers(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def add(self, logsnr: Tensor, eps_mse: Tensor) -> None:
        lam = logsnr.detach().to("cpu", torch.float64)
        val = eps_mse.detach().to("cpu", torch.float64)
        idx = torch.bucketize(lam, self.edges[1:-1]).clamp(0, self.acc.shape[1] - 1)
        self.acc[0].index_add_(0, idx, torch.ones_like(val))
        self.acc[1].index_add_(0, idx, val)
        self.acc[2].index_add_(0, idx, val * val)

    def snapshot(self, step: int) -> dict[str, Any]:
        """The current interval's record (count, mean, unbiased variance per bin), without closing it."""
        n, s, ss = self.acc
        mean = torch.where(n > 0, s / n.clamp_min(1), torch.nan)
        centred = (ss - n * mean.nan_to_num() ** 2).clamp_min(0)
        var = torch.where(n > 1, centred / (n - 1).clamp_min(1), torch.nan)
        return {"step": int(step), "count": n.tolist(), "mean": mean.tolist(), "var": var.tolist()}

    def close(self, step: int) -> dict[str, Any]:
        """Append the current interval's record to ``history`` and start a new interval."""
        rec = self.snapshot(step)
        self.history.append(rec)
        self.acc.zero_()
        return rec

    def state_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "acc": self.acc.tolist(), "history": self.history}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.edges = torch.tensor(state["edges"], dtype=torch.float64)
        self.acc = torch.tensor(state["acc"], dtype=torch.float64)
        # a checkpoint stores empty bins' NaN as null: back to NaN, so the npz stays float
        self.history = [
            {k: [math.nan if x is None else x for x in v] if isinstance(v, list) else v for k, v in h.items()}
            for h in state["history"]
        ]

    def save(self, out_dir: Path, *, plot: bool = True, pending: dict[str, Any] | None = None) -> None:
        """Write loss_profile.json and .npz (and the PNG when ``plot``); ``pending`` is an extra,
        not yet closed interval record to include (the end of a run)."""
        history = self.history if pending is None else [*self.history, pending]
        data = {"edges": self.edges.tolist(), "centers": self.centers.tolist(), "history": history}
        write_json_atomic(out_dir / "loss_profile.json", nan_to_none(data))
        overlay = self.overlay() if self.overlay is not None else None  # [adaptive]
        if overlay is not None:
            step = history[-1]["step"] if history else None
            write_json_atomic(out_dir / "adaptive.json", nan_to_none({"step": step, **overlay}))
        if history:
            tmp = out_dir / ".loss_profile.tmp.npz"
            np.savez(
                tmp,
                edges=self.edges.numpy(),
                steps=np.array([h["step"] for h in history]),
                count=np.array([h["count"] for h in history], dtype=np.float64),
                mean=np.array([h["mean"] for h in history], dtype=np.float64),
                var=np.array([h["var"] for h in history], dtype=np.float64),
            )
            os.replace(tmp, out_dir / "loss_profile.npz")
            if plot:
                plot_loss_profile(history, self.centers, out_dir / "loss_profile.png", overlay=overlay)
