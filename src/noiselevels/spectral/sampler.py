"""Sampling with one VE σ grid per instance: :func:`solve_per_instance`.

A per-instance model is sampled along each instance's own grid (:meth:`InstanceSchedules.sigmas
<noiselevels.spectral.instance.InstanceSchedules.sigmas>`, (B, N + 1)), so σ differs from row to row at
every step; the denoiser receives σ as a (B,) tensor, as in ``noiselevels.sampling.solvers``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["PER_INSTANCE_SOLVERS", "solve_per_instance"]

_F64 = torch.float64
PER_INSTANCE_SOLVERS = ("euler", "heun", "dpmpp_2m")


def solve_per_instance(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    *,
    sigmas: Tensor,
    solver: str = "heun",
) -> Tensor:
    """Integrate the probability-flow ODE with a different VE σ grid for every row of the batch.

    Same methods and formulas as ``noiselevels.sampling.solvers`` (``euler``, ``heun`` = EDM Alg. 1
    without churn, ``dpmpp_2m``), but with σ a (B,) tensor at each step: ``sigmas`` is (B, N + 1),
    strictly decreasing per row, all rows ending in 0 or none. With identical rows it equals ``solve``
    on that grid (tested). ``denoiser(x, sigma (B,)) → x̂₀``; x starts at σ = sigmas[:, 0].
    """
    if solver not in PER_INSTANCE_SOLVERS:
        raise ValueError(
            f"per-instance solver must be one of {', '.join(PER_INSTANCE_SOLVERS)}; got {solver!r}"
        )
    s = torch.as_tensor(sigmas, dtype=_F64).detach().cpu()
    if s.ndim != 2 or s.shape[0] != x.shape[0] or s.shape[1] < 2:
        raise ValueError(
            f"sigmas must have shape (B, N + 1) with B = {x.shape[0]}, N >= 1; got {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any() or (s[:, 1:] >= s[:, :-1]).any():
        raise ValueError("each row of sigmas must be finite, >= 0 and strictly decreasing")
    last_zero = s[:, -1] == 0
    if last_zero.any() and not last_zero.all():
        raise ValueError("either every row of sigmas ends in 0 or none does")
    dev, dt = x.device, x.dtype

    def col(i: int) -> Tensor:
        return s[:, i].to(dev)

    def bc(v: Tensor) -> Tensor:
        return v.to(dt).reshape(-1, *([1] * (x.ndim - 1)))

    n = s.shape[1] - 1
    old = None
    for i in range(n):
        si, sn = col(i), col(i + 1)
        den = denoiser(x, si.to(dt))
        if solver == "dpmpp_2m":
            ratio = sn / si
            if old is None or bool((sn == 0).all()):
                x = bc(ratio) * x + bc(1.0 - ratio) * den
            else:
                h = torch.log(si / sn)
                h_last = torch.log(col(i - 1) / si)
                r = h_last / h
                d = bc(1.0 + 1.0 / (2.0 * r)) * den - bc(1.0 / (2.0 * r)) * old
                x = bc(ratio) * x + bc(1.0 - ratio) * d
            old = den
            continue
        d = (x - den) / bc(si)
        step = bc(sn - si)
        if solver == "euler" or bool((sn == 0).all()):
            x = x + d * step
        else:
            x2 = x + d * step
            d2 = (x2 - denoiser(x2, sn.to(dt))) / bc(sn)
            x = x + (d + d2) / 2 * step
    return x
