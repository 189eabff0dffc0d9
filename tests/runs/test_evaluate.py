"""noiselevels.runs.evaluate: the VDM bound's parts in closed form, an oracle denoiser, a tiny run."""

from __future__ import annotations

import math

import pytest
import torch

from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization
from noiselevels.runs.evaluate import (
    _decoder_nll,
    _prior_kl,
    bits_per_dim,
    evaluate_run,
    quantize_8bit,
    sliced_wasserstein,
)
from noiselevels.runs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")




def test_quantize_8bit():
    k = torch.arange(256)
    v, k2 = quantize_8bit(k / 127.5 - 1.0 + 1e-4)
    torch.testing.assert_close(k2, k)
    torch.testing.assert_close(v, k.to(torch.float64) / 127.5 - 1.0)


def test_prior_kl_closed_form():
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(2, 6)
    lam = -4.0
    a = math.sqrt(1 / (1 + math.exp(-lam)))
    s = math.sqrt(1 / (1 + math.exp(lam)))
    q = torch.distributions.Normal(a * x, torch.full_like(x, s))
    p = torch.distributions.Normal(torch.zeros_like(x), torch.ones_like(x))
    torch.testing.assert_close(_prior_kl(x, lam), torch.distributions.kl_divergence(q, p).sum(1))


def test_decoder_is_nearly_exact_at_high_snr_and_a_proper_distribution():
    x, k = quantize_8bit(torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    g = torch.Generator().manual_seed(1)
    nll = _decoder_nll(x, k, 30.0, g)  # σ/α = e^-15: the decoder is certain
    torch.testing.assert_close(nll, torch.zeros(3, dtype=torch.float64), atol=1e-9, rtol=0)
    # at very low SNR the decoder is uniform over the 256 values: log 256 nats per dimension
    nll = _decoder_nll(x, k, -20.0, g)
    uniform = torch.full((3,), 16 * math.log(256), dtype=torch.float64)
    torch.testing.assert_close(nll, uniform, rtol=1e-5, atol=0)


class _Oracle(torch.nn.Module):
    """The exact denoiser of a point mass at ``x_star``, written in a parameterisation's target."""

    def __init__(self, x_star, process, param):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.x_star, self.process, self.param = x_star, process, param

    def forward(self, model_input, logsnr):
        a, s = alpha_sigma(logsnr=logsnr.to(torch.float64), process=self.process)
        x = self.x_star.expand_as(model_input)
        a, s = broadcast(a, x), broadcast(s, x)
        # undo EDM's input scaling: model_input = c_in·z/α with c_in = 1/sqrt(σ_ve² + σ_d²)
        if self.param.name == "edm":
            sve = s / a
            z = model_input * a * torch.sqrt(sve**2 + self.param.sigma_data**2)
        else:
            z = model_input
        eps = (z - a * x) / s
        return self.param.target(x0=x, eps=eps, alpha=a, sigma=s)


@pytest.mark.parametrize(
    "process, name", [("vp", "eps"), ("vp", "x0"), ("vp", "v"), ("flow", "flow"), ("ve", "edm")]
)
def test_oracle_has_zero_diffusion_loss(process, name):
    """For a point mass, the exact denoiser has ε̂ = ε: the diffusion term is 0 and the bound is prior +
    decoder, whatever the process and parameterisation (checks the conversion to ε̂)."""
    x_star, _ = quantize_8bit(torch.linspace(-1, 1, 16, dtype=torch.float64).reshape(1, 1, 4, 4))
    param = parameterization(name)
    model = _Oracle(x_star, process, param)
    x = x_star.repeat(3, 1, 1, 1)
    res = bits_per_dim(
        model, process=process, parameterization=param, x=x, num_levels=2, logsnr_min=-8.0, logsnr_max=10.0
    )
    assert abs(res["diffusion"]) < 1e-9
    prior = float(_prior_kl(x_star, -8.0).sum()) / (16 * math.log(2))
    assert res["prior"] == pytest.approx(prior, rel=1e-12)
    assert res["bpd"] == pytest.approx(res["prior"] + res["reconstruction"], rel=1e-12)


def test_bits_per_dim_argument_errors():
    m = torch.nn.Conv2d(1, 1, 1)
    p = parameterization("eps")
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="logsnr_min < logsnr_max"):
        bits_per_dim(m, process="vp", parameterization=p, x=x, logsnr_min=3, logsnr_max=1)
    with pytest.raises(ValueError, match="num_levels"):
        bits_per_dim(m, process="vp", parameterization=p, x=x, num_levels=0)
    with pytest.raises(ValueError, match="process"):
        bits_per_dim(m, process="vv", parameterization=p, x=x)


def test_sliced_wasserstein():
    a = torch.randn(500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert sliced_wasserstein(a, a) == pytest.approx(0.0, abs=1e-12)
    assert sliced_wasserstein(a, a + 3.0) == pytest.approx(3.0, rel=1e-9)
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(a, torch.zeros(4, 2))


def test_evaluate_tiny_run_is_finite_and_reproducible(tmp_path):
    cfg = {
        "noise": {"process": "vp", "parameterization": "v", "density": {"name": "logit_normal"}},
        "data": {"name": "digits", "batch_size": 16, "num_images": 160},
        "model": {"channels": [8, 16], "emb_dim": 16, "fourier_features": 4},
        "train": {"steps": 6, "log_every": 3, "ckpt_every": 0, "warmup": 2},
    }
    train(cfg, tmp_path, progress=False)

    def features(x):  # a stand-in extractor: mean-pooled pixels
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).to(torch.float64)

    kw = dict(num=12, steps=3, bpd_images=8, bpd_levels=2, features=features)
    res = evaluate_run(tmp_path, **kw)
    for key in ("bpd", "fd", "kid"):
        assert math.isfinite(res[key]), key
    b = res["bits_per_dim"]
    assert b["bpd"] == pytest.approx(b["prior"] + b["diffusion"] + b["reconstruction"], rel=1e-12)
    assert res["bpd"] > 0
    again = evaluate_run(tmp_path, **kw)
    assert again["bpd"] == res["bpd"] and again["fd"] == res["fd"]


def test_evaluate_toy_run_reports_the_error_against_the_true_distribution(tmp_path):
    cfg = {
        "noise": {"process": "flow", "parameterization": "flow", "density": {"name": "logit_normal"}},
        "data": {"name": "two_moons", "batch_size": 64, "num_images": 512},
        "model": {"kind": "mlp", "hidden": 32, "depth": 2},
        "train": {"steps": 5, "log_every": 5, "ckpt_every": 0, "warmup": 1},
    }
    train(cfg, tmp_path, progress=False)
    res = evaluate_run(tmp_path, num=64, steps=3)
    assert "bpd" not in res and res["num_samples"] == 64
    assert math.isfinite(res["swd"]) and math.isfinite(res["swd_floor"])
    assert res["swd"] > res["swd_floor"]  # an untrained model is further from the data than fresh data


def test_evaluate_uses_a_seeded_class_balanced_validation_subset(tmp_path, monkeypatch):
    """MNIST's validation split is stored class by class: ``bpd_images``/``num`` below its size must
    not mean "the first N" (all 0s), but a class-balanced subset drawn from the seed."""
    import noiselevels.runs.evaluate as ev

    cfg = {
        "noise": {"process": "vp", "parameterization": "eps", "density": {"name": "logit_normal"}},
        "data": {"name": "mnist", "size": 8, "batch_size": 8, "num_images": 40},
        "model": {"channels": [8], "emb_dim": 8, "fourier_features": 4, "num_classes": 10},
        "train": {"steps": 1, "log_every": 1, "ckpt_every": 0, "warmup": 1},
    }
    train(cfg, tmp_path, progress=False)
    seen = {}

    def fake_bpd(model, *, x, labels, **kw):
        seen["bpd_x"], seen["bpd_labels"] = x, labels
        return {"bpd": 1.0}

    def fake_quality(samples, reference, **kw):
        seen["ref"] = reference
        return {"fd": 0.0, "kid": 0.0, "num_samples": samples.shape[0]}

    monkeypatch.setattr(ev, "bits_per_dim", fake_bpd)
    monkeypatch.setattr(ev, "sample_quality", fake_quality)
    evaluate_run(tmp_path, num=23, steps=1, bpd_images=25, seed=4)
    counts = seen["bpd_labels"].bincount(minlength=10)
    assert len(seen["bpd_labels"]) == 25 and int(counts.min()) >= 2 and int(counts.max()) <= 3, counts

    from noiselevels.runs.data import load_dataset

    val = load_dataset("mnist", split="val", size=8)
    for x, n in ((seen["bpd_x"], 25), (seen["ref"], 23)):  # map the images back to their labels
        idx = ((x.flatten(1)[:, None] - val.data.flatten(1)[None]).abs().sum(-1) == 0).float().argmax(1)
        got = val.labels[idx].bincount(minlength=10)
        assert len(x) == n and int(got.max() - got.min()) <= 1, got
    first = seen["bpd_x"]
    evaluate_run(tmp_path, num=23, steps=1, bpd_images=25, seed=5)  # another seed: another subset
    assert not torch.equal(first, seen["bpd_x"])


def test_conditional_samples_follow_the_reference_classes(tmp_path, monkeypatch):
    """A class-conditional run trained on some classes (as a fine-tune's base, which lacks the new
    one) samples exactly the classes of the reference subset, not every label of its embedding."""
    import noiselevels.runs.evaluate as ev

    cfg = {
        "noise": {"process": "vp", "parameterization": "eps", "density": {"name": "logit_normal"}},
        "data": {"name": "mnist", "size": 8, "batch_size": 8, "num_images": 40, "classes": [0, 3, 5]},
        "model": {"channels": [8], "emb_dim": 8, "fourier_features": 4, "num_classes": 10},
        "train": {"steps": 1, "log_every": 1, "ckpt_every": 0, "warmup": 1},
    }
    train(cfg, tmp_path, progress=False)
    seen, real = {}, ev.generate

    def spy_generate(*args, labels, **kw):
        seen["labels"] = labels
        return real(*args, labels=labels, **kw)

    monkeypatch.setattr(ev, "generate", spy_generate)
    monkeypatch.setattr(ev, "sample_quality", lambda samples, ref, **kw: {})
    evaluate_run(tmp_path, num=7, steps=1, bpd_images=None, seed=1)
    got = seen["labels"]
    counts = got.bincount(minlength=10)[[0, 3, 5]]
    assert len(got) == 7 and set(got.tolist()) == {0, 3, 5} and int(counts.max() - counts.min()) <= 1
