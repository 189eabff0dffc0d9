"""SimpleTuner presets against a numpy re-implementation of the tool's sampling (ref_simpletuner.py):
KS ≤ 0.01 over 200k draws, pmf over integer timesteps and loss weights to 1e-6."""

import math

import numpy as np
import pytest
import torch

from noiselevels.presets import preset
from noiselevels.presets.simpletuner import flow_shift, timestep_pmf
from tests.presets import ref_simpletuner as ref

N = 200_000
LAM = torch.linspace(-9.0, 9.0, 181, dtype=torch.float64)
FLOW_F = (1 + torch.exp(-LAM / 2)) ** 2  # flow loss → ε units


def _cdf(cfg):
    return lambda x: cfg.density.cdf(torch.from_numpy(x)).numpy()


FLOW_CASES = [
    ("simpletuner:sigmoid", "sigmoid", {}),
    ("simpletuner:sigmoid", "sigmoid", {"flow_sigmoid_scale": 1.5, "timestep_sampling_offset": 0.4}),
    ("simpletuner:sigmoid", "sigmoid", {"flow_schedule_shift": 0}),
    (
        "simpletuner:sigmoid",
        "sigmoid",
        {"flow_schedule_shift": 0, "flow_schedule_auto_shift": True, "image_seq_len": 4096},
    ),
    ("simpletuner:uniform", "uniform", {}),
    (
        "simpletuner:uniform",
        "uniform",
        {"flow_schedule_shift": None, "flow_schedule_auto_shift": True, "image_seq_len": 1024},
    ),
    ("simpletuner:beta", "beta", {}),
    (
        "simpletuner:beta",
        "beta",
        {"flow_beta_schedule_alpha": 0.7, "flow_beta_schedule_beta": 1.3, "flow_schedule_shift": 1.0},
    ),
]


@pytest.mark.parametrize(("name", "sampler", "kw"), FLOW_CASES)
def test_flow_presets_match_the_tool(name, sampler, kw):
    cfg = preset(name, **kw)
    sig = ref.draw_flow_sigmas(np.random.default_rng(0), N, sampler, **kw)
    assert ref.ks(ref.flow_lambda(sig), _cdf(cfg)) <= 0.01
    torch.testing.assert_close(cfg.weighting(LAM), FLOW_F, rtol=1e-6, atol=0)  # plain flow loss


def test_fast_schedule_matches_the_tool():
    """flux_fast_schedule's four σ atoms: the preset's mass in each atom's cell (σ − 0.005, σ] equals the
    tool's frequency (100k draws, within 0.01) and is the tool's probability exactly."""
    cfg = preset("simpletuner:fast")
    sig = ref.draw_fast_sigmas(np.random.default_rng(0), N)
    for s in (1.0, 0.75, 0.5, 0.25):
        top = -math.inf if s == 1 else float(ref.flow_lambda(np.array(s)))
        cell = (top, float(ref.flow_lambda(np.array(s - 5e-3))))
        lo, hi = torch.tensor(cell, dtype=torch.float64).reshape(2, 1)
        mass = float(cfg.density.cdf(hi.reshape(1)) - cfg.density.cdf(lo.reshape(1)))
        assert abs(mass - float(np.mean(sig == s))) <= 0.01
        assert mass == pytest.approx(0.7 if s == 1 else 0.1, abs=1e-12)
    torch.testing.assert_close(cfg.weighting(LAM), FLOW_F, rtol=1e-6, atol=0)


def test_flow_shift_defaults_and_precedence():
    assert flow_shift() == 3.0  # the field registry's default
    assert flow_shift(3.0, True, 4096) == 3.0  # a static shift > 0 wins over auto shift
    assert flow_shift(0, False) == 1.0
    assert flow_shift(0, True, 4096) == pytest.approx(math.exp(1.15), rel=1e-12)
    assert flow_shift(0, True, 256) == pytest.approx(math.exp(0.5), rel=1e-12)
    with pytest.raises(ValueError, match="image_seq_len"):
        flow_shift(0, True)
    with pytest.raises(ValueError, match="flow_schedule_shift must be a number >= 0"):
        preset("simpletuner:sigmoid", flow_schedule_shift=-1.0)


def test_sd_table_logsnr_is_the_reference():
    cfg = preset("simpletuner:ddpm")
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    np.testing.assert_allclose(cfg.schedule.logsnr(t).numpy(), ref.sd_logsnr(), rtol=0, atol=1e-6)


BIAS_CASES = [
    {},
    {"timestep_bias_strategy": "later", "timestep_bias_multiplier": 2.0},
    {"timestep_bias_strategy": "earlier", "timestep_bias_multiplier": 3.0, "timestep_bias_portion": 0.3},
    {
        "timestep_bias_strategy": "range",
        "timestep_bias_multiplier": 2.5,
        "timestep_bias_begin": 200,
        "timestep_bias_end": 500,
    },
    {"timestep_bias_strategy": "later", "timestep_bias_multiplier": 2.0, "train_batch_size": 4},
    {
        "timestep_bias_strategy": "range",
        "timestep_bias_multiplier": 3.0,
        "timestep_bias_begin": 100,
        "timestep_bias_end": 700,
        "train_batch_size": 3,
    },
    {
        "timestep_bias_strategy": "earlier",
        "timestep_bias_multiplier": 2.0,
        "train_batch_size": 8,
        "disable_segmented_timestep_sampling": True,
    },
]


def _ref_bias(kw):
    keys = {
        "strategy": "timestep_bias_strategy",
        "multiplier": "timestep_bias_multiplier",
        "begin": "timestep_bias_begin",
        "end": "timestep_bias_end",
        "portion": "timestep_bias_portion",
    }
    return {k: kw[v] for k, v in keys.items() if v in kw}


@pytest.mark.parametrize("kw", BIAS_CASES)
def test_ddpm_timesteps_match_the_tool(kw):
    cfg = preset("simpletuner:ddpm", **kw)
    bsz = kw.get("train_batch_size", 1)
    seg = not kw.get("disable_segmented_timestep_sampling", False)
    ts = ref.draw_timesteps(np.random.default_rng(1), N, bsz, seg, **_ref_bias(kw))
    lam_i = ref.sd_logsnr()
    assert ref.ks(lam_i[ts], _cdf(cfg)) <= 0.01
    # exact: the density's mass on timestep i's cell t ∈ (i/T, (i + 1)/T] is the tool's probability
    edges = torch.from_numpy(np.concatenate([[np.inf], lam_i]))  # λ at t = i/T, i = 0 … T
    cell_mass = (cfg.density.cdf(edges[:-1]) - cfg.density.cdf(edges[1:])).numpy()
    counts = np.bincount(ts, minlength=1000) / len(ts)
    pmf = timestep_pmf(**kw)
    np.testing.assert_allclose(cell_mass, pmf, rtol=0, atol=1e-6)
    assert np.abs(counts - pmf).max() < 5e-4  # the reference draws agree with the exact pmf


def test_segmented_selection_mostly_undoes_the_bias():
    # four segments of 250: each batch position draws its quarter, whatever the multiplier
    pmf = timestep_pmf("later", 10.0, train_batch_size=4)
    assert pmf[750:].sum() == pytest.approx(2500 / 2501 / 4, rel=1e-12)  # segment 0 is 749 … 999
    assert timestep_pmf("later", 10.0)[750:].sum() == pytest.approx(10 * 250 / (10 * 250 + 750))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("snr_gamma", [None, 5.0, 1.0])
def test_ddpm_weights_match_the_tool(prediction_type, snr_gamma):
    cfg = preset("simpletuner:ddpm", snr_gamma=snr_gamma, prediction_type=prediction_type)
    lam = LAM.numpy()
    if snr_gamma is None:
        want = np.ones_like(lam) if prediction_type == "epsilon" else 1 + np.exp(-lam)
    else:
        want = ref.min_snr_eps_weight(lam, snr_gamma, prediction_type)
    np.testing.assert_allclose(cfg.weighting(LAM).numpy(), want, rtol=1e-6, atol=0)
    if snr_gamma:
        legacy = preset("simpletuner:snr_gamma", snr_gamma=snr_gamma, prediction_type=prediction_type)
        np.testing.assert_allclose(legacy.weighting(LAM).numpy(), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"timestep_bias_strategy": "middle"}, "middle"),
        ({"timestep_bias_strategy": "later", "timestep_bias_multiplier": 0.0}, "timestep_bias_multiplier"),
        ({"timestep_bias_portion": 1.5}, "timestep_bias_portion"),
        ({"timestep_bias_strategy": "range", "timestep_bias_begin": -1}, "timestep_bias_begin"),
        ({"timestep_bias_strategy": "range", "timestep_bias_end": 1001}, "timestep_bias_end"),
        ({"train_batch_size": 0}, "train_batch_size"),
        ({"prediction_type": "flow"}, "prediction_type"),
    ],
)
def test_bad_parameters_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        preset("simpletuner:ddpm", **kw)
