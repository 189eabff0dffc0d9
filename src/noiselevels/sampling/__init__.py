"""Sampling along noise levels: spacings (``spacings``), solvers, exact test problems, spacing optimisation.

The sampler-side choice of the noise levels is the *spacing*: the grid of levels a solver visits for a
budget of N steps. Grids are given as VE noise levels σ_ve = e^(−λ/2) (k-diffusion's convention:
N + 1 values, decreasing, ending with 0) or as logSNRs λ (increasing, ending at +inf).
Submodules are imported explicitly (``noiselevels.sampling.spacings``); this package imports only the
modules that register further solvers (``multistep``, ``unipc``), so that every solver name works in
``solve`` as soon as ``noiselevels.sampling.solvers`` is imported.
"""

import noiselevels.sampling.multistep
import noiselevels.sampling.unipc  # noqa: F401  (registers uni_pc, uni_pc_bh2)
