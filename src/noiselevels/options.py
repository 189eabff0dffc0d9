"""The one reader of TOML files, the one unknown-key check and the one ``KEY=VALUE`` parser.

Every configuration the project reads (a ``[noise]`` table, a training config, a sweep, a spectral table)
and every ``--set`` / ``--*-param`` option of the command line goes through these functions, so a file,
a typo and a value are reported the same way everywhere:

- ``read_toml(path, what)``: the file as a dict; a missing file or a syntax error raises ``ValueError``
  naming the file.
- ``check_keys(where, table, valid)``: a ``ValueError`` naming the unknown keys and listing the valid ones.
- ``parse_value(text)``: a value typed as TOML (``1`` → int, ``1.5`` → float, ``true``, ``[1, 2]``,
  ``{ a = 1 }``); a bare word that is not TOML (``logit_normal``, ``kohya:sigmoid``) is a string.
- ``parse_assignments(items, what)``: ``["rho=7", "schedule=ddpm"]`` → ``{"rho": 7, "schedule": "ddpm"}``.
- ``apply_overrides(table, items)``: a copy with each dotted ``"a.b.c=value"`` set.

This module is at the bottom of the layers: it imports the standard library only.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "MemoryEstimateError",
    "MissingFileError",
    "apply_overrides",
    "available_memory",
    "check_keys",
    "check_memory",
    "parse_assignments",
    "parse_value",
    "read_toml",
    "split_assignment",
]

class MissingFileError(FileNotFoundError, ValueError):
    """A file the user named does not exist: an ``OSError`` and a user error (``ValueError``) alike."""


class MemoryEstimateError(ValueError):
    """A size the user asked for cannot be allocated; raised before allocating, with the estimate."""


def available_memory() -> int:
    """Bytes of memory available now (Linux ``MemAvailable``; else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
        return 2**40


def _gb(n: float) -> str:
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def check_memory(nbytes: float, what: str, hint: str = "ask for less") -> None:
    """Raise :class:`MemoryEstimateError` (one line: ``what`` needs about X GB, Y GB available; ``hint``)
    when the estimate ``nbytes`` exceeds the memory available, before anything is allocated."""
    avail = available_memory()
    if nbytes > avail:
        raise MemoryEstimateError(
            f"{what} needs about {_gb(nbytes)} of memory, more than the {_gb(avail)} available; {hint}"
        )


_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")


def read_toml(path: str | os.PathLike, what: str = "configuration") -> dict[str, Any]:
    """The whole TOML file as a dict. A missing file or invalid TOML raises ``ValueError`` naming
    ``what`` and the file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError(f"{what} file {str(p)!r} does not exist")
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: invalid TOML: {e}") from None


def check_keys(where: str, table: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Raise ``ValueError`` if ``table`` has a key outside ``valid``; the message names every unknown key,
    the table (``where``, e.g. ``"[train]"``) and the valid keys."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table; got {table!r}")
    valid = list(valid)
    bad = [k for k in table if k not in valid]
    if bad:
        listed = ", ".join(valid) or "(none)"
        raise ValueError(f"unknown key(s) {', '.join(map(repr, bad))} in {where}; valid keys: {listed}")


def parse_value(text: str) -> Any:
    """A command-line value typed as TOML; a bare word that is not TOML is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if _BARE.match(text.strip()):
            return text.strip()
        raise ValueError(f"cannot parse value {text!r}: not TOML and not a bare word") from None


def split_assignment(item: Any, what: str) -> tuple[str, Any]:
    """``"key=value"`` → ``(key, parse_value(value))``; ``what`` names the option in the error."""
    if not isinstance(item, str) or "=" not in item:
        raise ValueError(f"{what} {item!r} must look like key=value")
    key, _, value = item.partition("=")
    key = key.strip()
    if not key:
        raise ValueError(f"{what} {item!r}: empty key")
    return key, parse_value(value)


def parse_assignments(items: Iterable[str], what: str) -> dict[str, Any]:
    """``["rho=7", "schedule=ddpm"]`` → ``{"rho": 7, "schedule": "ddpm"}`` (values typed as TOML)."""
    return dict(split_assignment(item, what) for item in items)


def apply_overrides(table: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of ``table`` with each ``"a.b.c=value"`` set (value parsed by ``parse_value``).

    Missing intermediate tables are created; setting a key below a non-table value is an error.
    """
    out = copy.deepcopy(dict(table))
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"override {item!r} must look like key.path=value")
        key, value = split_assignment(item, "override")
        parts = [p.strip() for p in key.split(".")]
        if not all(parts):
            raise ValueError(f"override {item!r}: empty key in {key!r}")
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"override {item!r}: {'.'.join(parts[: i + 1])} is {nxt!r}, not a table")
            node = nxt
        node[parts[-1]] = value
    return out
