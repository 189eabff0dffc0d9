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

**Gradient search** (``method="gradient"``, the default where the solve error carries a gradient, i.e.
for a deterministic solver and a denoiser that is not run under ``torch.no_grad`` internally): Adam
through the differentiable solve (``noiselevels.sampling.optimize_grad``), then a reallocation pass that
moves levels spent on nearly the same σ to the widest step. ``method="pattern"`` (and every "klub"
search) is the coordinate search above.

**Starting grids and solvers.** ``DEFAULT_INITS`` holds the formula grids, Align Your Steps and diffusers'
three DDPM-table rules (``diffusers_linspace`` / ``_leading`` / ``_trailing``: ``uniform_t`` on the default
linear-β table), clipped to [σ_min, σ_max] (with a free last level an init keeps its own last level).
With ``solver="auto"`` every solver of ``AUTO_SOLVERS`` is scored on the two best starting grids of the
first, the best (solver, grid) pair is optimised — and the runner-up too when it screened within 10 % of
it — and the better result is returned
(``SpacingResult.solver``, ``.screened``).

With ``optimize_last`` (default) σ_min is the lowest level the grid may visit, not one it must visit:
the final step of every solver is the jump x ← D(x, σ_{N−1}) to σ = 0, and on a grid pinned at
σ_min = 0.002 that step is nearly wasted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from noiselevels.sampling.optimize_grad import differentiable_solve, gradient_search, reallocate_levels
from noiselevels.sampling.optimize_pattern import _Search
from noiselevels.sampling.solvers import SOLVERS, Solver, solve
from noiselevels.sampling.spacings import spacing
from noiselevels.sampling.toy import ode_solve
from noiselevels.schedules.ddpm import DDPM

__all__ = ["AUTO_SOLVERS", "DEFAULT_INITS", "SpacingResult", "optimize_spacing", "solve_error"]

Denoiser = Callable[[Tensor, Tensor], Tensor]
_CRITERIA = ("auto", "solve_error", "klub")
_METHODS = ("auto", "gradient", "pattern")
_SECOND_SEARCH = 1.1  # with solver="auto", also optimise the runner-up if it screened within 10 %
#: the spacings the search starts from by default (the best of them on the criterion): the formula
#: grids, Align Your Steps, and diffusers' default DDPM-table rules (``uniform_t`` on the linear β table)
DEFAULT_INITS = ("karras", "exponential", "kl_optimal", "vp", "ays", "diffusers_linspace",
                 "diffusers_leading", "diffusers_trailing")
#: the solvers ``solver="auto"`` chooses from: deterministic, one evaluation per step (NFE = steps)
AUTO_SOLVERS = ("uni_pc", "uni_pc_bh2", "dpmpp_3m", "dpmpp_2m", "ipndm_v", "deis", "ipndm", "euler")


@dataclasses.dataclass(frozen=True)
class SpacingResult:
    """What ``optimize_spacing(..., return_info=True)`` returns.

    sigmas / init_sigmas: float64 (steps + 1,) grids (trailing 0); solver: the solver's name (the one
    chosen for ``solver="auto"``; ``solver_options`` its ``to_dict()``); error_before / error_after: the
    criterion at the initial and final grid (on the optimisation batch); history: the best criterion
    after each sweep / iteration; evaluations: number of criterion evaluations (a gradient iteration
    counts one); seconds: wall time; method: ``"gradient"`` or ``"pattern"``; screened: (solver,
    criterion at its best starting grid) for every solver screened, best first.
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
    method: str = "pattern"
    screened: tuple[tuple[str, float], ...] = ()
    solver_options: dict | None = None

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


def _named_grid(name: str, steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """The grid of a spacing name (or ``diffusers_<rule>``: diffusers' default DDPM table, linear β,
    with that timestep rule); a table spacing keeps its own range, clipped to [σ_min, σ_max] below."""
    if name.startswith("diffusers_"):
        return spacing("uniform_t", schedule=DDPM(), rule=name.removeprefix("diffusers_")).sigmas(steps)
    sp = spacing(name)
    try:
        return sp.sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_max)
    except ValueError as e:
        if "do not pass" not in str(e):
            raise
        return sp.sigmas(steps)


def _initial_grid(
    init: Any, steps: int, sigma_min: float, sigma_max: float, keep_last: bool = False
) -> Tensor:
    """The starting grid: σ_max first, 0 last, levels clipped to [σ_min, σ_max]; the last nonzero level
    is set to σ_min unless ``keep_last`` (a free last level keeps the init's own, e.g. diffusers' 0.43
    at 8 trailing steps) — or when clipping would make the grid not strictly decreasing."""
    if isinstance(init, str):
        grid = _named_grid(init, steps, sigma_min, sigma_max).to(torch.float64).clamp(sigma_min, sigma_max)
        if keep_last:
            clipped = grid.clone()
            clipped[0], clipped[-1] = sigma_max, 0.0
            if (clipped[1:] < clipped[:-1]).all():
                return clipped
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
    method: str = "auto",
    reference: Callable[..., Tensor] | None = None,
    reference_rtol: float | None = None,
    reference_steps: int | None = None,
    dtype: torch.dtype = torch.float64,
    return_info: bool = False,
    callback: Callable[[int, float, Tensor], None] | None = None,
) -> Tensor | SpacingResult:
    """An N-step σ grid for ``denoiser`` and ``solver`` minimising the sampling error (module docstring).

    Args:
        denoiser: D(x, σ) → x̂₀ (k-diffusion contract; ``as_denoiser`` wraps a trained model).
        steps: N ≥ 1 (N ≤ 2 leaves nothing to optimise: the grid is (σ_max, [σ_min,] 0)).
        solver: a solver name or instance, or ``"auto"`` (joint choice among ``AUTO_SOLVERS``).
        sigma_min, sigma_max: the end levels, 0 < σ_min < σ_max (σ_min: the lowest level allowed when
            ``optimize_last``, else the last nonzero level; "klub" keeps it fixed).
        x0: examples of the data (B, ...), needed by "klub"; else ``shape``, the shape of one sample.
        generator: the source of every random draw (deterministic result for a seeded generator).
        init: a spacing name (``karras``, ``ays``, ``diffusers_trailing``, ...), a grid of N + 1 values,
            or a list of names (start from the best of them; default ``DEFAULT_INITS``).
        num_samples: batch size of the criterion (starting points or data draws).
        iters, tol, patience, min_log_step: the search's budget (sweeps of the coordinate search or
            Adam iterations of the gradient search), smallest move, stall rule and smallest log-step.
        criterion: ``"solve_error"``, ``"klub"`` or ``"auto"`` (by whether the solver is stochastic).
        method: ``"gradient"``, ``"pattern"`` or ``"auto"`` (module docstring, "Search").
        reference, reference_rtol, reference_steps: x(σ_min) from ``reference(x_T, sigma_max=,
            sigma_min=)``, else an adaptive solve at rtol = atol = ``reference_rtol`` (1e-7 in float64,
            1e-5 otherwise), or a ``uni_pc`` solve of ``reference_steps`` steps uniform in log σ.
        dtype: the dtype of the optimisation batch (float64 by default; use float32 for networks).
        return_info: return a ``SpacingResult``; callback: called with (index, criterion, grid).

    Returns:
        float64 tensor (steps + 1,), decreasing, trailing 0 — or a ``SpacingResult``.
    """
    t_start = time.perf_counter()
    steps, sigma_min, sigma_max, num_samples, iters = _check_numbers(steps, sigma_min, sigma_max, num_samples,
                                                                     iters, tol)
    solvers = _resolve_solvers(solver)
    criterion = _resolve_criterion(criterion, solvers[0], x0, shape)
    # the bound only covers [σ_{N−1}, σ_max]: raising σ_{N−1} would shrink it for free, so "klub" keeps it
    free_last = optimize_last and criterion == "solve_error"
    candidates = _candidate_grids(init, steps, sigma_min, sigma_max, keep_last=free_last)
    problem = _criterion_function(
        denoiser, criterion, steps, sigma_min, sigma_max, x0=x0, shape=shape, generator=generator,
        num_samples=num_samples, reference=reference, reference_rtol=reference_rtol,
        reference_steps=reference_steps, dtype=dtype,
    )
    starts, evaluations = _screen(problem, solvers, candidates)
    search_method = _resolve_method(method, criterion, problem, starts[0])
    options = dict(iters=iters, tol=tol, patience=patience, min_log_step=min_log_step, callback=callback,
                   sigma_min=sigma_min, sigma_max=sigma_max, free_last=free_last)
    found = [(start, _optimise_from(problem, *start[1:], start[0], search_method, options))
             for start in _worth_searching(starts)]
    (error_before, chosen, init_grid), (nonzero, error_after, history, _) = min(found, key=lambda f: f[1][1])
    evaluations += sum(f[1][3] for f in found)
    sigmas = torch.tensor([*nonzero, 0.0], dtype=torch.float64)
    if not return_info:
        return sigmas
    return SpacingResult(sigmas=sigmas, init_sigmas=init_grid, criterion=criterion, solver=chosen.name,
                         error_before=error_before, error_after=error_after, history=tuple(history),
                         evaluations=evaluations, seconds=time.perf_counter() - t_start, method=search_method,
                         screened=tuple((m.name, e) for e, m, _ in starts), solver_options=chosen.to_dict())


def _worth_searching(starts: list) -> list:
    """The screened (criterion, solver, grid) starts to optimise: the best, and the second best when its
    criterion is within 10 % of the best (a search costs as much as the whole screening)."""
    return [s for s in starts[:2] if s[0] <= _SECOND_SEARCH * starts[0][0]]


def _resolve_solvers(solver: Any) -> list[Solver]:
    """The solver instance(s) to optimise for: one, or every one of ``AUTO_SOLVERS`` for ``"auto"``."""
    if isinstance(solver, Solver):
        return [solver]
    if solver == "auto":
        return [SOLVERS.create(n) for n in AUTO_SOLVERS]
    return [SOLVERS.create(solver)]


def _screen(problem: _Problem, solvers: list[Solver], candidates: list[Tensor]) -> tuple[list, int]:
    """(criterion, solver, starting grid) for each solver, best first, and the evaluations spent: every
    starting grid with the first solver, the other solvers on its two best starting grids."""
    first = sorted(((problem.evaluate(g[:-1].tolist(), solvers[0]), solvers[0], g) for g in candidates),
                   key=lambda t: t[0])
    evaluations = len(candidates)
    starts = [first[0]]
    for m in solvers[1:]:
        tried = [(problem.evaluate(g[:-1].tolist(), m), m, g) for _, _, g in first[:2]]
        evaluations += len(tried)
        starts.append(min(tried, key=lambda t: t[0]))
    return sorted(starts, key=lambda t: t[0]), evaluations


def _resolve_method(method: str, criterion: str, problem: _Problem, start: tuple) -> str:
    """``"gradient"`` or ``"pattern"`` (``"auto"``: gradient where the solve error has a gradient)."""
    if method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(_METHODS)}")
    if criterion != "solve_error":
        if method == "gradient":
            raise ValueError("method 'gradient' needs the 'solve_error' criterion (deterministic solvers)")
        return "pattern"
    if method == "auto":
        return "gradient" if problem.differentiable(start[1], start[2]) else "pattern"
    return method


def _optimise_from(problem, m, grid, err0, search_method, options):
    """One search from ``grid`` for solver ``m``: (nonzero levels, criterion, history, evaluations)."""
    sigma_min, sigma_max, free_last = options["sigma_min"], options["sigma_max"], options["free_last"]
    if search_method == "gradient":
        nonzero, err, history = gradient_search(
            lambda g: problem.loss(g, m), grid[:-1].tolist(), sigma_min=sigma_min, free_last=free_last,
            iters=options["iters"], callback=options["callback"],
        )
        evaluations = len(history)
        if err0 < err:  # the start itself was better (a zero-iteration or diverging search)
            nonzero, err = grid[:-1].tolist(), err0
    else:
        search = _Search.start(lambda nz: problem.evaluate(nz, m), grid[:-1].tolist(), err0, evaluations=0,
                               sigma_min=sigma_min, sigma_max=sigma_max, min_log_step=options["min_log_step"],
                               free_last=free_last)
        history = search.run(options["iters"], options["tol"], options["patience"], options["callback"])
        nonzero, err, evaluations = search.nonzero, search.best_err, search.evaluations
    if problem.criterion == "solve_error" and len(nonzero) > 2:
        nonzero, err, extra = reallocate_levels(lambda nz: problem.evaluate(nz, m), nonzero, err,
                                                fixed_last=not free_last)
        evaluations += extra
    return nonzero, err, history, evaluations


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


def _candidate_grids(
    init: Any, steps: int, sigma_min: float, sigma_max: float, keep_last: bool
) -> list[Tensor]:
    """The starting grids: one per spacing name in ``init`` (duplicates dropped), or the one grid given."""
    names = [init] if isinstance(init, str) else list(init) if _is_name_list(init) else None
    if names is None:
        return [_initial_grid(init, steps, sigma_min, sigma_max)]
    grids: list[Tensor] = []
    for n in names:
        try:
            g = _initial_grid(n, steps, sigma_min, sigma_max, keep_last)
        except ValueError as e:  # a table spacing whose levels collapse when clipped to the range
            if len(names) == 1 or "strictly decreasing" not in str(e):
                raise
            continue
        if not any(torch.equal(g, h) for h in grids):
            grids.append(g)
    if not grids:
        raise ValueError(f"none of the starting spacings {names} gives a grid inside "
                         f"[{sigma_min}, {sigma_max}]")
    return grids


@dataclasses.dataclass
class _Problem:
    """The criterion with every random draw made (common random numbers): ``evaluate(nonzero, solver)``
    for the nonzero levels (Python floats), ``loss(grid, solver)`` differentiable in the (N+1,) grid
    (``"solve_error"`` only)."""

    criterion: str
    denoiser: Denoiser
    x_T: Tensor | None = None
    target: Tensor | None = None
    seed: int | None = None
    klub: Callable[[list[float]], float] | None = None

    def evaluate(self, nonzero: list[float], solver: Solver) -> float:
        if self.klub is not None:
            return self.klub(nonzero)
        grid = torch.tensor([*nonzero, 0.0], dtype=torch.float64)
        seed = self.seed if solver.stochastic else None
        return solve_error(self.denoiser, grid, self.x_T, self.target, solver=solver, generator_seed=seed)

    def loss(self, grid: Tensor, solver: Solver) -> Tensor:
        with torch.enable_grad():
            out = differentiable_solve(self.denoiser, self.x_T, grid, solver)
            return ((out.to(torch.float64) - self.target.to(torch.float64)) ** 2).mean().sqrt()

    def differentiable(self, solver: Solver, grid: Tensor) -> bool:
        """Whether the solve error of ``grid`` carries a gradient with respect to it."""
        if solver.stochastic:
            return False
        g = grid.clone().requires_grad_(True)
        try:
            return bool(self.loss(g, solver).requires_grad)
        except RuntimeError:
            return False


def _criterion_function(
    denoiser: Denoiser,
    criterion: str,
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
    reference_steps: int | None,
    dtype: torch.dtype,
) -> _Problem:
    """The criterion as a ``_Problem``, with every random draw made now from ``generator`` (common random
    numbers)."""
    if criterion == "klub":
        if x0.shape[0] > num_samples:
            idx = torch.randperm(x0.shape[0], generator=generator)[:num_samples]
            data = x0[idx.to(x0.device)]
        else:
            data = x0
        return _Problem(criterion, denoiser, klub=_klub_criterion(denoiser, data.to(dtype), steps, generator))
    device = x0.device if x0 is not None else torch.device("cpu")
    sample_shape = tuple(x0.shape[1:]) if x0 is not None else tuple(int(s) for s in shape)
    noise = torch.randn((num_samples, *sample_shape), generator=generator, dtype=dtype)
    x_T = (noise * sigma_max).to(device)
    if reference_rtol is None:
        reference_rtol = 1e-7 if dtype == torch.float64 else 1e-5
    if reference is None and reference_steps is not None:
        reference = _fixed_step_reference(denoiser, _check_int("reference_steps", reference_steps, 2))
    target = _reference_target(denoiser, x_T, sigma_min, sigma_max, reference, reference_rtol)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return _Problem(criterion, denoiser, x_T=x_T, target=target, seed=seed)


def _fixed_step_reference(denoiser: Denoiser, steps: int) -> Callable[..., Tensor]:
    """x(σ_min) by ``uni_pc`` (order 3, bh1) with ``steps`` steps uniform in log σ."""

    def reference(x_T: Tensor, *, sigma_max: float, sigma_min: float) -> Tensor:
        u = torch.linspace(math.log(sigma_max), math.log(sigma_min), steps + 1, dtype=torch.float64)
        grid = torch.exp(u)
        return solve(denoiser, x_T, sigmas=grid, solver="uni_pc")

    return reference


def _is_name_list(init: Any) -> bool:
    return isinstance(init, (list, tuple)) and len(init) > 0 and all(isinstance(n, str) for n in init)
