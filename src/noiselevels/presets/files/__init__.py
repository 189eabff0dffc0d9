"""The tools' own config files read as they are: ``read_tool_file(path)`` → the preset (and its parameters)
the file's options resolve to, what was read, and every noise-relevant option that is not modelled.

Formats (one module each): ai-toolkit job YAML (``ai_toolkit``), kohya command lines (``.sh`` / ``.bat`` /
``.txt`` or ``-`` for stdin), ``--config_file`` TOML and its ``--dataset_config`` (``kohya``), OneTrainer
config JSON (``onetrainer``), SimpleTuner ``config.json`` / ``config.toml`` (``simpletuner``), diffusers
training-script command lines (``diffusers``). ``families`` holds the model family table (process,
parameterisation, β table, native resolution, latent downsampling × patch for ``image_seq_len``).

Option tables (for ``convert``): each format module has ``TABLE``, a :class:`ToolTable`
(``noiselevels.presets.files._table``): ``tool``; ``selector`` (the option picking the preset, e.g.
``timestep_sampling``), its ``default`` and ``presets`` (selector value → preset name); ``params`` (tool
option name → preset parameter name); ``unmodelled`` (noise-relevant options no preset models → what
they do). ``TABLES`` maps tool → table.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from noiselevels.noise import NoiseConfig
from noiselevels.presets import PRESETS, preset
from noiselevels.presets.files import ai_toolkit, diffusers, kohya, onetrainer, simpletuner
from noiselevels.presets.files._parsed import Parsed, parse_command_line, parse_resolution
from noiselevels.presets.files._table import ToolTable
from noiselevels.presets.files.families import image_seq_len

__all__ = ["FILE_TOOLS", "TABLES", "ReadResult", "ToolTable", "is_tool_file", "read_tool_file"]

TABLES: dict[str, ToolTable] = {
    m.TABLE.tool: m.TABLE for m in (ai_toolkit, kohya, onetrainer, simpletuner, diffusers)
}
FILE_TOOLS = tuple(TABLES)
_CHOOSE = {"ai-toolkit": ai_toolkit.choose, "kohya": kohya.choose, "onetrainer": onetrainer.choose,
           "simpletuner": simpletuner.choose, "diffusers": diffusers.choose}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """A tool file read: its ``config``, the ``tool`` and ``format`` detected, the ``family``, the
    ``preset`` and ``params`` it resolved to, the ``read_as`` line, the options that affect noise levels
    but are not modelled (``unmodelled``) and other ``notes``."""

    config: NoiseConfig
    tool: str
    format: str
    family: str
    preset: str
    params: dict[str, Any]
    read_as: str
    unmodelled: list[str]
    notes: list[str]

    def lines(self) -> list[str]:
        out = [f"read as: {self.read_as}"]
        out += [f"  not modelled: {m}" for m in self.unmodelled]
        out += [f"  note: {n}" for n in self.notes]
        return out


def is_tool_file(path: str) -> bool:
    """True for a file ``read_tool_file`` should read (not a noiselevels TOML with a [noise] table)."""
    if path == "-":
        return True
    p = Path(path)
    if p.suffix.lower() != ".toml":
        return True
    try:
        return "noise" not in tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return False


def _read(path: str, tool: str | None) -> Parsed:
    if tool is not None and tool not in TABLES:
        raise ValueError(f"unknown tool {tool!r}; valid tools: {', '.join(TABLES)}")
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    p = Path(path)
    base = None if path == "-" else p.parent
    suffix = "" if path == "-" else p.suffix.lower()
    if tool == "ai-toolkit" or (tool is None and suffix in (".yaml", ".yml")):
        return ai_toolkit.read_yaml(p, text)
    if (suffix in (".json", ".toml") and tool not in ("kohya", "diffusers")) or tool == "onetrainer":
        doc = _structured(p, text, suffix)
        if tool == "onetrainer" or (tool is None and suffix == ".json" and "model_family" not in
                                    {str(k).lstrip("-") for k in doc}):  # fmt: skip
            if tool is None and "timestep_distribution" not in doc and "model_type" not in doc:
                raise ValueError(f"{path}: JSON of no known tool (no model_type / model_family)")
            return onetrainer.read_json(p, doc)
        if tool == "simpletuner" or any(str(k).lstrip("-") == "model_family" for k in doc):
            return simpletuner.read_doc(p, doc, f"config{suffix}")
    if suffix == ".toml":
        return kohya.read_config_toml(p, _structured(p, text, suffix))
    script, _ = _script(text, path)
    if tool == "diffusers" or (tool is None and diffusers.is_diffusers_script(script)):
        return diffusers.read_command_line(text)
    if tool == "kohya" or script in kohya.SCRIPTS:
        return kohya.read_command_line(text, base)
    raise ValueError(f"{path}: {script!r} is neither a kohya nor a diffusers training script; pass --tool")


def _script(text: str, path: str) -> tuple[str, dict]:
    try:
        return parse_command_line(text)
    except ValueError as e:
        raise ValueError(f"{path}: not a config file of a known tool ({e})") from None


def _structured(p: Path, text: str, suffix: str) -> dict[str, Any]:
    try:
        doc = json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{p}: invalid {suffix[1:].upper()} ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected an object of options")
    return doc


def _needs_seq_len(name: str, params: dict[str, Any], fam) -> bool:
    if "image_seq_len" not in PRESETS[name].params or "image_seq_len" in params:
        return False
    if name.startswith("onetrainer:"):
        return bool(params.get("dynamic_timestep_shifting"))
    if name.startswith("simpletuner:"):
        return bool(params.get("flow_schedule_auto_shift"))
    return name.endswith("flux_shift") or fam.dynamic_shift


def read_tool_file(
    path: str, *, tool: str | None = None, resolution: str | tuple[int, int] | None = None
) -> ReadResult:
    """Read a tool's config file (``-`` = a command line on stdin) as the preset it resolves to."""
    p = _read(path, tool)
    name, params, missing = _CHOOSE[p.tool](p)
    fam = p.family
    res_note = ""
    if _needs_seq_len(name, params, fam):
        if resolution is not None:
            (w, h), src = parse_resolution(resolution), "--resolution"
        elif p.resolution is not None:
            (w, h), src = p.resolution, f"from {p.resolution_source}"
        else:
            (w, h), src = (fam.native, fam.native), "the model's native resolution; pass --resolution"
        params["image_seq_len"] = image_seq_len(fam, w, h)
        size = f"{w}²" if w == h else f"{w}×{h}"
        res_note = f" ({size}, {src})"
    try:
        cfg = preset(name, **params)
    except ValueError as e:
        raise ValueError(f"{path}: {name}: {e}") from None
    query = "&".join(f"{k}={v}" for k, v in params.items())
    read_as = f"{p.tool} {p.format} ({fam.label}) → {name}{'?' + query if query else ''}{res_note}"
    return ReadResult(cfg, p.tool, p.format, fam.name, name, params, read_as, missing, p.notes)
