"""Tests of noiselevels.training.adaptive: unbiasedness and variance reduction of the loss importance
sampler, the exact proposal density, EDM2 uncertainty converging to log E[loss], CDCD time warping
following dL/dλ, the learned schedule's monotonicity, checkpoint/resume, bad settings, the
AdaptiveSampler contract and the package's layer. (The trainer's [adaptive] section and load_adaptive:
tests/runs/test_adaptive_runs.py.)"""

from __future__ import annotations

import ast
import json
import math
import pathlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import noiselevels.training.adaptive as adaptive_pkg
from noiselevels.catalog import from_dict
from noiselevels.sampling.spacings import spacing
from noiselevels.schedules import schedule
from noiselevels.training.adaptive import (
    AdaptiveSampler,
    LearnedSchedule,
    LearnedScheduleSampler,
    LossImportanceSampler,
    PiecewiseConstant,
    TimeWarp,
    UncertaintySampler,
    UncertaintyWeighting,
    from_config,
)
from noiselevels.training.densities import density
from noiselevels.training.objective import Objective
from noiselevels.training.weightings import weighting

pytestmark = pytest.mark.usefixtures("one_thread")

F64 = torch.float64


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def loss_curve(lam):
    """A synthetic mean ε-unit loss over λ: ≈ 0 when noisy, → 1 when clean (like a trained ε-model)."""
    return torch.sigmoid(lam / 2 - 1.0) + 0.02


def noisy_loss(lam, g):
    return loss_curve(lam) * (0.5 + torch.rand(lam.shape, generator=g, dtype=lam.dtype))


def quadrature(fn, lo=-60.0, hi=60.0, n=400_001):
    x = torch.linspace(lo, hi, n, dtype=F64)
    return float(torch.trapezoid(fn(x), x))


def trained_sampler(target, w, steps=200, batch=256, seed=0, **kw):
    s = LossImportanceSampler(target, w, **kw)
    g = gen(seed)
    for _ in range(steps):
        lam, _ = s.sample(batch, generator=g)
        s.update(lam, noisy_loss(lam, g))
    return s


TARGETS = [
    (density("uniform_t", schedule=schedule("cosine")), weighting("constant")),
    (density("logit_normal", mean=0.0, std=1.0), weighting("min_snr", gamma=5.0)),
]


# ----------------------------------------------------------------------------------------------
# the loss importance sampler
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target, w", TARGETS)
def test_importance_weighted_mean_is_unbiased(target, w):
    s = trained_sampler(target, w, steps=100)
    exact = quadrature(lambda x: target.prob(x) * w(x).nan_to_num(0.0) * loss_curve(x))
    g = gen(1)
    lam, iw = s.sample(200_000, generator=g)
    vals = w(lam) * iw * noisy_loss(lam, g)  # the objective's per-sample weight W/q times the loss
    est, se = float(vals.mean()), float(vals.std() / math.sqrt(vals.numel()))
    assert abs(est - exact) < 4 * se, (est, exact, se)


@pytest.mark.parametrize("target, w", TARGETS)
def test_importance_sampler_reduces_the_variance(target, w):
    s = trained_sampler(target, w, steps=100, statistic="rms")
    g = gen(2)
    n = 100_000
    lam_p = target.sample(n, generator=g)
    fixed = w(lam_p) * noisy_loss(lam_p, g)
    lam_q, iw = s.sample(n, generator=g)
    adapted = w(lam_q) * iw * noisy_loss(lam_q, g)
    ratio = float(adapted.var() / fixed.var())
    assert ratio < 0.5, ratio


def test_objective_uses_weight_W_over_q_exactly():
    target, w = TARGETS[1]
    s = trained_sampler(target, w, steps=20)
    obj = Objective(process="vp", parameterization="v", density=target, weighting=w, sampler=s)

    def model(z, lam):
        return torch.zeros_like(z)

    out = obj(model, torch.randn(64, 2, 3, generator=gen(3)), generator=gen(4))
    q = s.density()
    expected = torch.exp(target.log_prob(out.logsnr) + torch.log(w(out.logsnr)) - q.log_prob(out.logsnr))
    torch.testing.assert_close(out.weight, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        out.loss.double(), (out.weight * out.eps_mse.double()).float().double(), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("target, w", TARGETS)
def test_proposal_density_is_exact(target, w):
    s = trained_sampler(target, w, steps=30)
    q = s.density()
    assert quadrature(q.prob) == pytest.approx(1.0, abs=5e-4)  # trapezoid across the bin edges' jumps
    torch.testing.assert_close(
        q.bin_probs.sum() + q.cdf(torch.tensor(-15.0)) + 1 - q.cdf(torch.tensor(15.0)),
        torch.tensor(1.0, dtype=F64),
    )
    u = torch.linspace(0.0, 1.0, 2001, dtype=F64)[1:-1]
    torch.testing.assert_close(q.cdf(q.icdf(u)), u, rtol=0, atol=1e-12)
    x = torch.linspace(-30, 30, 60_001, dtype=F64)
    cdf_num = torch.cumulative_trapezoid(q.prob(x), x) + q.cdf(x[:1])
    torch.testing.assert_close(q.cdf(x[1:]), cdf_num, rtol=0, atol=2e-3)  # kinks at the bin edges
    # outside the range the proposal is the target itself (importance weight 1)
    out = torch.tensor([-40.0, -20.0, 16.0, 30.0], dtype=F64)
    torch.testing.assert_close(q.log_prob(out), target.log_prob(out).to(F64))
    torch.testing.assert_close(s.importance_weight(out), torch.ones(4, dtype=F64))
    # samples pass a KS test against the exact cdf
    from scipy.stats import kstest

    lam = q.sample(4000, generator=gen(5)).numpy()
    assert kstest(lam, lambda v: q.cdf(torch.as_tensor(v, dtype=F64)).numpy()).pvalue > 1e-3
    assert from_dict(json.loads(json.dumps(q.to_dict()))) == q


def test_piecewise_constant_without_tails_and_empty_bins():
    q = PiecewiseConstant(edges=(0.0, 1.0, 2.0, 4.0), masses=(1.0, 0.0, 2.0))
    assert q.support == (0.0, 4.0)
    x = torch.tensor([-1.0, 0.5, 1.5, 3.0, 5.0], dtype=F64)
    torch.testing.assert_close(q.prob(x), torch.tensor([0.0, 1 / 3, 0.0, 1 / 3, 0.0], dtype=F64))
    torch.testing.assert_close(q.cdf(x), torch.tensor([0.0, 1 / 6, 1 / 3, 2 / 3, 1.0], dtype=F64))
    u = torch.tensor([0.0, 1 / 6, 1 / 3, 0.5, 1.0], dtype=F64)
    torch.testing.assert_close(q.icdf(u), torch.tensor([0.0, 0.5, 1.0, 2.5, 4.0], dtype=F64))
    with pytest.raises(ValueError, match="strictly increasing"):
        PiecewiseConstant(edges=(0.0, 0.0), masses=(1.0,))
    with pytest.raises(ValueError, match="positive sum"):
        PiecewiseConstant(edges=(0.0, 1.0), masses=(0.0,))


# ----------------------------------------------------------------------------------------------
# EDM2 uncertainty weighting
# ----------------------------------------------------------------------------------------------
def test_uncertainty_converges_to_log_expected_loss():
    target = density("uniform_logsnr", logsnr_min=-10.0, logsnr_max=10.0)
    w = weighting("min_snr", gamma=5.0)
    s = UncertaintySampler(target, w, lr=0.03, seed=1)
    g = gen(6)
    for i in range(1500):
        if i == 1000:
            s.lr = 0.003  # decay, to average out the gradient noise
        lam, _ = s.sample(256, generator=g)
        s.update(lam, noisy_loss(lam, g))
    grid = torch.linspace(-9.0, 9.0, 37, dtype=F64)
    with torch.no_grad():
        u = s.module(grid)
    expected = torch.log(w(grid) * loss_curve(grid))  # E[noise] = 1
    torch.testing.assert_close(u, expected, rtol=0, atol=0.15)  # min-SNR's kink at λ = log 5 is the worst
    assert float((u - expected).abs().mean()) < 0.05


def test_uncertainty_module_and_objective_weight():
    m = UncertaintyWeighting()
    lam = torch.tensor([-math.inf, -3.0, 0.0, 5.0, math.inf], dtype=F64)
    u = m(lam)
    assert u.shape == (5,) and torch.isfinite(u).all() and (u == 0).all()  # zero-initialised
    with torch.no_grad():
        m.linear.bias.fill_(0.5)
    ell = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=F64)
    torch.testing.assert_close(m.loss(ell, lam), ell * math.exp(-0.5) + 0.5)
    target = density("logit_normal")
    s = UncertaintySampler(target, "constant", module=m)
    obj = Objective(process="vp", parameterization="eps", density=target, sampler=s)
    out = obj(lambda z, lam: torch.zeros_like(z), torch.randn(8, 1, 4, generator=gen(0)), generator=gen(1))
    torch.testing.assert_close(out.weight, torch.full((8,), math.exp(-0.5), dtype=F64))
    with pytest.raises(ValueError, match="features"):
        UncertaintyWeighting(features=0)


# ----------------------------------------------------------------------------------------------
# CDCD time warping
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_time_warp_follows_the_loss_slope(sign):
    lo, hi, floor = -10.0, 10.0, 0.05
    warp = TimeWarp(bins=100, logsnr_min=lo, logsnr_max=hi, floor=floor)

    def curve(x):
        return torch.sigmoid(sign * x / 2)

    g = gen(7)
    for _ in range(300):
        lam, iw = warp.sample(256, generator=g)
        assert (iw == 1).all()
        warp.update(lam, curve(lam))
    q = warp.density()
    u = torch.linspace(0, 1, 1001, dtype=F64)
    torch.testing.assert_close(q.cdf(q.icdf(u)), u, rtol=0, atol=1e-12)

    def exact_cdf(x):  # (1 − floor)·|L(x) − L(lo)|/|L(hi) − L(lo)| + floor·uniform
        span = curve(torch.tensor(hi, dtype=F64)) - curve(torch.tensor(lo, dtype=F64))
        return (1 - floor) * (curve(x) - curve(torch.tensor(lo, dtype=F64))) / span + floor * (x - lo) / (
            hi - lo
        )

    x = torch.linspace(lo, hi, 401, dtype=F64)
    torch.testing.assert_close(q.cdf(x), exact_cdf(x), rtol=0, atol=0.01)
    from scipy.stats import kstest

    lam = q.sample(3000, generator=gen(8)).numpy()
    assert kstest(lam, lambda v: exact_cdf(torch.as_tensor(v, dtype=F64)).numpy()).pvalue > 1e-3
    # the warp as a sampling spacing: quantiles of the warped density
    sig = spacing("from_density", density=q).sigmas(10, sigma_min=0.01, sigma_max=50.0)
    assert sig.shape == (11,) and sig[-1] == 0 and (sig[:-2] > sig[1:-1]).all()
    torch.testing.assert_close(sig[0].double(), torch.tensor(50.0, dtype=F64))


def test_time_warp_starts_uniform():
    warp = TimeWarp(bins=4, logsnr_min=-2.0, logsnr_max=2.0)
    torch.testing.assert_close(
        warp.density().prob(torch.tensor([-1.5, 0.5], dtype=F64)), torch.full((2,), 0.25, dtype=F64)
    )


# ----------------------------------------------------------------------------------------------
# VDM learned schedule
# ----------------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.0, 4.0), lo=st.floats(-20, 0), width=st.floats(0.5, 30))
def test_learned_schedule_is_monotone_for_random_parameters(seed, scale, lo, width):
    net = LearnedSchedule(lo, lo + width, hidden=16, seed=seed)
    g = gen(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=F64))
    t = torch.linspace(0, 1, 513, dtype=F64)
    lam, dlam = net.logsnr_and_derivative(t)
    assert (lam[1:] < lam[:-1]).all() and (dlam < 0).all()
    torch.testing.assert_close(lam[[0, -1]], torch.tensor([lo + width, lo], dtype=F64), rtol=1e-12, atol=1e-9)
    sch = net.schedule()
    torch.testing.assert_close(sch.logsnr(t), lam.detach())
    tt = torch.linspace(0.01, 0.99, 33, dtype=F64)
    torch.testing.assert_close(sch.t_of(sch.logsnr(tt)), tt, rtol=0, atol=1e-8)


def test_learned_schedule_derivative_snapshot_and_uniform_t():
    net = LearnedSchedule(-12.0, 9.0, hidden=8, seed=3)
    t = torch.linspace(0.05, 0.95, 19, dtype=F64).requires_grad_(True)
    lam, dlam = net.logsnr_and_derivative(t)
    (auto,) = torch.autograd.grad(lam.sum(), t)
    torch.testing.assert_close(dlam.detach(), auto)
    sch = net.schedule()
    assert from_dict(json.loads(json.dumps(sch.to_dict()))) == sch
    p = density("uniform_t", schedule=sch)
    assert quadrature(p.prob, -12.0, 9.0, 20_001) == pytest.approx(1.0, abs=1e-6)
    assert (sch.logsnr_min, sch.logsnr_max) == (-12.0, 9.0)


def test_learned_schedule_sampler_is_unbiased_and_lowers_the_variance():
    target = density("uniform_logsnr", logsnr_min=-10.0, logsnr_max=10.0)
    w = weighting("constant")
    s = LearnedScheduleSampler(LearnedSchedule(-10.0, 10.0, hidden=16), target, w, lr=0.05)
    exact = quadrature(lambda x: target.prob(x) * loss_curve(x), -10.0, 10.0)
    g = gen(9)

    def estimate(n=50_000):
        lam, iw = s.sample(n, generator=g)
        v = w(lam) * iw * noisy_loss(lam, g)
        return float(v.mean()), float(v.var())

    m0, v0 = estimate()
    for _ in range(300):
        lam, _ = s.sample(256, generator=g)
        s.update(lam, noisy_loss(lam, g))
    m1, v1 = estimate()
    for m in (m0, m1):
        assert m == pytest.approx(exact, rel=0.02)
    assert v1 < 0.7 * v0, (v0, v1)


# ----------------------------------------------------------------------------------------------
# checkpoint / resume
# ----------------------------------------------------------------------------------------------
def _make(kind):
    target, w = TARGETS[1]
    if kind == "importance":
        return LossImportanceSampler(target, w, bins=20)
    if kind == "uncertainty":
        return UncertaintySampler(target, w, features=16)
    if kind == "timewarp":
        return TimeWarp(bins=20, logsnr_min=-8.0, logsnr_max=8.0)
    return LearnedScheduleSampler(LearnedSchedule(-8.0, 8.0, hidden=8), target, w, bins=20)


def _split_like_the_trainer(state):
    tensors = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    rest = json.loads(json.dumps({k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}))
    return {**rest, **tensors}


@pytest.mark.parametrize("kind", ["importance", "uncertainty", "timewarp", "learned_schedule"])
def test_checkpoint_resume(kind):
    a = _make(kind)
    g = gen(10)
    for _ in range(5):
        lam, _ = a.sample(64, generator=g)
        a.update(lam, noisy_loss(lam, g))
    b = _make(kind)
    b.load_state_dict(_split_like_the_trainer(a.state_dict()))
    ga, gb = gen(11), gen(11)
    for _ in range(3):
        (la, wa), (lb, wb) = a.sample(64, generator=ga), b.sample(64, generator=gb)
        torch.testing.assert_close(la, lb, rtol=0, atol=0)
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)
        loss = noisy_loss(la, gen(12))
        a.update(la, loss)
        b.update(lb, loss)
    json.dumps(a.profile_overlay())
    json.dumps(a.to_dict())


def test_state_of_another_kind_or_size_is_rejected():
    with pytest.raises(ValueError, match="bins"):
        LossImportanceSampler(TARGETS[0][0], bins=10).load_state_dict(_make("importance").state_dict())
    with pytest.raises(ValueError, match="missing"):
        _make("timewarp").load_state_dict(_make("uncertainty").state_dict())


# ----------------------------------------------------------------------------------------------
# bad settings
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"bins": 1}, "bins must be an integer >= 2"),
        ({"bins": 2.5}, "bins must be an integer >= 2"),
        ({"decay": 0.0}, r"decay must be in \(0.0, 1.0\)"),
        ({"decay": 1.0}, r"decay must be in \(0.0, 1.0\)"),
        ({"decay": -0.5}, r"decay must be in \(0.0, 1.0\)"),
        ({"logsnr_min": 3.0, "logsnr_max": 3.0}, "λ range is empty"),
        ({"logsnr_min": 5.0, "logsnr_max": -5.0}, "λ range is empty"),
        ({"logsnr_min": -math.inf}, "finite"),
        ({"floor": 0.0}, r"floor must be in \(0, 1\]"),
    ],
)
def test_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        LossImportanceSampler(TARGETS[0][0], **kw)
    with pytest.raises(ValueError, match=match):
        TimeWarp(**kw)


def test_bad_config_and_targets():
    target = TARGETS[0][0]
    with pytest.raises(ValueError, match="kind must be one of"):
        from_config({"kind": "magic"}, density=target)
    with pytest.raises(ValueError, match=r"unknown .* 'bnis'"):
        from_config({"kind": "importance", "bnis": 3}, density=target)
    with pytest.raises(ValueError, match="needs the objective's density"):
        from_config({"kind": "importance"})
    with pytest.raises(ValueError, match="no weight"):
        LossImportanceSampler(density("uniform_logsnr", logsnr_min=20.0, logsnr_max=30.0), bins=4)
    with pytest.raises(ValueError, match="empty"):
        LearnedSchedule(1.0, -1.0)
    assert isinstance(
        from_config({"kind": "learned_schedule", "hidden": 4, "bins": 8}, density=target),
        LearnedScheduleSampler,
    )
    assert isinstance(from_config({"kind": "timewarp", "bins": 8}), TimeWarp)


def test_bad_section_and_kind_types():
    with pytest.raises(ValueError, match=r"\[adaptive\] must be a table"):
        from_config(["importance"], density=TARGETS[0][0])
    with pytest.raises(ValueError, match="kind must be one of"):
        from_config({"kind": ["importance"]}, density=TARGETS[0][0])
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'hidden' in \[adaptive\] \(kind 'importance'\)"):
        from_config({"kind": "importance", "hidden": 4}, density=TARGETS[0][0])


# ----------------------------------------------------------------------------------------------
# the AdaptiveSampler contract and the package's layer
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["importance", "uncertainty", "timewarp", "learned_schedule"])
def test_every_sampler_is_an_adaptive_sampler(kind):
    assert isinstance(_make(kind), AdaptiveSampler)
    extra = {"hidden": 4} if kind == "learned_schedule" else {}
    assert isinstance(from_config({"kind": kind, **extra}, density=TARGETS[0][0]), AdaptiveSampler)


def test_components_are_not_adaptive_samplers():
    assert not isinstance(UncertaintyWeighting(features=4), AdaptiveSampler)
    assert not isinstance(PiecewiseConstant(edges=(0.0, 1.0), masses=(1.0,)), AdaptiveSampler)
    assert not isinstance(TARGETS[0][0], AdaptiveSampler)


def test_the_package_imports_nothing_above_training():
    """training.adaptive is in the training layer: no import (top level or in a function) of runs,
    config, presets, noise, catalog, analysis, spectral, sampling or the commands."""
    above = "runs config presets noise catalog analysis spectral sampling plots commands cli demo".split()
    files = sorted(pathlib.Path(adaptive_pkg.__file__).parent.glob("*.py"))
    assert len(files) >= 8
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "noiselevels" and len(parts) > 1 and parts[1] in above), (f, name)
