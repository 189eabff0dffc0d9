"""Spectra of images, per-image noise-level bounds and spectrally-guided per-instance schedules.

After Esteves & Makadia (2026), "spectrally-guided per-instance noise schedules" for pixel diffusion.
The paper's formulas were not available to us; what follows is the derivation of
``research/methods.md`` §7, which is consistent with the paper's description, and is marked *ours*
where it goes beyond it (see ``docs/spectral.md``). λ = log(α²/σ²) throughout; t = 0 clean, t = 1 noise.

One module per step, each importing only those above it in this list:

* :mod:`~noiselevels.spectral.rapsd` — the radially averaged power spectrum P(f) (:func:`rapsd`,
  :func:`rings`); the SNR of frequency f at level λ is e^λ·P(f).
* :mod:`~noiselevels.spectral.bounds` — per-image useful range λ_min = log τ_lo − log max_f P(f),
  λ_max = log τ_hi − log min_f P(f), capped by the 8-bit quantisation floor (:func:`bounds`,
  :func:`bounds_from_power`, :func:`summarize`).
* :mod:`~noiselevels.spectral.schedules` — tight schedules λ(t) = F⁻¹(t), F the fraction of an image's
  frequencies drowned (:class:`TightSchedule`, registered as ``"tight"``; :func:`tight_schedules`,
  :func:`global_tight_schedule`).
* :mod:`~noiselevels.spectral.instance` — the two-parameter per-instance family
  λ_i(t) = λ_min,i + (λ_max,i − λ_min,i)·s(t) (:class:`InstanceSchedules`).
* :mod:`~noiselevels.spectral.mixture` — Gaussian mixtures over (λ_min, λ_max), per class, to draw
  bounds at sampling time (:class:`BoundsMixture`).
* :mod:`~noiselevels.spectral.sampler` — the probability-flow ODE with one σ grid per row
  (:func:`solve_per_instance`).
* :mod:`~noiselevels.spectral.config` — a training run's ``[spectral]`` table and what a per-instance
  run stores (:func:`resolve_spectral_config`, :class:`SpectralRun`).

The figure of RAPSD curves against noise floors is ``noiselevels.plots.plot_rapsd``.
"""

from noiselevels.spectral.bounds import (
    DC_MODES,
    QUANTISATION_SIGMA,
    bounds,
    bounds_from_power,
    summarize,
)
from noiselevels.spectral.config import SPECTRAL_DEFAULTS, SpectralRun, resolve_spectral_config
from noiselevels.spectral.instance import InstanceSchedules
from noiselevels.spectral.mixture import BoundsMixture
from noiselevels.spectral.rapsd import rapsd, rings
from noiselevels.spectral.sampler import PER_INSTANCE_SOLVERS, solve_per_instance
from noiselevels.spectral.schedules import (
    SCHEDULE_KINDS,
    TightSchedule,
    global_tight_schedule,
    tight_schedule,
    tight_schedules,
)

__all__ = [
    "DC_MODES",
    "PER_INSTANCE_SOLVERS",
    "QUANTISATION_SIGMA",
    "SCHEDULE_KINDS",
    "SPECTRAL_DEFAULTS",
    "BoundsMixture",
    "InstanceSchedules",
    "SpectralRun",
    "TightSchedule",
    "bounds",
    "bounds_from_power",
    "global_tight_schedule",
    "rapsd",
    "resolve_spectral_config",
    "rings",
    "solve_per_instance",
    "summarize",
    "tight_schedule",
    "tight_schedules",
]
