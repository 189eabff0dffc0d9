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

Layer: this module resolves ``preset = "tool:name"`` (``noise_config``) and reads files
(``load_config``); it sits above ``noiselevels.presets``, which build ``NoiseConfig``s from
``noiselevels.noise`` (the dataclass and ``build_component``, re-exported here).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noiselevels.noise import NOISE_KEYS, NoiseConfig, build_component, component_table, from_table
from noiselevels.options import apply_overrides, check_keys, parse_value, read_toml
from noiselevels.presets import preset

__all__ = [
    "NOISE_KEYS",
    "NoiseConfig",
    "apply_overrides",
    "build_component",
    "component_table",
    "load_config",
    "noise_config",
    "parse_value",
    "read_toml",
]


def noise_config(table: Mapping[str, Any]) -> NoiseConfig:
    """The ``NoiseConfig`` of a ``[noise]`` table (see the module docstring for the schema).

    A ``preset = "tool:name"`` is built with ``preset_params`` (``noiselevels.presets.preset``) and the
    table's explicit keys override its values; without a preset this is ``NoiseConfig.from_dict``.
    """
    check_keys("[noise]", table, NOISE_KEYS)
    if "preset" not in table:
        return from_table(table)
    params = table.get("preset_params", {})
    if not isinstance(params, dict):
        raise ValueError(f"noise.preset_params must be a table; got {params!r}")
    return from_table(table, base=preset(table["preset"], **params))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> NoiseConfig:
    """The ``NoiseConfig`` of a TOML file's ``[noise]`` section (after ``--set`` style overrides)."""
    d = apply_overrides(read_toml(path), list(overrides))
    if "noise" not in d:
        raise ValueError(f"{path}: no [noise] section")
    try:
        return noise_config(d["noise"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
