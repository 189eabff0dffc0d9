"""kohya flow presets against tests/presets/ref_kohya.py, a numpy re-implementation of sd-scripts'
``get_noisy_model_input_and_timesteps`` and of the DDPM trainers' integer timesteps and loss multipliers:
KS of 100k reference draws against the preset's exact cdf; DDPM weights (ε units) to 1e-6."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noiselevels.presets import preset
from tests.presets import ref_kohya as ref

N = 100_000
F64 = torch.float64

CASES = [
    ("kohya:uniform", {}, dict(timestep_sampling="uniform")),
    ("kohya:sigmoid", {"sigmoid_scale": 1.5}, dict(timestep_sampling="sigmoid", sigmoid_scale=1.5)),
    ("kohya:shift", {}, dict(timestep_sampling="shift")),
    ("kohya:shift", {"discrete_flow_shift": 1.5, "sigmoid_scale": 0.8},
     dict(timestep_sampling="shift", discrete_flow_shift=1.5, sigmoid_scale=0.8)),
    ("kohya:flux_shift", {}, dict(timestep_sampling="flux_shift")),
    ("kohya:flux_shift", {"image_seq_len": 1024}, dict(timestep_sampling="flux_shift", image_seq_len=1024)),
    ("kohya:sigma", {}, dict(timestep_sampling="sigma")),
    ("kohya:sigma", {"weighting_scheme": "logit_normal", "logit_mean": 0.5},
     dict(timestep_sampling="sigma", weighting_scheme="logit_normal", logit_mean=0.5)),
    ("kohya:sigma", {"weighting_scheme": "logit_normal", "logit_mean": -0.7, "logit_std": 1.3,
                     "discrete_flow_shift": 1.0},
     dict(timestep_sampling="sigma", weighting_scheme="logit_normal", logit_mean=-0.7, logit_std=1.3,
          discrete_flow_shift=1.0)),
    ("kohya:sigma", {"weighting_scheme": "mode"}, dict(timestep_sampling="sigma", weighting_scheme="mode")),
    ("kohya:sigma", {"weighting_scheme": "cosmap"},
     dict(timestep_sampling="sigma", weighting_scheme="cosmap")),
]


@pytest.mark.parametrize(("name", "params", "ref_kw"), CASES, ids=lambda c: str(c)[:40])
def test_ks_against_reference(name, params, ref_kw):
    sigma = ref.draw(n=N, seed=7, **ref_kw)
    cfg = preset(name, **params)
    d = ref.ks(ref.logsnr(sigma), lambda lam: cfg.density.cdf(torch.as_tensor(lam, dtype=F64)).numpy())
    assert d <= 0.01, f"{name} {params}: KS {d:.4f}"


def test_sigma_default_weighting_scheme_is_kohyas_uniform():
    # train_util.py: --weighting_scheme default "uniform" (uniform u, weight 1)
    cfg = preset("kohya:sigma")
    ref_cfg = preset("kohya:sigma", weighting_scheme="uniform")
    lam = torch.linspace(-10, 10, 41, dtype=F64)
    assert torch.allclose(cfg.density.cdf(lam), ref_cfg.density.cdf(lam), atol=1e-12)


def test_flux_mu_matches_project():
    from noiselevels.schedules import flux_mu

    for n in (256, 1024, 4096):
        assert abs(ref.flux_mu(n) - flux_mu(n)) < 1e-12
    assert np.isfinite(ref.flux_mu(4096))


DDPM_CASES = [
    ("kohya:ddpm", {}),
    ("kohya:ddpm", {"min_timestep": 100, "max_timestep": 900}),
    ("kohya:min_snr_gamma", {"gamma": 5.0}),
    ("kohya:min_snr_gamma", {"gamma": 1.0, "v_parameterization": True}),
    ("kohya:debiased_estimation_loss", {}),
    ("kohya:debiased_estimation_loss", {"v_parameterization": True}),
    ("kohya:scale_v_pred_loss_like_noise_pred", {}),
    ("kohya:v_pred_like_loss", {"v_pred_like_loss": 0.1}),
]
_REF_KEYS = {"gamma": "min_snr_gamma"}
_DEFAULT_FLAGS = {
    "kohya:min_snr_gamma": {"min_snr_gamma": 5.0},
    "kohya:debiased_estimation_loss": {"debiased_estimation_loss": True},
    "kohya:scale_v_pred_loss_like_noise_pred": {"scale_v_pred_loss_like_noise_pred": True,
                                                "v_parameterization": True},
    "kohya:v_pred_like_loss": {"v_pred_like_loss": 0.1},
}


@pytest.mark.parametrize(("name", "params"), DDPM_CASES, ids=lambda c: str(c)[:40])
def test_ddpm_against_reference(name, params):
    cfg = preset(name, **params)
    lo, hi = params.get("min_timestep", 0), params.get("max_timestep", 1000)
    i = ref.ddpm_draw(N, seed=3, min_timestep=lo, max_timestep=hi)
    d = ref.ks(ref.ddpm_lambda(i), lambda lam: cfg.density.cdf(torch.as_tensor(lam, dtype=F64)).numpy())
    assert d <= 0.01, f"{name} {params}: KS {d:.4f}"
    flags = dict(_DEFAULT_FLAGS.get(name, {}))
    skip = ("min_timestep", "max_timestep")
    flags.update({_REF_KEYS.get(k, k): v for k, v in params.items() if k not in skip})
    grid = np.arange(0, 1000)
    want = ref.ddpm_weight_eps_units(grid, **flags)
    got = cfg.weighting(torch.as_tensor(ref.ddpm_lambda(grid), dtype=F64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


SD3_CASES = [
    {},
    {"weighting_scheme": "logit_normal", "logit_mean": 0.5, "training_shift": 3.0},
    {"weighting_scheme": "mode", "training_shift": 2.0},
    {"weighting_scheme": "sigma_sqrt"},
    {"min_timestep": 100, "max_timestep": 900},
    {"weighting_scheme": "logit_normal", "logit_mean": -0.4, "training_shift": 3.0, "min_timestep": 250},
    {"weighting_scheme": "mode", "training_shift": 2.0, "max_timestep": 700},
]


@pytest.mark.parametrize("kw", SD3_CASES, ids=str)
def test_sd3_against_reference(kw):
    cfg = preset("kohya:sd3", **kw)
    sigma = ref.sd3_draw(N, seed=5, **kw)
    d = ref.ks(ref.logsnr(sigma), lambda lam: cfg.density.cdf(torch.as_tensor(lam, dtype=F64)).numpy())
    assert d <= 0.01, f"kohya:sd3 {kw}: KS {d:.4f}"
    s = np.linspace(0.01, 0.99, 99)
    lam = torch.as_tensor(ref.logsnr(s), dtype=F64)
    want = ref.loss_weight(kw.get("weighting_scheme", "uniform"), s) * (s / (1 - s)) ** 2  # x0-MSE in ε units
    np.testing.assert_allclose(cfg.weighting(lam).numpy(), want, rtol=1e-6)


FLUX_LOSS_CASES = [
    (kind, scheme, name)
    for kind in ("raw", "additive", "sigma_scaled")
    for scheme in ("uniform", "sigma_sqrt", "cosmap")
    for name in ("kohya:shift", "kohya:sigma")
]


@pytest.mark.parametrize(("kind", "scheme", "name"), FLUX_LOSS_CASES, ids=str)
def test_flux_model_prediction_type_weights_against_the_loss(kind, scheme, name):
    """kohya's per-sample Flux loss (ref.flux_loss: apply_model_prediction_type + the velocity target)
    equals the preset's ε-unit weight × ‖ε̂ − ε‖², ε̂ = z + (1 − σ)·P being the ε the prediction P
    implies, for arbitrary outputs: sigma_scaled applies the scheme's weight, raw/additive do not."""
    rng = np.random.default_rng(3)
    b, d = 64, 16
    sigma = rng.uniform(0.02, 0.98, b)
    latents, noise, out = rng.standard_normal((3, b, d))
    loss = ref.flux_loss(out, latents, noise, sigma, kind, scheme)
    s = sigma[:, None]
    z = s * noise + (1 - s) * latents
    pred = {"raw": out, "additive": out + z, "sigma_scaled": z - s * out}[kind]
    eps_mse = ((z + (1 - s) * pred - noise) ** 2).mean(axis=1)
    cfg = preset(name, weighting_scheme=scheme, model_prediction_type=kind)
    w = cfg.weighting(torch.as_tensor(ref.logsnr(sigma), dtype=F64)).numpy()
    np.testing.assert_allclose(w * eps_mse, loss, rtol=1e-6, atol=0)


def test_model_prediction_type_is_validated():
    with pytest.raises(ValueError, match="model_prediction_type"):
        preset("kohya:shift", model_prediction_type="scaled")
    with pytest.raises(ValueError, match="min_timestep"):
        preset("kohya:sd3", min_timestep=900, max_timestep=100)
