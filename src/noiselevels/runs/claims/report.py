"""Running a claim (:func:`run_claim`: timing, seeds, the JSON record written atomically) and the
Markdown table of recorded results (:func:`markdown_table`, the body of ``docs/claims.md``)."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from noiselevels.runs.claims.registry import CLAIMS

__all__ = ["markdown_table", "run_claim"]


def _claim(name: str):
    if name not in CLAIMS:
        raise ValueError(f"unknown claim {name!r}; valid claims: {', '.join(sorted(CLAIMS))}")
    return CLAIMS[name]


def run_claim(name: str, *, quick: bool = False, seeds: Sequence[int] = (0, 1, 2),
              out_dir: str | os.PathLike | None = None) -> dict[str, Any]:  # fmt: skip
    """Run claim ``name`` over ``seeds`` (≥ 3 for an interval worth the name; at least 2) and return its
    record; with ``out_dir`` also write it to ``out_dir/NAME.json`` (atomically)."""
    c = _claim(name)
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be at least 2 distinct integers; got {seeds}")
    t0 = time.perf_counter()
    res = c.run(quick, seeds)
    record = {"name": c.name, "claim": c.claim, "source": c.source, "setup": c.setup, "quick": quick,
              "seeds": seeds, "seconds": round(time.perf_counter() - t0, 1),
              "command": f"noiselevels reproduce {c.name}" + (" --quick" if quick else ""),
              "machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "threads": torch.get_num_threads()},
              **res}  # fmt: skip
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{name}.json.tmp"
        tmp.write_text(json.dumps(record, indent=1, default=float) + "\n")
        os.replace(tmp, out / f"{name}.json")
    return record


def _num(v: float) -> str:
    return f"{v:.3g}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a literal | would end the cell)."""
    return str(text).replace("|", "\\|")


def markdown_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The claims table: one row per finding — claim, source, figure, our value and 95 % interval over
    the seeds, verdict and the command."""
    lines = ["| claim | source | measured | ours (95 % interval, n seeds) | verdict | command |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in records:
        for i, f in enumerate(r["findings"]):
            claim = r["claim"] if i == 0 else "〃"
            source = r["source"] if i == 0 else "〃"
            value = f"{_num(f['mean'])} [{_num(f['lo'])}, {_num(f['hi'])}], n = {len(f['values'])}"
            measured = _cell(f"{f['label']}: {f['figure']}")
            lines.append(f"| {_cell(claim)} | {_cell(source)} | {measured} | {value} | **{f['verdict']}** "
                         f"({_cell(f['rule'])}) | `{r['command']}` |")
    return "\n".join(lines) + "\n"
