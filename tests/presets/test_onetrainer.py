"""OneTrainer presets against ``ref_onetrainer`` (a numpy re-implementation written from OneTrainer's source):
each ``timestep_distribution`` × model (flow, eps, v) × shift / noising-strength settings, KS ≤ 0.01 between
200k reference timesteps and the preset's exact cdf; each loss weight equal in ε units to 1e-6."""

import math

import numpy as np
import pytest
import ref_onetrainer as ref
import torch

from noiselevels.presets import preset

N = 200_000
DISTS = ("UNIFORM", "LOGIT_NORMAL", "HEAVY_TAIL", "BETA", "COS_MAP", "SIGMOID", "INVERTED_PARABOLA")
# (noising_weight, noising_bias) per distribution: the tool's defaults (0, 0) and one non-trivial pair
PARAMS = {
    "UNIFORM": [(0.0, 0.0)],
    "LOGIT_NORMAL": [(0.0, 0.0), (0.5, -0.3)],
    "HEAVY_TAIL": [(0.0, 0.0), (1.29, 0.0)],
    "BETA": [(0.0, 0.0), (0.6, 1.0), (1.0, 2.5), (2.0, 3.0)],
    "COS_MAP": [(0.0, 0.0)],
    "SIGMOID": [(0.0, 0.0), (3.0, 0.1)],
    "INVERTED_PARABOLA": [(0.0, 0.0), (6.0, -0.1)],
}
SETTINGS = [  # (model, extra keyword arguments of the preset / the sampler)
    ("flow", {}),
    ("flow", {"timestep_shift": 3.0}),
    ("flow", {"timestep_shift": 0.5, "min_noising_strength": 0.2, "max_noising_strength": 0.9}),
    ("eps", {}),
    ("v", {"timestep_shift": 2.0, "min_noising_strength": 0.1}),
]
CASES = [
    (d, wb, m, kw)
    for d in DISTS
    for wb in PARAMS[d]
    for m, kw in SETTINGS
    if not (d == "BETA" and wb == (0.0, 0.0) and kw == {"timestep_shift": 3.0})  # the tool crashes, below
]


def ks_discrete(cfg, draws, model):
    """The exact KS distance between the reference's integer timesteps (as λ) and the preset's cdf: the sup
    over λ is reached at the atoms λ_i, from either side (cdf(λ_i) = P(i' > i), the cdf just above λ_i is
    cdf at the cell's clean end t = i/T = P(i' ≥ i))."""
    counts = np.bincount(draws, minlength=ref.T) / draws.size
    emp_ge = np.cumsum(counts[::-1])[::-1]  # P(i' ≥ i)
    emp_gt = emp_ge - counts
    lam_i = torch.as_tensor(ref.logsnr_of_timestep(np.arange(ref.T), model))
    lam_edge = cfg.schedule.logsnr(torch.arange(ref.T, dtype=torch.float64) / ref.T)
    model_gt = cfg.density.cdf(lam_i).numpy()
    model_ge = cfg.density.cdf(lam_edge).numpy()
    return max(np.abs(emp_gt - model_gt).max(), np.abs(emp_ge - model_ge).max())


def _sampler_kw(kw):
    out = {k: v for k, v in kw.items() if k != "timestep_shift"}
    out["shift"] = kw.get("timestep_shift", 1.0)
    return out


@pytest.mark.parametrize(("dist", "wb", "model", "kw"), CASES)
def test_timesteps_match_the_tool(dist, wb, model, kw):
    w, b = wb
    cfg = preset(f"onetrainer:{dist.lower()}", noising_weight=w, noising_bias=b, model=model, **kw)
    draws = ref.draw_timesteps(np.random.default_rng(12), N, dist, w, b, **_sampler_kw(kw))
    assert ks_discrete(cfg, draws, model) <= 0.01


def test_dynamic_timestep_shifting():
    cfg = preset("onetrainer:logit_normal", dynamic_timestep_shifting=True, image_seq_len=1024)
    s = ref.flux_dynamic_shift(1024)
    assert cfg.density.timestep_shift == pytest.approx(s, rel=1e-12)
    draws = ref.draw_timesteps(np.random.default_rng(3), N, "LOGIT_NORMAL", shift=s)
    assert ks_discrete(cfg, draws, "flow") <= 0.01
    assert preset(
        "onetrainer:uniform", dynamic_timestep_shifting=True, image_seq_len=4096
    ).density.timestep_shift == (pytest.approx(math.exp(1.15), rel=1e-12))


@pytest.mark.parametrize(
    ("model", "fn", "strength"),
    [
        ("flow", "CONSTANT", 5.0),
        ("flow", "SIGMA", 5.0),
        ("eps", "CONSTANT", 5.0),
        ("v", "CONSTANT", 5.0),
        ("eps", "MIN_SNR_GAMMA", 5.0),
        ("v", "MIN_SNR_GAMMA", 1.0),
        ("eps", "DEBIASED_ESTIMATION", 5.0),
        ("v", "DEBIASED_ESTIMATION", 5.0),
        ("eps", "P2", 1.0),
        ("v", "P2", 0.5),
    ],
)
def test_loss_weights_match_the_tool(model, fn, strength):
    i = np.arange(ref.T - 1) if model == "flow" else np.arange(ref.T)  # flow i = 999 is λ = −∞
    lam = ref.logsnr_of_timestep(i, model)
    want = ref.to_eps_units(ref.loss_weight(i, fn, strength, model), lam, model)
    for dist in DISTS:
        cfg = preset(
            f"onetrainer:{dist.lower()}", loss_weight_fn=fn, loss_weight_strength=strength, model=model
        )
        got = cfg.weighting(torch.as_tensor(lam)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_p2_for_v_adds_one_to_the_snr():
    lam = torch.linspace(-6.0, 6.0, 25, dtype=torch.float64)
    snr = lam.exp()
    got = preset("onetrainer:uniform", loss_weight_fn="P2", loss_weight_strength=1.0, model="v").weighting(
        lam
    )
    torch.testing.assert_close(got, (1 + 1 / snr) / (2 + snr))  # (2 + SNR)^−1 on the v loss


@pytest.mark.parametrize("fn", ["MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "P2"])
def test_snr_weights_refused_for_flow_models(fn):
    with pytest.raises(
        ValueError, match=f"Loss weight function {fn} not implemented for flow matching models"
    ):
        preset("onetrainer:uniform", loss_weight_fn=fn)


def test_bad_parameters_refused():
    with pytest.raises(ValueError, match="Loss weight function SIGMA not implemented for diffusion models"):
        preset("onetrainer:uniform", loss_weight_fn="SIGMA", model="eps")
    with pytest.raises(ValueError, match="unknown loss_weight_fn 'sigma'"):
        preset("onetrainer:uniform", loss_weight_fn="sigma")
    with pytest.raises(ValueError, match="min_noising_strength"):
        preset("onetrainer:uniform", min_noising_strength=0.5, max_noising_strength=0.5)
    with pytest.raises(ValueError, match="no positive weight"):
        preset("onetrainer:inverted_parabola", noising_weight=100.0, noising_bias=2.0)
    with pytest.raises(ValueError, match="unknown model 'x0'"):
        preset("onetrainer:uniform", model="x0")
    with pytest.raises(ValueError, match="flow models only"):
        preset("onetrainer:uniform", dynamic_timestep_shifting=True, model="eps")


def test_sigmoid_applies_the_inverse_shift_twice():
    """Line 238's quirk: with shift s the sigmoid sees the inverse shift applied twice; a single inverse
    shift would be a different distribution (KS ≫ 0.01 against the tool)."""
    s, w = 3.0, 8.0
    q = ref.multinomial_weights("SIGMOID", w, 0.0, s, 1000).astype(np.float64)
    lin = np.linspace(0.0, 1.0, 1000)
    once = lin / (s - s * lin + lin)
    single = 1 / (1 + np.exp(-w * (once - 0.5))) * s / (s + lin - lin * s) ** 2
    p = preset("onetrainer:sigmoid", noising_weight=w, timestep_shift=s).density.probs.numpy()
    np.testing.assert_allclose(p, q / q.sum(), rtol=1e-5)
    assert np.abs(np.cumsum(p) - np.cumsum(single / single.sum())).max() > 0.1


def test_beta_defaults_are_the_tools():
    p = preset("onetrainer:beta").density.probs.numpy()  # Beta(1e-4, 1e-4): half on each end timestep
    assert p[0] == pytest.approx(0.5, abs=1e-3) and p[-1] == pytest.approx(0.5, abs=1e-3)


def test_beta_defaults_with_a_shift_index_past_the_table():
    """Beta(1e-4, 1e-4) puts ~half its draws within float32 rounding of u = 1; with shift 3 the tool's
    float32 shift rounds some of them to timestep 1000, one past its 1000-entry table (IndexError in
    OneTrainer). The preset keeps them on the last timestep (999)."""
    with pytest.raises(IndexError):
        ref.draw_timesteps(np.random.default_rng(12), N, "BETA", 0.0, 0.0, shift=3.0)
