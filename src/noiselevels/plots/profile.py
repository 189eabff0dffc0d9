"""The training loss profile: the mean ε-unit loss ‖ε̂ − ε‖²/D per λ bin over the log intervals of a run.

λ = log(α²/σ²) on the x axis (noisy left, clean right); the loss on a log scale. Written by the trainer
as ``loss_profile.png`` (``noiselevels.runs.profile.LossProfile.save``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor

from noiselevels.plots._mpl import pyplot

__all__ = ["plot_loss_profile"]


def plot_loss_profile(
    history: list[dict[str, Any]],
    centers: Tensor,
    path: str | os.PathLike,
    *,
    max_curves: int = 6,
    overlay: Mapping[str, Any] | None = None,
) -> None:
    """Plot the mean ε-unit loss per λ bin for up to ``max_curves`` log intervals (±1 std for the last);
    ``overlay`` ({"label", "logsnr", "value"}, an adaptive sampler's curve) is drawn on a second axis.

    ``history``: records ``{"step", "mean", "var"}`` with one value per bin; ``centers``: the (bins,)
    λ bin centres."""
    plt = pyplot()
    hist = history
    pick = sorted({round(i) for i in np.linspace(0, len(hist) - 1, min(max_curves, len(hist)))})
    c = centers.numpy()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(pick):
        m = np.array(hist[i]["mean"], dtype=float)
        ax.plot(c, m, color=cmap(j / max(1, len(pick) - 1)), lw=1.4, label=f"step {hist[i]['step']}")
    last = hist[-1]
    m, sd = np.array(last["mean"], dtype=float), np.sqrt(np.array(last["var"], dtype=float))
    ax.fill_between(c, np.maximum(m - sd, 1e-8), m + sd, color="gray", alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("λ = log SNR  (noisy ←  → clean)")
    ax.set_ylabel("ε-unit loss  ‖ε̂ − ε‖² / D")
    ax.set_title("loss profile over noise levels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if overlay is not None:  # [adaptive]
        ax2 = ax.twinx()
        ax2.plot(overlay["logsnr"], overlay["value"], color="C3", ls="--", lw=1.4, label=overlay["label"])
        ax2.set_ylabel(overlay["label"], color="C3")
        ax2.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
