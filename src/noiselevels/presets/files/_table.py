"""The shape every format's option→preset table has (shared by the readers and by ``convert``).

A :class:`ToolTable` is data only:

* ``tool`` — the tool (``kohya``, ``ai-toolkit`` …);
* ``selector`` — the option whose value picks the preset (``timestep_sampling``), ``default`` its value
  when absent, and ``presets`` value → preset name (``"shift"`` → ``"kohya:shift"``);
* ``params`` — tool option name → preset parameter name (mostly the same name);
* ``unmodelled`` — options that change the noise levels or the loss weight but that no preset models,
  with what they do; a file setting one of them gets it listed, never dropped silently.

A parameter the chosen preset does not take is listed as not modelled too ("not a parameter of …").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from noiselevels.presets import PRESETS

__all__ = ["ToolTable", "map_params"]


@dataclasses.dataclass(frozen=True)
class ToolTable:
    tool: str
    selector: str | None
    default: str | None
    presets: Mapping[str, str]
    params: Mapping[str, str]
    unmodelled: Mapping[str, str]


def map_params(
    table: ToolTable, name: str, options: Mapping[str, Any], *, skip: tuple[str, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """The parameters of preset ``name`` that ``options`` set, and the options not modelled
    (``"option = value: why"``)."""
    accepted = PRESETS[name].params
    params: dict[str, Any] = {}
    missing: list[str] = []
    for opt, value in options.items():
        if opt in skip or opt == table.selector:
            continue
        if opt in table.params:
            pname = table.params[opt]
            if pname in accepted:
                params[pname] = value
            else:
                missing.append(f"{opt} = {value!r}: not a parameter of {name}")
        elif opt in table.unmodelled and value not in (None, False, 0, "", "mse", "l2"):
            missing.append(f"{opt} = {value!r}: {table.unmodelled[opt]}")
    return params, missing


def value(text: Any) -> Any:
    """A command-line / config string as bool, int, float or str."""
    if not isinstance(text, str):
        return text
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text
