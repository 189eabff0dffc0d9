"""Optimise the σ grid of a sampler for a given denoiser, solver and step budget.

``optimize_spacing(denoiser, steps=N, solver=..., sigma_min=, sigma_max=, x0=..., generator=...)``
returns N + 1 VE noise levels (float64, decreasing, trailing 0) whose first value is σ_max and whose
last nonzero value is σ_min; the N − 2 levels in between are chosen to minimise one of two criteria:

``"solve_error"`` (deterministic solvers: euler, heun, dpmpp_2m, lms)
    The root-mean-square distance, over a fixed batch of starting points x_T = σ_max·ε, between the
    N-step solve and the exact end point of the probability-flow ODE on [σ_min, σ_max]:
    E = √(mean ‖solve(x_T; grid) − x*‖²), x* = D(x(σ_min), σ_min) for a grid ending in 0 (the solvers'
    last step, σ_min → 0, is that denoising step), where x(σ_min) is a fine adaptive solve
    (``toy.ode_solve``, Dormand–Prince 5(4) in log σ) or a given ``reference``. Every grid with these end
    points converges to x* as N grows, so E is the discretisation error alone.
``"klub"`` (stochastic solvers: euler_ancestral, edm_stochastic, dpmpp_2m_sde)
    The Align-Your-Steps upper bound on the KL divergence between the reverse SDE and its discretisation
    with the denoiser frozen over each step (Sabour et al. 2024, "Align your steps", Theorem 3.1, with
    σ(t) = t): Σ_i ∫_{σ_{i+1}}^{σ_i} σ⁻³ E‖D(x_σ, σ) − D(x_{σ_i}, σ_i)‖² dσ over the nonzero intervals,
    where (x_σ, x_{σ_i}) are two points of one forward path: x_σ = x₀ + σε₁, x_{σ_i} = x_σ + √(σ_i² − σ²)·ε₂
    (the reverse SDE has the same path law). Monte Carlo with x₀ from ``x0`` and σ = σ_{i+1}(σ_i/σ_{i+1})^v,
    v ~ U(0, 1) per sample and interval (so the integrand is σ⁻²·Δlog σ·E‖·‖²), per element.

All random draws (noise, data, v) are made once from ``generator`` (common random numbers), which makes
the criterion a smooth deterministic function of the grid and the result deterministic for a seed.

**Search.** The movable levels (the interior ones, and the last nonzero one unless
``optimize_last=False``) are parameterised by u_i = log σ_i, which keeps them positive; order is kept by
construction: a move of u_i goes a fraction f_i ∈ (0, 1) of the way to the bound set by one of its
neighbours (less ``min_log_step``; σ_min below the last level), so the grid stays strictly decreasing and
never leaves [σ_min, σ_max]. A coordinate-wise pattern search (the local search of AYS, made adaptive):
for each movable level in turn try both directions with its own f_i, keep the better move if it lowers
the criterion and grow f_i ×1.5 (at most 0.5), else halve f_i; stop after ``iters`` sweeps, when every
f_i < ``tol``, or when ``patience`` sweeps together gained less than 0.1 %. The first sweep scans each
level at 10, 25, 50, 75 and 90 % of the way to either neighbour instead, which lets the search leave
the basin of a poor start. After each sweep a Hooke–Jeeves pattern move extrapolates the sweep's total
change (×1, else ×½) to follow valleys that run across coordinates. The search needs no gradients (any
denoiser works, ``torch.no_grad`` models too) and costs about 2·(N − 1) solves per sweep (10·(N − 1) in
the first). ``init`` may name several spacings; the search starts from the best of them.

With ``optimize_last`` (default) σ_min is the lowest level the grid may visit, not one it must visit:
the final step of every solver is the jump x ← D(x, σ_{N−1}) to σ = 0, and on a grid pinned at
σ_min = 0.002 that step is nearly wasted.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from noiselevels.sampling.solvers import SOLVERS, Solver, solve
from noiselevels.sampling.spacings import spacing
from noiselevels.sampling.toy import ode_solve

__all__ = ["DEFAULT_INITS", "SpacingResult", "optimize_spacing", "solve_error"]

Denoiser = Callable[[Tensor, Tensor], Tensor]
_CRITERIA = ("auto", "solve_error", "klub")
#: the spacings the search starts from by default (the best of them on the criterion)
DEFAULT_INITS = ("karras", "exponential", "kl_optimal", "vp")
# the first sweep scans each level at these fractions of the way to either neighbour
_SCAN = (0.1, 0.25, 0.5, 0.75, 0.9)
# stop when `patience` sweeps in a row lowered the criterion by less than this (relative) in all
_STALL_GAIN = 1e-3


@dataclasses.dataclass(frozen=True)
class SpacingResult:
    """What ``optimize_spacing(..., return_info=True)`` returns.

    sigmas / init_sigmas: float64 (steps + 1,) grids (trailing 0); error_before / error_after: the
    criterion at the initial and final grid (on the optimisation batch); history: the criterion after
    each sweep; evaluations: number of criterion evaluations; seconds: wall time.
    """

    sigmas: Tensor
    init_sigmas: Tensor
    criterion: str
    solver: str
    error_before: float
    error_after: float
    history: tuple[float, ...]
    evaluations: int
    seconds: float

    @property
    def improvement(self) -> float:
        """error_before / error_after (≥ 1)."""
        return self.error_before / self.error_after if self.error_after > 0 else math.inf


def _check_int(name: str, value: Any, lo: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {value!r}")
    return value


def _check_range(sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
    if not sigma_min < sigma_max:
        raise ValueError(
            f"sigma_min must be < sigma_max; got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}"
        )
    return float(sigma_min), float(sigma_max)


def _initial_grid(init: Any, steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    if isinstance(init, str):
        grid = spacing(init).sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max)
    else:
        grid = torch.as_tensor(init, dtype=torch.float64).clone()
        if grid.shape != (steps + 1,):
            raise ValueError(
                f"init grid must have steps + 1 = {steps + 1} values; got shape {tuple(grid.shape)}"
            )
    grid = grid.to(torch.float64).clone()
    grid[0], grid[-1] = sigma_max, 0.0
    if steps >= 2:
        grid[-2] = sigma_min
    if not (grid[1:] < grid[:-1]).all():
        raise ValueError(
            f"init grid must be strictly decreasing from sigma_max to sigma_min; got {grid.tolist()}"
        )
    return grid


def solve_error(
    denoiser: Denoiser,
    sigmas: Tensor,
    x_T: Tensor,
    target: Tensor,
    *,
    solver: str | Solver = "heun",
    generator_seed: int | None = None,
) -> float:
    """√(mean (solve(x_T; sigmas) − target)²) over every element of the batch (float)."""
    gen = None
    if generator_seed is not None:
        gen = torch.Generator(device=x_T.device).manual_seed(generator_seed)
    with torch.no_grad():
        out = solve(denoiser, x_T, sigmas=sigmas, solver=solver, generator=gen)
    return float(((out.to(torch.float64) - target.to(torch.float64)) ** 2).mean().sqrt())


def _reference_target(denoiser, x_T, sigma_min, sigma_max, reference, rtol):
    with torch.no_grad():
        if reference is None:
            x_min = ode_solve(denoiser, x_T, sigma_max=sigma_max, sigma_min=sigma_min, rtol=rtol, atol=rtol)
        else:
            x_min = reference(x_T, sigma_max=sigma_max, sigma_min=sigma_min)
        x_min = x_min.to(x_T.dtype)
        return denoiser(x_min, x_min.new_full((x_min.shape[0],), sigma_min))


def _klub_criterion(denoiser, x0: Tensor, steps: int, generator) -> Callable[[list[float]], float]:
    """The AYS bound as a function of the nonzero grid (Python floats), with draws fixed now."""
    n_int = steps - 1  # intervals between nonzero levels
    b = x0.shape[0]
    eps1 = torch.randn((n_int, *x0.shape), generator=generator, dtype=x0.dtype, device=x0.device)
    eps2 = torch.randn((n_int, *x0.shape), generator=generator, dtype=x0.dtype, device=x0.device)
    v = torch.rand((n_int, b), generator=generator, dtype=torch.float64)
    ones = x0.new_ones(b)
    shape = (b, *([1] * (x0.ndim - 1)))

    def criterion(nonzero: list[float]) -> float:
        total = 0.0
        with torch.no_grad():
            for i in range(n_int):
                hi, lo = nonzero[i], nonzero[i + 1]
                dlog = math.log(hi / lo)
                sig = lo * torch.exp(v[i] * dlog)  # (B,) float64
                s = sig.to(x0.dtype).reshape(shape)
                x_s = x0 + s * eps1[i]
                x_hi = x_s + torch.sqrt(hi**2 - sig**2).to(x0.dtype).reshape(shape) * eps2[i]
                d = denoiser(x_s, sig.to(x0.dtype)) - denoiser(x_hi, ones * hi)
                per = (d.to(torch.float64) ** 2).reshape(b, -1).mean(1)
                total += float((per * dlog / sig**2).mean())
        return total

    return criterion


def optimize_spacing(
    denoiser: Denoiser,
    *,
    steps: int,
    solver: str | Solver = "heun",
    sigma_min: float,
    sigma_max: float,
    x0: Tensor | None = None,
    shape: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    init: str | Tensor | Sequence[float] | Sequence[str] = DEFAULT_INITS,
    num_samples: int = 256,
    iters: int = 40,
    optimize_last: bool = True,
    patience: int | None = 5,
    min_log_step: float | None = None,
    tol: float = 1e-3,
    criterion: str = "auto",
    reference: Callable[..., Tensor] | None = None,
    reference_rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
    return_info: bool = False,
    callback: Callable[[int, float, Tensor], None] | None = None,
) -> Tensor | SpacingResult:
    """An N-step σ grid for ``denoiser`` and ``solver`` minimising the sampling error (module docstring).

    Args:
        denoiser: D(x, σ) → x̂₀ (k-diffusion contract; ``as_denoiser`` wraps a trained model).
        steps: N ≥ 1 (N ≤ 2 leaves nothing to optimise: the grid is (σ_max, [σ_min,] 0)).
        solver: a solver name or instance; deterministic ones use ``"solve_error"``, stochastic ones
            ``"klub"`` (``criterion="auto"``).
        sigma_min, sigma_max: the fixed end levels, 0 < σ_min < σ_max.
        x0: examples of the data, (B, ...): gives the shape (and the device) of the samples; required
            for ``"klub"`` (the bound is taken over forward-noised data), at most ``num_samples`` used.
        shape: the shape of one sample, when ``x0`` is not given.
        generator: the source of every random draw (deterministic result for a seeded generator).
        init: the starting grid: a spacing name (``karras``, ``exponential``, ...), a grid of N + 1
            values, or a list of names (start from the best of them; default ``DEFAULT_INITS``).
        num_samples: batch size of the criterion (starting points or data draws).
        iters: maximum number of sweeps of the coordinate search; tol: the smallest move fraction.
        patience: stop when this many sweeps in a row gained less than 0.1 % together (None: never).
        optimize_last: also move the last nonzero level (within [σ_min, its upper neighbour)):
            σ_min is then the lowest level the grid may visit rather than a level it must visit.
        min_log_step: the smallest allowed log(σ_i/σ_{i+1}) between nonzero levels (default: 5 % of
            the uniform step); keeps multistep solvers away from degenerate step-size ratios.
            With ``"klub"`` the last level stays at σ_min (the bound would otherwise shrink its own
            domain of integration).
        reference: ``reference(x_T, sigma_max=, sigma_min=)`` → x(σ_min) (e.g. a toy problem's
            ``reference_solve``); default: an adaptive solve with rtol = atol = ``reference_rtol``
            (default 1e-7 for a float64 batch, 1e-5 otherwise).
        dtype: the dtype of the optimisation batch (float64 by default; use float32 for networks).
        return_info: return a ``SpacingResult`` instead of the grid.
        callback: called after each sweep with (sweep, criterion, grid).

    Returns:
        float64 tensor (steps + 1,), decreasing, trailing 0 — or a ``SpacingResult``.
    """
    t_start = time.perf_counter()
    steps, sigma_min, sigma_max, num_samples, iters = _check_numbers(steps, sigma_min, sigma_max, num_samples,
                                                                     iters, tol)
    method = solver if isinstance(solver, Solver) else SOLVERS.create(solver)
    criterion = _resolve_criterion(criterion, method, x0, shape)
    candidates = _candidate_grids(init, steps, sigma_min, sigma_max)
    evaluate = _criterion_function(
        denoiser, criterion, method, steps, sigma_min, sigma_max, x0=x0, shape=shape, generator=generator,
        num_samples=num_samples, reference=reference, reference_rtol=reference_rtol, dtype=dtype,
    )
    error_before, init_grid = min(((evaluate(g[:-1].tolist()), g) for g in candidates), key=lambda p: p[0])
    # the bound only covers [σ_{N−1}, σ_max]: raising σ_{N−1} would shrink it for free, so "klub" keeps it
    search = _Search.start(evaluate, init_grid[:-1].tolist(), error_before, evaluations=len(candidates),
                           sigma_min=sigma_min, sigma_max=sigma_max, min_log_step=min_log_step,
                           free_last=optimize_last and criterion == "solve_error")
    history = search.run(iters, tol, patience, callback)
    sigmas = torch.tensor([*search.nonzero, 0.0], dtype=torch.float64)
    if not return_info:
        return sigmas
    return SpacingResult(sigmas=sigmas, init_sigmas=init_grid, criterion=criterion, solver=method.name,
                         error_before=error_before, error_after=search.best_err, history=tuple(history),
                         evaluations=search.evaluations, seconds=time.perf_counter() - t_start)


def _check_numbers(
    steps: Any, sigma_min: Any, sigma_max: Any, num_samples: Any, iters: Any, tol: Any
) -> tuple[int, float, float, int, int]:
    """Validate the numeric options of ``optimize_spacing``; (steps, σ_min, σ_max, num_samples, iters)."""
    steps = _check_int("steps", steps, 1)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    num_samples = _check_int("num_samples", num_samples, 1)
    iters = _check_int("iters", iters, 0)
    if not (isinstance(tol, (int, float)) and 0 < tol < 0.5):
        raise ValueError(f"tol must be in (0, 0.5); got {tol!r}")
    return steps, sigma_min, sigma_max, num_samples, iters


def _resolve_criterion(criterion: str, method: Solver, x0: Tensor | None, shape: Sequence[int] | None) -> str:
    """``"solve_error"`` or ``"klub"`` (``"auto"``: by whether the solver is stochastic); checks that the
    data the criterion needs (x0 or shape) is given."""
    if criterion not in _CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid: {', '.join(_CRITERIA)}")
    if criterion == "auto":
        criterion = "klub" if method.stochastic else "solve_error"
    if x0 is None and shape is None:
        raise ValueError("give x0 (examples of the data) or shape (the shape of one sample)")
    if x0 is not None and (not isinstance(x0, Tensor) or x0.ndim < 2):
        raise ValueError("x0 must be a tensor of examples with shape (B, ...)")
    if criterion == "klub" and x0 is None:
        raise ValueError("the 'klub' criterion (stochastic solvers) needs x0, examples of the data")
    return criterion


def _candidate_grids(init: Any, steps: int, sigma_min: float, sigma_max: float) -> list[Tensor]:
    """The starting grids: one per spacing name in ``init``, or the one grid given."""
    names = [init] if isinstance(init, str) else list(init) if _is_name_list(init) else None
    if names is None:
        return [_initial_grid(init, steps, sigma_min, sigma_max)]
    return [_initial_grid(n, steps, sigma_min, sigma_max) for n in names]


def _criterion_function(
    denoiser: Denoiser,
    criterion: str,
    method: Solver,
    steps: int,
    sigma_min: float,
    sigma_max: float,
    *,
    x0: Tensor | None,
    shape: Sequence[int] | None,
    generator: torch.Generator | None,
    num_samples: int,
    reference: Callable[..., Tensor] | None,
    reference_rtol: float | None,
    dtype: torch.dtype,
) -> Callable[[list[float]], float]:
    """The criterion as a function of the nonzero grid (Python floats), with every random draw made now
    from ``generator`` (common random numbers)."""
    if criterion == "klub":
        if x0.shape[0] > num_samples:
            idx = torch.randperm(x0.shape[0], generator=generator)[:num_samples]
            data = x0[idx.to(x0.device)]
        else:
            data = x0
        return _klub_criterion(denoiser, data.to(dtype), steps, generator)
    device = x0.device if x0 is not None else torch.device("cpu")
    sample_shape = tuple(x0.shape[1:]) if x0 is not None else tuple(int(s) for s in shape)
    noise = torch.randn((num_samples, *sample_shape), generator=generator, dtype=dtype)
    x_T = (noise * sigma_max).to(device)
    if reference_rtol is None:
        reference_rtol = 1e-7 if dtype == torch.float64 else 1e-5
    target = _reference_target(denoiser, x_T, sigma_min, sigma_max, reference, reference_rtol)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if method.stochastic else None

    def evaluate(nonzero: list[float]) -> float:
        grid = torch.tensor([*nonzero, 0.0], dtype=torch.float64)
        return solve_error(denoiser, grid, x_T, target, solver=method, generator_seed=seed)

    return evaluate


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


def _is_name_list(init: Any) -> bool:
    return isinstance(init, (list, tuple)) and len(init) > 0 and all(isinstance(n, str) for n in init)
