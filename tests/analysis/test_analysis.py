"""Effective weightings W = p·w: closed forms (Kingma & Gao 2023, table 1), summaries, comparisons."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.analysis import (
    Comparison,
    alignment,
    compare,
    effective_weighting,
    logsnr_grid,
)
from noiselevels.schedules import schedule
from noiselevels.training.densities import density
from noiselevels.training.weightings import in_units, weighting


def inside_(x):
    return (x >= -2) & (x <= 2)


LAM = torch.linspace(-12.0, 12.0, 481, dtype=torch.float64)


def test_eps_cosine_uniform_t_is_sech():
    W = effective_weighting(density("uniform_t", schedule=schedule("cosine")), weighting("constant"))
    assert_close(W(LAM), 1.0 / torch.cosh(LAM / 2) / (2 * math.pi))


def test_v_cosine_uniform_t_is_exp():
    w = in_units(weighting("constant"), "v", process="vp")
    W = effective_weighting(density("uniform_t", schedule=schedule("cosine")), w)
    assert_close(W(LAM), torch.exp(-LAM / 2) / math.pi)


def test_rectified_flow_uniform_t():
    d = density("uniform_t", schedule=schedule("flow"))
    assert_close(d.prob(LAM), 0.125 / torch.cosh(LAM / 4) ** 2)
    W = effective_weighting(d, in_units(weighting("constant"), "flow", process="flow"))
    assert_close(W(LAM), 0.5 * torch.exp(-LAM / 2))


def test_edm():
    W = effective_weighting(
        density("lognormal_sigma", p_mean=-1.2, p_std=1.2), weighting("edm", sigma_data=0.5)
    )
    normal = torch.exp(-0.5 * ((LAM - 2.4) / 2.4) ** 2) / (2.4 * math.sqrt(2 * math.pi))
    assert_close(W(LAM), normal * (torch.exp(-LAM) + 0.25) / 0.25)


def test_parts_and_zero_outside_support():
    d = density("uniform_logsnr", logsnr_min=-2.0, logsnr_max=2.0)
    W = effective_weighting(d, weighting("snr_gamma", gamma=5.0))
    p, w, eff = W.parts(LAM)
    assert_close(p, torch.where(inside_(LAM), torch.full_like(LAM, 0.25), torch.zeros_like(LAM)))
    inside = (LAM >= -2) & (LAM <= 2)
    assert_close(eff, torch.where(inside, 0.25 * 5.0 * torch.exp(-LAM), torch.zeros_like(LAM)))
    assert_close(w, 5.0 * torch.exp(-LAM))


def test_summary_symmetric_and_monotone():
    s = effective_weighting(
        density("uniform_t", schedule=schedule("cosine")), weighting("constant")
    ).summary()
    assert abs(s.median) < 1e-6
    assert s.interval[0] == pytest.approx(-s.interval[1], abs=1e-6)
    assert s.peak == pytest.approx(0.0, abs=1e-9)
    assert not s.monotone
    assert sum(s.bands.values()) == pytest.approx(1.0)
    assert s.bands["noisy"] == pytest.approx(s.bands["clean"], abs=1e-9)
    assert s.density_median == pytest.approx(0.0, abs=1e-6)
    rf = effective_weighting(
        density("uniform_t", schedule=schedule("flow")),
        in_units(weighting("constant"), "flow", process="flow"),
    ).summary()
    assert rf.monotone  # Kingma & Gao: RF + uniform t is an ELBO mixture
    # exact 10 % / 90 % quantiles of ½e^(−λ/2) on [−10, 10]: F(λ) = (e^5 − e^(−λ/2))/(e^5 − e^(−5))
    a, b = math.exp(5), math.exp(-5)
    for q, got in ((0.1, rf.interval[0]), (0.5, rf.median), (0.9, rf.interval[1])):
        assert got == pytest.approx(-2 * math.log(a - q * (a - b)), abs=2e-3)
    assert rf.lines()  # prints


def test_mass_is_integral():
    # ∫ sech(λ/2)/(2π) over [−10, 10] = (2/π)·atan(sinh(5))... = (4/(2π))·atan(sinh(λ/2)) evaluated
    W = effective_weighting(density("uniform_t", schedule=schedule("cosine")), weighting("constant"))
    exact = 2.0 / math.pi * math.atan(math.sinh(5.0))
    assert W.mass() == pytest.approx(exact, rel=1e-5)
    c = W.normalized()
    assert float(torch.trapezoid(c.effective, c.logsnr)) == pytest.approx(1.0, rel=1e-9)


def test_compare_identical_is_zero():
    a = (density("logit_normal", mean=0.3, std=1.1), weighting("min_snr", gamma=5.0))
    c = compare(a, a)
    assert isinstance(c, Comparison)
    assert c.tv == 0 and c.js == 0 and c.kl_ab == 0 and c.kl_ba == 0 and c.tv_density == 0
    assert c.mass_ratio == pytest.approx(1.0)
    assert c.median_shift == 0 and c.shift_factor == 1
    assert "same" in c.verdict()


def test_compare_shift_and_symmetry():
    a = (density("logit_normal", mean=0.0, std=1.0), weighting("constant"))
    b = (density("logit_normal", mean=math.log(3.0), std=1.0), weighting("constant"))
    ab, ba = compare(a, b), compare(b, a)
    assert ab.tv == pytest.approx(ba.tv, abs=1e-12)
    assert ab.js == pytest.approx(ba.js, abs=1e-12)
    assert ab.kl_ab == pytest.approx(ba.kl_ba, abs=1e-12)
    # a flow shift by s = 3 moves λ by −2·log 3
    assert ab.median_shift == pytest.approx(-2 * math.log(3.0), abs=1e-3)
    assert ab.shift_factor == pytest.approx(3.0, rel=1e-3)
    # TV of two normals N(0, 2²), N(−2·log 3, 2²): 2Φ(|Δ|/(2·2)) − 1
    d = 2 * math.log(3.0) / 4.0
    exact = math.erf(d / math.sqrt(2))
    assert ab.tv == pytest.approx(exact, abs=1e-4)
    lines = ab.lines("kohya", "ai-toolkit")
    assert any("flow shift of s = 3" in s for s in lines)


def test_compare_disjoint():
    a = (density("uniform_logsnr", logsnr_min=-8.0, logsnr_max=-4.0), weighting("constant"))
    b = (density("uniform_logsnr", logsnr_min=4.0, logsnr_max=8.0), weighting("constant"))
    c = compare(a, b)
    assert c.tv == pytest.approx(1.0, abs=1e-3)
    assert c.js == pytest.approx(1.0, abs=1e-2)
    assert c.kl_ab == math.inf


@settings(max_examples=15, deadline=None)
@given(
    m1=st.floats(-1.5, 1.5),
    s1=st.floats(0.3, 2.0),
    m2=st.floats(-1.5, 1.5),
    s2=st.floats(0.3, 2.0),
    g=st.floats(0.5, 10.0),
)
def test_compare_properties(m1, s1, m2, s2, g):
    a = (density("logit_normal", mean=m1, std=s1), weighting("min_snr", gamma=g))
    b = (density("logit_normal", mean=m2, std=s2), weighting("constant"))
    ab, ba = compare(a, b, n=401), compare(b, a, n=401)
    assert 0.0 <= ab.tv <= 1.0 and 0.0 <= ab.js <= 1.0
    assert ab.tv == pytest.approx(ba.tv, abs=1e-12)
    assert ab.js == pytest.approx(ba.js, abs=1e-12)
    assert compare(a, a, n=401).tv == 0.0


def test_alignment():
    d = density("logit_normal", mean=0.0, std=1.0)  # λ ~ N(0, 2²)
    al = alignment(d, logsnrs=torch.tensor([-10.0, 0.0, 10.0]), tail=0.01)
    assert_close(
        al.quantiles,
        0.5 * (1 + torch.erf(torch.tensor([-5.0, 0.0, 5.0], dtype=torch.float64) / math.sqrt(2))),
    )
    assert al.fraction_noisy_tail == pytest.approx(1 / 3)
    assert al.fraction_clean_tail == pytest.approx(1 / 3)
    assert al.fraction_outside == pytest.approx(2 / 3)
    assert al.relative_density[1] == pytest.approx(1.0)
    # VE sigmas with the trailing 0 (no model call there) → λ = +inf is dropped
    al2 = alignment(d, sigmas=torch.tensor([math.exp(5.0), 1.0, 0.0]))
    assert_close(al2.logsnr, torch.tensor([-10.0, 0.0], dtype=torch.float64))
    assert len(al2.lines()) == 2  # a density on the whole line: nothing is outside its range
    assert al.support == (-math.inf, math.inf) and al.fraction_unseen == 0.0


def test_alignment_counts_levels_outside_a_bounded_training_range():
    """uniform_t under a discrete table: levels noisier than the table's noisiest entry were never trained;
    the entry itself is inside."""
    sched = schedule("ddpm", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    d = density("uniform_t", schedule=sched)
    lam_min = float(sched.logsnr_table().min())
    levels = torch.tensor([lam_min - 1.0, lam_min - 1e-3, lam_min, 0.0], dtype=torch.float64)
    al = alignment(d, logsnrs=levels)
    assert al.support[0] == pytest.approx(lam_min, abs=1e-12)
    assert al.fraction_unseen == pytest.approx(2 / 4)
    assert al.lines()[-1].startswith("2 of 4 sampler levels are outside the training range")


def test_errors():
    W = effective_weighting(density("logit_normal"), weighting("constant"))
    with pytest.raises(ValueError, match="logsnr_max must be > logsnr_min"):
        W.grid(5.0, -5.0)
    with pytest.raises(ValueError, match="grid points"):
        logsnr_grid(-1.0, 1.0, 2)
    with pytest.raises(ValueError, match="tail must be in"):
        alignment(density("logit_normal"), logsnrs=torch.zeros(2), tail=0.7)
    with pytest.raises(ValueError, match="exactly one"):
        alignment(density("logit_normal"), logsnrs=torch.zeros(2), sigmas=torch.ones(2))
    with pytest.raises(ValueError, match="must be a noiselevels Density"):
        effective_weighting("logit_normal", weighting("constant"))
    with pytest.raises(ValueError, match="EffectiveWeighting, a NoiseConfig"):
        compare(1, W)
    with pytest.raises(ValueError, match="mass"):
        effective_weighting(
            density("uniform_logsnr", logsnr_min=20.0, logsnr_max=30.0), weighting("constant")
        ).summary()
