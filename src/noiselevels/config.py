"""The ``[noise]`` section of a noiselevels TOML configuration.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); weights in ε-MSE units unless a weighting
table says ``units = "<parameterisation>"`` (then the weight multiplies that parameterisation's own
loss, as most training tools do, and is converted to ε units with the parameterisation's
``loss_factor``: w_ε(λ) = w(λ)·f(λ), f = e^−λ for x0, 1+e^−λ for v, (1+e^(−λ/2))² for flow).

Schema (the trainer adds its own ``[model]``, ``[data]``, ``[train]`` sections)::

    [noise]
    preset = "kohya:sigmoid"          # optional: a tool's setting (see noiselevels.presets)
    preset_params = { sigmoid_scale = 1.0 }   # optional: the preset's parameters
    process = "flow"                  # vp | ve | flow        (explicit keys override the preset)
    parameterization = "flow"         # eps | x0 | v | flow | edm
    noise_offset = 0.0

    [noise.density]                   # p(λ): any registered density and its parameters
    name = "logit_normal"
    mean = 0.0
    std = 1.0
    truncate = [-10.0, 10.0]          # optional: restrict to λ ∈ [lo, hi] (min/max timestep)

    [noise.weighting]                 # w(λ): any registered weighting and its parameters
    name = "min_snr"
    gamma = 5.0
    units = "eps"                     # optional: the loss the weight multiplies (default eps)

    [noise.schedule]                  # used by densities that need one (uniform_t)
    name = "cosine"
    shift = 1.0                       # optional: λ − 2·log(shift)
    zero_terminal_snr = false         # optional

Nested components (a mixture's ``components``, a ``uniform_t`` density's ``schedule``) are written
as inline tables with a ``name`` key. Unknown keys raise ``ValueError`` naming the key and the valid
ones; nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from noiselevels.components import (
    DENSITIES,
    SCHEDULES,
    WEIGHTINGS,
    Component,
    Density,
    Registry,
    Schedule,
    Weighting,
)
from noiselevels.components import check_finite as _check_finite
from noiselevels.levels import check_process
from noiselevels.options import apply_overrides, parse_value, read_toml  # noqa: F401  (re-exported)

__all__ = ["NOISE_KEYS", "NoiseConfig", "apply_overrides", "load_config", "read_toml"]

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
PARAMETERIZATIONS = ("eps", "x0", "v", "flow", "edm")
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


def _registries() -> dict[str, Registry]:
    """The registries, with every module that registers components imported."""
    from noiselevels import presets, schedules, spectral  # noqa: F401  (registration side effects)
    from noiselevels.parameterizations import PARAMETERIZATIONS
    from noiselevels.training import adaptive, densities, weightings  # noqa: F401

    return {
        "schedule": SCHEDULES,
        "density": DENSITIES,
        "weighting": WEIGHTINGS,
        "parameterization": PARAMETERIZATIONS,
    }


def _check_parameterization(name: Any) -> str:
    if name not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {name!r}; valid names: {', '.join(PARAMETERIZATIONS)}")
    return name


# ----------------------------------------------------------------------------------------------
# dict <-> component
# ----------------------------------------------------------------------------------------------
def _fields_of(registry: Registry, name: str) -> list[str]:
    factory = registry.get(name)
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
    kinds = [k for k, reg in _registries().items() if name in reg]
    if len(kinds) != 1:
        raise ValueError(
            f"{where}: cannot tell which kind of component {name!r} is; add kind = "
            '"schedule" | "density" | "weighting" to its table'
        )
    return kinds[0]


def build_component(
    kind: str, table: dict[str, Any], *, where: str = "noise", process: str = "vp"
) -> Component:
    """Build a schedule, density or weighting from a TOML table ``{name = ..., **params}``.

    Besides the component's own parameters a table accepts: for a schedule ``shift`` (λ − 2·log s)
    and ``zero_terminal_snr`` (bool), applied in that order after building it; for a density
    ``truncate = [lo, hi]``; for a weighting ``units`` (the parameterisation whose loss the weight
    multiplies; converted with ``in_units(w, units, process=process)``). A ``uniform_t`` density
    without a ``schedule`` is completed by the caller.
    """
    registries = _registries()
    if kind not in registries:
        raise ValueError(f"{where}: unknown component kind {kind!r}; valid: {', '.join(registries)}")
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table with a 'name' key; got {table!r}")
    registry = registries[kind]
    if "name" not in table:
        raise ValueError(f"{where} needs a 'name' key (one of: {', '.join(registry.names())})")
    name = table["name"]
    try:
        fields = _fields_of(registry, name)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    extra = {
        "schedule": ("shift", "zero_terminal_snr"),
        "density": ("truncate",),
        "weighting": ("units",),
    }.get(kind, ())
    params: dict[str, Any] = {}
    post: dict[str, Any] = {}
    for k, v in table.items():
        if k in ("name", "kind"):
            continue
        if k in fields:
            params[k] = _decode_value(k, v, where)
        elif k in extra:
            post[k] = v
        else:
            valid = ", ".join([*fields, *extra]) or "(none)"
            raise ValueError(f"{where}: unknown key {k!r} for {kind} {name!r}; valid keys: {valid}")
    try:
        comp = registry.create(name, **params)
    except TypeError as e:  # a missing required parameter
        raise ValueError(f"{where}: {kind} {name!r}: {e}") from None
    if kind == "schedule":
        if "shift" in post:
            from noiselevels.schedules import shift

            comp = shift(comp, _check_finite(f"{where}.shift", post["shift"]))
        if "zero_terminal_snr" in post:
            if not isinstance(post["zero_terminal_snr"], bool):
                raise ValueError(
                    f"{where}.zero_terminal_snr must be true or false; got {post['zero_terminal_snr']!r}"
                )
            if post["zero_terminal_snr"]:
                from noiselevels.schedules import zero_terminal_snr

                comp = zero_terminal_snr(comp)
    elif kind == "density" and "truncate" in post:
        tr = post["truncate"]
        if not (isinstance(tr, list | tuple) and len(tr) == 2):
            raise ValueError(f"{where}.truncate must be [logsnr_min, logsnr_max]; got {tr!r}")
        lo, hi = (float(x) if isinstance(x, int | float) and not isinstance(x, bool) else x for x in tr)
        if not (isinstance(lo, float) and isinstance(hi, float) and lo < hi):
            raise ValueError(f"{where}.truncate must be [logsnr_min, logsnr_max] with min < max; got {tr!r}")
        comp = comp.truncate(lo, hi)
    elif kind == "weighting" and "units" in post:
        units = _check_parameterization(post["units"])
        if units != "eps":
            from noiselevels.training.weightings import in_units

            comp = in_units(comp, units, process=process)
    return comp


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
        off = _check_finite("noise_offset", self.noise_offset)
        if off < 0:
            raise ValueError(f"noise_offset must be >= 0; got {off!r}")
        object.__setattr__(self, "noise_offset", off)

    # -- composition ---------------------------------------------------------------------------
    def effective_weighting(self):
        """W(λ) = p(λ)·w(λ) (``noiselevels.analysis.EffectiveWeighting``)."""
        from noiselevels.analysis import EffectiveWeighting

        return EffectiveWeighting(density=self.density, weighting=self.weighting)

    def objective(self):
        """The training loss ``noiselevels.training.objective.Objective`` for this configuration."""
        from noiselevels.parameterizations import parameterization
        from noiselevels.training.objective import Objective

        return Objective(
            process=self.process,
            parameterization=parameterization(self.parameterization),
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
        """Build from a ``[noise]`` table (see the module docstring for the schema)."""
        from noiselevels import presets as _presets  # registers the tools' extra components

        if not isinstance(d, dict):
            raise ValueError(f"[noise] must be a table; got {d!r}")
        bad = [k for k in d if k not in NOISE_KEYS]
        if bad:
            raise ValueError(f"unknown key {bad[0]!r} in [noise]; valid keys: {', '.join(NOISE_KEYS)}")
        base: NoiseConfig | None = None
        if "preset" in d:
            params = d.get("preset_params", {})
            if not isinstance(params, dict):
                raise ValueError(f"noise.preset_params must be a table; got {params!r}")
            base = _presets.preset(d["preset"], **params)
        elif "preset_params" in d:
            raise ValueError("noise.preset_params given without noise.preset")

        process = d.get("process", base.process if base else None)
        if process is None:
            raise ValueError("[noise] needs 'process' (vp, ve or flow) or a 'preset'")
        check_process(process)
        param = d.get("parameterization", base.parameterization if base else None)
        if param is None:
            param = {"vp": "eps", "ve": "edm", "flow": "flow"}[process]
        schedule = base.schedule if base else None
        if "schedule" in d:
            schedule = build_component(
                "schedule", _table(d["schedule"], "noise.schedule"), where="noise.schedule"
            )
        if "density" in d:
            table = dict(_table(d["density"], "noise.density"))
            density = _build_density(table, schedule, process)
        elif base is not None:
            density = base.density
        else:
            raise ValueError('[noise] needs a [noise.density] table (e.g. name = "logit_normal") or a preset')
        if "weighting" in d:
            weighting = build_component(
                "weighting",
                _table(d["weighting"], "noise.weighting"),
                where="noise.weighting",
                process=process,
            )
        elif base is not None:
            weighting = base.weighting
        else:
            weighting = WEIGHTINGS.create("constant")
        return cls(
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
    if (
        name is not None
        and name in DENSITIES
        and "schedule" in _fields_of(DENSITIES, name)
        and "schedule" not in table
    ):
        if schedule is None:
            if process != "flow":
                raise ValueError(
                    f"density {name!r} needs a schedule: add a [noise.schedule] table "
                    '(e.g. name = "cosine") or a schedule = {{ name = ... }} key'
                )
            schedule = SCHEDULES.create("flow")
        table = {**table, "schedule": schedule}
    return build_component("density", table, where="noise.density")


# ----------------------------------------------------------------------------------------------
# files and overrides
# ----------------------------------------------------------------------------------------------
def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> NoiseConfig:
    """The ``NoiseConfig`` of a TOML file's ``[noise]`` section (after ``--set`` style overrides)."""
    d = apply_overrides(read_toml(path), list(overrides))
    if "noise" not in d:
        raise ValueError(f"{path}: no [noise] section")
    try:
        return NoiseConfig.from_dict(d["noise"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
