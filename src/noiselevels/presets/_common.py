"""Building blocks shared by the tool presets: the pieces several tools' options reduce to.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow t = σ = sigmoid(−λ/2) with t = 0 clean;
weights in ε-MSE units (Kingma & Gao 2023), a tool's weight on its own loss converted with
``noiselevels.training.weightings.in_units``; integer timesteps i of a T-step table are read as the
continuous t = (i + 1)/T.

Also ``ToolPresets``, the table in which each tool module (``ai_toolkit``, ``kohya``, ``diffusers``,
``onetrainer``, ``simpletuner``) collects its presets; ``noiselevels.presets`` merges the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from noiselevels.components import Density, Weighting, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.schedules import schedule
from noiselevels.schedules import shift as shift_schedule
from noiselevels.training.densities import density
from noiselevels.training.weightings import in_units, weighting

_F64 = torch.float64

Builder = Callable[..., NoiseConfig]


class ToolPresets:
    """One tool's presets: ``name -> (summary, builder)``, filled with the ``add`` decorator.

    ``name`` is ``"tool:option"`` with this table's tool; a builder takes the tool's own parameter
    names (with defaults) and returns a ``NoiseConfig``.
    """

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.entries: dict[str, tuple[str, Builder]] = {}

    def add(self, name: str, summary: str) -> Callable[[Builder], Builder]:
        if name.split(":", 1)[0] != self.tool or name in self.entries:
            raise ValueError(f"preset {name!r}: not a new {self.tool}:name preset")

        def deco(fn: Builder) -> Builder:
            self.entries[name] = (summary, fn)
            return fn

        return deco


# -- components --------------------------------------------------------------------------------
def _d(name: str, **kw) -> Density:
    return density(name, **kw)


def _w(name: str, **kw) -> Weighting:
    return weighting(name, **kw)


def _check_param(p: str, allowed: tuple[str, ...], what: str) -> str:
    if p not in allowed:
        raise ValueError(f"unknown {what} {p!r}; valid: {', '.join(allowed)}")
    return p


def _prediction_param(prediction_type: str) -> str:
    """diffusers' ``prediction_type`` (``epsilon`` | ``v_prediction``) as a parameterisation name."""
    allowed = ("epsilon", "v_prediction")
    return {"epsilon": "eps", "v_prediction": "v"}[_check_param(prediction_type, allowed, "prediction_type")]


def _in_units(w: Weighting, units: str, process: str) -> Weighting:
    """A weight on the ``units`` parameterisation's own loss, in ε units (ε units: unchanged)."""
    return w if units == "eps" else in_units(w, units, process=process)


def _beta(a: float, b: float) -> Density:
    check_positive("beta a", a)
    check_positive("beta b", b)
    return _d("beta", a=float(a), b=float(b))


def _shift_density(d: Density, factor: float) -> Density:
    """λ → λ − 2·log(factor): the flow shift t' = s·t/(1 + (s − 1)·t) applied to draws from ``d``."""
    return _d("shifted", base=d, factor=float(factor))


# -- rectified flow ----------------------------------------------------------------------------
def _flow_sched(shift: float = 1.0):
    s = schedule("flow")
    return shift_schedule(s, shift) if shift != 1.0 else s


def _uniform_flow(shift: float = 1.0) -> Density:
    return _d("uniform_t", schedule=_flow_sched(shift))


def _logit_normal(mean: float, std: float) -> Density:
    """logit-normal(mean, std) over flow t = σ: λ ~ N(−2·mean, (2·std)²)."""
    return _d("logit_normal", mean=float(mean), std=float(std))


def _flow_loss(weight: Weighting | None = None) -> Weighting:
    """A weight on the flow-velocity loss (None: the plain flow loss), in ε units."""
    return _in_units(weight if weight is not None else _w("constant"), "flow", "flow")


def _flow_cfg(density: Density, weighting: Weighting | None = None) -> NoiseConfig:
    """Rectified flow, velocity prediction; ``weighting`` in ε units (None: the plain flow loss)."""
    return NoiseConfig(
        process="flow",
        parameterization="flow",
        density=density,
        weighting=weighting if weighting is not None else _flow_loss(),
        schedule=_flow_sched(),
    )


# -- DDPM (Stable Diffusion 1.x / 2.x / XL) --------------------------------------------------------
def _sd_schedule(zero_terminal_snr: bool = False):
    """Stable Diffusion 1.x/2.x/XL's DDPM table (scaled_linear, 0.00085 → 0.012, T = 1000)."""
    return schedule(
        "ddpm",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        rescale_betas_zero_snr=bool(zero_terminal_snr),
    )


def _ddpm_density(sched, min_timestep: int = 0, max_timestep: int = 1000) -> Density:
    """Uniform integer timesteps in [min_timestep, max_timestep) of a T = 1000 table, as uniform t
    truncated to the λ range of those timesteps (t_i = (i + 1)/T)."""
    T = sched.num_train_timesteps
    if not (
        isinstance(min_timestep, int)
        and isinstance(max_timestep, int)
        and 0 <= min_timestep < max_timestep <= T
    ):
        raise ValueError(
            f"need integers 0 <= min_timestep < max_timestep <= {T}; got min_timestep={min_timestep!r}, "
            f"max_timestep={max_timestep!r}"
        )
    d = _d("uniform_t", schedule=sched)
    if min_timestep == 0 and max_timestep == T:
        return d
    # timesteps min … max−1 cover t ∈ (min/T, max/T] in the continuous view of the table
    t_lo = torch.tensor(min_timestep / T, dtype=_F64)
    t_hi = torch.tensor(max_timestep / T, dtype=_F64)
    lam_hi = float(sched.logsnr(t_lo))
    lam_lo = float(sched.logsnr(t_hi))
    return d.truncate(lam_lo, lam_hi)


def _ddpm_cfg(param: str, sched, density: Density, weighting: Weighting) -> NoiseConfig:
    """A variance-preserving DDPM configuration (``param``: eps or v); ``weighting`` in ε units."""
    return NoiseConfig(
        process="vp", parameterization=param, density=density, weighting=weighting, schedule=sched
    )


# -- the SD3 recipe: diffusers' training_utils, copied by kohya's --timestep_sampling sigma ---------
_SD3_SCHEMES = ("none", "uniform", "logit_normal", "mode", "sigma_sqrt", "cosmap")


def _sd3_weight(scheme: str, units: str = "flow") -> Weighting:
    """diffusers' ``compute_loss_weighting_for_sd3(scheme)`` on the ``units`` loss, in ε units: ``sigma_sqrt``
    σ⁻², ``cosmap`` 2/(π(1 − 2σ + 2σ²)), anything else 1 (diffusers' silent fallback)."""
    _check_param(scheme, _SD3_SCHEMES, "weighting_scheme")
    if scheme in ("sigma_sqrt", "cosmap"):
        return _w(scheme, units=units)
    return _in_units(_w("constant"), units, "flow")


def _sd3_density(
    scheme: str, logit_mean: float, logit_std: float, mode_scale: float, shift: float
) -> Density:
    """``compute_density_for_timestep_sampling(scheme)``'s u read as flow σ, then shifted by ``shift``:
    logit_normal(``logit_mean``, ``logit_std``), ``mode`` (``mode_scale``), anything else uniform. A caller
    whose u indexes the descending scheduler table passes −logit_mean (``_sd3_like``)."""
    _check_param(scheme, _SD3_SCHEMES, "weighting_scheme")
    check_positive("shift", shift)
    if scheme == "logit_normal":
        check_positive("logit_std", logit_std)
        return _logit_normal(logit_mean + math.log(shift), logit_std)
    if scheme == "mode":
        dens = _d("mode", scale=float(mode_scale))
        return dens if shift == 1.0 else _shift_density(dens, shift)
    return _uniform_flow(shift)


def _sd3_like(
    scheme: str, logit_mean: float, logit_std: float, mode_scale: float, shift: float, units: str
) -> NoiseConfig:
    """One ``weighting_scheme`` name as both the density (``compute_density_for_timestep_sampling``:
    logit_normal, mode, else uniform, then the scheduler's shift) and the loss weight on the ``units``
    loss (``_sd3_weight``).

    u indexes the *descending* scheduler table: ``timesteps[int(u·1000)]``, whose σ is
    shift((1000 − i)/1000) (diffusers ``scheduling_flow_match_euler_discrete.py`` ``__init__``), so the
    drawn σ is shift(1 − u): u = sigmoid(n), n ~ N(logit_mean, logit_std) gives 1 − u = sigmoid(−n), a
    logit-normal(−logit_mean, logit_std) σ, and a shift s adds log s to that mean. ``mode``'s u is
    symmetric about ½ (1 − f(v) = f(1 − v)), so its direction does not matter. The integer index
    (σ on the 1000-point grid, rounded towards noise by < 1/1000 in 1 − u) is treated as continuous."""
    dens = _sd3_density(scheme, -logit_mean, logit_std, mode_scale, shift)
    return NoiseConfig(
        process="flow",
        parameterization="flow",
        density=dens,
        weighting=_sd3_weight(scheme, units),
        schedule=_flow_sched(),
    )
