"""kohya flow presets against tests/presets/ref_kohya.py, a numpy re-implementation of sd-scripts'
``get_noisy_model_input_and_timesteps``: KS of 100k reference draws against the preset's exact cdf."""

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
