"""The noise-level configuration of a training run (``NoiseConfig``) and building its components from
TOML tables.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); weights in ε-MSE units unless a weighting
table says ``units = "<parameterisation>"`` (then the weight multiplies that parameterisation's own
loss, as most training tools do, and is converted to ε units with the parameterisation's
``loss_factor``: w_ε(λ) = w(λ)·f(λ), f = e^−λ for x0, 1+e^−λ for v, (1+e^(−λ/2))² for flow).

A component table is ``{name = ..., **params}`` (see ``build_component``); a ``[noise]`` table is
described in ``noiselevels.config``. This module reads ``[noise]`` tables *without* a ``preset``
(``NoiseConfig.from_dict``), or over an already resolved preset (``from_table(table, base=...)``);
resolving ``preset = "tool:name"`` is ``noiselevels.config.noise_config``'s job, since the presets
(one layer up) build ``NoiseConfig``s themselves. Registries come from ``noiselevels.catalog``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

from noiselevels.analysis import EffectiveWeighting
from noiselevels.catalog import registry
from noiselevels.components import Component, Density, Registry, Schedule, Weighting, check_finite
from noiselevels.levels import check_process
from noiselevels.options import check_keys
from noiselevels.parameterizations import parameterization as make_parameterization
from noiselevels.schedules import ZeroTerminalSNR, zero_terminal_snr
from noiselevels.schedules import shift as shift_schedule
from noiselevels.training.densities import truncated
from noiselevels.training.objective import Objective
from noiselevels.training.weightings import in_units

__all__ = [
    "NOISE_KEYS",
    "PARAMETERIZATIONS",
    "NoiseConfig",
    "NoiseConfigWarning",
    "build_component",
    "combination_warnings",
    "component_table",
    "from_table",
    "reaches_zero_snr",
]

NOISE_KEYS = (
    "preset",
    "preset_params",
    "process",
    "parameterization",
    "density",
    "weighting",
    "schedule",
    "noise_offset",
)
#: the keys ``NoiseConfig.to_dict`` always writes: a table with them all is fully resolved
RESOLVED_KEYS = ("process", "parameterization", "density", "weighting")
PARAMETERIZATIONS = ("eps", "x0", "v", "flow", "edm")
_KINDS = ("schedule", "density", "weighting", "parameterization")
_KIND_OF_KEY = {
    "schedule": "schedule",
    "density": "density",
    "base": "density",
    "components": "density",
    "weighting": "weighting",
    "a": "weighting",
    "b": "weighting",
    "parameterization": "parameterization",
}
# keys a table accepts besides the component's own parameters, applied after building it
_EXTRA_KEYS = {"schedule": ("shift", "zero_terminal_snr"), "density": ("truncate",), "weighting": ("units",)}
_DEFAULT_PARAMETERIZATION = {"vp": "eps", "ve": "edm", "flow": "flow"}


def _check_parameterization(name: Any) -> str:
    if name not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; valid names: {', '.join(PARAMETERIZATIONS)}")
    return name


# ----------------------------------------------------------------------------------------------
# dict <-> component
# ----------------------------------------------------------------------------------------------
def _fields_of(reg: Registry, name: str) -> list[str]:
    factory = reg.get(name)
    if dataclasses.is_dataclass(factory):
        return [f.name for f in dataclasses.fields(factory) if f.init]
    return []


def _decode_value(key: str, value: Any, where: str) -> Any:
    if isinstance(value, dict) and "name" in value:
        kind = value.get("kind") or _KIND_OF_KEY.get(key)
        if kind is None:
            kind = _guess_kind(value["name"], where)
        return build_component(kind, value, where=f"{where}.{key}")
    if isinstance(value, list):
        return tuple(_decode_value(key, v, where) for v in value)
    return value


def _guess_kind(name: str, where: str) -> str:
    kinds = [k for k in _KINDS if name in registry(k)]
    if len(kinds) != 1:
        raise ValueError(
            f"{where}: cannot tell which kind of component {name!r} is; add kind = "
            '"schedule" | "density" | "weighting" to its table'
        )
    return kinds[0]


def _registry_for(kind: str, table: Any, where: str) -> Registry:
    if kind not in _KINDS:
        raise ValueError(f"{where}: unknown component kind {kind!r}; valid: {', '.join(_KINDS)}")
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table with a 'name' key; got {table!r}")
    reg = registry(kind)
    if "name" not in table:
        raise ValueError(f"{where} needs a 'name' key (one of: {', '.join(reg.names())})")
    return reg


def build_component(
    kind: str, table: dict[str, Any], *, where: str = "noise", process: str = "vp"
) -> Component:
    """Build a schedule, density or weighting from a TOML table ``{name = ..., **params}``.

    Besides the component's own parameters a table accepts: for a schedule ``shift`` (λ − 2·log s)
    and ``zero_terminal_snr`` (bool), applied in that order after building it; for a density
    ``truncate = [lo, hi]``; for a weighting ``units`` (the parameterisation whose loss the weight
    multiplies; converted with ``in_units(w, units, process=process)``). A ``uniform_t`` density
    without a ``schedule`` is completed by the caller. Unknown keys raise ``ValueError`` naming them
    and the valid ones.
    """
    reg = _registry_for(kind, table, where)
    name = table["name"]
    try:
        fields = _fields_of(reg, name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    extra = [k for k in _EXTRA_KEYS.get(kind, ()) if k not in fields]
    own = {k: v for k, v in table.items() if k not in ("name", "kind")}
    check_keys(f"{where} ({kind} {name!r})", own, [*fields, *extra])
    params = {k: _decode_value(k, v, where) for k, v in own.items() if k in fields}
    try:
        comp = reg.create(name, **params)
    except TypeError as e:  # a missing required parameter
        raise ValueError(f"{where}: {kind} {name!r}: {e}") from None
    post = {k: v for k, v in own.items() if k in extra}
    if kind == "schedule":
        return _schedule_extras(comp, post, where)
    if kind == "density" and "truncate" in post:
        return _truncate(comp, post["truncate"], where)
    if kind == "weighting" and "units" in post:
        units = _check_parameterization(post["units"])
        return comp if units == "eps" else in_units(comp, units, process=process)
    return comp


def _schedule_extras(comp: Schedule, post: dict[str, Any], where: str) -> Schedule:
    """A schedule's ``shift`` and then ``zero_terminal_snr`` keys."""
    if "shift" in post:
        comp = shift_schedule(comp, check_finite(f"{where}.shift", post["shift"]))
    if "zero_terminal_snr" in post:
        flag = post["zero_terminal_snr"]
        if not isinstance(flag, bool):
            raise ValueError(f"{where}.zero_terminal_snr must be true or false; got {flag!r}")
        if flag:
            comp = zero_terminal_snr(comp)
    return comp


def _truncate(comp: Density, tr: Any, where: str) -> Density:
    """A density's ``truncate = [logsnr_min, logsnr_max]`` key."""
    if not (isinstance(tr, list | tuple) and len(tr) == 2):
        raise ValueError(f"{where}.truncate must be [logsnr_min, logsnr_max]; got {tr!r}")
    lo, hi = (float(x) if isinstance(x, int | float) and not isinstance(x, bool) else x for x in tr)
    if not (isinstance(lo, float) and isinstance(hi, float) and lo < hi):
        raise ValueError(f"{where}.truncate must be [logsnr_min, logsnr_max] with min < max; got {tr!r}")
    return truncated(comp, lo, hi)


def component_table(comp: Component) -> dict[str, Any]:
    """A component as a TOML-ready table: ``component.to_dict()`` without the top-level ``kind``."""
    d = comp.to_dict()
    d.pop("kind", None)
    return d


# ----------------------------------------------------------------------------------------------
# NoiseConfig
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class NoiseConfig:
    """Everything about noise levels that a training run needs.

    * ``process``: ``vp`` | ``ve`` | ``flow`` (how z = α·x₀ + σ·ε is formed at a λ).
    * ``parameterization``: ``eps`` | ``x0`` | ``v`` | ``flow`` | ``edm`` (what the model predicts).
    * ``density``: p(λ), the distribution training noise levels are drawn from.
    * ``weighting``: w(λ) in ε-MSE units.
    * ``schedule``: optional, only descriptive here (a density such as ``uniform_t`` holds its own).
    * ``preset``: the ``tool:name`` this configuration came from, if any.
    * ``noise_offset``: c in ε += c·n over (B, C, 1, 1).
    * ``description``: human notes (e.g. a preset's approximations); not part of equality.

    The effective weighting is ``config.effective_weighting()`` = p(λ)·w(λ).
    """

    process: str
    parameterization: str
    density: Density
    weighting: Weighting
    schedule: Schedule | None = None
    preset: str | None = None
    noise_offset: float = 0.0
    description: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        check_process(self.process)
        _check_parameterization(self.parameterization)
        if not isinstance(self.density, Density):
            raise ValueError(f"density must be a Density component; got {self.density!r}")
        if not isinstance(self.weighting, Weighting):
            raise ValueError(f"weighting must be a Weighting component; got {self.weighting!r}")
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ValueError(f"schedule must be a Schedule component or None; got {self.schedule!r}")
        off = check_finite("noise_offset", self.noise_offset)
        if off < 0:
            raise ValueError(f"noise_offset must be >= 0; got {off!r}")
        object.__setattr__(self, "noise_offset", off)
        if self.process == "ve" and reaches_zero_snr(self):
            raise ValueError(
                "a zero-terminal-SNR schedule (λ = −inf) under the ve process has no finite input "
                "(z = x₀ + ∞·ε); use process vp or flow"
            )
        for message in combination_warnings(self):
            warnings.warn(message, NoiseConfigWarning, stacklevel=3)

    # -- composition ---------------------------------------------------------------------------
    def effective_weighting(self) -> EffectiveWeighting:
        """W(λ) = p(λ)·w(λ) (``noiselevels.analysis.EffectiveWeighting``)."""
        return EffectiveWeighting(density=self.density, weighting=self.weighting)

    def objective(self) -> Objective:
        """The training loss ``noiselevels.training.objective.Objective`` for this configuration."""
        return Objective(
            process=self.process,
            parameterization=make_parameterization(self.parameterization),
            density=self.density,
            weighting=self.weighting,
            noise_offset=self.noise_offset,
        )

    def replace(self, **changes: Any) -> NoiseConfig:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        lines = [
            f"process: {self.process}",
            f"parameterization: {self.parameterization}",
            f"density p(λ): {self.density.describe()}",
            f"weighting w(λ) [ε units]: {self.weighting.describe()}",
        ]
        if self.schedule is not None:
            lines.append(f"schedule: {self.schedule.describe()}")
        if self.preset:
            lines.insert(0, f"preset: {self.preset}")
        if self.noise_offset:
            lines.append(f"noise_offset: {self.noise_offset:g}")
        return "\n".join(lines)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``[noise]`` table (fully resolved: loading it back gives an equal config)."""
        d: dict[str, Any] = {
            "process": self.process,
            "parameterization": self.parameterization,
            "noise_offset": self.noise_offset,
            "density": component_table(self.density),
            "weighting": component_table(self.weighting),
        }
        if self.schedule is not None:
            d["schedule"] = component_table(self.schedule)
        if self.preset is not None:
            d["preset"] = self.preset
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseConfig:
        """Build from a ``[noise]`` table without a preset, or a fully resolved one (``to_dict``'s).

        A fully resolved table names its ``process``, ``parameterization``, ``density`` and
        ``weighting``; its ``preset`` key is then only the configuration's label. A table that still
        has to resolve its ``preset`` (and ``preset_params``) goes to ``noiselevels.config.noise_config``.
        """
        check_keys("[noise]", d, NOISE_KEYS)
        if "preset" in d and ("preset_params" in d or any(k not in d for k in RESOLVED_KEYS)):
            raise ValueError(
                f"[noise] names preset {d['preset']!r}: resolve it with noiselevels.config.noise_config "
                "(or load_config); NoiseConfig.from_dict reads a table without a preset or a fully "
                f"resolved one (with {', '.join(RESOLVED_KEYS)})"
            )
        return from_table(d)


class NoiseConfigWarning(UserWarning):
    """A configuration the literature calls broken (``combination_warnings``)."""


def _schedules_of(cfg: NoiseConfig) -> list[Schedule]:
    """The configuration's schedule and its density's (``uniform_t``), with the schedules they wrap."""
    out, todo = [], [cfg.schedule, getattr(cfg.density, "schedule", None)]
    while todo:
        s = todo.pop()
        if isinstance(s, Schedule) and s not in out:
            out.append(s)
            todo.append(getattr(s, "schedule", None))
    return out


def reaches_zero_snr(cfg: NoiseConfig) -> bool:
    """Whether the configuration asks for zero terminal SNR (Lin et al. 2024): a ``zero_terminal_snr``
    schedule or a DDPM table with ``rescale_betas_zero_snr`` — training then reaches λ = −inf (pure
    noise) and sampling may start there. (A continuous cosine or flow schedule also has λ(1) = −inf, but
    t = 1 has probability 0 and the tools sample them from a finite σ, so they do not count here.)"""
    return any(
        isinstance(s, ZeroTerminalSNR) or getattr(s, "rescale_betas_zero_snr", False)
        for s in _schedules_of(cfg)
    )


def combination_warnings(cfg: NoiseConfig) -> list[str]:
    """One-line warnings for combinations the literature calls broken (``NoiseConfig`` emits them as
    ``NoiseConfigWarning``; the ve process with zero terminal SNR is refused outright):

    * zero terminal SNR with ε-prediction: at λ = −inf the input is pure noise and ε̂ = z carries no
      information about x₀ (x̂₀ = (z − σ·ε̂)/α, α = 0); Lin et al. 2024, §3.2, switch to v-prediction;
    * a noise offset (Guttenberg 2023) under the flow process: the offset noise is not the Gaussian the
      flow's straight paths end in, so the velocity target no longer matches the sampler's prior
      (rectified-flow trainers such as SD3's and Flux's do not use it), and zero terminal SNR is the
      fix the offset approximated (Lin et al. 2024, §3.1);
    * a noise offset with zero terminal SNR: redundant (Lin et al. 2024, §3.1) and it shifts the
      terminal distribution away from the N(0, I) that sampling from σ = inf starts at.
    """
    out = []
    ztsnr = reaches_zero_snr(cfg)
    if ztsnr and cfg.parameterization == "eps":
        out.append(
            "zero terminal SNR with ε-prediction: at λ = −inf the model sees pure noise and cannot "
            "predict x₀ (Lin et al. 2024, §3.2); use parameterization = \"v\" (or x0 / flow), or drop "
            "zero_terminal_snr"
        )
    if cfg.noise_offset and cfg.process == "flow":
        out.append(
            f"noise_offset = {cfg.noise_offset:g} under flow matching: the offset noise is not the N(0, I) "
            "the sampler starts from, so the velocity target and the prior disagree; rectified-flow models "
            "(SD3, Flux) train without it — drop noise_offset"
        )
    if cfg.noise_offset and ztsnr:
        out.append(
            f"noise_offset = {cfg.noise_offset:g} with zero terminal SNR: the offset is the workaround zero "
            "terminal SNR replaces (Lin et al. 2024, §3.1) and it moves the terminal distribution off N(0, I)"
        )
    return out


def from_table(d: Mapping[str, Any], *, base: NoiseConfig | None = None) -> NoiseConfig:
    """The ``NoiseConfig`` of a ``[noise]`` table over ``base`` (a resolved preset, or None).

    Explicit keys override the base's values; ``preset`` is recorded as the configuration's preset
    name (the caller resolved it into ``base``, with ``preset_params``). Without a base, ``process``
    and ``density`` are required; ``parameterization`` defaults to the process's own (eps, edm, flow)
    and the weighting to ``constant``.
    """
    check_keys("[noise]", d, NOISE_KEYS)
    if "preset_params" in d and "preset" not in d:
        raise ValueError("noise.preset_params given without noise.preset")
    process = d.get("process", base.process if base else None)
    if process is None:
        raise ValueError("[noise] needs 'process' (vp, ve or flow) or a 'preset'")
    check_process(process)
    param = d.get("parameterization", base.parameterization if base else None)
    if param is None:
        param = _DEFAULT_PARAMETERIZATION[process]
    schedule = base.schedule if base else None
    if "schedule" in d:
        schedule = build_component(
            "schedule", _table(d["schedule"], "noise.schedule"), where="noise.schedule"
        )
    if "density" in d:
        density = _build_density(dict(_table(d["density"], "noise.density")), schedule, process)
    elif base is not None:
        density = base.density
    else:
        raise ValueError('[noise] needs a [noise.density] table (e.g. name = "logit_normal") or a preset')
    if "weighting" in d:
        table = _table(d["weighting"], "noise.weighting")
        weighting = build_component("weighting", table, where="noise.weighting", process=process)
    else:
        weighting = base.weighting if base is not None else registry("weighting").create("constant")
    return NoiseConfig(
        process=process,
        parameterization=param,
        density=density,
        weighting=weighting,
        schedule=schedule,
        preset=d.get("preset"),
        noise_offset=d.get("noise_offset", base.noise_offset if base else 0.0),
        description=base.description if base else "",
    )


def _table(v: Any, where: str) -> dict[str, Any]:
    if isinstance(v, str):
        return {"name": v}
    if not isinstance(v, dict):
        raise ValueError(f"{where} must be a table (or a name); got {v!r}")
    return v


def _build_density(table: dict[str, Any], schedule: Schedule | None, process: str) -> Density:
    name = table.get("name")
    densities = registry("density")
    if (
        name is not None
        and name in densities
        and "schedule" in _fields_of(densities, name)
        and "schedule" not in table
    ):
        if schedule is None:
            if process != "flow":
                raise ValueError(
                    f"density {name!r} needs a schedule: add a [noise.schedule] table "
                    '(e.g. name = "cosine") or a schedule = {{ name = ... }} key'
                )
            schedule = registry("schedule").create("flow")
        table = {**table, "schedule": schedule}
    return build_component("density", table, where="noise.density")
