"""Tests for noiselevels.training.objective.Objective."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization
from noiselevels.training.densities import density
from noiselevels.training.objective import Objective, ObjectiveOutput
from noiselevels.training.weightings import weighting

F64 = torch.float64
NAMES = ["eps", "x0", "v", "flow", "edm"]
PROCESSES = ["vp", "ve", "flow"]


def _x0(b=8, seed=0, dtype=F64):
    return torch.randn(b, 3, 4, 4, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("process", PROCESSES)
def test_oracle_model_gives_zero_loss(name, process):
    """A model that knows the data point (a Dirac data distribution) predicts the exact target from its
    input alone, so every per-sample loss is 0 whatever the levels."""
    x_star = _x0(b=1, seed=1)
    x0 = x_star.expand(8, -1, -1, -1).clone()
    p = parameterization(name)

    def oracle(inp, logsnr):
        a, s = (broadcast(c, inp) for c in alpha_sigma(logsnr=logsnr.to(F64), process=process))
        z = inp * torch.sqrt(s * s + (a * 0.5) ** 2) if name == "edm" else inp
        eps = (z - a * x_star) / s
        return p.target(x0=x_star, eps=eps, alpha=a, sigma=s)

    obj = Objective(
        process=process,
        parameterization=p,
        density=density("uniform_logsnr", logsnr_min=-8.0, logsnr_max=8.0),
        weighting=weighting("min_snr", gamma=5.0),
        noise_offset=0.1,
    )
    out = obj(oracle, x0, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, ObjectiveOutput)
    assert_close(out.loss, torch.zeros(8, dtype=F64), atol=1e-9, rtol=0)
    assert_close(out.eps_mse, torch.zeros(8, dtype=F64), atol=1e-9, rtol=0)


def _linear_model(inp, logsnr, *, shift=0.0):
    return 0.7 * inp - 0.2 + shift + 0.01 * logsnr.reshape(-1, 1, 1, 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("process", ["vp", "flow"])
def test_loss_equals_hand_computed_weighted_mse(name, process):
    x0 = _x0()
    d = density("normal_logsnr", mean=1.0, std=3.0)
    w = weighting("soft_min_snr", sigma_data=0.5)
    p = parameterization(name)
    obj = Objective(process=process, parameterization=p, density=d, weighting=w, noise_offset=0.05)
    out = obj(_linear_model, x0, generator=torch.Generator().manual_seed(42), shift=0.3)

    # by hand, with the documented draw order: λ, ε, offset noise
    g = torch.Generator().manual_seed(42)
    lam = d.sample(8, generator=g)
    eps = torch.randn(x0.shape, generator=g, dtype=F64)
    eps = eps + 0.05 * torch.randn(8, 3, 1, 1, generator=g, dtype=F64)
    a, s = alpha_sigma(logsnr=lam, process=process)
    a, s = a.reshape(-1, 1, 1, 1), s.reshape(-1, 1, 1, 1)
    z = a * x0 + s * eps
    inp = z / torch.sqrt(s**2 + (0.5 * a) ** 2) if name == "edm" else z
    pred = _linear_model(inp, lam, shift=0.3)
    target = p.target(x0=x0, eps=eps, alpha=a, sigma=s)
    own = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    _, eps_hat = p.to_x0_eps(pred, z=z, alpha=a, sigma=s)
    eps_mse = ((eps_hat - eps) ** 2).mean(dim=(1, 2, 3))

    assert_close(out.logsnr, lam)
    assert_close(out.eps_mse, eps_mse)
    assert_close(out.eps_mse, own / p.loss_factor(lam, process=process))
    assert_close(out.weight, w(lam))
    assert_close(out.loss, w(lam) * eps_mse)


def test_eps_constant_is_the_plain_mse_and_min_snr_v_is_diffusers_formula():
    """ε-prediction with weight 1 is F.mse_loss(pred, noise) per sample; v-prediction with min-SNR is
    diffusers' example-script loss mse(pred, v)·min(SNR, γ)/(SNR + 1)."""
    x0 = _x0()
    lam = torch.linspace(-6, 6, 8, dtype=F64)
    noise = _x0(seed=7)
    d = density("normal_logsnr")
    out = Objective(parameterization="eps", density=d)(_linear_model, x0, logsnr=lam, noise=noise)
    a, s = (c.reshape(-1, 1, 1, 1) for c in alpha_sigma(logsnr=lam))
    pred = _linear_model(a * x0 + s * noise, lam)
    assert_close(out.loss, torch.nn.functional.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)))

    out = Objective(parameterization="v", density=d, weighting=weighting("min_snr", gamma=5.0))(
        _linear_model, x0, logsnr=lam, noise=noise
    )
    snr = lam.exp()
    v = a * noise - s * x0
    ref = torch.nn.functional.mse_loss(pred, v, reduction="none").mean(dim=(1, 2, 3))
    assert_close(out.loss, ref * torch.clamp(snr, max=5.0) / (snr + 1))


def test_sampler_replaces_density_and_importance_weights_multiply():
    @dataclasses.dataclass
    class FixedSampler:
        calls: int = 0

        def sample(self, n, *, generator=None):
            self.calls += 1
            return torch.linspace(-3, 3, n, dtype=F64), torch.full((n,), 2.0, dtype=F64)

    sampler = FixedSampler()
    w = weighting("sigmoid", bias=1.0)
    obj = Objective(parameterization="v", density=density("normal_logsnr"), weighting=w)
    with_sampler = dataclasses.replace(obj, sampler=sampler)
    x0 = _x0()
    noise = _x0(seed=3)
    out = with_sampler(_linear_model, x0, generator=torch.Generator().manual_seed(0), noise=noise)
    lam = torch.linspace(-3, 3, 8, dtype=F64)
    assert sampler.calls == 1
    assert_close(out.logsnr, lam)
    assert_close(out.weight, 2.0 * w(lam))
    ref = obj(_linear_model, x0, logsnr=lam, noise=noise)
    assert_close(out.loss, 2.0 * ref.loss)
    assert_close(out.eps_mse, ref.eps_mse)
    # a sampler alone (no density) is enough
    Objective(sampler=sampler)
    assert with_sampler.to_dict()["sampler"]["type"].endswith("FixedSampler")


def test_stratified_draws_one_level_per_stratum():
    d = density("normal_logsnr", mean=0.0, std=2.0)
    obj = Objective(density=d, stratified=True)
    out = obj(_linear_model, _x0(b=16), generator=torch.Generator().manual_seed(5))
    strata = torch.floor(d.cdf(out.logsnr) * 16).long()
    assert sorted(strata.tolist()) == list(range(16))


def test_gradients_flow_and_dtype_follows_the_data():
    x0 = _x0(dtype=torch.float32)
    lin = torch.nn.Conv2d(3, 3, 1).float()
    obj = Objective(process="flow", parameterization="flow", density=density("logit_normal"))
    out = obj(lambda inp, lam: lin(inp), x0, generator=torch.Generator().manual_seed(0))
    assert out.loss.dtype == torch.float32 and out.loss.shape == (8,)
    assert out.logsnr.dtype == F64
    out.loss.mean().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_same_generator_seed_reproduces_the_loss():
    obj = Objective(density=density("normal_logsnr"), noise_offset=0.1)
    a = obj(_linear_model, _x0(), generator=torch.Generator().manual_seed(9))
    b = obj(_linear_model, _x0(), generator=torch.Generator().manual_seed(9))
    assert_close(a.loss, b.loss)


def test_names_are_resolved_and_serialisation_round_trips():
    obj = Objective(
        process="flow",
        parameterization="edm",
        density="cosmap",
        weighting="edm",
        noise_offset=0.05,
        stratified=True,
    )
    assert obj.parameterization == parameterization("edm")
    assert obj.weighting == weighting("edm")
    d = obj.to_dict()
    assert d["kind"] == "objective" and d["sampler"] is None
    assert from_dict(d) == obj


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"density": None}, "needs a density"),
        ({"process": "vpsde"}, "unknown process"),
        ({"parameterization": "velocity"}, "unknown parameterization"),
        ({"weighting": "min-snr"}, "unknown weighting"),
        ({"density": "no_such_density"}, "unknown density"),
        ({"density": 3.0}, "density must be a Density"),
        ({"noise_offset": -0.1}, "noise_offset must be >= 0"),
        ({"sampler": object()}, "sampler must have a sample"),
        ({"stratified": "yes"}, "stratified must be True or False"),
    ],
)
def test_bad_configuration_raises(kw, match):
    base = {"density": density("normal_logsnr")}
    with pytest.raises(ValueError, match=match):
        Objective(**{**base, **kw})


def test_bad_call_raises():
    obj = Objective(density=density("normal_logsnr"))
    with pytest.raises(ValueError, match="expected"):
        obj(lambda inp, lam: inp[:, :2], _x0())
    with pytest.raises(ValueError, match="at least 2 dims"):
        obj(_linear_model, torch.zeros(4))
    with pytest.raises(ValueError, match=r"logsnr must have shape \(8,\)"):
        obj(_linear_model, _x0(), logsnr=torch.zeros(3))
    with pytest.raises(ValueError, match="noise must have the shape"):
        obj(_linear_model, _x0(), noise=torch.zeros(3))
