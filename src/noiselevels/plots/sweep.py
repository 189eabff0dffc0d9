"""The figures of a sweep report (``noiselevels.runs.report``): samples, effective weightings, loss profiles.

Each function takes the numbers already computed by the report (it does not read run folders) and
writes one PNG:

* :func:`plot_sample_rows` — an image grid with one row per configuration, rows labelled;
* :func:`plot_effective_weightings` — W(λ) = p(λ)·w(λ) of every configuration (ε-MSE units), each
  normalised to integrate to 1 over the λ window, on a log scale;
* :func:`plot_loss_profiles` — the ε-unit training loss ‖ε̂ − ε‖²/D over λ of every configuration.

Conventions: λ = log(α²/σ²) (large = clean, drawn on the right). matplotlib is imported lazily with the
Agg backend (``plots._mpl.pyplot``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor

from noiselevels.plots._mpl import pyplot

__all__ = ["plot_effective_weightings", "plot_loss_profiles", "plot_sample_rows"]


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
