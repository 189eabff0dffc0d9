"""The catalog: the one explicit list of the modules that register components, and ``from_dict``.

A component is registered by the module that defines it (``@DENSITIES.register("logit_normal")``); a
registry holds what has been imported. Rebuilding any serialised component (``from_dict``) or listing
every name of a kind therefore needs every registering module imported — this module imports them, by
name, in one place, instead of the bottom layer reaching up by string. A new module that registers
components is added to the imports below.

Layer: above ``training``, ``sampling`` and ``spectral`` (it imports them), below ``config``, ``presets``
and ``runs`` (which use it).
"""

from __future__ import annotations

from typing import Any

import noiselevels.parameterizations
import noiselevels.sampling.multistep
import noiselevels.sampling.solvers
import noiselevels.sampling.spacings
import noiselevels.schedules.continuous
import noiselevels.schedules.ddpm
import noiselevels.schedules.transforms
import noiselevels.spectral
import noiselevels.training.adaptive
import noiselevels.training.densities.atoms
import noiselevels.training.densities.base
import noiselevels.training.densities.combinators
import noiselevels.training.densities.flow_time
import noiselevels.training.densities.logsnr
import noiselevels.training.objective
import noiselevels.training.tool_densities.ai_toolkit
import noiselevels.training.tool_densities.onetrainer
import noiselevels.training.tool_weightings.ai_toolkit
import noiselevels.training.tool_weightings.kohya
import noiselevels.training.weightings  # noqa: F401  (registers weightings)
from noiselevels.components import _KINDS, Registry

__all__ = ["from_dict", "registry"]


def registry(kind: str) -> Registry:
    """The registry of one kind (``"schedule"``, ``"density"``, ``"weighting"``, ``"spacing"``,
    ``"solver"``, ...) with every registering module imported."""
    if kind not in _KINDS:
        raise ValueError(f"unknown component kind {kind!r}; valid kinds: {', '.join(sorted(_KINDS))}")
    return _KINDS[kind]


def from_dict(d: dict[str, Any]) -> Any:
    """Rebuild a component from ``component.to_dict()`` output (nested components included)."""
    if not isinstance(d, dict) or "kind" not in d or "name" not in d:
        raise ValueError(f"expected a dict with 'kind' and 'name' keys; got {d!r}")
    kw = {k: _decode(v) for k, v in d.items() if k not in ("kind", "name")}
    return registry(d["kind"]).create(d["name"], **kw)


def _decode(v: Any) -> Any:
    if isinstance(v, dict) and "kind" in v and "name" in v:
        return from_dict(v)
    if isinstance(v, list):
        return tuple(_decode(x) for x in v)
    return v
