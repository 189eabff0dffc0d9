"""Spacings read from tables: ComfyUI's schedulers over a model's σ table, and Align Your Steps.

``simple``, ``normal``, ``sgm_uniform`` and ``ddim_uniform`` take the levels of a model's discrete σ
table (default Stable Diffusion's, :func:`sd_schedule`; index k = the diffusers timestep, σ increasing
with k) as ComfyUI does; ``ays`` interpolates the published Align-Your-Steps tables (:data:`AYS_TABLES`).
Grids are σ_ve, float64, decreasing; ``Spacing.sigmas`` appends the trailing 0.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings.base import (
    Spacing,
    _check_steps,
    _discrete_logsnr_table,
    _loglinear_interp,
    _rescale_log,
    _sigma_of_logsnr,
)
from noiselevels.schedules import schedule

__all__ = [
    "AYS",
    "AYS_TABLES",
    "COMFY_ZERO_TOL",
    "DDIMUniform",
    "Normal",
    "SGMUniform",
    "Simple",
    "sd_schedule",
]

AYS_TABLES: dict[str, tuple[float, ...]] = {
    # Sabour, Fidler, Kreis 2024, "Align Your Steps", the published 10-step σ_ve tables (11 values each).
    "sd15": (
        14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
        0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582,
    ),
    "sdxl": (
        14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
        0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582,
    ),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip

COMFY_ZERO_TOL = 1e-5
"""ComfyUI treats a table σ ≤ this (``math.isclose(σ, 0, abs_tol=1e-5)``) as the final 0 of a grid."""


def sd_schedule() -> Any:
    """The DDPM table of Stable Diffusion 1.x/2.x and SDXL: scaled_linear β from 0.00085 to 0.012, T = 1000.

    ComfyUI's default ``ModelSamplingDiscrete`` (its ``linear`` beta schedule is diffusers'
    ``scaled_linear``); σ runs from 0.0291672 (index 0) to 14.6146 (index 999).
    """
    return schedule("ddpm", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def _table_at(table: Tensor, ts: Tensor) -> Tensor:
    """σ at (fractional) indices ``ts`` of an increasing σ table: the entry itself at an integer index,
    log σ linear in the index between entries (ComfyUI's ``ModelSamplingDiscrete.sigma``)."""
    lo = ts.floor().long()
    w = ts - lo.to(ts.dtype)
    hi = (lo + 1).clamp(max=table.numel() - 1)
    log_table = torch.log(table)
    between = torch.exp((1.0 - w) * log_table[lo] + w * log_table[hi])
    return torch.where(w == 0, table[lo], between)


@dataclasses.dataclass(frozen=True)
class _ModelTable(Spacing):
    """Base of ComfyUI's table schedulers: levels read from a model's σ table (``schedule``).

    ``schedule`` is a discrete schedule with a ``logsnr_table()`` (default :func:`sd_schedule`); its
    σ table σ_k = e^(−λ_k/2), k = 0..T−1, increases with k like ComfyUI's ``model_sampling.sigmas``
    (k = the diffusers timestep). The range comes from the table (no sigma_min/sigma_max).
    Subclasses implement ``timesteps(n)``: the (possibly fractional) table indices of the n nonzero
    levels, decreasing. ComfyUI stores the table in float32; here it is float64, so values agree to
    float32 precision.
    """

    schedule: Any = dataclasses.field(default_factory=sd_schedule)
    fixed_range: ClassVar[bool] = True

    def __post_init__(self):
        self.table()

    def table(self) -> Tensor:
        """The model's σ table, float64 (T,), increasing (index 0 = least noise)."""
        lam = _discrete_logsnr_table(self.schedule, f"{self.name} spacing")
        if not torch.isfinite(lam).all():
            raise ValueError(
                f"{self.name} spacing needs a finite σ table; the schedule's has λ = ±inf (e.g. "
                "rescale_betas_zero_snr, σ = inf at the last timestep)"
            )
        if not (lam.diff() < 0).all():
            raise ValueError(f"{self.name} spacing needs a σ table that increases with the index")
        return _sigma_of_logsnr(lam)

    def sigma_range(self):
        s = self.table()
        return (float(s[0]), float(s[-1]))

    def timesteps(self, n: int) -> Tensor:
        raise NotImplementedError

    def _sigmas(self, n, sigma_min, sigma_max):
        return _table_at(self.table(), self.timesteps(n))


@SPACINGS.register("simple")
@dataclasses.dataclass(frozen=True)
class Simple(_ModelTable):
    """Every (T/N)-th entry of a model's σ table from the top (ComfyUI ``simple``).

    k_i = T − 1 − ⌊i·(T/N)⌋, i = 0..N−1, σ_i = table[k_i], then 0. The grid starts at the table's
    largest σ; its last nonzero level is table[T − 1 − ⌊(N−1)·T/N⌋], not the table's smallest
    (unless N = T). When N divides T this is diffusers' ``trailing`` rule. ComfyUI's quirk, kept:
    i·(T/N) is a float64 product truncated to an integer, so where it should be an integer it can
    land one below (T = 1000, N = 38, i = 19: 499.99999999999994 → k = 500, not 499). N > T would
    repeat entries and raises.
    """

    def timesteps(self, n: int) -> Tensor:
        """k_i = T − 1 − ⌊i·(T/N)⌋ (float64 (n,), decreasing integers)."""
        n = _check_steps(n)
        T = self.table().numel()
        if n > T:
            raise ValueError(
                f"simple: at most T = {T} steps on the model's {T}-entry σ table (more would repeat "
                f"entries); got n={n}"
            )
        stride = T / n
        return torch.tensor([T - 1 - math.floor(i * stride) for i in range(n)], dtype=torch.float64)


def _ddim_stride(T: int, steps: int) -> int:
    return max(T // steps, 1)


def _ddim_step_count(T: int, n: int, drop_first: bool) -> int:
    """Steps ComfyUI's ddim_uniform runs when asked for n on a T-entry table."""
    m = n + 1 if drop_first else n
    return len(range(1, T, _ddim_stride(T, m))) - int(drop_first)


@SPACINGS.register("ddim_uniform")
@dataclasses.dataclass(frozen=True)
class DDIMUniform(_ModelTable):
    """DDIM's uniform timesteps 1, 1 + ⌊T/N⌋, 1 + 2⌊T/N⌋, … of a model's σ table (ComfyUI ``ddim_uniform``).

    k_j = 1 + j·⌊T/N⌋ for every k_j < T, taken from the top, σ = table[k], then 0. Index 0 (the table's
    smallest σ) is never used and the grid starts below the table's top (SD, N = 10: indices
    901, 801, …, 1). This is diffusers' ``leading`` rule with ``steps_offset=1``. ComfyUI quirks:
    (a) the rule gives ⌈(T − 1)/⌊T/N⌋⌉ steps, which is N only for some N (T = 1000: N = 6 gives 7,
    N = 7 gives 8); ComfyUI runs the extra steps, here such N raise and the message names the nearest
    N that keep the count (N ≤ 5, 8, 9, 10, 20, 25, 27, 37, 40, 50, 100, … for T = 1000); N ≥ T raises.
    (b) When table[1] ≤ 1e-5 (:data:`COMFY_ZERO_TOL`) ComfyUI asks the rule for N + 1 steps and uses
    table[1] as the final level instead of appending 0; here that level becomes the exact 0.
    """

    def _drops_first(self, table: Tensor) -> bool:
        return bool(table[1] <= COMFY_ZERO_TOL)

    def timesteps(self, n: int) -> Tensor:
        """The k_j, decreasing (float64 (n,), integers)."""
        n = _check_steps(n)
        table = self.table()
        T, drop = table.numel(), self._drops_first(table)
        got = _ddim_step_count(T, n, drop)
        if got != n:
            ok = [m for m in range(1, T) if _ddim_step_count(T, m, drop) == m]
            below = [m for m in ok if m < n]
            above = [m for m in ok if m > n]
            near = " or ".join(f"n={m}" for m in (below[-1:] + above[:1]))
            raise ValueError(
                f"ddim_uniform: on the model's {T}-entry σ table ComfyUI's rule for {n} steps (indices "
                f"from 1 in strides of {_ddim_stride(T, n + int(drop))}) gives {got} steps, not {n}; "
                f"grids here have exactly n steps: use {near}"
            )
        k = np.arange(1, T, _ddim_stride(T, n + int(drop)), dtype=np.float64)[::-1]
        return torch.from_numpy(k[:n].copy())


@SPACINGS.register("normal")
@dataclasses.dataclass(frozen=True)
class Normal(_ModelTable):
    """Uniform in the model's timestep from the top of its σ table to the bottom (ComfyUI ``normal``).

    t_i = (T − 1)·(1 − i/(N − 1)), i = 0..N−1 (t = T − 1 when N = 1), σ_i = σ(t_i) with log σ linear
    in t between table entries (ComfyUI's ``ModelSamplingDiscrete.sigma``), then 0: the grid runs from
    the table's largest σ to its smallest. Same timesteps as diffusers' ``linspace`` rule, which
    interpolates σ itself instead of log σ (they agree where t_i is an integer). ComfyUI quirk, kept:
    when table[0] ≤ 1e-5 (:data:`COMFY_ZERO_TOL`) it takes N + 1 timesteps and table[0] as the final
    level; here that level becomes the exact 0 (the ``sgm_uniform`` timesteps).
    """

    def _drops_last_timestep(self, table: Tensor) -> bool:
        return bool(table[0] <= COMFY_ZERO_TOL)

    def timesteps(self, n: int) -> Tensor:
        """The t_i, decreasing (float64 (n,), fractional)."""
        n = _check_steps(n)
        table = self.table()
        T = table.numel()
        m = n + 1 if self._drops_last_timestep(table) else n
        return torch.from_numpy(np.linspace(T - 1, 0, m)[:n].copy())


@SPACINGS.register("sgm_uniform")
@dataclasses.dataclass(frozen=True)
class SGMUniform(Normal):
    """``normal`` with N + 1 timesteps and the last (t = 0) dropped (ComfyUI ``sgm_uniform``).

    t_i = (T − 1)·(1 − i/N), i = 0..N−1, σ_i = σ(t_i) (log σ linear between table entries), then 0:
    the step to 0 starts at t = (T − 1)/N instead of at the table's smallest σ (the SGM / SDXL
    "uniform" discretisation).
    """

    def _drops_last_timestep(self, table: Tensor) -> bool:
        return True


@SPACINGS.register("ays")
@dataclasses.dataclass(frozen=True)
class AYS(Spacing):
    """Align Your Steps (Sabour et al. 2024): the published 10-step tables for sd15, sdxl, svd.

    For N steps the 11-value table is interpolated log-linearly over an evenly spaced index to N + 1
    points and the last one (the table's σ_min) is replaced by 0 — so N = 10 gives the table with
    its last value → 0 (ComfyUI's AYS node, diffusers' ``AysSchedules``). Default range: the table's
    ends; a given range maps log σ of the table affinely onto it (same shape, new ends).
    """

    model: str = "sd15"

    def __post_init__(self):
        if self.model not in AYS_TABLES:
            raise ValueError(f"unknown AYS table {self.model!r}; valid tables: {', '.join(AYS_TABLES)}")

    def table(self) -> Tensor:
        return torch.tensor(AYS_TABLES[self.model], dtype=torch.float64)

    def sigma_range(self):
        t = AYS_TABLES[self.model]
        return (t[-1], t[0])

    def _sigmas(self, n, sigma_min, sigma_max):
        table = self.table()
        if (sigma_min, sigma_max) != self.sigma_range():
            table = _rescale_log(table, sigma_min, sigma_max)
        return _loglinear_interp(table, n + 1)[:-1]
