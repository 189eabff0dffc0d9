"""Solvers: parity with k-diffusion's samplers (float64, 1e-6), order of convergence on Gaussian data,
the denoiser-call contract, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from kdiffusion_ref import kdiffusion_sampling
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.sampling.solvers import SOLVERS, solve, solver
from noiselevels.sampling.toy import Gaussian


def _karras(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def _problem(dim=3):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    cov = a @ a.T / dim + 0.01 * torch.eye(dim, dtype=torch.float64)
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    return Gaussian(mean, cov)


def _nonlinear_denoiser(x, sigma):
    # a smooth non-linear denoiser so that parity is not an accident of linearity
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x / (1 + s**2) ** 0.5) * 0.8 + 0.1 * x / (1 + s)


@pytest.mark.parametrize(
    ("name", "kname", "opts"),
    [
        ("euler", "sample_euler", {}),
        ("heun", "sample_heun", {}),
        ("dpmpp_2m", "sample_dpmpp_2m", {}),
        ("lms", "sample_lms", {}),
        ("lms", "sample_lms", {"order": 2}),
    ],
)
def test_deterministic_parity_with_kdiffusion(name, kname, opts):
    K = kdiffusion_sampling()
    x = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 80
    prob = _problem(5)

    def gauss(x, s):
        return prob.denoiser(x.reshape(-1, 5), s.repeat_interleave(3)).reshape(x.shape)

    for den in (_nonlinear_denoiser, gauss):
        for sig in (_karras(7), _karras(12, 0.03, 14.6, 3.0)):
            ours = solve(den, x, sigmas=sig, solver=name, **opts)
            ref = getattr(K, kname)(den, x, sig, disable=True, **opts)
            assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def _with_global_seed(seed, fn):
    torch.manual_seed(seed)
    return fn()


@pytest.mark.parametrize(
    ("name", "kname", "opts"),
    [
        ("euler_ancestral", "sample_euler_ancestral", {"eta": 1.0}),
        ("euler_ancestral", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 1.1}),
        ("edm_stochastic", "sample_heun", {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003},
        ),
        ("heun", "sample_heun", {"s_churn": 10.0}),
    ],
)
def test_stochastic_parity_with_kdiffusion_same_noise(name, kname, opts):
    K = kdiffusion_sampling()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80
    sig = _karras(10)
    ours = solve(_nonlinear_denoiser, x, sigmas=sig, solver=name,
                 generator=torch.Generator().manual_seed(7), **opts)
    ref = _with_global_seed(7, lambda: getattr(K, kname)(_nonlinear_denoiser, x, sig, disable=True, **opts))
    assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_dpmpp_2m_sde_parity_with_same_noise():
    K = kdiffusion_sampling()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 80
    sig = _karras(9)
    ours = solve(_nonlinear_denoiser, x, sigmas=sig, solver="dpmpp_2m_sde", eta=1.0,
                 generator=torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    ref = K.sample_dpmpp_2m_sde(_nonlinear_denoiser, x, sig, disable=True, eta=1.0,
                                noise_sampler=lambda s, t: torch.randn_like(x), solver_type="midpoint")
    assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def _order(name, steps_list, **opts):
    """Observed errors against the closed-form ODE solution on Gaussian data; grid exponential in σ
    between 0.05 and 20, ending at σ_min (no final jump to 0, which is exact for this problem anyway)."""
    prob = _problem(3)
    x_t = prob.mean + torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20
    ref = prob.reference_solve(x_t, sigma_max=20.0, sigma_min=0.05)
    errs = []
    for n in steps_list:
        sig = torch.exp(torch.linspace(math.log(20.0), math.log(0.05), n + 1, dtype=torch.float64))
        out = solve(prob.denoiser, x_t, sigmas=sig, solver=name, **opts)
        errs.append(((out - ref) ** 2).mean().sqrt().item())
    return errs


@pytest.mark.parametrize(("name", "order"), [("euler", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_order_of_convergence_on_gaussian(name, order):
    errs = _order(name, [16, 32, 64, 128])
    ratios = [errs[i] / errs[i + 1] for i in range(len(errs) - 1)]
    observed = math.log2(ratios[-1])
    assert abs(observed - order) < 0.25, (errs, ratios)


def test_nfe_and_denoiser_calls_shape_and_dtype():
    calls = []

    def den(x, sigma):
        calls.append((sigma.shape, sigma.dtype, float(sigma[0])))
        return x * 0.5

    x = torch.randn(5, 2, dtype=torch.float32)
    sig = _karras(6)
    out = solve(den, x, sigmas=sig, solver="heun")
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert len(calls) == solver("heun").nfe(6) == 11
    assert all(c[0] == (5,) and c[1] == torch.float32 for c in calls)
    calls.clear()
    solve(den, x, sigmas=sig, solver="dpmpp_2m")
    assert len(calls) == 6


def test_callback_sees_each_step():
    seen = []
    solve(lambda x, s: x * 0, torch.ones(2, 2), sigmas=_karras(5), solver="euler", callback=seen.append)
    assert [d["i"] for d in seen] == [0, 1, 2, 3, 4]
    assert set(seen[0]) == {"i", "x", "sigma", "sigma_hat", "denoised"}


def test_registry_and_to_dict():
    assert {"euler", "heun", "dpmpp_2m", "euler_ancestral", "edm_stochastic", "dpmpp_2m_sde", "lms"} <= set(
        SOLVERS.names()
    )
    s = solver("euler_ancestral", eta=0.3)
    assert from_dict(s.to_dict()) == s


def test_deterministic_for_a_generator():
    x = torch.randn(3, 4, dtype=torch.float64)
    a = solve(_nonlinear_denoiser, x, sigmas=_karras(8), solver="euler_ancestral",
              generator=torch.Generator().manual_seed(1))
    b = solve(_nonlinear_denoiser, x, sigmas=_karras(8), solver="euler_ancestral",
              generator=torch.Generator().manual_seed(1))
    assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": [1.0]}, "at least 2"),
        ({"sigmas": [1.0, 2.0, 0.0]}, "strictly decreasing"),
        ({"sigmas": [1.0, -0.5]}, ">= 0"),
        ({"sigmas": [float("nan"), 0.0]}, "finite"),
        ({"sigmas": [1.0, 0.0], "solver": "rk45"}, "unknown solver 'rk45'"),
        ({"sigmas": [1.0, 0.0], "solver": "euler", "eta": 1.0}, "unknown parameter"),
        ({"sigmas": [1.0, 0.0], "solver": "euler_ancestral", "eta": -1.0}, "eta must be >= 0"),
        ({"sigmas": [1.0, 0.0], "solver": "lms", "order": 9}, r"order must be an integer in \[1, 6\]"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve(lambda x, s: x, torch.ones(2, 2), **kwargs)


def test_progress_bar_and_solver_instance(capsys):
    x = torch.randn(2, 3, dtype=torch.float64)
    a = solve(_nonlinear_denoiser, x, sigmas=_karras(4), solver=solver("heun"), progress=True)
    b = solve(_nonlinear_denoiser, x, sigmas=_karras(4), solver="heun")
    assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="given with a Solver instance"):
        solve(_nonlinear_denoiser, x, sigmas=_karras(4), solver=solver("heun"), s_churn=1.0)


# --- one grid per row: sigmas of shape (B, N+1), per-row generators -------------------------------------

_ALL_SOLVERS = [
    ("euler", {}),
    ("heun", {}),
    ("dpmpp_2m", {}),
    ("lms", {}),
    ("lms", {"order": 2}),
    ("euler_ancestral", {"eta": 1.0}),
    ("euler_ancestral", {"eta": 0.0}),
    ("edm_stochastic", {}),
    ("heun", {"s_churn": 10.0}),
    ("dpmpp_2m_sde", {"eta": 1.0}),
]


def _gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def _row_grids(end_at_zero=True):
    grids = [_karras(9), _karras(9, 0.03, 14.6, 3.0), _karras(9, 0.01, 30.0, 5.0)]
    return torch.stack([g if end_at_zero else g[:-1] for g in grids])


def test_every_solver_is_registered_in_the_per_row_tests():
    # the solvers of sampling.multistep / sampling.unipc have their own in tests/sampling/test_multistep.py
    here = {n for n in SOLVERS.names() if SOLVERS.get(n).__module__ == "noiselevels.sampling.solvers"}
    assert {name for name, _ in _ALL_SOLVERS} == here


@pytest.mark.parametrize(("name", "opts"), _ALL_SOLVERS)
@pytest.mark.parametrize("end_at_zero", [True, False])
def test_identical_rows_equal_the_shared_grid(name, opts, end_at_zero):
    sig = _karras(9) if end_at_zero else _karras(9)[:-1]
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 80
    shared = solve(_nonlinear_denoiser, x, sigmas=sig, solver=name,
                   generator=torch.Generator().manual_seed(6), **opts)
    rows = solve(_nonlinear_denoiser, x, sigmas=sig.expand(3, -1), solver=name,
                 generator=torch.Generator().manual_seed(6), **opts)
    assert_close(rows, shared, rtol=0, atol=1e-12)


@pytest.mark.parametrize(("name", "opts"), _ALL_SOLVERS)
@pytest.mark.parametrize("end_at_zero", [True, False])
def test_different_rows_equal_each_row_solved_alone(name, opts, end_at_zero):
    grids = _row_grids(end_at_zero)
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    x = x * grids[:, :1, None]
    seen = []

    def den(x, sigma):
        seen.append(sigma)
        return _nonlinear_denoiser(x, sigma)

    batch = solve(den, x, sigmas=grids, solver=name, generator=_gens([11, 12, 13]), **opts)
    assert seen and all(s.shape == (3,) and s.dtype == torch.float64 for s in seen)
    if getattr(solver(name, **opts), "s_churn", 0.0) == 0:  # churn raises the first σ to σ̂
        assert_close(seen[0], grids[:, 0], rtol=0, atol=0)
    for b in range(3):
        alone = solve(_nonlinear_denoiser, x[b:b + 1], sigmas=grids[b], solver=name,
                      generator=torch.Generator().manual_seed(11 + b), **opts)
        assert_close(batch[b:b + 1], alone, rtol=0, atol=1e-12)


_NOISY = [
    ("euler_ancestral", {"eta": 1.0}),
    ("edm_stochastic", {}),
    ("heun", {"s_churn": 10.0}),
    ("dpmpp_2m_sde", {"eta": 1.0}),
]


@pytest.mark.parametrize(("name", "opts"), _NOISY)
def test_per_row_generators_make_a_row_independent_of_its_batch(name, opts):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 80
    sig = _karras(8)
    batch = solve(_nonlinear_denoiser, x, sigmas=sig, solver=name, generator=_gens([5, 6, 7, 8]), **opts)
    for b in range(4):
        alone = solve(_nonlinear_denoiser, x[b:b + 1], sigmas=sig, solver=name,
                      generator=torch.Generator().manual_seed(5 + b), **opts)
        assert_close(batch[b:b + 1], alone, rtol=0, atol=0)
    # another batch around row 0 does not change it
    other = solve(_nonlinear_denoiser, x[[0, 3]], sigmas=sig, solver=name, generator=_gens([5, 99]), **opts)
    assert_close(other[0], batch[0], rtol=0, atol=0)
    assert not torch.equal(other[1], batch[3])  # row 1 of ``other`` has another generator


def test_per_row_callback_reports_row_sigmas():
    seen = []
    grids = _row_grids()
    solve(lambda x, s: x * 0, torch.ones(3, 2), sigmas=grids, solver="euler", callback=seen.append)
    assert [d["i"] for d in seen] == list(range(9))
    assert_close(seen[2]["sigma"], grids[:, 2], rtol=0, atol=0)


def test_per_row_float32_data_keeps_its_dtype():
    grids = _row_grids().to(torch.float32)
    out = solve(_nonlinear_denoiser, torch.randn(3, 5), sigmas=grids, solver="heun")
    assert out.dtype == torch.float32 and out.shape == (3, 5) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigmas": torch.ones(3, 3)}, r"\(B, N\+1\) grid per row with B = 2"),
        ({"sigmas": torch.ones(2, 1)}, r"\(B, N\+1\) grid per row"),
        ({"sigmas": torch.ones(2, 2, 2)}, r"got shape \(2, 2, 2\)"),
        ({"sigmas": torch.tensor([[2.0, 1.0], [1.0, 2.0]])}, "strictly decreasing"),
        ({"sigmas": torch.tensor([[2.0, 0.0], [2.0, 1.0]])}, "every row of sigmas ends in 0 or none"),
        ({"sigmas": [2.0, 0.0], "solver": "euler_ancestral", "generator": _gens([1])},
         "one per row of x needs 2"),
        ({"sigmas": [2.0, 0.0], "solver": "euler_ancestral", "generator": [1, 2]}, "sequence of them"),
        ({"sigmas": [2.0, 0.0], "solver": "euler_ancestral", "generator": 3}, "got int"),
    ],
)
def test_bad_per_row_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve(lambda x, s: x, torch.ones(2, 2), **kwargs)
