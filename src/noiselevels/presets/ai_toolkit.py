"""ai-toolkit (ostris) presets: its ``timestep_type`` and ``content_or_style`` options for flow models,
and the ``snr_gamma`` / ``min_snr_gamma`` loss weights for DDPM (Stable Diffusion) models.

Options mapped: ``timestep_type`` = ``linear``, ``sigmoid`` (the default), ``weighted``, ``shift``,
``flux_shift``, ``lumina2_shift``, ``lognorm_blend``; with each, ``content_or_style`` (balanced, content,
style), ``min_denoising_steps`` / ``max_denoising_steps``, ``linear_timesteps`` / ``linear_timesteps2``;
``snr_gamma``; ``min_snr_gamma``. ``FAMILY_DEFAULT_TIMESTEP_TYPE``: each model family's default type.

Source: ostris/ai-toolkit at commit 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350 (line numbers below are of
that commit). ``toolkit/config_modules.py`` 378, 391–392, 556–559: defaults ``content_or_style: balanced``,
``min_denoising_steps: 0``, ``max_denoising_steps: 999``, ``timestep_type: sigmoid``, ``linear_timesteps``
/ ``linear_timesteps2: false``. ``toolkit/samplers/custom_flowmatch_sampler.py`` 107–217
(``set_train_timesteps``: the 1000-level grid of each type, sorted from noisy to clean) and 59–76 (the
weights). ``jobs/process/BaseSDTrainProcess.py`` 1173–1323: the index drawn into the grid — ``balanced``
``randint(min_denoising_steps, max_denoising_steps)`` (max excluded), ``content`` u³·T, ``style``
(1 − u³)·T mapped onto [min, max]; ``linear_timesteps`` / ``linear_timesteps2`` force the linear grid.
``extensions_built_in/sd_trainer/SDTrainer.py`` 923–943: the weights multiply the flow-target MSE.
``toolkit/sampler.py`` 78–117: the Flux scheduler (dynamic shift, ``max_shift`` 1.15 — the 1.16 of
``custom_flowmatch_sampler.py`` 15/157 is only the fallback when a config lacks the key) and Lumina2's
(static shift 6).

Model: an index fraction q into a grid whose levels follow the type's density (cdf F over λ) is the level
F⁻¹(q); ``balanced`` is that density truncated to q ∈ [min, max)/1000, ``content`` / ``style`` its cubic
index (``noiselevels.training.tool_densities.ai_toolkit``); the ``sigmoid`` grid, redrawn every step, is
modelled exactly as the order statistic at the drawn index (``AiToolkitRandomGrid``). Approximations
(measured against tests/presets/ref_ai_toolkit.py over 100k draws): the fixed grids' 1000 levels are read
as cells (KS ≤ 0.003 with ``balanced``); ``content`` / ``style`` on a fixed grid put 10 % of draws on one
level (σ = 1, λ = −∞, for content; σ = 0.001 for style) that the cell reading spreads over that level's cell
(the cell's mass is exact; KS at the atoms 0.10); ``lognorm_blend`` is the exact law of one entry of its
random table (KS ≤ 0.005).

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); weights in ε-MSE
units.
"""

from __future__ import annotations

import math

import torch

from noiselevels.components import Density, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _check_param,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _flow_loss,
    _in_units,
    _logit_normal,
    _prediction_param,
    _sd_schedule,
    _uniform_flow,
    _w,
)
from noiselevels.schedules import flux_mu
from noiselevels.training.tool_densities.ai_toolkit import (
    CONTENT_OR_STYLE,
    AiToolkitContentOrStyle,
    AiToolkitRandomGrid,
    lognorm_blend_table,
)
from noiselevels.training.tool_weightings import AiToolkitWeighted
from noiselevels.training.tool_weightings.ai_toolkit import AiToolkitLinearTimesteps

__all__ = ["FAMILY_DEFAULT_TIMESTEP_TYPE", "TABLE", "TIMESTEP_TYPES"]

TABLE = ToolPresets("ai-toolkit")
_preset = TABLE.add

TIMESTEP_TYPES = ("linear", "sigmoid", "weighted", "shift", "flux_shift", "lumina2_shift", "lognorm_blend")
T = 1000

# The timestep type a new job gets per model family. The trainer's own default is ``sigmoid`` for every
# family (toolkit/config_modules.py 556); the web UI's per-model defaults (first entry of each
# ``'config.process[0].train.timestep_type': [default, fallback]`` in ui/src/app/jobs/new/options.tsx) are:
FAMILY_DEFAULT_TIMESTEP_TYPE: dict[str, str] = {
    "flux": "sigmoid",  # no override (jobConfig.ts 80)
    "flux_kontext": "weighted",  # options.tsx 130
    "flux2": "weighted",  # options.tsx 639
    "qwen_image": "weighted",  # options.tsx 421
    "hidream": "shift",  # options.tsx 554
    "wan22_14b": "linear",  # options.tsx 342 (wan22_14b_i2v)
    "wan22_5b": "weighted",  # options.tsx 382
    "zimage": "weighted",  # options.tsx 696
    "ltx2": "weighted",  # options.tsx 1073
    "sd3": "sigmoid",  # no override
    "lumina2": "sigmoid",  # no override
}


def _type_density(timestep_type: str, shift: float, image_seq_len: int | None) -> Density:
    """The law of the grid levels of one ``timestep_type`` (before the index is drawn)."""
    _check_param(timestep_type, TIMESTEP_TYPES, "timestep_type")
    if timestep_type in ("linear", "weighted"):
        return _uniform_flow()
    if timestep_type == "sigmoid":
        return _logit_normal(0.0, 1.0)
    if timestep_type == "lognorm_blend":
        return lognorm_blend_table()
    if image_seq_len is not None:
        if not (isinstance(image_seq_len, int) and image_seq_len > 0):
            raise ValueError(f"image_seq_len must be a positive integer; got {image_seq_len!r}")
        shift = math.exp(flux_mu(image_seq_len, max_shift=1.15))
    check_positive("shift", shift)
    return _uniform_flow(shift)


def _index(d: Density, content_or_style: str, min_denoising_steps: int, max_denoising_steps: int) -> Density:
    """The drawn index into the sorted grid: its range (min/max_denoising_steps) and its law."""
    _check_param(content_or_style, CONTENT_OR_STYLE, "content_or_style")
    lo, hi = min_denoising_steps, max_denoising_steps
    if not (isinstance(lo, int) and isinstance(hi, int) and 0 <= lo < hi <= T - 1):
        raise ValueError(
            f"need integers 0 <= min_denoising_steps < max_denoising_steps <= {T - 1}; got "
            f"min_denoising_steps={lo!r}, max_denoising_steps={hi!r}"
        )
    # balanced: randint(lo, hi) covers index cells [lo, hi); content/style: lo + q·T·(hi − lo)/(T − 1)
    q_hi = hi / T if content_or_style == "balanced" else min(1.0, (lo + T * (hi - lo) / (T - 1)) / T)
    q_lo = lo / T
    if q_lo > 0.0 or q_hi < 1.0:
        lam = d.icdf(torch.tensor([q_lo, q_hi], dtype=torch.float64))
        d = d.truncate(float(lam[0]), float(lam[1]))
    if content_or_style == "balanced":
        return d
    return AiToolkitContentOrStyle(base=d, content_or_style=content_or_style)


def _ait_flow(
    timestep_type: str,
    content_or_style: str = "balanced",
    min_denoising_steps: int = 0,
    max_denoising_steps: int = 999,
    linear_timesteps: bool = False,
    linear_timesteps2: bool = False,
    shift: float = 3.0,
    image_seq_len: int | None = None,
) -> NoiseConfig:
    """One ai-toolkit flow configuration: grid law × index law, and the timestep weight on the flow loss."""
    grid_type = "linear" if (linear_timesteps or linear_timesteps2) else timestep_type
    _check_param(timestep_type, TIMESTEP_TYPES, "timestep_type")
    base = _type_density(grid_type, shift, image_seq_len)
    if grid_type == "sigmoid":  # a fresh iid grid each step: the order statistic at the index, exact
        _check_param(content_or_style, CONTENT_OR_STYLE, "content_or_style")
        dens: Density = AiToolkitRandomGrid(
            base=base, content_or_style=content_or_style, min_denoising_steps=min_denoising_steps,
            max_denoising_steps=max_denoising_steps, grid_size=T,
        )
    else:
        dens = _index(base, content_or_style, min_denoising_steps, max_denoising_steps)
    if timestep_type == "weighted":
        weight = AiToolkitWeighted()
    elif linear_timesteps or linear_timesteps2:
        weight = AiToolkitLinearTimesteps(v2=bool(linear_timesteps2))
    else:
        weight = None
    return _flow_cfg(dens, _flow_loss(weight))

@_preset("ai-toolkit:linear", "uniform flow σ, plain flow loss")
def _ait_linear(
    content_or_style: str = "balanced", min_denoising_steps: int = 0, max_denoising_steps: int = 999,
    linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: linear``: grid σ_i = 1 − i/1000 (``linspace(1000, 1, 1000)``,
    custom_flowmatch_sampler.py 116–119), index uniform on [0, 999): σ uniform, W(λ) = ½·e^(−λ/2)."""
    return _ait_flow("linear", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2)


@_preset("ai-toolkit:sigmoid", "σ = sigmoid(n): logit-normal(0, 1) over flow σ (ai-toolkit's default)")
def _ait_sigmoid(
    content_or_style: str = "balanced", min_denoising_steps: int = 0, max_denoising_steps: int = 999,
    linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: sigmoid`` (its default, config_modules.py 556): every step a fresh grid of
    1000 levels σ = 1 − sigmoid(n), n ~ N(0, 1), sorted (custom_flowmatch_sampler.py 120–133), read at the
    drawn index: logit-normal(0, 1) over flow σ, λ ~ N(0, 2²)."""
    return _ait_flow("sigmoid", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2)


@_preset("ai-toolkit:weighted", "uniform flow σ, the flow loss times the tool's 1000-entry weight table")
def _ait_weighted(
    content_or_style: str = "balanced", min_denoising_steps: int = 0, max_denoising_steps: int = 999,
    linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: weighted``: the linear grid, and the flow loss of index i multiplied by
    ``default_weighing_scheme[i]`` (SDTrainer.py 927–943, custom_flowmatch_sampler.py 65–70): the table
    itself, :class:`AiToolkitWeighted` (peak 1.52 at σ = 0.876, 0.445 at σ → 0)."""
    return _ait_flow("weighted", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2)


@_preset("ai-toolkit:shift", "uniform flow σ through the scheduler's static shift (or Flux dynamic μ)")
def _ait_shift(
    shift: float = 3.0, image_seq_len: int | None = None, content_or_style: str = "balanced",
    min_denoising_steps: int = 0, max_denoising_steps: int = 999,
    linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: shift`` (custom_flowmatch_sampler.py 134–193): an evenly spaced σ grid
    through the scheduler's shift — static σ' = sσ/(1 + (s − 1)σ) (λ − 2·log s), or with dynamic shifting
    (give ``image_seq_len``) s = e^μ, μ linear in ``image_seq_len`` from (256, 0.5) to (4096, 1.15)."""
    return _ait_flow("shift", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2, shift, image_seq_len)


@_preset("ai-toolkit:flux_shift", "the shift grid with Flux's scheduler: dynamic μ, max_shift 1.15")
def _ait_flux_shift(
    image_seq_len: int = 4096, content_or_style: str = "balanced", min_denoising_steps: int = 0,
    max_denoising_steps: int = 999, linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: flux_shift``: the ``shift`` code path (same branch,
    custom_flowmatch_sampler.py 134) with the Flux scheduler (sampler.py 78–88: dynamic shifting, base 0.5 at
    256 tokens, max_shift 1.15 at 4096). ``image_seq_len`` = (H/16)·(W/16) (latents /8, patch 2,
    BaseSDTrainProcess.py 1212–1215); 4096 is 1024²."""
    return _ait_flow("flux_shift", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2, 3.0, image_seq_len)


@_preset("ai-toolkit:lumina2_shift", "the shift grid with Lumina2's scheduler: static shift 6")
def _ait_lumina2_shift(
    shift: float = 6.0, content_or_style: str = "balanced", min_denoising_steps: int = 0,
    max_denoising_steps: int = 999, linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: lumina2_shift``: the ``shift`` code path with Lumina2's scheduler
    (sampler.py 102–117: static shift 6, no dynamic shifting)."""
    return _ait_flow("lumina2_shift", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2, shift)


@_preset("ai-toolkit:lognorm_blend", "75 % σ = 1 − x/max x, x log-normal, + 25 % evenly spaced σ")
def _ait_lognorm_blend(
    content_or_style: str = "balanced", min_denoising_steps: int = 0, max_denoising_steps: int = 999,
    linear_timesteps: bool = False, linear_timesteps2: bool = False,
) -> NoiseConfig:
    """ai-toolkit ``timestep_type: lognorm_blend`` (custom_flowmatch_sampler.py 195–217): 750 grid levels
    σ = 1 − x/max(x), x ~ LogNormal(0, 0.333), and 250 evenly spaced, truncated to integer timesteps and
    redrawn every step: the exact law of one entry (``lognorm_blend_table``, the maximum's distribution
    integrated out). With ``content_or_style`` content/style the cubic index is read on this pooled law
    (the sorted table's order statistics are not modelled)."""
    return _ait_flow("lognorm_blend", content_or_style, min_denoising_steps, max_denoising_steps,
                     linear_timesteps, linear_timesteps2)


@_preset("ai-toolkit:content", "content_or_style: content on the default (sigmoid) type")
def _ait_content(min_denoising_steps: int = 0, max_denoising_steps: int = 999) -> NoiseConfig:
    """ai-toolkit ``content_or_style: content`` with the default ``timestep_type: sigmoid``: index u³·T
    into the sorted sigmoid grid (BaseSDTrainProcess.py 1284–1285), so λ = F⁻¹(u³) with F the N(0, 2²) cdf:
    cdf F^(1/3), mass at the noisy end."""
    return _ait_flow("sigmoid", "content", min_denoising_steps, max_denoising_steps)


@_preset("ai-toolkit:style", "content_or_style: style on the default (sigmoid) type")
def _ait_style(min_denoising_steps: int = 0, max_denoising_steps: int = 999) -> NoiseConfig:
    """ai-toolkit ``content_or_style: style`` with the default ``timestep_type: sigmoid``: index
    (1 − u³)·T (BaseSDTrainProcess.py 1286–1287), λ = F⁻¹(1 − u³): cdf 1 − (1 − F)^(1/3), mass at the
    clean end."""
    return _ait_flow("sigmoid", "style", min_denoising_steps, max_denoising_steps)


@_preset("ai-toolkit:snr_gamma", "unclamped γ/SNR on the model's own loss (SD-style DDPM models)")
def _ait_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``snr_gamma``: the loss of the model's target multiplied by γ/SNR, *not* clamped
    (kohya's and diffusers' min-SNR clamp at 1) and with no v-prediction variant, on a DDPM model (the
    Stable Diffusion scaled_linear table; train_tools.py 720–749). Timesteps: ``set_timesteps(1000)`` then
    balanced indices ``randint(min + 1, max − 1)`` = randint(1, 998) for non-flowmatch schedulers
    (BaseSDTrainProcess.py 1301–1316), i.e. timesteps 2 … 998 uniformly."""
    param = _prediction_param(prediction_type)
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("snr_gamma", gamma=float(gamma)), param, "vp")
    return _ddpm_cfg(param, sched, _ddpm_density(sched, 2, 999), w)


@_preset("ai-toolkit:min_snr_gamma", "min(γ/SNR, 1) on the model's own loss (no v variant)")
def _ait_min_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``min_snr_gamma``: the target loss multiplied by min(γ/SNR, 1) = min(SNR, γ)/SNR for
    every prediction type. For ε this is min-SNR-γ; for v it is w_ε = min(SNR, γ)·(SNR + 1)/SNR², which
    up-weights noisy levels relative to kohya's / diffusers' v formula min(SNR, γ)/(SNR + 1). Timesteps
    2 … 998 as for ``ai-toolkit:snr_gamma``."""
    param = _prediction_param(prediction_type)
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("min_snr", gamma=float(gamma)), param, "vp")
    return _ddpm_cfg(param, sched, _ddpm_density(sched, 2, 999), w)
