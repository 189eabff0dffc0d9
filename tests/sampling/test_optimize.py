"""The spacing optimiser: beats karras (and the best named grid) on held-out noise for an exact problem,
is deterministic for a generator, the KL bound criterion for stochastic solvers, bad input."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from noiselevels.cli import main
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.optimize import optimize_spacing, solve_error
from noiselevels.sampling.solvers import solve
from noiselevels.sampling.spacings import spacing
from noiselevels.sampling.toy import gaussian, mixture_2d

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64
SMIN, SMAX = 0.002, 80.0




def _held_out(prob, n=256, seed=99):
    x_t = torch.randn(n, *prob.shape, generator=torch.Generator().manual_seed(seed), dtype=F64) * SMAX
    ref = prob.reference_solve(x_t, sigma_max=SMAX, sigma_min=SMIN)
    return x_t, prob.denoiser(ref, SMIN)


@pytest.mark.parametrize(("solver", "steps"), [("heun", 5), ("dpmpp_2m", 10)])
def test_optimised_grid_beats_karras_and_named_grids_on_held_out_noise(solver, steps):
    prob = mixture_2d()
    res = optimize_spacing(
        prob.denoiser, steps=steps, solver=solver, sigma_min=SMIN, sigma_max=SMAX, shape=prob.shape,
        generator=torch.Generator().manual_seed(0), num_samples=128, iters=12,
        reference=prob.reference_solve, return_info=True,
    )
    g = res.sigmas
    assert g.shape == (steps + 1,) and g.dtype == F64 and g[-1] == 0 and g[0] == SMAX
    assert (g[1:] < g[:-1]).all() and g[-2] >= SMIN
    assert res.error_after < res.error_before and res.history == tuple(sorted(res.history, reverse=True))
    x_t, target = _held_out(prob)
    err = solve_error(prob.denoiser, g, x_t, target, solver=solver)
    named = {n: solve_error(prob.denoiser, spacing(n).sigmas(steps, sigma_min=SMIN, sigma_max=SMAX), x_t,
                            target, solver=solver) for n in ("karras", "exponential", "kl_optimal", "vp")}
    assert err < 0.5 * named["karras"], (err, named)
    assert err < min(named.values()), (err, named)


def test_deterministic_for_a_generator_and_fixed_last_level():
    prob = gaussian(3)
    kw = dict(steps=6, solver="euler", sigma_min=0.01, sigma_max=20.0, shape=prob.shape, num_samples=32,
              iters=3, reference=prob.reference_solve, optimize_last=False)
    a = optimize_spacing(prob.denoiser, generator=torch.Generator().manual_seed(3), **kw)
    b = optimize_spacing(prob.denoiser, generator=torch.Generator().manual_seed(3), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a[-2] == 0.01 and a[0] == 20.0


def test_default_reference_is_an_adaptive_solve_and_init_grid_is_accepted():
    prob = gaussian(2)
    init = spacing("karras").sigmas(4, sigma_min=0.05, sigma_max=10.0)
    res = optimize_spacing(prob.denoiser, steps=4, solver="heun", sigma_min=0.05, sigma_max=10.0,
                           x0=prob.sample(8), init=init, num_samples=16, iters=2, return_info=True)
    torch.testing.assert_close(res.init_sigmas, init)
    assert res.error_after <= res.error_before and res.criterion == "solve_error"


def test_klub_for_stochastic_solvers():
    prob = mixture_2d()
    x0 = prob.sample(64, torch.Generator().manual_seed(0))
    res = optimize_spacing(prob.denoiser, steps=8, solver="euler_ancestral", sigma_min=SMIN, sigma_max=SMAX,
                           x0=x0, generator=torch.Generator().manual_seed(1), iters=4, return_info=True)
    assert res.criterion == "klub" and res.solver == "euler_ancestral"
    assert res.sigmas[-2] == SMIN  # the bound's domain is not shrunk
    assert res.error_after < res.error_before
    assert res.sigmas.shape == (9,) and (res.sigmas[1:] < res.sigmas[:-1]).all()


def test_trivial_step_counts():
    prob = gaussian(2)
    one = optimize_spacing(prob.denoiser, steps=1, sigma_min=0.1, sigma_max=10.0, shape=(2,), num_samples=4,
                           reference=prob.reference_solve, optimize_last=False)
    assert one.tolist() == [10.0, 0.0]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"sigma_min": 80.0}, "sigma_min must be < sigma_max"),
        ({"sigma_min": -1.0}, "sigma_min must be a finite number > 0"),
        ({"shape": None}, "give x0"),
        ({"solver": "euler_ancestral"}, "needs x0"),
        ({"criterion": "fid"}, "unknown criterion"),
        ({"solver": "rk4"}, "unknown solver"),
        ({"init": [80.0, 1.0, 0.0]}, "steps \\+ 1 = 5 values"),
        ({"init": "nope"}, "unknown spacing"),
        ({"num_samples": 0}, "num_samples must be an integer >= 1"),
    ],
)
def test_bad_input(kw, match):
    args = dict(steps=4, solver="heun", sigma_min=0.01, sigma_max=10.0, shape=(2,), num_samples=4, iters=1)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        optimize_spacing(gaussian(2).denoiser, **args)


def test_cli_spacing_optimize(capsys):
    rc = main(["spacing", "optimize", "--problem", "gaussian", "--steps", "4", "--solver", "euler",
               "--iters", "2", "--num-samples", "16", "--format", "json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 4 and out["sigmas"][0] == 80.0 and out["sigmas"][-1] == 0.0
    assert out["spacing"]["name"] == "custom"
    assert main(["spacing", "optimize", "--problem", "nope", "--steps", "4"]) == 2
    assert "unknown problem 'nope'" in capsys.readouterr().err


def test_float32_network_through_as_denoiser():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(9, 32), torch.nn.SiLU(), torch.nn.Linear(32, 8))

    def model(inp, logsnr):
        return net(torch.cat([inp, logsnr[:, None] / 10], 1))

    den = as_denoiser(model, process="vp", parameterization="v")
    with torch.no_grad():
        res = optimize_spacing(den, steps=5, solver="dpmpp_2m", sigma_min=0.01, sigma_max=20.0, shape=(8,),
                               dtype=torch.float32, num_samples=16, iters=2,
                               generator=torch.Generator().manual_seed(0), return_info=True)
    assert res.sigmas.dtype == F64 and res.error_after <= res.error_before


# --- gradient search, joint solver choice, starting grids, reallocation (issue 15) -----------------------

@pytest.mark.parametrize("name", ["dpmpp_2m", "uni_pc", "dpmpp_3m", "deis"])
def test_differentiable_solve_equals_solve_and_its_gradient_matches_finite_differences(name):
    from noiselevels.sampling.optimize_grad import differentiable_solve
    from noiselevels.sampling.solvers import solver as make_solver

    prob = mixture_2d()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 20
    grid = torch.tensor([20.0, 6.0, 2.0, 0.7, 0.2, 0.05, 0.0], dtype=F64, requires_grad=True)
    method = make_solver(name)
    out = differentiable_solve(prob.denoiser, x, grid, method)
    torch.testing.assert_close(out, solve(prob.denoiser, x, sigmas=grid.detach(), solver=name), rtol=1e-12,
                               atol=1e-12)
    (grad,) = torch.autograd.grad(out.pow(2).sum(), grid)
    for i in (1, 3):
        h = 1e-6 * float(grid[i].detach())
        up, down = grid.detach().clone(), grid.detach().clone()
        up[i] += h
        down[i] -= h
        fd = (solve(prob.denoiser, x, sigmas=up, solver=name).pow(2).sum()
              - solve(prob.denoiser, x, sigmas=down, solver=name).pow(2).sum()) / (2 * h)
        assert float(grad[i]) == pytest.approx(float(fd), rel=1e-4, abs=1e-6)


def test_gradient_search_beats_named_grids_on_held_out_noise_and_is_deterministic():
    prob = mixture_2d()
    kw = dict(steps=6, solver="uni_pc", sigma_min=SMIN, sigma_max=SMAX, shape=prob.shape, num_samples=128,
              iters=15, reference=prob.reference_solve, method="gradient", return_info=True)
    res = optimize_spacing(prob.denoiser, generator=torch.Generator().manual_seed(0), **kw)
    again = optimize_spacing(prob.denoiser, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(res.sigmas, again.sigmas, rtol=0, atol=0)
    assert res.method == "gradient" and res.solver == "uni_pc" and res.sigmas[0] == SMAX
    assert (res.sigmas[1:] < res.sigmas[:-1]).all() and res.sigmas[-2] >= SMIN
    x_t, target = _held_out(prob)
    err = solve_error(prob.denoiser, res.sigmas, x_t, target, solver="uni_pc")
    named = [solve_error(prob.denoiser, spacing(n).sigmas(6, sigma_min=SMIN, sigma_max=SMAX), x_t, target,
                         solver="uni_pc") for n in ("karras", "exponential", "kl_optimal", "vp")]
    assert err < 0.7 * min(named), (err, named)


def test_solver_auto_picks_the_best_screened_solver():
    from noiselevels.sampling.optimize import AUTO_SOLVERS

    prob = mixture_2d()
    res = optimize_spacing(prob.denoiser, steps=5, solver="auto", sigma_min=SMIN, sigma_max=SMAX,
                           shape=prob.shape, num_samples=64, iters=4, reference=prob.reference_solve,
                           generator=torch.Generator().manual_seed(0), return_info=True)
    names = [n for n, _ in res.screened]
    assert sorted(names) == sorted(AUTO_SOLVERS) and res.solver in names[:2]
    assert res.error_after <= min(e for _, e in res.screened)
    assert res.solver_options["name"] == res.solver


def test_starting_grids_include_diffusers_rules_and_ays():
    from noiselevels.catalog import registry
    from noiselevels.sampling.optimize import DEFAULT_INITS, _initial_grid

    assert {"ays", "diffusers_linspace", "diffusers_leading", "diffusers_trailing"} <= set(DEFAULT_INITS)
    table = spacing("uniform_t", schedule=registry("schedule").create("ddpm"), rule="trailing").sigmas(8)
    top = float(table[0])
    g = _initial_grid("diffusers_trailing", 8, 0.002, top, keep_last=True)
    torch.testing.assert_close(g, table.to(F64))  # inside the range: the rule's own levels
    fixed = _initial_grid("diffusers_trailing", 8, 0.002, 80.0)
    assert fixed[0] == 80.0 and fixed[-2] == 0.002 and (fixed[1:] < fixed[:-1]).all()


def test_reallocation_moves_a_wasted_level():
    from noiselevels.sampling.optimize_grad import reallocate_levels

    prob = gaussian(2)
    x_t = torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * SMAX
    target = prob.denoiser(prob.reference_solve(x_t, sigma_max=SMAX, sigma_min=SMIN), SMIN)

    def evaluate(nonzero):
        grid = torch.tensor([*nonzero, 0.0], dtype=F64)
        return solve_error(prob.denoiser, grid, x_t, target, solver="dpmpp_2m")

    wasted = [80.0, 32.7, 28.6, 5.0, 1.0, 0.2, 0.04, 0.002]  # two levels spent on 32.7 → 28.6
    err = evaluate(wasted)
    levels, new_err, evaluations = reallocate_levels(evaluate, wasted, err, fixed_last=True)
    assert new_err < err and evaluations >= 1 and levels[-1] == 0.002 and levels[0] == 80.0
    u = [math.log(v) for v in levels]
    steps = [a - b for a, b in itertools.pairwise(u)]
    assert min(steps) >= 0.25 * sum(steps) / len(steps)


def test_bad_method():
    with pytest.raises(ValueError, match="unknown method 'newton'"):
        optimize_spacing(gaussian(2).denoiser, steps=4, sigma_min=0.01, sigma_max=10.0, shape=(2,),
                         num_samples=4, iters=1, method="newton", solver="euler")
    with pytest.raises(ValueError, match="method 'gradient' needs the 'solve_error' criterion"):
        optimize_spacing(gaussian(2).denoiser, steps=4, sigma_min=0.01, sigma_max=10.0, x0=torch.ones(4, 2),
                         num_samples=4, iters=1, method="gradient", solver="euler_ancestral")
