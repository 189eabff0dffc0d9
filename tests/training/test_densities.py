"""Tests for noiselevels.training.densities: normalisation, cdf = ∫ pdf, round trips, KS tests,
closed forms, diffusers' SD3 densities, combinators and error messages."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.components import DENSITIES, Density
from noiselevels.levels import flow_t, logsnr_from_flow_t
from noiselevels.schedules import schedule, shift
from noiselevels.training.densities import (
    Mode,
    density,
    lognorm_blend,
    mixture,
    solve_increasing,
    truncated,
)

F64 = torch.float64


def t64(x):
    return torch.as_tensor(x, dtype=F64)


def cases() -> dict[str, Density]:
    flow = schedule("flow")
    return {
        "uniform_t_flow": density("uniform_t", schedule=flow),
        "uniform_t_cosine": density("uniform_t", schedule=schedule("cosine")),
        "uniform_t_cosine_trunc": density(
            "uniform_t", schedule=schedule("cosine", logsnr_min=-15, logsnr_max=15)
        ),
        "uniform_t_shift3": density("uniform_t", schedule=shift(flow, 3.0)),
        "normal_logsnr": density("normal_logsnr", mean=1.0, std=3.0),
        "logit_normal": density("logit_normal", mean=0.3, std=0.8),
        "lognormal_sigma": density("lognormal_sigma"),
        "uniform_logsnr": density("uniform_logsnr", logsnr_min=-10.0, logsnr_max=6.0),
        "laplace": density("laplace", mu=0.5, b=0.5),
        "cauchy": density("cauchy", mu=-1.0, gamma=2.0),
        "cosmap": density("cosmap"),
        "mode": density("mode", scale=1.29),
        "mode_neg": density("mode", scale=-0.7),
        "beta": density("beta", a=2.0, b=3.0),
        "beta_style": density("beta", a=1 / 3, b=1.0),
        "sigmoid_t": density("sigmoid_t", weight=4.0, bias=0.1),
        "sigmoid_t_neg": density("sigmoid_t", weight=-7.0, bias=-0.2),
        "inverted_parabola": density("inverted_parabola", weight=6.0, bias=0.3),
        "lognormal_alpha": density("lognormal_alpha", mean=-1.0, std=0.333),
        "truncated": density("logit_normal").truncate(-3.0, 5.0),
        "shifted": density("shifted", base=density("mode"), factor=3.0),
        "rescaled_t": density("rescaled_t", base=density("logit_normal", mean=0.3), t_min=0.1, t_max=0.9),
        "rescaled_t_edge": density(
            "rescaled_t", base=density("uniform_t", schedule=schedule("flow")), t_min=0.0, t_max=0.7
        ),
        "flow_time_atoms": density("flow_time_atoms", times=(1.0, 0.75, 0.5, 0.25), weights=(7, 1, 1, 1)),
        "mixture": mixture([density("laplace", mu=-4.0, b=1.0), density("logit_normal")], [1.0, 3.0]),
        "lognorm_blend": lognorm_blend(),
    }


CASES = cases()
IDS = sorted(CASES)


def pdf_fn(d):
    return lambda x: float(d.log_prob(t64([x])).exp()[0])


def quad_limits(d):
    lo, hi = d.support
    return max(lo, -400.0), min(hi, 400.0)


KINKS = {
    "laplace": [0.5],
    "mixture": [-4.0],
    "flow_time_atoms": [2 * math.log((1 - t) / t) for t in (0.999, 0.75, 0.749, 0.5, 0.499, 0.25, 0.249)],
}


@pytest.mark.parametrize("name", IDS)
def test_normalised_and_cdf_is_integral_of_pdf(name):
    """Adaptive quadrature of exp(log_prob) between quantiles reproduces the cdf; the whole adds to 1."""
    d = CASES[name]
    a, b = quad_limits(d)
    qs = d.icdf(t64([1e-4, 0.01, 0.05, 0.3, 0.5, 0.8, 0.97, 0.99, 1 - 1e-4])).tolist()
    pts = sorted({a, b, *[q for q in qs + KINKS.get(name, []) if a < q < b]})
    pieces = [scipy.integrate.quad(pdf_fn(d), lo, hi, epsabs=1e-12, epsrel=1e-10, limit=100)[0]
              for lo, hi in itertools.pairwise(pts)]
    want = float(d.cdf(t64([a]))[0]) + np.concatenate([[0.0], np.cumsum(pieces)])
    assert_close(d.cdf(t64(pts)), t64(want), atol=2e-8, rtol=0)
    assert want[-1] + 1.0 - float(d.cdf(t64([b]))[0]) == pytest.approx(1.0, abs=2e-8)


@pytest.mark.parametrize("name", IDS)
def test_round_trips(name):
    d = CASES[name]
    u = t64([1e-9, 1e-4, 0.01, 0.2, 0.5, 0.7, 0.99, 1 - 1e-6])
    assert_close(d.cdf(d.icdf(u)), u, atol=1e-11, rtol=1e-9)
    lam = d.icdf(t64(np.linspace(0.001, 0.999, 41)))
    lam = lam[d.log_prob(lam) > -30]
    assert_close(d.icdf(d.cdf(lam)), lam, atol=1e-8, rtol=1e-8)
    # monotone
    q = d.icdf(t64(np.linspace(0.0, 1.0, 201)))
    assert bool((q[1:] >= q[:-1]).all())


@pytest.mark.parametrize("name", IDS)
def test_samples_pass_ks_and_edges(name):
    d = CASES[name]
    x = d.sample(3000, generator=torch.Generator().manual_seed(1234))
    assert x.shape == (3000,) and x.dtype == F64
    p = scipy.stats.kstest(x.numpy(), lambda v: d.cdf(t64(v)).numpy()).pvalue
    assert p > 1e-3
    lo, hi = d.support
    edge = d.log_prob(t64([-math.inf, math.inf]))
    assert_close(edge, t64([-math.inf, -math.inf]))
    assert_close(d.cdf(t64([-math.inf, math.inf])), t64([0.0, 1.0]))
    assert_close(d.icdf(t64([0.0, 1.0])), t64([lo, hi]))
    # the caller's dtype is kept
    assert d.log_prob(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32
    assert d.cdf(torch.zeros(3, dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize("name", ["logit_normal", "mode", "beta_style", "mixture"])
def test_stratified_one_draw_per_stratum(name):
    d = CASES[name]
    n = 64
    x = d.sample(n, generator=torch.Generator().manual_seed(7), stratified=True)
    strata = torch.floor(d.cdf(x) * n).long().sort().values
    assert_close(strata, torch.arange(n))
    # the marginal is still right: pool many stratified batches
    g = torch.Generator().manual_seed(8)
    pooled = torch.cat([d.sample(n, generator=g, stratified=True) for _ in range(30)])
    assert scipy.stats.kstest(pooled.numpy(), lambda v: d.cdf(t64(v)).numpy()).pvalue > 1e-3


@pytest.mark.parametrize("name", IDS)
def test_serialisation_round_trip(name):
    d = CASES[name]
    assert from_dict(d.to_dict()) == d
    assert d.describe().startswith(d.name + "(")


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------
LAM = t64(np.linspace(-30.0, 30.0, 121))


def test_uniform_t_flow_is_sech2():
    d = CASES["uniform_t_flow"]
    assert_close(d.prob(LAM), 0.125 / torch.cosh(LAM / 4) ** 2)
    assert_close(d.cdf(LAM), torch.sigmoid(LAM / 2))


def test_uniform_t_cosine_and_cosmap_are_sech():
    want = 1.0 / (2 * math.pi * torch.cosh(LAM / 2))
    assert_close(CASES["uniform_t_cosine"].prob(LAM), want)
    assert_close(CASES["cosmap"].prob(LAM), want)
    assert_close(CASES["cosmap"].cdf(LAM), CASES["uniform_t_cosine"].cdf(LAM))
    # the t-space form: p_t(t) = 2/(π(1 − 2t + 2t²)) and P(T ≤ t) = ½ + (2/π)·atan(2t − 1)
    t = flow_t(logsnr=LAM)
    assert_close(CASES["cosmap"].prob(LAM) * 2 / (t * (1 - t)), 2 / (math.pi * (1 - 2 * t + 2 * t * t)))
    assert_close(1 - CASES["cosmap"].cdf(LAM), 0.5 + 2 / math.pi * torch.atan(2 * t - 1))


def test_uniform_t_truncated_cosine_support():
    d = CASES["uniform_t_cosine_trunc"]
    assert d.support == pytest.approx((-15.0, 15.0))
    assert_close(d.log_prob(t64([-15.5, 15.5])), t64([-math.inf, -math.inf]))


def test_normal_family_closed_forms():
    for d, (loc, scale) in [
        (CASES["logit_normal"], (-0.6, 1.6)),
        (CASES["lognormal_sigma"], (2.4, 2.4)),
        (CASES["normal_logsnr"], (1.0, 3.0)),
    ]:
        ref = torch.distributions.Normal(t64(loc), t64(scale))
        assert_close(d.log_prob(LAM), ref.log_prob(LAM))
        assert_close(d.cdf(LAM), ref.cdf(LAM))
    # logit-normal over flow t: p_t(t) = φ(logit t; m, s)/(s·t(1 − t))
    m, s = 0.3, 0.8
    t = flow_t(logsnr=LAM)
    p_t = torch.exp(-0.5 * ((torch.logit(t) - m) / s) ** 2) / (s * math.sqrt(2 * math.pi) * t * (1 - t))
    assert_close(CASES["logit_normal"].prob(LAM) * 2 / (t * (1 - t)), p_t)


def test_laplace_cauchy_match_torch():
    lap = torch.distributions.Laplace(t64(0.5), t64(0.5))
    assert_close(CASES["laplace"].log_prob(LAM), lap.log_prob(LAM))
    assert_close(CASES["laplace"].cdf(LAM), lap.cdf(LAM))
    cau = torch.distributions.Cauchy(t64(-1.0), t64(2.0))
    assert_close(CASES["cauchy"].log_prob(LAM), cau.log_prob(LAM))
    assert_close(CASES["cauchy"].cdf(LAM), cau.cdf(LAM))
    u = t64([0.1, 0.25, 0.5, 0.9])
    assert_close(CASES["cauchy"].icdf(u), cau.icdf(u))


def test_beta_matches_scipy_and_special_cases():
    for a, b in [(2.0, 3.0), (1 / 3, 1.0), (0.6, 0.6), (5.0, 0.7), (40.0, 25.0)]:
        d = density("beta", a=a, b=b)
        t = flow_t(logsnr=LAM)
        assert_close(d.cdf(LAM), t64(scipy.stats.beta(a, b).sf(t.numpy())), atol=1e-13, rtol=1e-11)
        p_t = t64(scipy.stats.beta(a, b).pdf(t.numpy()))
        assert_close(d.prob(LAM), p_t * t * (1 - t) / 2, atol=1e-14, rtol=1e-10)
    assert_close(density("beta", a=1, b=1).log_prob(LAM), CASES["uniform_t_flow"].log_prob(LAM))


def test_content_and_style_are_powers_of_uniform():
    """ai-toolkit's style t ≈ u³ is Beta(1/3, 1); content t ≈ 1 − u³ is Beta(1, 1/3)."""
    u = torch.rand(4000, generator=torch.Generator().manual_seed(3), dtype=F64)
    for d, t in [(density("beta", a=1 / 3, b=1), u**3), (density("beta", a=1, b=1 / 3), 1 - u**3)]:
        lam = logsnr_from_flow_t(t=t)
        assert scipy.stats.kstest(lam.numpy(), lambda v, d=d: d.cdf(t64(v)).numpy()).pvalue > 1e-3


def test_mode_published_values_and_map():
    d = density("mode", scale=1.29)
    u = t64([0.0, 0.25, 0.5, 0.75, 1.0])
    assert_close(d.flow_t(u), t64([1.0, 0.61642, 0.5, 0.38358, 0.0]), atol=5e-6, rtol=0)
    # icdf is λ of the SD3 map (u ↦ t = f(u), so the cdf over λ is u)
    uu = t64(np.linspace(0.01, 0.99, 99))
    assert_close(d.icdf(uu), logsnr_from_flow_t(t=d.flow_t(uu)))
    assert_close(d.cdf(d.icdf(uu)), uu)
    # scale = 0 is uniform flow t
    assert_close(density("mode", scale=0.0).log_prob(LAM), CASES["uniform_t_flow"].log_prob(LAM))


def test_mode_density_is_derivative_of_inverse_map():
    d = density("mode", scale=1.29)
    u = t64(np.linspace(0.02, 0.98, 49))
    lam = d.icdf(u)
    h = 1e-6
    dlam_du = (d.icdf(u + h) - d.icdf(u - h)) / (2 * h)
    assert_close(d.prob(lam), 1 / dlam_du, rtol=1e-6, atol=0)


def test_mode_scale_range_is_the_monotone_range():
    smax = 1 / (math.pi / 2 - 1)
    density("mode", scale=smax)
    density("mode", scale=-1.0)
    for bad in (smax + 1e-6, -1.0 - 1e-6, math.nan):
        with pytest.raises(ValueError, match="scale"):
            density("mode", scale=bad)
    # just outside the range the map is no longer monotone
    u = t64(np.linspace(0, 1, 100001))
    f = 1 - u - (smax + 0.05) * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    assert bool((f[1:] > f[:-1]).any())


def test_sigmoid_t_closed_form():
    for w, b in [(4.0, 0.1), (-7.0, -0.2), (30.0, 0.4), (1e-9, 0.0)]:
        d = density("sigmoid_t", weight=w, bias=b)
        c = b + 0.5
        z = scipy.integrate.quad(lambda t, w=w, c=c: scipy.special.expit(w * (t - c)), 0, 1, epsabs=1e-14)[0]
        t = flow_t(logsnr=LAM)
        p_t = torch.sigmoid(w * (t - c)) / z
        assert_close(d.prob(LAM), p_t * t * (1 - t) / 2, rtol=1e-9, atol=1e-15)
    assert_close(density("sigmoid_t", weight=0.0).log_prob(LAM), CASES["uniform_t_flow"].log_prob(LAM))


def test_inverted_parabola_closed_form_and_support():
    w, b = 6.0, 0.3
    d = density("inverted_parabola", weight=w, bias=b)
    c, r = b + 0.5, math.sqrt(2 / w)
    assert d.support_t == pytest.approx((c - r, 1.0))
    assert d.support == pytest.approx((-math.inf, float(logsnr_from_flow_t(t=t64(c - r)))))
    z = scipy.integrate.quad(lambda t: max(0.0, 2 - w * (t - c) ** 2), 0, 1)[0]
    t = flow_t(logsnr=LAM)
    p_t = (2 - w * (t - c) ** 2).clamp(min=0) / z
    assert_close(d.prob(LAM), p_t * t * (1 - t) / 2)
    with pytest.raises(ValueError, match="zero mass"):
        density("inverted_parabola", weight=50.0, bias=1.0)


def test_lognormal_alpha_matches_truncated_normal():
    d = CASES["lognormal_alpha"]
    tn = scipy.stats.truncnorm(-np.inf, (0.0 - -1.0) / 0.333, loc=-1.0, scale=0.333)
    log_alpha = torch.nn.functional.logsigmoid(LAM / 2)
    assert_close(d.cdf(LAM), t64(tn.cdf(log_alpha.numpy())), atol=1e-13, rtol=1e-10)


def test_lognorm_blend_approximates_ai_toolkit_tables():
    """Simulate ai-toolkit's tables (750 LogNormal(0, 0.333) draws mapped t = 1 − x/max x, plus 250
    evenly spaced t) and compare the pooled table with the exact mixture: close, not identical."""
    g = torch.Generator().manual_seed(0)
    tables = []
    for _ in range(200):
        x = torch.exp(0.333 * torch.randn(750, generator=g, dtype=F64))
        tables.append(torch.cat([1 - x / x.max(), torch.linspace(1, 0, 250, dtype=F64)]))
    t = torch.cat(tables).clamp(1e-9, 1 - 1e-9)
    lam = logsnr_from_flow_t(t=t).sort().values
    d = lognorm_blend()
    emp = torch.arange(1, lam.numel() + 1, dtype=F64) / lam.numel()
    assert (d.cdf(lam) - emp).abs().max() < 0.03
    assert d.probs == pytest.approx((0.75, 0.25))


# ----------------------------------------------------------------------------------------------
# diffusers' SD3 densities
# ----------------------------------------------------------------------------------------------
def test_logit_normal_and_mode_match_diffusers():
    from diffusers.training_utils import compute_density_for_timestep_sampling

    g = torch.Generator().manual_seed(0)
    u = compute_density_for_timestep_sampling(
        "logit_normal", 4000, logit_mean=0.5, logit_std=1.2, generator=g
    )
    lam = logsnr_from_flow_t(t=u.to(F64))
    d = density("logit_normal", mean=0.5, std=1.2)
    assert scipy.stats.kstest(lam.numpy(), lambda v: d.cdf(t64(v)).numpy()).pvalue > 1e-3

    g = torch.Generator().manual_seed(1)
    t = compute_density_for_timestep_sampling("mode", 4000, mode_scale=1.29, generator=g)
    d = density("mode", scale=1.29)
    lam = logsnr_from_flow_t(t=t.to(F64).clamp(1e-7, 1 - 1e-7))
    assert scipy.stats.kstest(lam.numpy(), lambda v: d.cdf(t64(v)).numpy()).pvalue > 1e-3
    # and the deterministic map, fed the same uniforms diffusers draws
    uu = torch.rand(4000, generator=torch.Generator().manual_seed(1))
    assert_close(d.flow_t(uu).to(torch.float32), t)


# ----------------------------------------------------------------------------------------------
# combinators
# ----------------------------------------------------------------------------------------------
def test_truncated_is_renormalised_restriction():
    base = density("logit_normal")
    d = base.truncate(-3.0, 5.0)
    mass = float(base.cdf(t64([5.0])) - base.cdf(t64([-3.0])))
    lam = t64(np.linspace(-2.9, 4.9, 50))
    assert_close(d.log_prob(lam), base.log_prob(lam) - math.log(mass))
    assert_close(d.cdf(t64([-3.0, 5.0])), t64([0.0, 1.0]))
    assert_close(d.log_prob(t64([-3.1, 5.1])), t64([-math.inf, -math.inf]))
    x = d.sample(500, generator=torch.Generator().manual_seed(0))
    assert bool(((x >= -3.0) & (x <= 5.0)).all())
    assert d == truncated(base, -3.0, 5.0)
    one_sided = base.truncate(logsnr_min=0.0)
    assert one_sided.support == (0.0, math.inf)
    for lo, hi in [(2.0, 2.0), (3.0, -1.0), (math.nan, 1.0)]:
        with pytest.raises(ValueError, match="logsnr_m"):
            base.truncate(lo, hi)
    with pytest.raises(ValueError, match="zero probability"):
        density("uniform_logsnr", logsnr_min=-1.0, logsnr_max=1.0).truncate(5.0, 6.0)


def test_shifted_equals_shifted_schedule():
    flow = schedule("flow")
    a = density("shifted", base=density("uniform_t", schedule=flow), factor=3.0)
    b = CASES["uniform_t_shift3"]
    assert_close(a.log_prob(LAM), b.log_prob(LAM))
    assert_close(a.cdf(LAM), b.cdf(LAM))
    assert_close(a.icdf(t64([0.1, 0.5, 0.9])), b.icdf(t64([0.1, 0.5, 0.9])))
    # logit-normal shifted by s is normal with mean moved by −2 log s
    c = density("shifted", base=density("logit_normal"), factor=3.0)
    assert_close(c.log_prob(LAM), density("normal_logsnr", mean=-2 * math.log(3.0), std=2.0).log_prob(LAM))


def test_rescaled_t_is_the_affine_map_of_flow_time():
    """σ' = a + b·σ: the cdf at λ(σ') is the base's at λ((σ' − a)/b) (closed form for uniform σ)."""
    d = density("rescaled_t", base=density("uniform_t", schedule=schedule("flow")), t_min=0.1, t_max=0.9)
    s = t64([0.05, 0.1, 0.3, 0.5, 0.85, 0.9, 0.95])
    lam = 2 * (torch.log1p(-s) - torch.log(s))
    want = ((0.9 - s) / 0.8).clamp(0, 1)  # P(σ' ≥ s) for σ' uniform on [0.1, 0.9]
    assert_close(d.cdf(lam), want, rtol=0, atol=1e-12)
    t = torch.sigmoid(-0.5 * d.sample(100_000, generator=torch.Generator().manual_seed(0)))
    assert 0.1 <= float(t.min()) and float(t.max()) <= 0.9


def test_mixture_exact_and_validated():
    p1, p2 = density("laplace", mu=-4.0, b=1.0), density("logit_normal")
    d = mixture([p1, p2], [1.0, 3.0])
    assert_close(d.prob(LAM), 0.25 * p1.prob(LAM) + 0.75 * p2.prob(LAM))
    assert_close(d.cdf(LAM), 0.25 * p1.cdf(LAM) + 0.75 * p2.cdf(LAM))
    with pytest.raises(ValueError, match="weights"):
        mixture([p1, p2], [1.0])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        mixture([p1, p2], [1.0, -1.0])
    with pytest.raises(ValueError, match="components"):
        mixture([], [])
    with pytest.raises(ValueError, match=r"components\[0\]"):
        mixture(["logit_normal"], [1.0])


def test_solve_increasing_newton_and_bisection():
    target = t64([-5.0, 0.0, 0.3, 7.0])
    for dfn in (None, lambda x: 3 * x * x + 1):
        x = solve_increasing(lambda x: x**3 + x, target, -10.0, 10.0, dfn=dfn)
        assert_close(x**3 + x, target)


# ----------------------------------------------------------------------------------------------
# property tests (float64)
# ----------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(m=st.floats(-3, 3), s=st.floats(0.05, 3), u=st.floats(1e-6, 1 - 1e-6))
def test_logit_normal_property(m, s, u):
    d = density("logit_normal", mean=m, std=s)
    lam = d.icdf(t64([u]))
    assert_close(d.cdf(lam), t64([u]), atol=1e-12, rtol=1e-9)
    # t = sigmoid(n) with n ~ N(m, s): P(T ≤ t) = Φ((logit t − m)/s) = 1 − cdf(λ)
    t = flow_t(logsnr=lam)
    assert_close(1 - d.cdf(lam), torch.special.ndtr((torch.logit(t) - m) / s), atol=1e-10, rtol=1e-8)


@settings(max_examples=25, deadline=None)
@given(s=st.floats(-1.0, 1 / (math.pi / 2 - 1)), u=st.floats(1e-6, 1 - 1e-6))
def test_mode_property(s, u):
    d = Mode(scale=s)
    lam = d.icdf(t64([u]))
    assert_close(d.cdf(lam), t64([u]), atol=1e-12, rtol=1e-9)
    assert_close(flow_t(logsnr=lam), d.flow_t(t64([u])), atol=1e-12, rtol=1e-9)


@settings(max_examples=20, deadline=None)
@given(a=st.floats(0.2, 20), b=st.floats(0.2, 20), u=st.floats(1e-4, 1 - 1e-4))
def test_beta_property(a, b, u):
    d = density("beta", a=a, b=b)
    lam = d.icdf(t64([u]))
    assert_close(d.cdf(lam), t64([u]), atol=1e-11, rtol=1e-9)
    # P(T > t) = P(1 − T < 1 − t), with 1 − t = sigmoid(λ/2) computed without rounding t first
    want = scipy.stats.beta(b, a).cdf(float(torch.sigmoid(lam / 2)[0]))
    assert float(d.cdf(lam)[0]) == pytest.approx(want, abs=1e-11, rel=1e-9)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("logit_normal", {"std": 0.0}, "std"),
        ("logit_normal", {"std": -1.0}, "std"),
        ("logit_normal", {"mean": math.inf}, "mean"),
        ("lognormal_sigma", {"p_std": 0.0}, "p_std"),
        ("normal_logsnr", {"std": -2.0}, "std"),
        ("beta", {"a": 0.0}, "a"),
        ("beta", {"b": -1.0}, "b"),
        ("laplace", {"b": 0.0}, "b"),
        ("cauchy", {"gamma": 0.0}, "gamma"),
        ("uniform_logsnr", {"logsnr_min": 1.0, "logsnr_max": 1.0}, "logsnr_min"),
        ("uniform_logsnr", {"logsnr_max": 1.0}, "logsnr_min"),
        ("uniform_logsnr", {"logsnr_min": -math.inf, "logsnr_max": 1.0}, "logsnr_min"),
        ("uniform_t", {}, "schedule"),
        ("uniform_t", {"schedule": "flow"}, "schedule"),
        ("sigmoid_t", {"weight": math.nan}, "weight"),
        ("lognormal_alpha", {"std": 0.0}, "std"),
        ("shifted", {"base": None}, "base"),
        ("shifted", {"base": density("cosmap"), "factor": 0.0}, "factor"),
        ("rescaled_t", {"base": density("cosmap"), "t_min": 0.5, "t_max": 0.5}, "t_min"),
        ("flow_time_atoms", {"times": (0.5, 0.5), "weights": (1, 1)}, "apart"),
        ("flow_time_atoms", {"times": (0.5,), "weights": (0,)}, "weights"),
        ("flow_time_atoms", {"times": (1.5,), "weights": (1,)}, "times"),
        ("rescaled_t", {"base": density("cosmap"), "t_max": math.nan}, "t_max"),
        ("logit_normal", {"scale": 1.0}, "unknown parameter"),
        ("no_such_density", {}, "valid names"),
    ],
)
def test_bad_parameters_raise_clear_errors(name, kw, match):
    with pytest.raises(ValueError, match=match):
        density(name, **kw)


def test_bad_inputs_raise():
    d = density("logit_normal")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d.icdf(t64([0.5, 1.5]))
    with pytest.raises(ValueError, match="NaN"):
        d.log_prob(t64([math.nan]))
    with pytest.raises(ValueError, match="positive integer"):
        d.sample(0)


def test_registry_has_the_agreed_names():
    names = ["uniform_t", "logit_normal", "mode", "cosmap", "lognormal_sigma", "laplace", "cauchy", "beta",
             "uniform_logsnr", "normal_logsnr", "sigmoid_t", "inverted_parabola", "truncated", "mixture"]
    for name in names:
        assert name in DENSITIES


def test_uniform_t_under_a_discrete_ddpm_table():
    sched = schedule("ddpm")
    d = density("uniform_t", schedule=sched)
    u = t64([0.001, 0.1, 0.5, 0.9, 0.999])
    assert_close(d.cdf(d.icdf(u)), u)
    assert_close(d.icdf(u), sched.logsnr(1 - u))
    x = d.sample(2000, generator=torch.Generator().manual_seed(5))
    assert scipy.stats.kstest(x.numpy(), lambda v: d.cdf(t64(v)).numpy()).pvalue > 1e-3
    # p(λ) = 1/|dλ/dt| on the table's λ range, 0 below it
    lam = sched.logsnr(t64([0.2, 0.5, 0.8]))
    assert_close(d.prob(lam), 1 / sched.dlogsnr_dt(t64([0.2, 0.5, 0.8])).abs())
    assert float(d.prob(t64([sched.logsnr_min - 1.0]))[0]) == 0.0
