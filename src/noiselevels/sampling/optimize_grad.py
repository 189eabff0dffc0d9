"""Gradient search of a σ grid through the differentiable solve (``optimize_spacing(method="gradient")``).

Every deterministic solver's step is a smooth function of the grid (its coefficients are expm1, log,
ratios and small linear solves of the σ's) and of the denoiser's outputs, which are smooth in x and σ
for a network. So the solve error E(grid) = √(mean (solve(x_T; grid) − x*)²) of
``noiselevels.sampling.optimize`` can be differentiated with respect to the grid by autograd through
the solver and the denoiser (x and σ inputs; the weights stay frozen).

**Parameterisation.** With U = log σ_max − log σ_min and n nonzero levels, the n − 1 log-steps are
Δ = U·softmax(θ)[: n − 1] over n − 1 logits θ (plus one slack logit when the last level is free: the
slack is the unused part of [σ_min, σ_max] below it). So σ_max is kept exactly, every level stays in
[σ_min, σ_max], the grid is strictly decreasing by construction and no constraint is needed.

**Search.** Adam on θ for ``iters`` iterations, learning rate ``lr`` (0.1) decayed on a cosine to 0;
each iteration is one forward and one backward solve, and the best grid seen (on the fit batch) is
returned. Then the *reallocation* pass: a level whose log-step is below a quarter of the mean is
removed and a level inserted at the log-midpoint of the widest step instead, kept if the error drops
(a level spent twice on nearly the same σ is never left in place).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor

from noiselevels.sampling.solvers import Solver, _Context

__all__ = ["differentiable_solve", "gradient_search", "reallocate_levels"]

_F64 = torch.float64


class _GradContext(_Context):
    """A per-row-style context for one grid (R = 1) whose coefficients stay tensors (so autograd sees
    them) and whose σ is expanded to the batch for the denoiser."""

    def sigma(self, sigma: Tensor) -> Tensor:
        return sigma.to(device=self._ones.device, dtype=self._ones.dtype).expand(self._ones.shape[0])


def differentiable_solve(denoiser, x: Tensor, grid: Tensor, method: Solver) -> Tensor:
    """``solve(denoiser, x, sigmas=grid, solver=method)`` for one (N+1,) float64 grid that may require
    grad: the result is differentiable with respect to ``grid`` (and x). Deterministic solvers only."""
    if method.stochastic:
        raise ValueError(f"the gradient search needs a deterministic solver; {method.name!r} is stochastic")
    ctx = _GradContext(denoiser, x, False, None, None)
    return method._run(ctx, x, grid.reshape(1, -1))


def _grid_from_logits(theta: Tensor, log_max: float, log_min: float, free_last: bool) -> Tensor:
    """(n + 1,) float64 grid σ_max, …, σ_last, 0 from the logits (module docstring); with a fixed last
    level it is exactly σ_min."""
    steps = (log_max - log_min) * torch.softmax(theta, dim=0)
    u = log_max - torch.cumsum(steps[:-1], 0)
    # the fixed ends exactly (exp(log σ) may differ from σ in the last bit)
    top = theta.new_full((1,), _exact(log_max))
    tail = [] if free_last else [theta.new_full((1,), _exact(log_min))]
    return torch.cat([top, torch.exp(u), *tail, theta.new_zeros(1)])


_EXACT: dict[float, float] = {}


def _exact(log_value: float) -> float:
    return _EXACT.get(log_value, math.exp(log_value))


def _logits_from_grid(nonzero: list[float], sigma_min: float, free_last: bool) -> Tensor:
    u = [math.log(v) for v in nonzero]
    steps = [a - b for a, b in itertools.pairwise(u)]
    span = u[0] - math.log(sigma_min)
    if free_last:
        steps.append(max(span - sum(steps), 1e-3 * span))
    return torch.tensor([math.log(max(s, 1e-9)) for s in steps], dtype=_F64)


def gradient_search(
    loss: Callable[[Tensor], Tensor],
    nonzero: list[float],
    *,
    sigma_min: float,
    free_last: bool,
    iters: int,
    lr: float = 0.1,
    callback: Callable[[int, float, Tensor], None] | None = None,
) -> tuple[list[float], float, list[float]]:
    """Adam on the logits of the grid from ``nonzero`` (σ_max first, no trailing 0); ``loss(grid)`` maps
    an (n + 1,) float64 grid to a scalar tensor. Returns (best nonzero levels, best loss, best loss after
    each iteration).
    A grid of one or two nonzero levels with the last fixed has nothing to move: returned as is."""
    n = len(nonzero)
    log_max, log_min = math.log(nonzero[0]), math.log(sigma_min)
    _EXACT.update({log_max: float(nonzero[0]), log_min: float(sigma_min)})
    if n < 2 or (n == 2 and not free_last):
        grid = torch.tensor([*nonzero, 0.0], dtype=_F64)
        return list(nonzero), float(loss(grid)), []
    theta = _logits_from_grid(nonzero, sigma_min, free_last).requires_grad_(True)
    opt = torch.optim.Adam([theta], lr=lr)
    best = (math.inf, list(nonzero))
    history: list[float] = []
    for it in range(iters):
        with torch.enable_grad():  # also inside a caller's torch.no_grad()
            grid = _grid_from_logits(theta, log_max, log_min, free_last)
            value = loss(grid)
        err = float(value.detach())
        if err < best[0]:
            best = (err, grid[:-1].detach().tolist())
        history.append(best[0])
        if callback is not None:
            callback(it, err, grid.detach())
        if it == iters - 1 or not math.isfinite(err):
            break
        # autograd.grad, not backward(): the network's own parameters never receive a .grad
        (theta.grad,) = torch.autograd.grad(value, [theta])
        for group in opt.param_groups:  # cosine decay: large moves first, then settle
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (it + 1) / iters))
        opt.step()
    return best[1], best[0], history


def reallocate_levels(
    evaluate: Callable[[list[float]], float], nonzero: list[float], err: float, *, fixed_last: bool
) -> tuple[list[float], float, int]:
    """Move levels whose log-step to the next level is below ¼ of the mean to the log-midpoint of the
    widest step, one at a time while that lowers ``evaluate``; (levels, error, evaluations)."""
    evaluations = 0
    tried: set[int] = set()
    while evaluations < 2 * len(nonzero):
        u = [math.log(v) for v in nonzero]
        steps = [a - b for a, b in itertools.pairwise(u)]
        mean = sum(steps) / len(steps) if steps else 0.0
        movable = range(1, len(nonzero) - (1 if fixed_last else 0))
        small = [i for i in movable if i not in tried and min(steps[i - 1], steps[i] if i < len(steps)
                                                                else math.inf) < 0.25 * mean]
        if not small:
            return nonzero, err, evaluations
        i = small[0]
        tried.add(i)
        rest = nonzero[:i] + nonzero[i + 1:]
        ru = [math.log(v) for v in rest]
        k = max(range(len(rest) - 1), key=lambda j: ru[j] - ru[j + 1])
        trial = [*rest[: k + 1], math.exp(0.5 * (ru[k] + ru[k + 1])), *rest[k + 1:]]
        evaluations += 1
        trial_err = evaluate(trial)
        if trial_err < err:
            nonzero, err = trial, trial_err
            tried.clear()
    return nonzero, err, evaluations
