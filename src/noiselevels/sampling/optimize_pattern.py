"""The coordinate-wise pattern search of ``noiselevels.sampling.optimize`` (``method="pattern"``; the
module docstring there describes it): derivative-free, so it works for any denoiser and for the
"klub" criterion of stochastic solvers."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import torch

# the first sweep scans each level at these fractions of the way to either neighbour
_SCAN = (0.1, 0.25, 0.5, 0.75, 0.9)
# stop when `patience` sweeps in a row lowered the criterion by less than this (relative) in all
_STALL_GAIN = 1e-3


@dataclasses.dataclass
class _Search:
    """The coordinate-wise pattern search in u = log σ over the movable levels (module docstring).

    ``nonzero`` is the current grid without its trailing 0 (Python floats), ``best_err`` its criterion,
    ``frac[i]`` the move fraction of level i, ``evaluations`` the criterion evaluations so far."""

    evaluate: Callable[[list[float]], float]
    nonzero: list[float]
    best_err: float
    movable: list[int]
    min_gap: float
    sigma_min: float
    frac: list[float]
    evaluations: int

    @classmethod
    def start(
        cls, evaluate, nonzero: list[float], err: float, *, evaluations: int, sigma_min: float,
        sigma_max: float, min_log_step: float | None, free_last: bool,
    ) -> _Search:
        """The search from ``nonzero``: σ_max fixed, the last level movable when ``free_last``."""
        n = len(nonzero)
        movable = list(range(1, n - 1)) + ([n - 1] if free_last and n >= 2 else [])
        if min_log_step is None:
            min_log_step = 0.05 * math.log(sigma_max / sigma_min) / max(n - 1, 1)
        return cls(evaluate, nonzero, err, movable, float(min_log_step), sigma_min, [0.25] * n, evaluations)

    def _score(self, trial: list[float]) -> float:
        self.evaluations += 1
        return self.evaluate(trial)

    def run(self, iters: int, tol: float, patience: int | None, callback) -> list[float]:
        """At most ``iters`` sweeps; the criterion after each (stops early, see the module docstring)."""
        history: list[float] = []
        for sweep in range(iters):
            if not self.movable or all(self.frac[i] < tol for i in self.movable):
                break
            start = list(self.nonzero)
            for i in self.movable:
                if self.frac[i] >= tol:
                    self._move_level(i, _SCAN if sweep == 0 else (self.frac[i],))
            if self.nonzero != start:
                self._pattern_step(start)
            history.append(self.best_err)
            if callback is not None:
                callback(sweep, self.best_err, torch.tensor([*self.nonzero, 0.0], dtype=torch.float64))
            if patience and len(history) > patience:
                if history[-1] > (1 - _STALL_GAIN) * history[-1 - patience]:
                    break  # the last `patience` sweeps gained less than 0.1 % together
        return history

    def _move_level(self, i: int, fractions: Sequence[float]) -> None:
        """Try level i at each fraction of the way to either bound; keep the best improving move and
        grow its fraction ×1.5 (at most 0.5), else halve it."""
        nonzero = self.nonzero
        u = math.log(nonzero[i])
        u_hi = math.log(nonzero[i - 1]) - self.min_gap
        u_lo = math.log(nonzero[i + 1]) + self.min_gap if i + 1 < len(nonzero) else math.log(self.sigma_min)
        best_move = None
        for bound, f in itertools.product((u_hi, u_lo), fractions):
            new_u = u + f * (bound - u)
            if not u_lo <= new_u <= u_hi or abs(new_u - u) < 1e-12:
                continue
            trial = list(nonzero)
            trial[i] = math.exp(new_u)
            err = self._score(trial)
            if err < self.best_err and (best_move is None or err < best_move[0]):
                best_move = (err, trial)
        if best_move is not None:
            self.best_err, self.nonzero = best_move
            self.frac[i] = min(0.5, self.frac[i] * 1.5)
        else:
            self.frac[i] *= 0.5

    def _pattern_step(self, start: list[float]) -> None:
        """Hooke–Jeeves pattern move: extrapolate the sweep's change in log σ by ×1, else ×½."""
        for step in (1.0, 0.5):
            trial = _pattern_move(start, self.nonzero, step, self.min_gap, self.sigma_min)
            if trial is None:
                continue
            err = self._score(trial)
            if err < self.best_err:
                self.best_err, self.nonzero = err, trial
                break


def _pattern_move(
    old: list[float], new: list[float], step: float, min_gap: float, sigma_min: float
) -> list[float] | None:
    """new·(new/old)^step in log σ, or None if it breaks the order, the gaps or the σ_min floor."""
    u_old = [math.log(v) for v in old]
    u_new = [math.log(v) for v in new]
    cand = [b + step * (b - a) for a, b in zip(u_old, u_new)]
    for k in range(len(cand) - 1):
        if cand[k] - cand[k + 1] < min(min_gap, u_new[k] - u_new[k + 1]) - 1e-12:
            return None
    if cand[-1] < math.log(sigma_min) - 1e-12:
        return None
    # levels the sweep did not move (σ_max, a fixed σ_min) keep their exact values
    return [v if o == v else math.exp(c) for o, v, c in zip(old, new, cand)]
