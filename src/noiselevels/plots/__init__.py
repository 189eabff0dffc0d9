"""Every figure the project draws, one module per subject; matplotlib is imported lazily (``_mpl.pyplot``).

* ``weighting`` — p(λ), w(λ), W(λ) over λ and over a tool's own time axis (``inspect``, ``compare``).
* ``profile`` — a run's loss profile over λ (``loss_profile.png`` of ``train``).
* ``spectral`` — RAPSD curves of images against the noise power e^(−λ) of a few λ (``spectral --plot``).
* ``sweep`` — a sweep report's samples, effective weightings and loss profiles (``noiselevels.runs.report``).

Layer: above ``analysis``, ``config`` and the maths packages, below ``runs`` and ``commands``.
"""

from noiselevels.plots.profile import plot_loss_profile
from noiselevels.plots.spectral import plot_rapsd
from noiselevels.plots.sweep import plot_effective_weightings, plot_loss_profiles, plot_sample_rows
from noiselevels.plots.weighting import plot_logsnr, plot_tool_axis, tool_axis_curves

__all__ = [
    "plot_effective_weightings",
    "plot_logsnr",
    "plot_loss_profile",
    "plot_loss_profiles",
    "plot_rapsd",
    "plot_sample_rows",
    "plot_tool_axis",
    "tool_axis_curves",
]
