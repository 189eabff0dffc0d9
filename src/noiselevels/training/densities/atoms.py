"""A few flow times as atoms: ``flow_time_atoms`` (SimpleTuner's ``flux_fast_schedule``).

Conventions: λ = log(α²/σ²) (large = clean); flow time t = σ = sigmoid(−λ/2) (t = 0 clean). A tool that
trains on a handful of σ values has no density; as OneTrainer's integer timesteps are read
(``noiselevels.training.tool_densities.onetrainer``), each atom t_k is the cell (t_k − c, t_k] of width
c (default 1/1000, one timestep of a 1000-step table) with its mass spread uniformly in t. Then the mass
of every cell is the atom's probability exactly, the cdf between cells is exact, and an atom at t = 1
(pure noise, λ = −∞) becomes the cell λ ∈ (−∞, λ(1 − c)] that a plot over finite λ can show.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, check_positive
from noiselevels.training.densities.base import ExactDensity, _lam_of_t

__all__ = ["FlowTimeAtoms"]

_F64 = torch.float64


@DENSITIES.register("flow_time_atoms")
@dataclasses.dataclass(frozen=True)
class FlowTimeAtoms(ExactDensity):
    """Flow times ``times`` (each in (0, 1]) drawn with probabilities ∝ ``weights``; atom k is spread
    uniformly over t ∈ (t_k − ``cell``, t_k]:

        P(Λ ≤ λ) = P(T ≥ t) = Σ_k p_k · clamp((t_k − t)/c, 0, 1),
        p(λ) = Σ_k (p_k/c)·1[t ∈ (t_k − c, t_k)] · t(1 − t)/2.
    """

    times: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    cell: float = 1e-3

    def __post_init__(self) -> None:
        times = tuple(self.times) if isinstance(self.times, (list, tuple)) else None
        weights = tuple(self.weights) if isinstance(self.weights, (list, tuple)) else None
        if not times or any(isinstance(t, bool) or not isinstance(t, (int, float)) for t in times):
            raise ValueError(
                f"times must be a non-empty sequence of flow times in (0, 1]; got {self.times!r}"
            )
        if weights is None or len(weights) != len(times):
            raise ValueError(
                f"weights must be {len(times)} positive numbers (one per time); got {self.weights!r}"
            )
        for i, w in enumerate(weights):
            check_positive(f"weights[{i}]", w)
        check_positive("cell", self.cell)
        order = sorted(range(len(times)), key=lambda i: -times[i])  # noisy (large t) first = increasing λ
        ts = [float(times[i]) for i in order]
        tol = 1e-9 * self.cell
        if not all(0.0 < t <= 1.0 for t in ts) or ts[-1] < self.cell - tol:
            raise ValueError(f"times must lie in [cell = {self.cell!r}, 1]; got {_short(ts)}")
        if any(a - b < self.cell - tol for a, b in itertools.pairwise(ts)):
            raise ValueError(f"times must be at least cell = {self.cell!r} apart; got {_short(ts)}")
        object.__setattr__(self, "times", tuple(ts))
        object.__setattr__(self, "weights", tuple(float(weights[i]) for i in order))

    @property
    def probs(self) -> Tensor:
        w = torch.tensor(self.weights, dtype=_F64)
        return w / w.sum()

    @property
    def support(self) -> tuple[float, float]:
        return (_lam_of_t(self.times[0]), _lam_of_t(self.times[-1] - self.cell))

    def _frac(self, lam: Tensor) -> Tensor:
        """clamp((t_k − t)/c, 0, 1) for every atom: shape (..., K)."""
        t = torch.sigmoid(-0.5 * lam).unsqueeze(-1)
        return ((torch.tensor(self.times, dtype=_F64) - t) / self.cell).clamp(0.0, 1.0)

    def _cdf(self, lam: Tensor) -> Tensor:
        return (self._frac(lam) * self.probs).sum(-1)

    def _log_prob(self, lam: Tensor) -> Tensor:
        f = self._frac(lam)
        inside = ((f > 0) & (f < 1)).to(_F64)
        t = torch.sigmoid(-0.5 * lam)
        dens = (inside * self.probs).sum(-1) / self.cell * t * (1.0 - t) / 2.0
        return torch.log(dens)

    def _icdf(self, u: Tensor) -> Tensor:
        cum = torch.cat([torch.zeros(1, dtype=_F64), torch.cumsum(self.probs, 0)])
        k = torch.searchsorted(cum[1:-1].contiguous(), u.contiguous(), right=True)
        frac = ((u - cum[k]) / self.probs[k]).clamp(0.0, 1.0)
        t = (torch.tensor(self.times, dtype=_F64)[k] - frac * self.cell).clamp(min=0.0)
        lam = 2.0 * (torch.log1p(-t) - torch.log(t))
        return torch.where(t >= 1.0, torch.full_like(lam, -math.inf), lam)


def _short(values) -> str:
    """A sequence for an error message: all of it when short, else its ends."""
    v = list(values)
    if len(v) <= 8:
        return repr(v)
    return f"[{', '.join(map(repr, v[:3]))}, …, {', '.join(map(repr, v[-3:]))}] ({len(v)} values)"
