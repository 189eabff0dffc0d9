"""Schedules t → λ (noiselevels.schedules): round trips, monotonicity, closed forms, diffusers references."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels import schedules
from noiselevels.catalog import from_dict
from noiselevels.components import Schedule
from noiselevels.levels import alpha_sigma, flow_t
from noiselevels.schedules import (
    DDPM,
    SCHEDULES,
    Shift,
    ZeroTerminalSNR,
    flux_mu,
    flux_shift,
    schedule,
    shift,
    t_to_timestep,
    timestep_to_t,
    zero_terminal_snr,
)

F64 = torch.float64
INF = math.inf
SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

CASES = {
    "ddpm_linear": schedule("ddpm"),
    "ddpm_sd": schedule("ddpm", **SD),
    "ddpm_cos": schedule("ddpm", beta_schedule="squaredcos_cap_v2"),
    "ddpm_sd_zsnr": schedule("ddpm", rescale_betas_zero_snr=True, **SD),
    "ddpm_small": schedule("ddpm", num_train_timesteps=7, beta_start=0.05, beta_end=0.3),
    "cosine": schedule("cosine"),
    "cosine_trunc": schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0),
    "cosine_shifted": schedule("cosine_shifted", image_d=256.0),
    "cosine_shifted_inf": schedule("cosine_shifted", image_d=128.0, logsnr_min=-INF, logsnr_max=INF),
    "cosine_interp": schedule("cosine_interpolated", image_d=512.0, noise_d_low=32.0, noise_d_high=256.0),
    "sigmoid": schedule("sigmoid"),
    "sigmoid_chen": schedule("sigmoid", start=0.0, end=3.0, tau=0.3),
    "laplace": schedule("laplace"),
    "laplace_mu": schedule("laplace", mu=-1.0, b=2.0),
    "cauchy": schedule("cauchy", mu=0.5, gamma=2.0),
    "flow": schedule("flow"),
    "edm": schedule("edm"),
    "edm_zero": schedule("edm", sigma_min=0.0, sigma_max=10.0, rho=1.0),
    "shift_flow": shift(schedule("flow"), 3.0),
    "shift_cosine": shift(schedule("cosine"), 0.5),
    "ztsnr_cos_trunc": zero_terminal_snr(schedule("cosine", logsnr_min=-10.0, logsnr_max=12.0)),
    "ztsnr_edm": zero_terminal_snr(schedule("edm")),
    "ztsnr_shift": zero_terminal_snr(shift(schedule("sigmoid", start=-2.0, end=2.0), 0.3)),
}
IDS = list(CASES)
t_lists = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=16)
SETTINGS = settings(max_examples=30, deadline=None)


def test_registry_names():
    # other modules (adaptive's learned schedule) register more; these are the ones this module defines
    expected = {
        "cauchy", "cosine", "cosine_interpolated", "cosine_shifted", "ddpm", "edm", "flow", "laplace",
        "shift", "sigmoid", "zero_terminal_snr",
    }
    assert expected <= set(SCHEDULES.names())
    package = schedules.__name__ + "."  # the modules of the noiselevels.schedules package
    defined_here = {n for n in SCHEDULES.names() if SCHEDULES.get(n).__module__.startswith(package)}
    assert defined_here == expected


# ----------------------------------------------------------------------------------------------
# properties of every schedule
# ----------------------------------------------------------------------------------------------
@SETTINGS
@given(t_lists)
@pytest.mark.parametrize("name", IDS)
def test_t_logsnr_t_round_trip(name, xs):
    s = CASES[name]
    t = torch.tensor(xs, dtype=F64)
    lam = s.logsnr(t)
    assert not torch.isnan(lam).any()
    assert_close(s.t_of(lam), t, rtol=0, atol=1e-10)
    alpha, sigma = alpha_sigma(logsnr=lam, process="vp")
    assert_close(alpha**2 + sigma**2, torch.ones_like(lam), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", IDS)
def test_logsnr_t_logsnr_round_trip(name):
    s = CASES[name]
    # stay where t is well resolved in float64 (t ∈ [1e-6, 1 − 1e-6]) and |λ| ≤ 20
    ends = s.logsnr(torch.tensor([1 - 1e-6, 1e-6], dtype=F64))
    lo, hi = max(ends[0].item(), -20.0), min(ends[1].item(), 20.0)
    lam = torch.linspace(lo, hi, 301, dtype=F64)[1:-1]
    assert_close(s.logsnr(s.t_of(lam)), lam, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", IDS)
def test_monotone_decreasing_with_exact_ends(name):
    s = CASES[name]
    t = torch.linspace(0.0, 1.0, 4001, dtype=F64)
    lam = s.logsnr(t)
    assert (lam[1:] < lam[:-1]).all()
    assert lam[0] == s.logsnr_max and lam[-1] == s.logsnr_min
    # outside the range t_of clamps to the ends
    assert_close(s.t_of(torch.tensor([INF, -INF], dtype=F64)), torch.tensor([0.0, 1.0], dtype=F64))


def _interior(s, n=199):
    t = torch.linspace(0.0, 1.0, n + 2, dtype=F64)[1:-1]
    if isinstance(s, DDPM):  # stay off the knots t_i = (i+1)/T, where the slope jumps
        T = s.num_train_timesteps
        t = (torch.floor(t * T) + 0.37) / T
    return t


@pytest.mark.parametrize("name", IDS)
def test_closed_form_derivative_matches_finite_differences(name):
    s = CASES[name]
    t = _interior(s)
    h = 1e-7
    fd = (s.logsnr(t + h) - s.logsnr(t - h)) / (2 * h)
    d = s.dlogsnr_dt(t)
    assert (d < 0).all()
    assert_close(d, fd, rtol=1e-5, atol=1e-6)


def test_float32_in_float32_out():
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float32)
    for s in CASES.values():
        assert s.logsnr(t).dtype == torch.float32
        assert s.t_of(s.logsnr(t)).dtype == torch.float32
        assert s.dlogsnr_dt(t).dtype == torch.float32


@pytest.mark.parametrize("name", IDS)
def test_serialisation_round_trip(name):
    s = CASES[name]
    d = json.loads(json.dumps(s.to_dict()))
    assert from_dict(d) == s
    assert from_dict(s.to_dict()) == s
    assert s.describe().startswith(s.name + "(")


# ----------------------------------------------------------------------------------------------
# closed forms and published / computed reference values (methods.md §1, §3)
# ----------------------------------------------------------------------------------------------
def test_cosine_closed_form_and_truncation_values():
    t = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], dtype=F64)
    lam = schedule("cosine").logsnr(t)
    ref = -2.0 * torch.log(torch.tan(math.pi * t[1:-1] / 2))
    assert_close(lam[1:-1], ref, rtol=1e-14, atol=1e-14)
    assert lam[0] == INF and lam[-1] == -INF
    # vp ᾱ = cos²(πt/2)
    assert_close(torch.sigmoid(lam), torch.cos(math.pi * t / 2) ** 2, rtol=1e-12, atol=1e-15)
    trunc = schedule("cosine", logsnr_min=-15.0, logsnr_max=15.0)
    assert_close(trunc.logsnr(torch.tensor([0.25, 0.5, 0.75], dtype=F64)),
                 torch.tensor([1.76118, 0.0, -1.76118], dtype=F64), rtol=0, atol=5e-6)
    assert (trunc.logsnr_min, trunc.logsnr_max) == (-15.0, 15.0)


def test_cosine_shifted_moves_logsnr_by_two_log_ratio():
    t = torch.linspace(0, 1, 101, dtype=F64)
    base = schedule("cosine")
    shifted = schedule("cosine_shifted", image_d=256.0, noise_d=64.0, logsnr_min=-INF, logsnr_max=INF)
    expected = base.logsnr(t)[1:-1] + 2 * math.log(64 / 256)
    assert_close(shifted.logsnr(t)[1:-1], expected, rtol=1e-13, atol=1e-13)
    assert_close(shifted.logsnr(t)[1:-1], shift(base, 4.0).logsnr(t)[1:-1], rtol=1e-13, atol=1e-13)
    # truncation bounds are those of the final λ
    s = schedule("cosine_shifted", image_d=256.0)
    assert (s.logsnr_max, s.logsnr_min) == (15.0, -15.0)


def test_cosine_interpolated_direction_and_ends():
    """Paper direction: t·λ_shift(low) + (1 − t)·λ_shift(high)."""
    kw = dict(image_d=512.0, logsnr_min=-INF, logsnr_max=INF)
    s = schedule("cosine_interpolated", noise_d_low=32.0, noise_d_high=256.0, **kw)
    low = schedule("cosine_shifted", noise_d=32.0, **kw)
    high = schedule("cosine_shifted", noise_d=256.0, **kw)
    t = torch.linspace(0, 1, 51, dtype=F64)[1:-1]
    assert_close(s.logsnr(t), t * low.logsnr(t) + (1 - t) * high.logsnr(t), rtol=1e-13, atol=1e-13)
    # near t = 0 it follows the high-resolution reference, near t = 1 the low one
    near0, near1 = torch.tensor([1e-9], dtype=F64), torch.tensor([1 - 1e-9], dtype=F64)
    assert_close(s.logsnr(near0), high.logsnr(near0), rtol=1e-6, atol=0)
    assert_close(s.logsnr(near1), low.logsnr(near1), rtol=1e-6, atol=0)


def test_sigmoid_chen_reference_value_and_formula():
    s = schedule("sigmoid")
    assert_close(torch.sigmoid(s.logsnr(torch.tensor([0.25], dtype=F64))),
                 torch.tensor([0.850854], dtype=F64), rtol=0, atol=1e-6)
    # Chen (2023) Alg. 1 written directly (γ = ᾱ), start=0, end=3, τ=0.3
    start, end, tau = 0.0, 3.0, 0.3
    t = torch.linspace(0.01, 0.99, 99, dtype=F64)
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=F64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=F64))
    gamma = (v_end - torch.sigmoid((t * (end - start) + start) / tau)) / (v_end - v_start)
    lam = schedule("sigmoid", start=start, end=end, tau=tau).logsnr(t)
    assert_close(torch.sigmoid(lam), gamma, rtol=1e-10, atol=1e-12)


def test_laplace_reference_values_and_density():
    s = schedule("laplace")
    t = torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9], dtype=F64)
    assert_close(s.logsnr(t), torch.tensor([0.80472, 0.34657, 0.0, -0.34657, -0.80472], dtype=F64),
                 rtol=0, atol=5e-6)
    # uniform t gives the Laplace density over λ: |dt/dλ| = e^(−|λ−μ|/b)/(2b)
    s = schedule("laplace", mu=0.7, b=1.3)
    lam = torch.linspace(-8, 8, 161, dtype=F64)
    dens = 1.0 / s.dlogsnr_dt(s.t_of(lam)).abs()
    assert_close(dens, torch.exp(-(lam - 0.7).abs() / 1.3) / 2.6, rtol=1e-10, atol=1e-14)


def test_cauchy_formula_and_density():
    s = schedule("cauchy", mu=0.5, gamma=2.0)
    t = torch.linspace(0.01, 0.99, 99, dtype=F64)
    assert_close(s.logsnr(t), 0.5 + 2.0 * torch.tan(math.pi * (0.5 - t)), rtol=1e-10, atol=1e-12)
    lam = torch.linspace(-30, 30, 121, dtype=F64)
    dens = 1.0 / s.dlogsnr_dt(s.t_of(lam)).abs()
    assert_close(dens, 1.0 / (math.pi * 2.0 * (1 + ((lam - 0.5) / 2.0) ** 2)), rtol=1e-9, atol=1e-14)


def test_uniform_t_densities_of_cosine_and_flow():
    """p(λ) = |dt/dλ|: cosine sech(λ/2)/(2π), rectified flow ⅛·sech²(λ/4) (DESIGN.md testing section)."""
    lam = torch.linspace(-20, 20, 201, dtype=F64)
    cos = schedule("cosine")
    assert_close(1.0 / cos.dlogsnr_dt(cos.t_of(lam)).abs(), 1.0 / torch.cosh(lam / 2) / (2 * math.pi),
                 rtol=1e-9, atol=1e-15)
    flow = schedule("flow")
    assert_close(1.0 / flow.dlogsnr_dt(flow.t_of(lam)).abs(), 0.125 / torch.cosh(lam / 4) ** 2,
                 rtol=1e-10, atol=1e-15)


def test_flow_is_rectified_flow():
    t = torch.linspace(0, 1, 21, dtype=F64)
    lam = schedule("flow").logsnr(t)
    alpha, sigma = alpha_sigma(logsnr=lam, process="flow")
    assert_close(alpha, 1 - t, rtol=1e-14, atol=1e-15)
    assert_close(sigma, t, rtol=1e-14, atol=1e-15)


def test_edm_uniform_t_grid_is_the_karras_grid():
    ref = torch.tensor([80, 57.586, 40.7856, 28.3746, 19.3525, 12.9101, 8.4009, 5.3152, 3.2568, 1.9233,
                        1.0882, 0.5853, 0.2964, 0.1395, 0.0599, 0.0229, 0.0075, 0.002], dtype=F64)
    s = schedule("edm")
    t = 1.0 - torch.arange(18, dtype=F64) / 17
    sigma = torch.exp(-0.5 * s.logsnr(t))
    assert_close(sigma, ref, rtol=1e-4, atol=5e-5)
    assert s.logsnr_max == pytest.approx(-2 * math.log(0.002), rel=1e-14)
    assert s.logsnr_min == pytest.approx(-2 * math.log(80.0), rel=1e-14)
    assert schedule("edm", sigma_min=0.0).logsnr_max == INF


# ----------------------------------------------------------------------------------------------
# ddpm vs diffusers' DDPMScheduler
# ----------------------------------------------------------------------------------------------
DDPM_KW = [
    dict(beta_schedule="linear"),
    dict(beta_schedule="linear", beta_start=0.0002, beta_end=0.03, num_train_timesteps=500),
    SD,
    dict(beta_schedule="squaredcos_cap_v2"),
]


@pytest.mark.parametrize("rescale", [False, True])
@pytest.mark.parametrize("kw", DDPM_KW, ids=["linear", "linear500", "scaled_linear", "squaredcos_cap_v2"])
def test_ddpm_matches_diffusers(kw, rescale):
    from diffusers import DDPMScheduler

    ref = DDPMScheduler(rescale_betas_zero_snr=rescale, **kw)
    s = schedule("ddpm", rescale_betas_zero_snr=rescale, **kw)
    abar = s.alphas_cumprod()
    assert abar.dtype == F64 and abar.shape == ref.alphas_cumprod.shape
    # diffusers works in float32; cumulative products of 1000 float32 factors agree to ~1e-6 relative
    assert_close(abar, ref.alphas_cumprod.to(F64), rtol=5e-5, atol=1e-6)
    # (diffusers' float32 1 − ᾱ loses ~1e-3 relative on β₀ ≈ 1e-4 after the rescale)
    assert_close(s.betas(), ref.betas.to(F64), rtol=1e-4, atol=1e-6)
    lam = s.logsnr_table()
    expected = torch.log(abar) - torch.log1p(-abar)
    assert_close(lam, expected, rtol=1e-12, atol=1e-12)
    if rescale:
        assert lam[-1] == -INF and abar[-1] == 0
    else:
        assert torch.isfinite(lam).all()


def test_ddpm_squaredcos_betas_equal_diffusers_bitwise_in_float32():
    from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar

    s = schedule("ddpm", beta_schedule="squaredcos_cap_v2")
    assert torch.equal(s.betas().float(), betas_for_alpha_bar(1000))


@pytest.mark.parametrize("kw", DDPM_KW, ids=["linear", "linear500", "scaled_linear", "squaredcos_cap_v2"])
def test_zero_terminal_snr_equals_diffusers_rescale_in_float64(kw):
    """Our λ-space rescale vs diffusers' rescale_zero_terminal_snr run on the same float64 betas."""
    from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

    base = schedule("ddpm", **kw)
    z = zero_terminal_snr(base)
    assert isinstance(z, DDPM) and z.rescale_betas_zero_snr
    ref = torch.cumprod(1.0 - rescale_zero_terminal_snr(base.betas()), 0)
    assert_close(z.alphas_cumprod(), ref, rtol=1e-10, atol=1e-14)
    assert_close(z.betas(), rescale_zero_terminal_snr(base.betas()), rtol=1e-10, atol=1e-14)


def test_ddpm_stable_diffusion_reference_values():
    sd = schedule("ddpm", **SD)
    assert sd.alphas_cumprod()[-1].item() == pytest.approx(0.004660, abs=5e-7)
    assert sd.logsnr_table()[-1].item() == pytest.approx(-5.364, abs=5e-4)
    assert sd.alphas_cumprod()[500].item() == pytest.approx(0.276333, abs=5e-7)
    z = zero_terminal_snr(sd)
    assert z.alphas_cumprod()[500].item() == pytest.approx(0.241019, abs=5e-7)
    assert z.alphas_cumprod()[-1].item() == 0.0


@pytest.mark.parametrize("name", ["ddpm_sd", "ddpm_sd_zsnr", "ddpm_small"])
def test_ddpm_continuous_view_hits_the_table(name):
    s = CASES[name]
    T = s.num_train_timesteps
    i = torch.arange(T)
    t = s.timestep_to_t(i)
    assert_close(t, (i + 1.0).to(F64) / T, rtol=0, atol=0)
    assert_close(s.logsnr(t), s.logsnr_table(), rtol=1e-12, atol=1e-12)
    assert_close(s.t_of(s.logsnr_table()), t, rtol=0, atol=1e-12)
    assert_close(s.t_to_timestep(t), i.to(F64), rtol=0, atol=1e-10)
    # between knots λ is linear in t
    mid = (t[:-2] + t[1:-1]) / 2
    lam = s.logsnr_table()
    assert_close(s.logsnr(mid), (lam[:-2] + lam[1:-1]) / 2, rtol=1e-10, atol=1e-10)
    # before the first knot: σ² = 1 − ᾱ linear in t from 0, so λ(0) = +inf
    t0 = torch.tensor([0.0, 0.25 / T, 0.5 / T], dtype=F64)
    abar0 = s.alphas_cumprod()[0]
    assert_close(torch.sigmoid(-s.logsnr(t0)), (1 - abar0) * t0 * T, rtol=1e-10, atol=1e-15)


def test_timestep_helpers_and_their_errors():
    assert_close(timestep_to_t(torch.tensor([0, 999]), num_train_timesteps=1000),
                 torch.tensor([0.001, 1.0], dtype=F64))
    assert_close(t_to_timestep(torch.tensor([0.001, 0.5, 1.0], dtype=F64), num_train_timesteps=1000),
                 torch.tensor([0.0, 499.0, 999.0], dtype=F64), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
        timestep_to_t(torch.tensor([1000]), num_train_timesteps=1000)
    with pytest.raises(ValueError, match=r"timesteps must be in \[0, 999\]"):
        timestep_to_t(-1, num_train_timesteps=1000)
    with pytest.raises(ValueError, match="num_train_timesteps must be an integer >= 2"):
        timestep_to_t(0, num_train_timesteps=1)


# ----------------------------------------------------------------------------------------------
# shift and zero terminal SNR
# ----------------------------------------------------------------------------------------------
@SETTINGS
@given(t_lists, st.floats(0.05, 20.0))
@pytest.mark.parametrize("name", ["cosine", "sigmoid", "ddpm_sd", "edm", "laplace"])
def test_shift_moves_logsnr_by_minus_two_log_factor(name, xs, factor):
    s = CASES[name]
    t = torch.tensor(xs, dtype=F64)
    assert_close(shift(s, factor).logsnr(t), s.logsnr(t) - 2 * math.log(factor), rtol=1e-13, atol=1e-13)
    assert_close(shift(s, factor).dlogsnr_dt(t), s.dlogsnr_dt(t))


@pytest.mark.parametrize("factor", [0.5, 1.0, 3.0, 6.0])
def test_flow_shift_matches_diffusers_flow_match_euler(factor):
    from diffusers import FlowMatchEulerDiscreteScheduler

    sigmas = FlowMatchEulerDiscreteScheduler(shift=1.0).sigmas.to(F64)  # unshifted flow t, decreasing
    shifted = FlowMatchEulerDiscreteScheduler(shift=factor).sigmas.to(F64)
    s = shift(schedule("flow"), factor)
    ours = flow_t(logsnr=s.logsnr(sigmas))
    assert_close(ours, shifted, rtol=1e-6, atol=1e-7)
    # and the closed form t' = s t / (1 + (s − 1) t) in float64
    assert_close(ours, factor * sigmas / (1 + (factor - 1) * sigmas), rtol=1e-13, atol=1e-15)


def test_flux_mu_and_dynamic_shift_match_diffusers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    assert flux_mu(256) == pytest.approx(0.5, abs=1e-12)
    assert flux_mu(4096) == pytest.approx(1.15, abs=1e-12)
    assert flux_mu(1024) == pytest.approx(0.5 + 768 * 0.65 / 3840, abs=1e-12)
    assert flux_mu(4096, max_shift=1.16) == pytest.approx(1.16, abs=1e-12)
    mu = flux_mu(1024)
    ref = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    t = torch.linspace(0.01, 1.0, 100, dtype=F64)
    expected = ref.time_shift(mu, 1.0, t)
    s = flux_shift(schedule("flow"), 1024)
    assert isinstance(s, Shift) and s.factor == pytest.approx(math.exp(mu))
    assert_close(flow_t(logsnr=s.logsnr(t)), expected.to(F64), rtol=1e-12, atol=1e-14)


def test_shift_composition_and_identity():
    flow = schedule("flow")
    assert shift(flow, 1.0) is flow
    assert shift(shift(flow, 2.0), 3.0) == Shift(schedule=flow, factor=6.0)
    assert shift(shift(flow, 2.0), 0.5) == flow
    assert schedule("shift", schedule=flow, factor=3.0) == shift(flow, 3.0)


def test_zero_terminal_snr_continuous_is_the_affine_sqrt_alpha_rescale():
    base = schedule("cosine", logsnr_min=-10.0, logsnr_max=12.0)
    z = zero_terminal_snr(base)
    assert isinstance(z, ZeroTerminalSNR)
    t = torch.linspace(0, 1, 201, dtype=F64)
    a = torch.sqrt(torch.sigmoid(base.logsnr(t)))
    a0, aT = a[0], a[-1]
    expected = (a - aT) * a0 / (a0 - aT)
    assert_close(torch.sqrt(torch.sigmoid(z.logsnr(t))), expected, rtol=1e-12, atol=1e-15)
    assert z.logsnr_min == -INF
    assert z.logsnr_max == pytest.approx(12.0, abs=1e-12)


def test_zero_terminal_snr_is_identity_when_already_zero_terminal():
    for name in ["cosine", "flow", "sigmoid", "laplace", "ddpm_sd_zsnr"]:
        assert zero_terminal_snr(CASES[name]) == CASES[name]
    # the explicit wrapper is the identity too
    t = torch.linspace(0, 1, 101, dtype=F64)
    w = ZeroTerminalSNR(schedule=schedule("cosine"))
    assert_close(w.logsnr(t), schedule("cosine").logsnr(t), rtol=1e-12, atol=1e-12)


def test_nested_round_trip_through_dict():
    s = shift(zero_terminal_snr(schedule("cosine_shifted", image_d=128.0)), 2.0)
    d = s.to_dict()
    assert d["name"] == "shift" and d["schedule"]["name"] == "zero_terminal_snr"
    assert d["schedule"]["schedule"]["name"] == "cosine_shifted"
    back = from_dict(json.loads(json.dumps(d)))
    assert back == s and isinstance(back.schedule.schedule, Schedule)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("cosinus", {}, "unknown schedule 'cosinus'; valid names: cauchy, cosine, cosine_interpolated"),
        ("cosine", {"logsnr_mn": 1.0}, "unknown parameter.*'logsnr_mn'.*valid parameters: logsnr_min"),
        ("cosine", {"logsnr_min": 5.0, "logsnr_max": 5.0}, "logsnr_min must be < logsnr_max"),
        ("cosine", {"logsnr_min": math.nan}, "logsnr_min must be a number"),
        ("ddpm", {"beta_start": 0.02, "beta_end": 0.01}, "0 < beta_start < beta_end < 1"),
        ("ddpm", {"beta_start": 0.01, "beta_end": 0.01}, "0 < beta_start < beta_end < 1"),
        ("ddpm", {"beta_end": 1.5}, "0 < beta_start < beta_end < 1"),
        ("ddpm", {"beta_schedule": "cosine"}, "unknown beta_schedule 'cosine'; valid: linear, scaled_linear"),
        ("ddpm", {"num_train_timesteps": 1}, "num_train_timesteps must be an integer >= 2; got 1"),
        ("ddpm", {"num_train_timesteps": 10.0}, "num_train_timesteps must be an integer"),
        ("sigmoid", {"start": 3.0, "end": -3.0}, "start must be < end"),
        ("sigmoid", {"tau": 0.0}, "tau must be > 0"),
        ("laplace", {"b": -1.0}, "b must be > 0; got -1.0"),
        ("cauchy", {"gamma": 0.0}, "gamma must be > 0"),
        ("edm", {"sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min must be < sigma_max"),
        ("edm", {"rho": -7.0}, "rho must be > 0"),
        ("cosine_shifted", {"image_d": 0.0}, "image_d must be > 0"),
        ("cosine_interpolated", {"noise_d_low": 128.0, "noise_d_high": 64.0}, "noise_d_low must be <="),
        ("shift", {"schedule": "flow", "factor": 2.0}, "schedule must be a Schedule"),
        ("shift", {"factor": 0.0}, "factor must be > 0; got 0.0"),
    ],
)
def test_bad_parameters_raise_clear_errors(name, kw, match):
    with pytest.raises(ValueError, match=match):
        schedule(name, **kw)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_t_outside_unit_interval_is_rejected(bad):
    s = schedule("cosine")
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
        s.logsnr(torch.tensor([0.5, bad]))
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\]"):
        s.dlogsnr_dt(torch.tensor([bad]))


def test_t_of_rejects_nan_and_shift_rejects_bad_factor():
    with pytest.raises(ValueError, match="NaN"):
        schedule("flow").t_of(torch.tensor([math.nan]))
    for bad in (0.0, -2.0, math.inf):
        with pytest.raises(ValueError, match="factor must be"):
            shift(schedule("flow"), bad)
    with pytest.raises(ValueError, match="schedule must be a Schedule"):
        zero_terminal_snr("cosine")
    with pytest.raises(ValueError, match="image_seq_len must be > 0"):
        flux_mu(0)
