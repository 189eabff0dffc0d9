"""Sampling spacings: where the N steps of a sampler fall on the noise-level axis.

A spacing turns a step budget N into a grid of noise levels. Two views of the same grid:

* ``spacing.sigmas(n, sigma_min=, sigma_max=)`` → float64 tensor of shape (n + 1,): VE noise levels
  σ_ve = σ/α = e^(−λ/2), strictly decreasing from (about) ``sigma_max``, with a trailing 0 (clean data).
  This is k-diffusion's convention and what ``diffusers``' ``set_timesteps(sigmas=...)`` and ComfyUI's
  SIGMAS take.
* ``spacing.logsnrs(n, logsnr_min=, logsnr_max=)`` → float64 tensor of shape (n + 1,): the same grid in
  λ = −2·log σ_ve, increasing, ending at +inf. ``logsnr_min`` ↔ ``sigma_max`` = e^(−λ_min/2) and
  ``logsnr_max`` ↔ ``sigma_min`` = e^(−λ_max/2).

Omitted range arguments take the spacing's own default range, ``spacing.sigma_range()``: EDM's
σ ∈ [0.002, 80] for the formula-based grids, the table's ends for the published AYS tables and custom
grids, the σ table of a discrete (``ddpm``-style) schedule for the diffusers index rules and ComfyUI's
table schedulers (default: Stable Diffusion's table, :func:`sd_schedule`).

Registered spacings (``spacing(name, **kw)``; ``SPACINGS.names()``):

==================  ====================================================================================
``karras``          σ^(1/ρ) linear in the step index (Karras et al. 2022, EDM, eq. 5), ρ = 7.
``exponential``     log σ linear = λ uniform (DPM-Solver's "logSNR" spacing; k-diffusion).
``polyexponential`` log σ = log σ_min + (1 − i/(N−1))^ρ·(log σ_max − log σ_min) (k-diffusion).
``vp``              the continuous VP SDE's σ(t) = √(e^(β_d t²/2 + β_min t) − 1), t uniform (Song et al.).
``beta``            Beta(α, β) quantiles ("Beta sampling is all you need", Lee et al. 2024): diffusers'
                    ``use_beta_sigmas`` (continuous) or ComfyUI's ``beta`` scheduler (discrete schedule).
``kl_optimal``      arctan σ linear in the step index (Sabour et al. 2024, "Align your steps" appendix;
                    ComfyUI ``kl_optimal``).
``linear_quadratic`` Mochi's linear-then-quadratic grid (ComfyUI ``linear_quadratic``).
``laplace``         log σ at Laplace(μ, β) quantiles, clipped to the range (Hang & Gu 2024; ComfyUI's
                    ``get_sigmas_laplace``).
``uniform_t``       t uniform under a schedule; diffusers' ``leading`` / ``linspace`` / ``trailing`` index
                    rules for discrete schedules (Lin et al. 2024, table 2).
``simple``          every (T/N)-th entry of a model's σ table from the top (ComfyUI ``simple``).
``normal``          the model's timestep uniform from the top of its σ table to the bottom, log σ
                    interpolated between entries (ComfyUI ``normal``).
``sgm_uniform``     ``normal`` with N + 1 timesteps and the last dropped (ComfyUI ``sgm_uniform``).
``ddim_uniform``    DDIM's uniform timesteps 1 + j·⌊T/N⌋ of a model's σ table (ComfyUI ``ddim_uniform``).
``ays``             the published Align-Your-Steps tables (SD1.5, SDXL, SVD) and their log-linear
                    interpolation to any N (Sabour et al. 2024).
``from_density``    the icdf of a training density at evenly spaced probabilities: sampling aligned with
                    training.
``custom``          a user-given grid (e.g. the output of the spacing optimiser).
==================  ====================================================================================

Modules: ``base`` (the ``Spacing`` base class, ``spacing()``, ``spacing_summaries()``, shared checks and
EDM's default range), ``formula`` (karras … laplace, beta), ``discrete`` (``uniform_t`` and diffusers'
index rules), ``tables`` (ComfyUI's table schedulers, AYS), ``custom``, ``from_density``. Every name is
re-exported here.
"""

from noiselevels._numerics import beta_ppf
from noiselevels.sampling.spacings.base import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    SPACINGS,
    Spacing,
    spacing,
    spacing_summaries,
)
from noiselevels.sampling.spacings.custom import Custom, custom
from noiselevels.sampling.spacings.discrete import DISCRETE_RULES, UNIFORM_T_RULES, UniformTSpacing
from noiselevels.sampling.spacings.formula import (
    VP,
    BetaSpacing,
    Exponential,
    Karras,
    KLOptimal,
    LaplaceSpacing,
    LinearQuadratic,
    PolyExponential,
)
from noiselevels.sampling.spacings.from_density import FromDensity
from noiselevels.sampling.spacings.tables import (
    AYS,
    AYS_TABLES,
    COMFY_ZERO_TOL,
    DDIMUniform,
    Normal,
    SGMUniform,
    Simple,
    sd_schedule,
)

__all__ = [
    "AYS",
    "AYS_TABLES",
    "COMFY_ZERO_TOL",
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "DISCRETE_RULES",
    "SPACINGS",
    "UNIFORM_T_RULES",
    "VP",
    "BetaSpacing",
    "Custom",
    "DDIMUniform",
    "Exponential",
    "FromDensity",
    "KLOptimal",
    "Karras",
    "LaplaceSpacing",
    "LinearQuadratic",
    "Normal",
    "PolyExponential",
    "SGMUniform",
    "Simple",
    "Spacing",
    "UniformTSpacing",
    "beta_ppf",
    "custom",
    "sd_schedule",
    "spacing",
    "spacing_summaries",
]
