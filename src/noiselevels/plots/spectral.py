"""Figures of image spectra against noise: RAPSD curves and the noise power of a few levels λ.

Conventions: λ = log(α²/σ²); P(f) is the radially averaged power spectrum of
:func:`noiselevels.spectral.rapsd` (unitary DFT, f in cycles/pixel). On the VE scale z/α = x + (σ/α)·ε
the noise has the flat spectrum P_noise(f) = σ²/α² = e^(−λ), so a frequency is visible above the line
of a level and drowned below it. matplotlib is imported lazily (``_mpl.pyplot``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor

from noiselevels.plots._mpl import pyplot

__all__ = ["plot_rapsd"]


def plot_rapsd(
    freqs: Tensor,
    power: Tensor,
    path: str,
    *,
    logsnrs: Sequence[float] = (-6.0, 0.0, 6.0),
    max_curves: int = 16,
    title: str = "RAPSD against the noise floor of a few λ",
) -> None:
    """Plot up to ``max_curves`` RAPSD curves P(f) (log-log, DC drawn at f = 1/(2N)) with the noise
    power e^(−λ) of the given λ values (VE scale: the noise of z/α has P_noise(f) = σ²/α² = e^(−λ)).
    A frequency is visible above its line and drowned below it — high noise hides the low
    frequencies last.

    Args:
        freqs: (F,) ring frequencies, increasing, freqs[0] = 0 the DC ring (``rapsd``'s first output).
        power: (B, F) per-image RAPSD; with B > 1 the mean curve is drawn in black.
        path: the image file to write (format from its suffix).
    """
    plt = pyplot()
    from matplotlib.ticker import NullFormatter

    f = freqs.clone()
    if f[0] == 0:
        f[0] = f[1] / 2
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for b in range(min(max_curves, power.shape[0])):
        ax.loglog(f.numpy(), power[b].clamp_min(1e-12).numpy(), lw=0.8, alpha=0.6, color="tab:blue")
    if power.shape[0] > 1:
        ax.loglog(f.numpy(), power.mean(0).clamp_min(1e-12).numpy(), lw=2.0, color="black", label="mean")
    cmap = plt.get_cmap("autumn")
    for j, lam in enumerate(logsnrs):
        ax.axhline(
            math.exp(-lam),
            ls="--",
            lw=1.2,
            color=cmap(j / max(1, len(logsnrs) - 1)),
            label=f"noise at λ = {lam:.3g}",
        )
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.axvline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("frequency f (cycles/pixel; DC drawn at the left edge)")
    ax.set_ylabel("power P(f) (unitary DFT)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
