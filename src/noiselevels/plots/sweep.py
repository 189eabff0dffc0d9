"""The figures of a sweep report (``noiselevels.runs.report``): samples, effective weightings, loss profiles.

Each function takes the numbers already computed by the report (it does not read run folders) and
writes one PNG:

* :func:`plot_sample_rows` — an image grid with one row per configuration, rows labelled;
* :func:`plot_effective_weightings` — W(λ) = p(λ)·w(λ) of every configuration (ε-MSE units), each
  normalised to integrate to 1 over the λ window, on a log scale;
* :func:`plot_loss_profiles` — the ε-unit training loss ‖ε̂ − ε‖²/D over λ of every configuration;
* :func:`plot_validation_curves` — the validation loss at the fixed levels over λ of every configuration
  (mean over seeds, shaded ± std over seeds; the base dashed) and, beside it, its paired difference to
  the base model.

Conventions: λ = log(α²/σ²) (large = clean, drawn on the right). matplotlib is imported lazily with the
Agg backend (``plots._mpl.pyplot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from noiselevels.plots._mpl import pyplot

__all__ = ["plot_effective_weightings", "plot_loss_profiles", "plot_sample_rows", "plot_validation_curves"]


def plot_sample_rows(
    grid: Tensor, names: Sequence[str], path: str | Path, *, per_row: int, title: str
) -> Path:
    """Show ``grid`` (C, H, W) in [−1, 1], ``len(names)`` rows of ``per_row`` images each, every row
    labelled by its name; ``C`` is 1 (grey) or 3."""
    plt = pyplot()
    rows = len(names)
    fig, ax = plt.subplots(figsize=(1.0 * per_row + 2.5, 1.0 * rows + 0.5))
    ax.imshow((grid.permute(1, 2, 0).squeeze(-1).numpy() + 1) / 2, cmap="gray", vmin=0, vmax=1)
    h = grid.shape[1] / rows
    ax.set_yticks([h * (i + 0.5) for i in range(rows)], list(names))
    ax.set_xticks([])
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_effective_weightings(
    logsnr: Tensor, curves: Mapping[str, Tensor], path: str | Path, *, window: tuple[float, float]
) -> Path:
    """W(λ) of each configuration (``curves``: name → values on ``logsnr``, already normalised over
    ``window``), log scale; configurations with a ``+`` in the name (an added method) dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, w in curves.items():
        ax.plot(logsnr.numpy(), w.numpy(), label=name, ls="--" if "+" in name else "-")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, None)
    ax.set_xlabel("λ = log SNR  (noisy ← → clean)")
    lo, hi = (f"{v:g}".replace("-", "−") for v in window)
    ax.set_ylabel(f"W(λ) = p(λ)·w(λ), normalised over [{lo}, {hi}]")
    ax.legend(fontsize=8)
    ax.set_title("effective weightings (ε-MSE units)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_loss_profiles(
    profiles: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, title: str
) -> Path:
    """The ε-unit loss over λ of each configuration (``profiles``: name → (λ bin centres, loss)),
    log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (x, y) in profiles.items():
        ax.plot(x, y, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("λ = log SNR")
    ax.set_ylabel("ε-unit loss ‖ε̂ − ε‖²/D")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_validation_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    diffs: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]],
    path: str | Path,
    *,
    base: tuple[Sequence[float], Sequence[float]] | None = None,
    title: str = "validation loss at fixed noise levels",
) -> Path:
    """Left: each configuration's validation loss over λ (``curves``: name → (λ, mean, std over seeds;
    NaN std = one seed, no band)), log scale, with the base model's (``base``: (λ, loss)) dashed.
    Right: the paired difference to the base (``diffs``, same form), linear scale, 0 marked."""
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (name, (x, m, s)) in enumerate(curves.items()):
        c = f"C{i % 10}"
        x, m, s = (np.asarray(v, dtype=float) for v in (x, m, s))
        ax.plot(x, m, marker="o", ms=3, color=c, label=name)
        if np.isfinite(s).any():
            ax.fill_between(x, m - s, m + s, color=c, alpha=0.2)
        if name in diffs:
            dx, dm, ds = (np.asarray(v, dtype=float) for v in diffs[name])
            bx.plot(dx, dm, marker="o", ms=3, color=c, label=name)
            if np.isfinite(ds).any():
                bx.fill_between(dx, dm - ds, dm + ds, color=c, alpha=0.2)
    if base is not None:
        ax.plot(base[0], base[1], "k--", label="base model")
    ax.set_yscale("log")
    for a in (ax, bx):
        a.set_xlabel("λ = log SNR  (noisy ← → clean)")
    ax.set_ylabel("ε-unit loss ‖ε̂ − ε‖²/D")
    bx.axhline(0.0, color="k", lw=0.8)
    bx.set_ylabel("fine-tune − base (paired; < 0 = better)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    bx.set_title("difference to the base model (mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
