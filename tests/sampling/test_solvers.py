"""Solvers: parity with k-diffusion's samplers (float64, 1e-6), order of convergence on Gaussian data,
the denoiser-call contract, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from kdiffusion_ref import kdiffusion_sampling
from torch.testing import assert_close

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
    from noiselevels.catalog import from_dict

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
