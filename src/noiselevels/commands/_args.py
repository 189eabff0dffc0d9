"""The one ``KEY=VALUE`` option parser of the command line (``--param``, ``--spacing-param``,
``--density-param``, ``--preset-param``, the ``tool:name?k=v&k=v`` preset form, ...).

Values are typed as TOML by ``noiselevels.options.parse_value`` (``7`` → int, ``1.5`` → float,
``true``, ``[3, 1, 0]``, ``"quoted"``; a bare word such as ``ddpm`` or ``kohya:sigmoid`` is a string);
lists become tuples (components are frozen dataclasses). A key in ``NESTED`` names a component of
another kind (a spacing's or a density's ``schedule``, ``from_density``'s ``density``): its value is
the component's name and its own parameters are given with dotted keys::

    schedule=ddpm  schedule.beta_schedule=scaled_linear  schedule.beta_end=0.012

* :func:`parse_params` returns such a component as a table ``{"name": "ddpm", "beta_schedule": ...}``,
  the form a ``[noise]`` table takes (``inspect`` puts ``--density-param`` there);
* :func:`build_params` builds it (``catalog.registry(kind).create(name, **params)``), giving keyword
  arguments ready for ``spacing(name, **kw)`` (``spacing show``, ``inspect --spacing``, ``sample``).

Command modules import this module at their top; it imports the library (``catalog``) only inside
:func:`build_params`, so ``noiselevels --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from noiselevels.options import check_memory, split_assignment

__all__ = ["NESTED", "build_params", "check_grid_size", "check_output_file", "parse_params", "preset_spec"]

NESTED = ("schedule", "density")  # parameters whose value names a component of another kind


def parse_params(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["rho=7", "schedule=ddpm", "schedule.beta_end=0.012"]`` → ``{"rho": 7, "schedule": {"name":
    "ddpm", "beta_end": 0.012}}``; ``what`` (``"--param"``) names the option in the errors.

    A key given twice, a dotted key outside ``NESTED``, a dotted key without its ``KEY=NAME`` and a
    component name that is not a string raise ``ValueError``.
    """
    flat: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = split_assignment(item, what)
        if isinstance(value, list):
            value = tuple(value)
        head, dot, sub = key.partition(".")
        if dot and head not in NESTED:
            raise ValueError(
                f"dotted {what} keys are for nested components ({', '.join(NESTED)}); got {key!r}"
            )
        target, name = (nested.setdefault(head, {}), sub) if dot else (flat, key)
        if name in target:
            raise ValueError(f"{what} {key!r} given twice")
        target[name] = value
    for head in nested:
        if head not in flat:
            raise ValueError(f"{what} {head}.<name>=... needs {what} {head}=NAME as well")
    for head in NESTED:
        if head in flat:
            if not isinstance(flat[head], str):
                raise ValueError(f"{what} {head}= expects a {head} name; got {flat[head]!r}")
            flat[head] = {"name": flat[head], **nested.get(head, {})}
    return flat


def build_params(items: Iterable[str], what: str) -> dict[str, Any]:
    """:func:`parse_params` with each nested component built: keyword arguments of a component
    (``spacing("uniform_t", **build_params(["schedule=ddpm", "rule=trailing"], "--param"))``)."""
    from noiselevels.catalog import registry

    kw = parse_params(items, what)
    for head in NESTED:
        if head in kw:
            table = dict(kw[head])
            kw[head] = registry(head).create(table.pop("name"), **table)
    return kw


def preset_spec(spec: str, what: str) -> tuple[str, dict[str, Any]]:
    """``tool:name`` or ``tool:name?k=v&k=v`` (the form ``inspect --preset`` and ``compare`` take) →
    (preset name, parameters); ``what`` names a malformed parameter in the error."""
    name, _, query = spec.partition("?")
    return name, parse_params([q for q in query.split("&") if q], what)


def check_grid_size(steps: int, what: str = "--steps") -> None:
    """Refuse, before allocating, a grid of ``steps`` steps that does not fit in memory (a grid and its
    derived arrays: about 16 float64 numbers per step)."""
    check_memory(16 * 8 * (steps + 1), f"{what} {steps}", "use fewer steps")


def check_output_file(path: str | None, what: str) -> None:
    """An output file option must not name a folder (checked before any work is done)."""
    if path is not None and Path(path).is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
