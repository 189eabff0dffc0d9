"""The spacing base class, ``spacing()`` and the helpers every family shares.

A spacing turns a step budget N into a grid of noise levels (see the package docstring,
``noiselevels.sampling.spacings``, for the two views σ_ve and λ = −2·log σ_ve and the registered names).
Subclasses implement ``_sigmas(n, sigma_min, sigma_max)`` → the decreasing positive σ_ve grid of n
values (float64); ``Spacing.sigmas`` validates the range and appends the trailing 0.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import SPACINGS, Component, check_positive

__all__ = ["DEFAULT_SIGMA_MAX", "DEFAULT_SIGMA_MIN", "SPACINGS", "Spacing", "spacing", "spacing_summaries"]

DEFAULT_SIGMA_MIN = 0.002
"""EDM's default smallest nonzero VE noise level (Karras et al. 2022, table 1)."""
DEFAULT_SIGMA_MAX = 80.0
"""EDM's default largest VE noise level (Karras et al. 2022, table 1)."""


def _check_steps(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of steps n must be an integer >= 1; got {n!r}")
    return int(n)


def _check_sigma(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item()
    return check_positive(name, value)


def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s, s.new_zeros(1)])


def _discrete_logsnr_table(schedule: Any, who: str) -> Tensor:
    """λ table of a discrete schedule, indexed like diffusers' timesteps (index 0 = least noise)."""
    table_fn = getattr(schedule, "logsnr_table", None)
    if table_fn is None:
        raise ValueError(
            f"{who} needs a discrete schedule with a logsnr_table() (e.g. schedule('ddpm')); "
            f"got {type(schedule).__name__}"
        )
    table = torch.as_tensor(table_fn(), dtype=torch.float64).flatten()
    if table.numel() < 2:
        raise ValueError(f"{who}: the schedule's logsnr_table() must have at least 2 entries")
    return table


def _sigma_of_logsnr(lam: Tensor) -> Tensor:
    return torch.exp(-0.5 * lam)


class Spacing(Component):
    """A grid of N noise levels for a sampler (base class of the registered spacings).

    Subclasses implement ``_sigmas(n, sigma_min, sigma_max)`` → float64 (n,), the decreasing positive
    σ_ve grid without its trailing 0, and may override ``sigma_range()`` (their default range) and
    ``fixed_range`` (True when the grid is taken from a table that a range cannot change).
    """

    kind: ClassVar[str] = "spacing"
    fixed_range: ClassVar[bool] = False

    def sigma_range(self) -> tuple[float, float]:
        """(σ_min, σ_max) used when ``sigmas`` is called without a range: EDM's (0.002, 80)."""
        return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)

    def _sigmas(self, n: int, sigma_min: float, sigma_max: float) -> Tensor:
        raise NotImplementedError

    def _resolve_range(self, sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
        lo, hi = self.sigma_range()
        if sigma_min is None and sigma_max is None:
            return lo, hi
        if self.fixed_range:
            raise ValueError(
                f"spacing {self.describe()} takes its σ range ({lo:.6g}, {hi:.6g}) from its table; "
                "do not pass sigma_min/sigma_max (logsnr_min/logsnr_max)"
            )
        if sigma_min is not None:
            lo = _check_sigma("sigma_min", sigma_min)
        if sigma_max is not None:
            hi = _check_sigma("sigma_max", sigma_max)
        if not lo < hi:
            raise ValueError(f"sigma_min must be < sigma_max; got sigma_min={lo!r}, sigma_max={hi!r}")
        return lo, hi

    def sigmas(self, n: int, *, sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
        """The grid as VE noise levels: float64 (n + 1,), decreasing, ``sigmas[-1] == 0``.

        Args:
            n: number of steps (≥ 1).
            sigma_min, sigma_max: the range of the nonzero levels, 0 < σ_min < σ_max; omitted → the
                spacing's ``sigma_range()``. Most grids start at σ_max and end at σ_min before the 0.
        """
        n = _check_steps(n)
        lo, hi = self._resolve_range(sigma_min, sigma_max)
        s = self._sigmas(n, lo, hi).to(torch.float64)
        if s.shape != (n,):
            raise RuntimeError(f"{self.describe()} produced shape {tuple(s.shape)} for n={n}")
        return _append_zero(s)

    def logsnrs(self, n: int, *, logsnr_min: float | None = None, logsnr_max: float | None = None) -> Tensor:
        """The same grid in λ = −2·log σ_ve: float64 (n + 1,), increasing, ``logsnrs[-1] == +inf``.

        ``logsnr_min`` ↔ σ_max = e^(−λ_min/2), ``logsnr_max`` ↔ σ_min = e^(−λ_max/2); omitted → the
        spacing's default range.
        """
        sigma_max = None
        sigma_min = None
        if logsnr_min is not None:
            sigma_max = math.exp(-0.5 * _finite("logsnr_min", logsnr_min))
        if logsnr_max is not None:
            sigma_min = math.exp(-0.5 * _finite("logsnr_max", logsnr_max))
        if logsnr_min is not None and logsnr_max is not None and not logsnr_min < logsnr_max:
            raise ValueError(
                f"logsnr_min must be < logsnr_max; got logsnr_min={logsnr_min!r}, logsnr_max={logsnr_max!r}"
            )
        s = self.sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max)
        return -2.0 * torch.log(s)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def spacing(name: str, **kw: Any) -> Spacing:
    """Build a registered spacing by name, e.g. ``spacing("karras", rho=7.0)``.

    Unknown names and parameters raise ``ValueError`` listing the valid ones.
    """
    return SPACINGS.create(name, **kw)


def spacing_summaries() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered spacing, sorted by name."""
    out = []
    for name in SPACINGS.names():
        doc = (SPACINGS.get(name).__doc__ or "").strip()
        out.append((name, doc.splitlines()[0] if doc else ""))
    return out


def _ramp(n: int) -> Tensor:
    """i/(n − 1) for i = 0..n−1 (a single 0 when n = 1), float64."""
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


def _loglinear_interp(table: Tensor, m: int) -> Tensor:
    """m points of a decreasing positive table, log σ linear in an evenly spaced [0, 1] index."""
    if m == table.numel():
        return table.clone()
    xs = np.linspace(0.0, 1.0, table.numel())
    ys = np.log(table.numpy()[::-1])
    new = np.exp(np.interp(np.linspace(0.0, 1.0, m), xs, ys))[::-1].copy()
    return torch.from_numpy(new)


def _rescale_log(table: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """Map log σ of a table affinely so that its ends become (sigma_min, sigma_max)."""
    lo, hi = math.log(float(table[-1])), math.log(float(table[0]))
    if hi == lo:
        raise ValueError("a one-level table cannot be rescaled to a σ range")
    a = (math.log(sigma_max) - math.log(sigma_min)) / (hi - lo)
    return torch.exp(math.log(sigma_min) + (torch.log(table) - lo) * a)
