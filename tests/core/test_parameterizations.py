"""Tests for noiselevels.parameterizations: round trips, ε-unit factors, EDM preconditioning."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import (
    PARAMETERIZATIONS,
    edm_preconditioning,
    parameterization,
)

NAMES = ["eps", "x0", "v", "flow", "edm"]
PROCESSES = ["vp", "ve", "flow"]
F64 = torch.float64


def _data(seed: int, b: int = 6):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(b, 3, 4, 4, generator=g, dtype=F64)
    eps = torch.randn(b, 3, 4, 4, generator=g, dtype=F64)
    return g, x0, eps


def _levels(lams, process, like):
    lam = torch.as_tensor(lams, dtype=F64)
    a, s = alpha_sigma(logsnr=lam, process=process)
    return lam, broadcast(a, like), broadcast(s, like)


def _sq(x):
    return x.pow(2).flatten(1).sum(1)


@settings(max_examples=40, deadline=None)
@given(
    lams=st.lists(st.floats(-12.0, 12.0), min_size=6, max_size=6),
    seed=st.integers(0, 2**31 - 1),
    name=st.sampled_from(NAMES),
    process=st.sampled_from(PROCESSES),
    sigma_data=st.floats(0.2, 2.0),
)
def test_target_round_trip_recovers_x0_and_eps(lams, seed, name, process, sigma_data):
    _, x0, eps = _data(seed)
    _, a, s = _levels(lams, process, x0)
    p = parameterization("edm", sigma_data=sigma_data) if name == "edm" else parameterization(name)
    z = a * x0 + s * eps
    x0_hat, eps_hat = p.to_x0_eps(p.target(x0=x0, eps=eps, alpha=a, sigma=s), z=z, alpha=a, sigma=s)
    assert_close(x0_hat, x0, rtol=1e-7, atol=1e-7)
    assert_close(eps_hat, eps, rtol=1e-7, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    lams=st.lists(st.floats(-10.0, 10.0), min_size=6, max_size=6),
    seed=st.integers(0, 2**31 - 1),
    name=st.sampled_from(NAMES),
    process=st.sampled_from(PROCESSES),
)
def test_loss_factor_is_the_eps_unit_identity(lams, seed, name, process):
    """‖pred − target‖² = f(λ)·‖ε̂ − ε‖² for a random wrong prediction at fixed z."""
    g, x0, eps = _data(seed)
    lam, a, s = _levels(lams, process, x0)
    p = parameterization(name)
    z = a * x0 + s * eps
    target = p.target(x0=x0, eps=eps, alpha=a, sigma=s)
    pred = target + torch.randn(target.shape, generator=g, dtype=F64)
    _, eps_hat = p.to_x0_eps(pred, z=z, alpha=a, sigma=s)
    assert_close(
        _sq(pred - target), p.loss_factor(lam, process=process) * _sq(eps_hat - eps), rtol=1e-8, atol=0
    )


@pytest.mark.parametrize("name", NAMES)
def test_x0_error_is_exp_minus_lambda_eps_error(name):
    """‖x̂₀ − x₀‖² = e^(−λ)‖ε̂ − ε‖² whatever the parameterisation (Kingma & Gao, §2)."""
    g, x0, eps = _data(3)
    lam, a, s = _levels([-4.0, -1.0, 0.0, 0.5, 2.0, 6.0], "vp", x0)
    p = parameterization(name)
    z = a * x0 + s * eps
    pred = p.target(x0=x0, eps=eps, alpha=a, sigma=s) + 0.1 * torch.randn(x0.shape, generator=g, dtype=F64)
    x0_hat, eps_hat = p.to_x0_eps(pred, z=z, alpha=a, sigma=s)
    assert_close(_sq(x0_hat - x0), torch.exp(-lam) * _sq(eps_hat - eps), rtol=1e-9, atol=0)


def test_closed_form_factors():
    lam = torch.linspace(-8, 8, 33, dtype=F64)
    assert_close(parameterization("eps").loss_factor(lam), torch.ones_like(lam))
    assert_close(parameterization("x0").loss_factor(lam), torch.exp(-lam))
    assert_close(parameterization("v").loss_factor(lam), 1 + torch.exp(-lam))
    assert_close(parameterization("flow").loss_factor(lam), (1 + torch.exp(-lam / 2)) ** 2)
    assert_close(parameterization("edm", sigma_data=0.5).loss_factor(lam), 1 + torch.exp(-lam) / 0.25)
    c_out = edm_preconditioning(logsnr=lam, sigma_data=0.5).c_out
    assert_close(parameterization("edm").loss_factor(lam), torch.exp(-lam) / c_out**2)
    # v under other processes: ((α² + σ²)/α)²
    for process in ("ve", "flow"):
        a, s = alpha_sigma(logsnr=lam, process=process)
        assert_close(parameterization("v").loss_factor(lam, process=process), ((a * a + s * s) / a) ** 2)


def test_factors_at_infinite_logsnr():
    lam = torch.tensor([math.inf, -math.inf], dtype=F64)
    inf = math.inf
    expected = {"eps": [1.0, 1.0], "x0": [0.0, inf], "v": [1.0, inf], "flow": [1.0, inf], "edm": [1.0, inf]}
    for name, values in expected.items():
        for process in PROCESSES:
            got = parameterization(name).loss_factor(lam, process=process)
            assert_close(got, torch.tensor(values, dtype=F64))


@pytest.mark.parametrize("name", ["v", "flow", "edm"])
@pytest.mark.parametrize("process", ["vp", "flow"])
def test_round_trip_exact_at_both_ends(name, process):
    _, x0, eps = _data(5, b=2)
    _, a, s = _levels([math.inf, -math.inf], process, x0)
    p = parameterization(name)
    z = a * x0 + s * eps
    x0_hat, eps_hat = p.to_x0_eps(p.target(x0=x0, eps=eps, alpha=a, sigma=s), z=z, alpha=a, sigma=s)
    assert_close(x0_hat, x0)
    assert_close(eps_hat, eps)


def test_edm_preconditioning_matches_paper_formulas():
    """Karras et al. 2022, Table 1: the scalings as functions of σ = σ_ve."""
    sigma = torch.tensor([0.002, 0.01, 0.1, 0.5, 1.0, 3.0, 20.0, 80.0], dtype=F64)
    for sd in (0.5, 1.0):
        pre = edm_preconditioning(logsnr=-2 * torch.log(sigma), sigma_data=sd)
        assert_close(pre.c_skip, sd**2 / (sigma**2 + sd**2))
        assert_close(pre.c_out, sigma * sd / (sigma**2 + sd**2).sqrt())
        assert_close(pre.c_in, 1 / (sigma**2 + sd**2).sqrt())
        assert_close(pre.c_noise, torch.log(sigma) / 4)
    ends = edm_preconditioning(logsnr=torch.tensor([math.inf, -math.inf], dtype=F64), sigma_data=0.5)
    assert_close(
        torch.stack(list(ends)), torch.tensor([[1, 0], [0, 0.5], [2, 0], [-math.inf, math.inf]], dtype=F64)
    )


def test_edm_target_and_input_are_the_papers_F_on_ve_scaled_x():
    _, x0, eps = _data(11)
    for process in PROCESSES:
        lam, a, s = _levels([-5.0, -1.0, 0.0, 1.0, 3.0, 7.0], process, x0)
        p = parameterization("edm", sigma_data=0.5)
        pre = [broadcast(c, x0) for c in edm_preconditioning(logsnr=lam, sigma_data=0.5)]
        c_skip, c_out, c_in, _ = pre
        z = a * x0 + s * eps
        x = z / a
        assert_close(p.target(x0=x0, eps=eps, alpha=a, sigma=s), (x0 - c_skip * x) / c_out)
        assert_close(p.model_input(z, alpha=a, sigma=s), c_in * x)
        f = torch.randn_like(x0)
        assert_close(p.to_x0_eps(f, z=z, alpha=a, sigma=s)[0], c_skip * x + c_out * f)


def test_edm_with_unit_sigma_data_is_minus_v_for_vp():
    _, x0, eps = _data(2)
    _, a, s = _levels([-3.0, -1.0, 0.0, 1.0, 2.0, 4.0], "vp", x0)
    f = parameterization("edm", sigma_data=1.0).target(x0=x0, eps=eps, alpha=a, sigma=s)
    assert_close(f, -parameterization("v").target(x0=x0, eps=eps, alpha=a, sigma=s))


def test_v_target_matches_diffusers_get_velocity():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    t = torch.tensor([0, 10, 250, 500, 750, 999])
    _, x0, eps = _data(4)
    ref = sched.get_velocity(x0, eps, t)
    abar = sched.alphas_cumprod.to(F64)[t]
    a, s = broadcast(abar.sqrt(), x0), broadcast((1 - abar).sqrt(), x0)
    assert_close(parameterization("v").target(x0=x0, eps=eps, alpha=a, sigma=s), ref, rtol=1e-6, atol=1e-6)


def test_flow_target_is_dz_dt_for_the_flow_process():
    _, x0, eps = _data(6)
    t = torch.tensor([0.1, 0.2, 0.4, 0.5, 0.7, 0.9], dtype=F64)
    tb = broadcast(t, x0)
    target = parameterization("flow").target(x0=x0, eps=eps, alpha=1 - tb, sigma=tb)
    h = 1e-6
    dz = (((1 - tb - h) * x0 + (tb + h) * eps) - ((1 - tb + h) * x0 + (tb - h) * eps)) / (2 * h)
    assert_close(target, dz)


def test_registry_serialisation_and_errors():
    assert PARAMETERIZATIONS.names() == sorted(NAMES)
    for name in NAMES:
        p = parameterization(name)
        assert from_dict(p.to_dict()) == p
    assert from_dict(parameterization("edm", sigma_data=1.5).to_dict()).sigma_data == 1.5
    p = parameterization("v")
    assert parameterization(p) is p
    with pytest.raises(ValueError, match="eps, flow, v, x0"):
        parameterization("epsilon")
    with pytest.raises(ValueError, match="sigma_data"):
        parameterization("edm", sigma_data=-1.0)
    with pytest.raises(ValueError, match="sigma_data"):
        parameterization("v", sigma_data=1.0)
    with pytest.raises(ValueError, match="sigma_data must be > 0"):
        edm_preconditioning(logsnr=torch.zeros(2), sigma_data=0.0)
    with pytest.raises(ValueError, match="process"):
        parameterization("v").loss_factor(torch.zeros(2), process="vpp")
