"""Conversions between λ, (α, σ), σ_ve and flow t (noiselevels.levels)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.levels import (
    PROCESSES,
    alpha_sigma,
    broadcast,
    check_process,
    flow_t,
    log_alpha_sigma,
    logsnr_from_alpha_sigma,
    logsnr_from_flow_t,
    logsnr_from_sigma,
    sigma_ve,
    to_tensor,
)

F64 = torch.float64
INF = math.inf
lams = st.lists(st.floats(-60.0, 60.0, allow_nan=False), min_size=1, max_size=16)
ts = st.lists(st.floats(1e-12, 1.0 - 1e-12, allow_nan=False), min_size=1, max_size=16)
SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(lams)
def test_vp_alpha_squared_plus_sigma_squared_is_one(xs):
    alpha, sigma = alpha_sigma(logsnr=torch.tensor(xs, dtype=F64), process="vp")
    assert_close(alpha**2 + sigma**2, torch.ones(len(xs), dtype=F64), rtol=0, atol=1e-15)


@SETTINGS
@given(lams)
@pytest.mark.parametrize("process", PROCESSES)
def test_logsnr_alpha_sigma_round_trip(process, xs):
    lam = torch.tensor(xs, dtype=F64)
    alpha, sigma = alpha_sigma(logsnr=lam, process=process)
    assert_close(logsnr_from_alpha_sigma(alpha=alpha, sigma=sigma), lam, rtol=1e-12, atol=1e-12)
    log_a, log_s = log_alpha_sigma(logsnr=lam, process=process)
    assert_close(2.0 * (log_a - log_s), lam, rtol=1e-13, atol=1e-13)


@SETTINGS
@given(lams)
@pytest.mark.parametrize("process", PROCESSES)
def test_sigma_ve_is_sigma_over_alpha_for_every_process(process, xs):
    lam = torch.tensor(xs, dtype=F64)
    alpha, sigma = alpha_sigma(logsnr=lam, process=process)
    assert_close(sigma_ve(logsnr=lam), sigma / alpha, rtol=1e-12, atol=0)
    assert_close(logsnr_from_sigma(sigma=sigma_ve(logsnr=lam)), lam, rtol=1e-13, atol=1e-13)


@SETTINGS
@given(ts)
def test_flow_t_round_trip(xs):
    t = torch.tensor(xs, dtype=F64)
    lam = logsnr_from_flow_t(t=t)
    assert_close(flow_t(logsnr=lam), t, rtol=1e-12, atol=1e-15)
    # the flow process: α = 1 − t, σ = t
    alpha, sigma = alpha_sigma(logsnr=lam, process="flow")
    assert_close(alpha, 1.0 - t, rtol=1e-12, atol=1e-15)
    assert_close(sigma, t, rtol=1e-12, atol=1e-15)


def test_closed_form_values():
    lam = torch.tensor([0.0, 2.0 * math.log(3.0)], dtype=F64)
    alpha, sigma = alpha_sigma(logsnr=lam, process="vp")
    assert_close(alpha**2, torch.tensor([0.5, 0.9], dtype=F64))
    alpha, sigma = alpha_sigma(logsnr=lam, process="ve")
    assert_close(alpha, torch.ones(2, dtype=F64))
    assert_close(sigma, torch.tensor([1.0, 1.0 / 3.0], dtype=F64))
    assert_close(flow_t(logsnr=lam), torch.tensor([0.5, 0.25], dtype=F64))


def test_infinities_give_limits_without_nan():
    lam = torch.tensor([INF, -INF], dtype=F64)
    expected = {
        "vp": ([1.0, 0.0], [0.0, 1.0]),
        "ve": ([1.0, 1.0], [0.0, INF]),
        "flow": ([1.0, 0.0], [0.0, 1.0]),
    }
    for process, (a_ref, s_ref) in expected.items():
        alpha, sigma = alpha_sigma(logsnr=lam, process=process)
        assert_close(alpha, torch.tensor(a_ref, dtype=F64))
        assert_close(sigma, torch.tensor(s_ref, dtype=F64))
        log_a, log_s = log_alpha_sigma(logsnr=lam, process=process)
        assert not torch.isnan(log_a).any() and not torch.isnan(log_s).any()
    assert_close(sigma_ve(logsnr=lam), torch.tensor([0.0, INF], dtype=F64))
    assert_close(logsnr_from_sigma(sigma=torch.tensor([0.0, INF], dtype=F64)), lam)
    assert_close(flow_t(logsnr=lam), torch.tensor([0.0, 1.0], dtype=F64))
    assert_close(logsnr_from_flow_t(t=torch.tensor([0.0, 1.0], dtype=F64)), lam)
    assert_close(logsnr_from_alpha_sigma(alpha=torch.tensor([1.0, 0.0]), sigma=torch.tensor([0.0, 1.0])),
                 lam.float())


def test_extreme_levels_stay_accurate():
    lam = torch.tensor([-60.0, -30.0, 30.0, 60.0], dtype=F64)
    log_a, log_s = log_alpha_sigma(logsnr=lam, process="vp")
    assert_close(2.0 * (log_a - log_s), lam, rtol=1e-15, atol=0)
    assert_close(log_s[-1], torch.tensor(-30.0, dtype=F64), rtol=1e-15, atol=0)  # σ² = sigmoid(−60) ≈ e^−60


def test_to_tensor_dtypes():
    assert to_tensor(1).dtype == F64
    assert to_tensor([1, 2]).dtype == F64
    assert to_tensor(torch.tensor([1, 2])).dtype == F64
    x = torch.tensor([1.0], dtype=torch.float32)
    assert to_tensor(x) is x


def test_float32_inputs_keep_their_dtype():
    lam = torch.tensor([-3.0, 0.0, 4.0], dtype=torch.float32)
    alpha, sigma = alpha_sigma(logsnr=lam, process="vp")
    assert alpha.dtype == sigma.dtype == torch.float32
    assert flow_t(logsnr=lam).dtype == torch.float32


def test_broadcast_shapes():
    like = torch.zeros(3, 2, 4, 5, dtype=torch.float32)
    out = broadcast(torch.tensor([1.0, 2.0, 3.0], dtype=F64), like)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert_close(out.flatten(), torch.tensor([1.0, 2.0, 3.0]))
    assert (out * like).shape == like.shape
    scalar = broadcast(torch.tensor(2.0), like)
    assert scalar.ndim == 0 and scalar.dtype == torch.float32
    assert broadcast(torch.tensor([7.0]), torch.zeros(1)).shape == (1,)


@pytest.mark.parametrize("level", [torch.zeros(4), torch.zeros(3, 1), torch.zeros(2)])
def test_broadcast_rejects_wrong_shapes(level):
    with pytest.raises(ValueError, match=r"shape \(B,\) with B = 3"):
        broadcast(level, torch.zeros(3, 2))


def test_unknown_process_lists_valid_ones():
    assert check_process("ve") == "ve"
    with pytest.raises(ValueError, match="unknown process 'edm'; expected one of vp, ve, flow"):
        alpha_sigma(logsnr=torch.zeros(1), process="edm")
