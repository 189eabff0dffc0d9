"""The claims: what each says, where it comes from, and the function that tests it.

A claim's ``run(quick, seeds)`` returns ``{"findings": [...], "details": {...}}``. Each finding is one
row of ``docs/claims.md``: ``label`` (what is measured), ``figure`` (the statistic, with its direction),
``mean``/``lo``/``hi`` (the 95 % interval over seeds, ``noiselevels.runs.claims.stats``), ``verdict``
(reproduced / not reproduced / depends) and ``rule`` (the verdict's threshold in words).
``quick`` is the same code at minute-scale sizes (``make test``); its numbers are smoke, not evidence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["CLAIMS", "Claim", "finding", "register"]

Runner = Callable[[bool, Sequence[int]], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the literature or the tools' folklore and its experiment."""

    name: str
    claim: str
    source: str
    setup: str
    run: Runner


CLAIMS: dict[str, Claim] = {}


def register(name: str, *, claim: str, source: str, setup: str) -> Callable[[Runner], Runner]:
    """Decorator: register ``run(quick, seeds)`` as the experiment of claim ``name``."""

    def deco(fn: Runner) -> Runner:
        if name in CLAIMS:
            raise RuntimeError(f"claim {name!r} registered twice")
        CLAIMS[name] = Claim(name=name, claim=claim, source=source, setup=setup, run=fn)
        return fn

    return deco


def finding(label: str, figure: str, ci: dict[str, Any], verdict: str, rule: str) -> dict[str, Any]:
    """One row of results: the interval ``ci`` (``stats.interval`` / ``ratio_interval``) with its verdict."""
    return {"label": label, "figure": figure, "mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"],
            "values": ci["values"], "verdict": verdict, "rule": rule}  # fmt: skip
