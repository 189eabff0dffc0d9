"""Sampling with one VE σ grid per instance: :func:`solve_per_instance`.

A per-instance model is sampled along each instance's own grid (:meth:`InstanceSchedules.sigmas
<noiselevels.spectral.instance.InstanceSchedules.sigmas>`, (B, N + 1)), so σ differs from row to row at
every step. The integration is ``noiselevels.sampling.solvers.solve`` with a (B, N + 1) grid (one grid
per row; the denoiser receives the per-row σ of shape (B,)): there is one implementation of each solver.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from noiselevels.sampling.solvers import solve

__all__ = ["PER_INSTANCE_SOLVERS", "solve_per_instance"]

PER_INSTANCE_SOLVERS = ("euler", "heun", "dpmpp_2m")
"""The deterministic solvers a per-instance run samples with (``generate(..., spectral=...)``)."""


def solve_per_instance(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    *,
    sigmas: Tensor,
    solver: str = "heun",
) -> Tensor:
    """Integrate the probability-flow ODE with a different VE σ grid for every row of the batch.

    ``noiselevels.sampling.solvers.solve`` with ``sigmas`` (B, N + 1), strictly decreasing per row, all
    rows ending in 0 or none; ``solver`` is one of :data:`PER_INSTANCE_SOLVERS` (``euler``, ``heun`` =
    EDM Alg. 1 without churn, ``dpmpp_2m``). With identical rows it equals ``solve`` on that grid;
    row b equals the solve of row b alone on its own grid (tested). ``denoiser(x, sigma (B,)) → x̂₀``;
    x (B, ...) starts at σ = sigmas[:, 0]. The caller's global random state is left untouched.
    """
    if solver not in PER_INSTANCE_SOLVERS:
        raise ValueError(
            f"per-instance solver must be one of {', '.join(PER_INSTANCE_SOLVERS)}; got {solver!r}"
        )
    s = torch.as_tensor(sigmas)
    if s.ndim != 2 or s.shape[0] != x.shape[0] or s.shape[1] < 2:
        raise ValueError(
            f"sigmas must have shape (B, N + 1) with B = {x.shape[0]}, N >= 1; got {tuple(s.shape)}"
        )
    # heun draws (unused, s_churn = 0) noise each step: a private generator keeps the global RNG as it was
    private = torch.Generator(device=x.device)
    return solve(denoiser, x, sigmas=s, solver=solver, generator=private)
