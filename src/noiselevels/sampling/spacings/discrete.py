"""t uniform under a schedule, with diffusers' ``leading`` / ``linspace`` / ``trailing`` index rules.

``uniform_t`` (:class:`UniformTSpacing`): ``rule="continuous"`` spaces a continuous schedule's time t
uniformly between t(σ_max) and t(σ_min); the discrete rules pick diffusers timesteps into a discrete
schedule's table of T levels (Lin et al. 2024, table 2). Grids are σ_ve = e^(−λ/2), float64, decreasing.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings.base import (
    DEFAULT_SIGMA_MAX,
    DEFAULT_SIGMA_MIN,
    Spacing,
    _check_steps,
    _discrete_logsnr_table,
    _sigma_of_logsnr,
)

__all__ = ["DISCRETE_RULES", "UNIFORM_T_RULES", "UniformTSpacing"]

DISCRETE_RULES = ("leading", "linspace", "trailing")
UNIFORM_T_RULES = ("continuous", *DISCRETE_RULES)


@SPACINGS.register("uniform_t")
@dataclasses.dataclass(frozen=True)
class UniformTSpacing(Spacing):
    """t uniform under a schedule; diffusers' leading / linspace / trailing rules for discrete ones.

    ``rule="continuous"``: t runs uniformly from t(σ_max) to t(σ_min) (``schedule.t_of``, clamped to
    the schedule's range) and σ_i = e^(−λ(t_i)/2). The discrete rules pick diffusers timesteps
    (Lin et al. 2024, table 2; ``EulerDiscreteScheduler.set_timesteps``) into the schedule's table of
    T levels (``schedule.logsnr_table()``, index = diffusers timestep):

    * ``leading``:  k_i = (N − 1 − i)·⌊T/N⌋ + steps_offset
    * ``linspace``: k_i = (T − 1)·(1 − i/(N − 1)) (fractional; σ linearly interpolated in the σ table,
      as EulerDiscreteScheduler does — DDIMScheduler rounds these to integers)
    * ``trailing``: k_i = round(T − i·T/N) − 1

    The discrete rules take their σ range from the table (no sigma_min/sigma_max). With a zero-terminal-SNR
    table (``rescale_betas_zero_snr``) the grid starts at σ = inf (λ = −inf), exactly; a sampler on
    VE-scaled x cannot start there (diffusers' Euler replaces ᾱ_T = 0 by 2⁻²⁴, σ ≈ 4096), one that
    works in λ with a v / x₀ / flow prediction can.
    """

    schedule: Any = None
    rule: str = "continuous"
    steps_offset: int = 0

    def __post_init__(self):
        if self.schedule is None:
            raise ValueError(
                "uniform_t needs a schedule, e.g. spacing('uniform_t', schedule=schedule('cosine'))"
            )
        if self.rule not in UNIFORM_T_RULES:
            raise ValueError(
                f"unknown uniform_t rule {self.rule!r}; valid rules: {', '.join(UNIFORM_T_RULES)}"
            )
        if (
            isinstance(self.steps_offset, bool)
            or not isinstance(self.steps_offset, numbers.Integral)
            or self.steps_offset < 0
        ):
            raise ValueError(f"steps_offset must be an integer >= 0; got {self.steps_offset!r}")
        if self.steps_offset and self.rule != "leading":
            raise ValueError(
                f"steps_offset applies to rule='leading' only (as in diffusers); got steps_offset="
                f"{self.steps_offset!r} with rule={self.rule!r}"
            )
        if self.rule in DISCRETE_RULES:
            _discrete_logsnr_table(self.schedule, f"uniform_t rule={self.rule!r}")
        elif not hasattr(self.schedule, "t_of") or not hasattr(self.schedule, "logsnr"):
            raise ValueError(f"uniform_t needs a Schedule (with logsnr and t_of); got {self.schedule!r}")

    @property
    def fixed_range(self) -> bool:  # type: ignore[override]
        return self.rule in DISCRETE_RULES

    def _table(self) -> Tensor:
        return _discrete_logsnr_table(self.schedule, f"uniform_t rule={self.rule!r}")

    def sigma_range(self):
        if self.rule in DISCRETE_RULES:
            s = _sigma_of_logsnr(self._table())
            return (float(s[0]), float(s[-1]))
        return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)

    def timesteps(self, n: int) -> Tensor:
        """The diffusers timesteps of a discrete rule: float64 (n,), decreasing (fractional for linspace)."""
        n = _check_steps(n)
        if self.rule not in DISCRETE_RULES:
            raise ValueError(
                f"timesteps() needs a discrete rule ({', '.join(DISCRETE_RULES)}); got {self.rule!r}"
            )
        T = self._table().numel()
        if self.rule == "linspace":
            ts = np.linspace(0, T - 1, n, dtype=np.float64)[::-1].copy()
        elif self.rule == "leading":
            ratio = T // n
            if ratio < 1:
                raise ValueError(f"rule='leading' needs n <= T = {T} steps; got n={n}")
            ts = (np.arange(0, n) * ratio)[::-1].astype(np.float64) + self.steps_offset
        else:  # trailing
            ts = np.round(np.arange(T, 0, -T / n)).astype(np.float64) - 1
            if len(ts) != n:
                raise ValueError(f"rule='trailing' needs n <= T = {T} steps; got n={n}")
        if ts.max() > T - 1 or ts.min() < 0:
            raise ValueError(
                f"rule={self.rule!r} with n={n}, steps_offset={self.steps_offset} gives timesteps outside "
                f"[0, {T - 1}]"
            )
        if len(np.unique(ts)) != n:
            raise ValueError(
                f"rule={self.rule!r} with n={n} repeats timesteps of the {T}-entry table; use fewer steps"
            )
        return torch.from_numpy(ts)

    def _sigmas(self, n, sigma_min, sigma_max):
        if self.rule in DISCRETE_RULES:
            table = _sigma_of_logsnr(self._table()).numpy()
            ts = self.timesteps(n).numpy()
            return torch.from_numpy(np.interp(ts, np.arange(len(table)), table))
        lam_ends = torch.tensor([-2.0 * math.log(sigma_max), -2.0 * math.log(sigma_min)], dtype=torch.float64)
        t_hi, t_lo = (float(x) for x in self.schedule.t_of(lam_ends))
        t = torch.linspace(t_hi, t_lo, n, dtype=torch.float64)
        return _sigma_of_logsnr(self.schedule.logsnr(t).to(torch.float64))
