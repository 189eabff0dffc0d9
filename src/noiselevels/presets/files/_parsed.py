"""What a format reader hands on: the tool, the format, the model family, the options as the tool names
them, and the resolution the file states (if any). Also the command-line tokenizer kohya's and the
diffusers scripts' readers share."""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Any

from noiselevels.presets.files._table import value

__all__ = ["Parsed", "parse_command_line", "parse_resolution"]


@dataclasses.dataclass
class Parsed:
    tool: str
    format: str
    family: Any  # families.Family
    options: dict[str, Any]
    resolution: tuple[int, int] | None = None
    resolution_source: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)


def parse_command_line(text: str) -> tuple[str, dict[str, Any]]:
    """``(script, {option: value})`` from a shell / batch line ``[accelerate launch …] script.py --k v …``.
    Line continuations (``\\``, ``^``, `` ` ``) and comments are removed; a flag without a value is True; an
    option given several values keeps the list."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "REM ", "rem ", "::")):
            continue
        lines.append(re.sub(r"\s*[\\^`]\s*$", "", line))
    tokens = shlex.split(" ".join(lines), posix=True)
    scripts = [i for i, t in enumerate(tokens) if t.endswith(".py")]
    if not scripts:
        raise ValueError("no training script (a token ending in .py) in the command line")
    i0 = scripts[0]
    script = tokens[i0].replace("\\", "/").rsplit("/", 1)[-1]
    opts: dict[str, Any] = {}
    key = None
    for tok in tokens[i0 + 1 :]:
        if tok.startswith("--"):
            name, eq, val = tok[2:].partition("=")
            key = name.replace("-", "_")
            opts[key] = value(val) if eq else True
            if eq:
                key = None
        elif key is not None:
            prev = opts[key]
            opts[key] = value(tok) if prev is True else ([*prev, value(tok)] if isinstance(prev, list)
                                                          else [prev, value(tok)])  # fmt: skip
    return script, opts


def parse_resolution(spec: Any) -> tuple[int, int]:
    """``1024``, ``"1024,768"``, ``"1024x768"``, ``[1024, 768]`` → (width, height)."""
    if isinstance(spec, (list, tuple)):
        nums = [int(float(v)) for v in spec]
    else:
        nums = [int(float(v)) for v in re.split(r"[x×,\s]+", str(spec).strip()) if v]
    if not nums or len(nums) > 2 or min(nums) <= 0:
        raise ValueError(f"resolution {spec!r}: expected W or WxH with positive integers")
    return nums[0], nums[-1]
