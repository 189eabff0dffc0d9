"""User-given grids: ``custom`` (a list of σ_ve values, e.g. the spacing optimiser's output)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings.base import Spacing, _loglinear_interp, _rescale_log

__all__ = ["Custom", "custom"]


@dataclasses.dataclass(frozen=True)
class Custom(Spacing):
    """A given grid of σ_ve values (decreasing, positive, optionally ending with 0), e.g. an optimised one.

    Built with ``spacing("custom", sigmas=[...])``. With m nonzero values, N = m steps returns them
    (and the 0) exactly; another N interpolates log σ linearly over an evenly spaced index to N nonzero
    points. A given range maps log σ affinely onto it. ``grid`` holds the values with the trailing 0.
    """

    name: ClassVar[str] = "custom"
    grid: tuple[float, ...] = ()

    def __post_init__(self):
        g = self.grid
        vals = g.tolist() if isinstance(g, (Tensor, np.ndarray)) else list(g)
        try:
            vals = [float(v) for v in vals]
        except (TypeError, ValueError) as e:
            raise ValueError(f"custom sigmas must be numbers; got {g!r}") from e
        if vals and vals[-1] == 0.0:
            vals = vals[:-1]
        if not vals:
            raise ValueError(
                "custom spacing needs at least one positive sigma (e.g. sigmas=[80.0, 1.0, 0.0])"
            )
        for v in vals:
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"custom sigmas must be finite and > 0 (except a trailing 0); got {v!r}")
        for a, b in itertools.pairwise(vals):
            if not a > b:
                raise ValueError(f"custom sigmas must be strictly decreasing; got {a!r} then {b!r}")
        object.__setattr__(self, "grid", (*vals, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "sigmas": list(self.grid)}

    def describe(self) -> str:
        return f"custom(sigmas={list(self.grid)!r})"

    def table(self) -> Tensor:
        """The nonzero values, float64 (m,)."""
        return torch.tensor(self.grid[:-1], dtype=torch.float64)

    def sigma_range(self):
        return (self.grid[-2], self.grid[0])

    def _resolve_range(self, sigma_min, sigma_max):
        if (sigma_min is not None or sigma_max is not None) and len(self.grid) == 2:
            raise ValueError(
                "a one-level custom grid cannot be mapped to a σ range; omit sigma_min/sigma_max"
            )
        return super()._resolve_range(sigma_min, sigma_max)

    def _sigmas(self, n, sigma_min, sigma_max):
        table = self.table()
        if (sigma_min, sigma_max) != self.sigma_range():
            table = _rescale_log(table, sigma_min, sigma_max)
        if n != table.numel() and table.numel() == 1:
            raise ValueError(f"a one-level custom grid has 1 step; got n={n}")
        return _loglinear_interp(table, n)


@SPACINGS.register("custom")
def custom(**kw: Any) -> Custom:
    """A given grid of σ_ve values (decreasing, optionally ending with 0): ``custom(sigmas=[...])``."""
    bad = [k for k in kw if k != "sigmas"]
    if bad:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, bad))} for spacing 'custom'; valid parameters: sigmas"
        )
    if "sigmas" not in kw:
        raise ValueError(
            "spacing 'custom' needs sigmas=[...] (decreasing σ_ve values, optionally ending with 0)"
        )
    return Custom(grid=kw["sigmas"])
