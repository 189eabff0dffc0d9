"""ai-toolkit presets against tests/presets/ref_ai_toolkit.py, a numpy re-implementation of the tool's code
path: KS of 100k reference draws against the preset's exact cdf, and the timestep weight (ε units) to 1e-6
at the levels the tool draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noiselevels.presets import preset
from noiselevels.schedules import flux_mu
from noiselevels.training.tool_weightings.ai_toolkit import AI_TOOLKIT_WEIGHTS
from tests.presets import ref_ai_toolkit as ref

N = 100_000
F64 = torch.float64


def _cdf(cfg):
    return lambda lam: cfg.density.cdf(torch.as_tensor(lam, dtype=F64)).numpy()


CASES = [
    ("ai-toolkit:linear", {}, dict(timestep_type="linear")),
    ("ai-toolkit:sigmoid", {}, dict(timestep_type="sigmoid")),
    ("ai-toolkit:weighted", {}, dict(timestep_type="weighted")),
    ("ai-toolkit:shift", {}, dict(timestep_type="shift", shift=3.0)),
    ("ai-toolkit:shift", {"image_seq_len": 1024},
     dict(timestep_type="shift", mu=flux_mu(1024, max_shift=1.15))),
    ("ai-toolkit:flux_shift", {}, dict(timestep_type="shift", mu=flux_mu(4096, max_shift=1.15))),
    ("ai-toolkit:lumina2_shift", {}, dict(timestep_type="shift", shift=6.0)),
    ("ai-toolkit:content", {}, dict(timestep_type="sigmoid", content_or_style="content")),
    ("ai-toolkit:style", {}, dict(timestep_type="sigmoid", content_or_style="style")),
    ("ai-toolkit:sigmoid", {"content_or_style": "content", "min_denoising_steps": 100,
                            "max_denoising_steps": 800},
     dict(timestep_type="sigmoid", content_or_style="content", lo=100, hi=800)),
    ("ai-toolkit:sigmoid", {"min_denoising_steps": 200, "max_denoising_steps": 900},
     dict(timestep_type="sigmoid", lo=200, hi=900)),
    ("ai-toolkit:linear", {"min_denoising_steps": 200, "max_denoising_steps": 900},
     dict(timestep_type="linear", lo=200, hi=900)),
    ("ai-toolkit:sigmoid", {"linear_timesteps": True}, dict(timestep_type="sigmoid", linear_timesteps=True)),
]


@pytest.mark.parametrize(("name", "params", "ref_kw"), CASES, ids=lambda c: str(c)[:40])
def test_ks_against_reference(name, params, ref_kw):
    sigma, _ = ref.draw(n=N, seed=12, **ref_kw)
    d = ref.ks(ref.logsnr(sigma), _cdf(preset(name, **params)))
    assert d <= 0.01, f"{name} {params}: KS {d:.4f}"


@pytest.mark.parametrize(
    ("name", "params", "ref_kw"),
    [
        ("ai-toolkit:weighted", {}, dict(timestep_type="weighted")),
        ("ai-toolkit:linear", {"linear_timesteps": True},
         dict(timestep_type="linear", linear_timesteps=True)),
        ("ai-toolkit:sigmoid", {"linear_timesteps2": True},
         dict(timestep_type="sigmoid", linear_timesteps2=True)),
        ("ai-toolkit:linear", {}, dict(timestep_type="linear")),
    ],
)
def test_weights_against_reference(name, params, ref_kw):
    """The flow-loss weight at every level drawn, in ε units: w_flow·(1 + e^(−λ/2))²."""
    sigma, w = ref.draw(n=20_000, seed=3, **ref_kw)
    keep = sigma < 1.0  # σ = 1 is λ = −inf, where the ε-unit factor is infinite
    lam = torch.as_tensor(ref.logsnr(sigma[keep]), dtype=F64)
    got = preset(name, **params).weighting(lam).numpy()
    want = w[keep] * (1 + np.exp(-lam.numpy() / 2)) ** 2
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("timestep_type", ["linear", "weighted", "shift", "lognorm_blend"])  # sigmoid: CASES
@pytest.mark.parametrize("content_or_style", ["content", "style"])
def test_content_or_style_on_every_grid(timestep_type, content_or_style):
    """The cubic index on each type's grid, compared atom by atom (ref.ks_atoms: 10 % of draws fall on
    one grid level). Exact on the linear/weighted grids; on ``shift`` and ``lognorm_blend``
    the tool's cleanest level is read one cell off (measured, pinned: a change is noticed)."""
    sigma, _ = ref.draw(n=N, seed=12, timestep_type=timestep_type, content_or_style=content_or_style)
    d = ref.ks_atoms(sigma, _cdf(preset(f"ai-toolkit:{timestep_type}", content_or_style=content_or_style)))
    known = {("shift", "style"): 0.05, ("lognorm_blend", "content"): 0.015, ("lognorm_blend", "style"): 0.105}
    assert d <= known.get((timestep_type, content_or_style), 0.01), f"KS {d:.4f}"


def test_lognorm_blend_is_the_law_of_one_table_entry():
    """``lognorm_blend``: the tool's table (750 log-normal-derived + 250 evenly spaced levels, integer
    timesteps, redrawn every step) read by a balanced index; was KS 0.019 with the median maximum."""
    sigma, _ = ref.draw(n=N, seed=12, timestep_type="lognorm_blend")
    d = ref.ks(ref.logsnr(sigma), _cdf(preset("ai-toolkit:lognorm_blend")))
    assert d <= 0.01, f"KS {d:.4f}"


def test_weighted_table_is_the_tools():
    """Spot values of toolkit/timestep_weighing/default_weighing_scheme.py (commit 22cdfad)."""
    t = np.asarray(AI_TOOLKIT_WEIGHTS)
    assert t.shape == (1000,)
    np.testing.assert_allclose(t[[0, 1, 500, 999]], [0.905706524848938, 0.9097874164581299,
                                                        0.9254037, 0.4472601], rtol=1e-6)
    assert t.argmax() == 124 and t.argmin() == 997
    assert math.isclose(t.mean(), 1.0, abs_tol=1e-6)


def test_bad_parameters():
    with pytest.raises(ValueError, match="content_or_style"):
        preset("ai-toolkit:linear", content_or_style="both")
    with pytest.raises(ValueError, match="max_denoising_steps"):
        preset("ai-toolkit:sigmoid", min_denoising_steps=500, max_denoising_steps=100)
    with pytest.raises(ValueError, match="image_seq_len"):
        preset("ai-toolkit:flux_shift", image_seq_len=0)


@pytest.mark.parametrize("name", ["ai-toolkit:snr_gamma", "ai-toolkit:min_snr_gamma"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_snr_gamma_presets_against_reference(name, prediction_type):
    """DDPM timesteps as the trainer draws them (KS of 100k draws) and apply_snr_weight's multiplier on
    the target's loss, in ε units (× (SNR + 1)/SNR for v), at every timestep the tool can draw, to 1e-6."""
    cfg = preset(name, gamma=5.0, prediction_type=prediction_type)
    a = ref.sd_alphas_cumprod()
    lam_of = lambda t: np.log(a[t] / (1 - a[t]))  # noqa: E731
    t = ref.ddpm_draw(N, seed=4)
    assert ref.ks(lam_of(t), _cdf(cfg)) <= 0.01
    ts = np.arange(2, 999)
    snr = np.exp(lam_of(ts))
    want = ref.snr_weight(ts, 5.0, fixed=name == "ai-toolkit:snr_gamma")
    want = want * ((snr + 1) / snr if prediction_type == "v_prediction" else 1.0)
    got = cfg.weighting(torch.as_tensor(lam_of(ts), dtype=F64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
