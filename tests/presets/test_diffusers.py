"""diffusers example-script presets against a numpy re-implementation of the scripts (ref_diffusers.py)
and against diffusers' own ``training_utils`` functions and scheduler table: KS ≤ 0.01 over 200k draws,
loss weights to 1e-6."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from noiselevels.presets import preset
from tests.presets import ref_diffusers as ref

N = 200_000
LAM = torch.linspace(-9.0, 9.0, 181, dtype=torch.float64)
SIG = torch.sigmoid(-LAM / 2)  # flow σ of λ
FACTOR = {"x0": torch.exp(-LAM), "flow": (1 + torch.exp(-LAM / 2)) ** 2}  # own loss → ε units


def _cdf(cfg):
    return lambda x: cfg.density.cdf(torch.from_numpy(x)).numpy()


def _ks(cfg, sigmas):
    with np.errstate(divide="ignore"):  # σ = 1 is λ = −∞
        return ref.ks(ref.flow_lambda(sigmas), _cdf(cfg))


FLOW_CASES = [
    ("diffusers:sd3", {}, 3.0),
    ("diffusers:sd3", {"logit_mean": 0.5}, 3.0),
    ("diffusers:sd3", {"logit_mean": 1.0}, 3.0),
    ("diffusers:sd3", {"logit_mean": -0.7, "logit_std": 1.3, "shift": 1.0}, 1.0),
    ("diffusers:sd3", {"weighting_scheme": "mode"}, 3.0),
    ("diffusers:sd3", {"weighting_scheme": "mode", "mode_scale": 0.5, "shift": 1.5}, 1.5),
    ("diffusers:sigma_sqrt", {}, 3.0),
    ("diffusers:cosmap", {"shift": 2.0}, 2.0),
    ("diffusers:sigma_sqrt", {"precondition_outputs": False}, 3.0),
    ("diffusers:logit_normal", {}, 3.0),
    ("diffusers:mode", {}, 3.0),
    ("diffusers:flux", {}, 1.0),
    ("diffusers:flux", {"weighting_scheme": "logit_normal", "logit_mean": 0.5}, 1.0),
    ("diffusers:flux", {"weighting_scheme": "mode"}, 1.0),
    ("diffusers:flux", {"weighting_scheme": "cosmap"}, 1.0),
    ("diffusers:none", {}, 1.0),
]


def _scheme(name, kw):
    default = "none" if name in ("diffusers:flux", "diffusers:none") else "logit_normal"
    fixed = name.split(":")[1]
    return kw.get("weighting_scheme", fixed if fixed not in ("sd3", "flux") else default)


def _draw_kw(kw):
    return {k: kw[k] for k in ("logit_mean", "logit_std", "mode_scale") if k in kw}


@pytest.mark.parametrize(("name", "kw", "shift"), FLOW_CASES)
def test_flow_presets_match_the_scripts(name, kw, shift):
    cfg = preset(name, **kw)
    scheme = _scheme(name, kw)
    u = ref.sd3_u(np.random.default_rng(0), N, scheme, **_draw_kw(kw))
    assert _ks(cfg, ref.flow_sigmas(u, shift)) <= 0.01
    units = (
        "flow"
        if name in ("diffusers:flux", "diffusers:none") or not kw.get("precondition_outputs", 1)
        else "x0"
    )
    want = torch.from_numpy(ref.sd3_weight(scheme, SIG.numpy())) * FACTOR[units]
    assert_close(cfg.weighting(LAM), want, rtol=1e-6, atol=0)


@pytest.mark.parametrize(("name", "kw", "shift"), FLOW_CASES)
def test_flow_presets_match_diffusers_itself(name, kw, shift):
    training_utils = pytest.importorskip("diffusers.training_utils")
    from diffusers import FlowMatchEulerDiscreteScheduler

    cfg = preset(name, **kw)
    scheme = _scheme(name, kw)
    # the Flux scheduler config has use_dynamic_shifting: its training table is unshifted
    sched = FlowMatchEulerDiscreteScheduler(shift=shift)
    draw = {"logit_mean": 0.0, "logit_std": 1.0, "mode_scale": 1.29} | _draw_kw(kw)
    g = torch.Generator().manual_seed(0)
    u = training_utils.compute_density_for_timestep_sampling(scheme, N, generator=g, **draw)
    timesteps = sched.timesteps[(u * 1000).long()]
    # get_sigmas: the index of each timestep in the table, then its σ (unique table: searchsorted on −t)
    idx = torch.searchsorted(-sched.timesteps, -timesteps)
    assert torch.equal(sched.timesteps[idx], timesteps)
    sig = sched.sigmas[idx].double().numpy()
    assert _ks(cfg, sig) <= 0.01
    w = training_utils.compute_loss_weighting_for_sd3(scheme, sigmas=SIG).double()
    assert_close(w, torch.from_numpy(ref.sd3_weight(scheme, SIG.numpy())), rtol=1e-6, atol=0)


def test_logit_mean_sign_and_mode_symmetry():
    # u = sigmoid(n) indexes the descending table: σ = shift(1 − u) = logit-normal(−m + log s) over σ
    lam0 = torch.tensor([0.0], dtype=torch.float64)
    cfg = preset("diffusers:sd3", logit_mean=1.0, shift=1.0)
    # P(σ > ½) = P(1 − u > ½) = P(n < 0) = Φ(−m): noisier than ½ is λ < 0
    assert float(cfg.density.cdf(lam0)) == pytest.approx(0.5 * math.erfc(1.0 / math.sqrt(2)), rel=1e-9)
    # mode: 1 − f(v) = f(1 − v), so u and 1 − u have one law
    v = np.linspace(0.0, 1.0, 1001)
    fv = 1 - v - 1.29 * (np.cos(math.pi * v / 2) ** 2 - 1 + v)
    fw = 1 - v[::-1] - 1.29 * (np.cos(math.pi * v[::-1] / 2) ** 2 - 1 + v[::-1])
    np.testing.assert_allclose(1 - fv, fw, atol=1e-12)


def test_scripts_refuse_what_they_refuse():
    with pytest.raises(ValueError, match=r"not accepted by train_dreambooth_lora_sd3\.py"):
        preset("diffusers:sd3", weighting_scheme="none")
    with pytest.raises(ValueError, match="unknown weighting_scheme 'uniform'"):
        preset("diffusers:flux", weighting_scheme="uniform")
    with pytest.raises(ValueError, match="shift"):
        preset("diffusers:sd3", shift=0.0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("snr_gamma", [5.0, 1.0])
def test_snr_gamma_matches_the_script(prediction_type, snr_gamma):
    cfg = preset("diffusers:snr_gamma", snr_gamma=snr_gamma, prediction_type=prediction_type)
    timesteps = np.random.default_rng(0).integers(0, ref.T, N)  # torch.randint(0, T)
    assert ref.ks(ref.ddpm_lambda(timesteps), _cdf(cfg)) <= 0.01
    # the preset's table gives each integer timestep i its λ at t = (i + 1)/T
    i = np.arange(ref.T)
    lam = torch.from_numpy(ref.ddpm_lambda(i))
    t = torch.from_numpy((i + 1) / ref.T)
    assert_close(cfg.schedule.logsnr(t), lam, rtol=1e-9, atol=1e-9)
    own = torch.from_numpy(ref.snr_gamma_weight(i, snr_gamma, prediction_type))
    factor = 1 + torch.exp(-lam) if prediction_type == "v_prediction" else torch.ones_like(lam)
    assert_close(cfg.weighting(lam), own * factor, rtol=1e-6, atol=0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_plain_ddpm_matches_the_script(prediction_type):
    """train_text_to_image.py without --snr_gamma: randint(0, T) timesteps, the target's plain MSE
    (F.mse_loss(model_pred, target)), i.e. w_ε = 1 for ε and the v-MSE factor (SNR + 1)/SNR for v."""
    cfg = preset("diffusers:ddpm", prediction_type=prediction_type)
    timesteps = np.random.default_rng(1).integers(0, ref.T, N)
    assert ref.ks(ref.ddpm_lambda(timesteps), _cdf(cfg)) <= 0.01
    lam = torch.from_numpy(ref.ddpm_lambda(np.arange(ref.T)))
    want = 1 + torch.exp(-lam) if prediction_type == "v_prediction" else torch.ones_like(lam)
    assert_close(cfg.weighting(lam), want, rtol=1e-6, atol=0)


def test_snr_matches_diffusers_compute_snr():
    training_utils = pytest.importorskip("diffusers.training_utils")
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    i = torch.arange(ref.T)
    snr = training_utils.compute_snr(sched, i).double()  # float32 table
    assert_close(snr, torch.from_numpy(np.exp(ref.ddpm_lambda(i.numpy()))), rtol=1e-4, atol=0)
