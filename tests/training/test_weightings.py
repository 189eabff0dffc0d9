"""Tests for noiselevels.training.weightings: closed forms, limits, units, the tools' disagreements."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.components import Density, Weighting
from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization
from noiselevels.training import weightings
from noiselevels.training.weightings import WEIGHTINGS, in_units, product, scaled, weighting

F64 = torch.float64
LAM = torch.linspace(-20.0, 20.0, 81, dtype=F64)
SNR = torch.exp(LAM)
INF = math.inf


@dataclasses.dataclass(frozen=True)
class _StdNormal(Density):
    """A standard normal over λ, local to the tests (no dependency on the densities module)."""

    def log_prob(self, logsnr):
        return -0.5 * logsnr**2 - 0.5 * math.log(2 * math.pi)


def _flow_t(lam):
    return torch.sigmoid(-lam / 2)


CLOSED_FORMS = {
    ("constant", ()): lambda: torch.ones_like(LAM),
    ("constant", (("value", 2.5),)): lambda: torch.full_like(LAM, 2.5),
    ("min_snr", (("gamma", 5.0),)): lambda: torch.minimum(SNR, torch.tensor(5.0, dtype=F64)) / SNR,
    ("max_snr", (("gamma", 1.0),)): lambda: torch.maximum(SNR, torch.tensor(1.0, dtype=F64)) / SNR,
    ("snr_gamma", (("gamma", 3.0),)): lambda: 3.0 / SNR,
    ("soft_min_snr", (("sigma_data", 0.5),)): lambda: (1 / SNR) / (1 / SNR + 0.25),
    ("p2", (("k", 1.0), ("gamma", 0.5))): lambda: (1 + SNR) ** -0.5,
    ("p2", (("k", 2.0), ("gamma", 1.0))): lambda: 1 / (2 + SNR),
    ("debiased", ()): lambda: 1 / SNR.sqrt(),
    ("debiased", (("snr_max", 1000.0),)): lambda: 1 / SNR.clamp(max=1000).sqrt(),
    ("debiased_v_kohya", ()): lambda: (1 + 1 / SNR) / (SNR.clamp(max=1000) + 1),
    ("debiased_v_onetrainer", ()): lambda: (1 + 1 / SNR) / (SNR.clamp(max=1000) + 1).sqrt(),
    ("edm", (("sigma_data", 0.5),)): lambda: (1 / SNR + 0.25) / 0.25,
    ("sigmoid", (("bias", 2.0),)): lambda: 1 / (1 + torch.exp(LAM - 2.0)),
    ("sigma_sqrt", ()): lambda: _flow_t(LAM) ** -2 * (1 + torch.exp(-LAM / 2)) ** 2,
    ("sigma_sqrt", (("units", "x0"),)): lambda: _flow_t(LAM) ** -2 / SNR,
    ("cosmap", ()): lambda: (
        2 / (math.pi * (1 - 2 * _flow_t(LAM) + 2 * _flow_t(LAM) ** 2)) * (1 + torch.exp(-LAM / 2)) ** 2
    ),
    ("cosmap", (("units", "x0"),)): lambda: (
        2 / (math.pi * (1 - 2 * _flow_t(LAM) + 2 * _flow_t(LAM) ** 2)) / SNR
    ),
    ("scale_v_pred_loss_like_noise_pred", ()): lambda: (
        SNR.clamp(max=1000) / (SNR.clamp(max=1000) + 1) * (1 + 1 / SNR)
    ),
    ("v_pred_like_loss", (("c", 0.3),)): lambda: 1 + 0.3 * (SNR.clamp(max=1000) + 1) / SNR.clamp(max=1000),
}


@pytest.mark.parametrize("key", list(CLOSED_FORMS), ids=lambda k: f"{k[0]}{dict(k[1])}")
def test_closed_form_on_a_grid(key):
    name, kw = key
    assert_close(weighting(name, **dict(kw))(LAM), CLOSED_FORMS[key](), rtol=1e-10, atol=0)


LIMITS = {  # (w(−inf), w(+inf))
    "constant": (1.0, 1.0),
    "min_snr": (1.0, 0.0),
    "max_snr": (INF, 1.0),
    "snr_gamma": (INF, 0.0),
    "soft_min_snr": (1.0, 0.0),
    "p2": (1.0, 0.0),
    "debiased": (INF, 0.0),
    "debiased_v_kohya": (INF, 1 / 1001),
    "debiased_v_onetrainer": (INF, 1 / math.sqrt(1001)),
    "edm": (INF, 1.0),
    "sigmoid": (1.0, 0.0),
    "sigma_sqrt": (INF, INF),
    "cosmap": (INF, 2 / math.pi),
    "scale_v_pred_loss_like_noise_pred": (1.0, 1000 / 1001),
    "v_pred_like_loss": (1.0, 1.0),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_exact_limits_at_infinite_logsnr(name):
    got = weighting(name)(torch.tensor([-INF, INF], dtype=F64))
    assert_close(got, torch.tensor(LIMITS[name], dtype=F64))


def test_limits_of_parameterised_variants():
    ends = torch.tensor([-INF, INF], dtype=F64)
    assert_close(weighting("sigma_sqrt", units="x0")(ends), torch.tensor([INF, 1.0], dtype=F64))
    assert_close(weighting("cosmap", units="x0")(ends), torch.tensor([INF, 0.0], dtype=F64))
    assert_close(weighting("p2", k=2.0, gamma=1.0)(ends), torch.tensor([0.5, 0.0], dtype=F64))
    assert_close(weighting("p2", gamma=0.0)(ends), torch.tensor([1.0, 1.0], dtype=F64))
    assert_close(weighting("debiased", snr_max=100.0)(ends), torch.tensor([INF, 0.1], dtype=F64))
    assert_close(
        weighting("v_pred_like_loss", c=0.5)(ends), torch.tensor([INF, 1 + 0.5 * 1001 / 1000], dtype=F64)
    )
    assert_close(weighting("scale_v_pred_loss_like_noise_pred", snr_max=INF)(ends), torch.ones(2, dtype=F64))


def test_min_snr_is_the_same_for_eps_and_v_once_in_eps_units():
    """kohya / OneTrainer: min(SNR, γ)/SNR on the ε loss, min(SNR, γ)/(SNR + 1) on the v loss;
    ai-toolkit: min(γ/SNR, 1). All three are one ε-unit weighting."""
    gamma = 5.0
    w = weighting("min_snr", gamma=gamma)(LAM)
    v_loss_weight = torch.minimum(SNR, torch.tensor(gamma, dtype=F64)) / (SNR + 1)
    assert_close(v_loss_weight * parameterization("v").loss_factor(LAM), w)
    assert_close(torch.minimum(gamma / SNR, torch.ones_like(SNR)), w)
    # and on actual errors: w_v·‖v̂ − v‖² = w_ε·‖ε̂ − ε‖² for a random wrong prediction
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(81, 4, generator=g, dtype=F64), torch.randn(81, 4, generator=g, dtype=F64)
    a, s = (broadcast(c, x0) for c in alpha_sigma(logsnr=LAM, process="vp"))
    v = parameterization("v")
    pred = v.target(x0=x0, eps=eps, alpha=a, sigma=s) + torch.randn(81, 4, generator=g, dtype=F64)
    _, eps_hat = v.to_x0_eps(pred, z=a * x0 + s * eps, alpha=a, sigma=s)
    v_loss = (pred - v.target(x0=x0, eps=eps, alpha=a, sigma=s)).pow(2).sum(1)
    assert_close(v_loss_weight * v_loss, w * (eps_hat - eps).pow(2).sum(1))


def test_debiased_v_variants_disagree_as_documented():
    lam = torch.linspace(-10.0, 6.0, 65, dtype=F64)  # below the SNR clamp at 1000
    snr = lam.exp()
    kohya = weighting("debiased_v_kohya")(lam)
    onetrainer = weighting("debiased_v_onetrainer")(lam)
    paper = weighting("debiased")(lam)
    # kohya: 1/(SNR + 1) on the v loss = 1/SNR in ε units; OneTrainer: 1/√(SNR + 1) on v = √(SNR + 1)/SNR
    assert_close(kohya, 1 / snr)
    assert_close(onetrainer, (snr + 1).sqrt() / snr)
    assert_close(kohya, in_units(weighting("sigmoid", bias=0.0), "v")(lam))
    assert_close(onetrainer, in_units(weighting("p2", k=1.0, gamma=0.5), "v")(lam))
    # none of the three agree: at λ = 0 they are 1, √2 and 1; at λ = 4 they differ by e^2 and more
    assert_close(
        torch.stack([kohya, onetrainer, paper])[:, lam == 0].flatten(),
        torch.tensor([1, 2**0.5, 1.0]).double(),
    )
    assert (onetrainer / kohya - 1).abs().max() > 1.0
    assert (paper / kohya - 1).abs().max() > 1.0
    assert (onetrainer / paper - 1).abs().max() > 0.4


def test_kohya_scale_v_pred_like_noise_pred_is_the_eps_loss():
    lam = torch.linspace(-15.0, math.log(1000.0), 40, dtype=F64)
    assert_close(weighting("scale_v_pred_loss_like_noise_pred")(lam), torch.ones_like(lam))
    own = torch.sigmoid(lam)  # SNR/(SNR + 1) on the v loss
    assert_close(own * parameterization("v").loss_factor(lam), torch.ones_like(lam))


def test_k_diffusion_and_edm_weights_in_their_own_units():
    """k-diffusion applies weights to the F loss: 'karras' = 1, 'soft-min-snr' = (σσ_d)²/(σ² + σ_d²)²,
    'snr' = σ_d²/(σ² + σ_d²) (k_diffusion/layers.py, Denoiser)."""
    sd = 0.5
    sigma = (-LAM / 2).exp()
    f_units = parameterization("edm", sigma_data=sd)
    assert_close(in_units(weighting("constant"), f_units)(LAM), weighting("edm", sigma_data=sd)(LAM))
    soft = (sigma * sd) ** 2 / (sigma**2 + sd**2) ** 2
    assert_close(soft * f_units.loss_factor(LAM), weighting("soft_min_snr", sigma_data=sd)(LAM))
    assert_close(sd**2 / (sigma**2 + sd**2) * f_units.loss_factor(LAM), torch.ones_like(LAM))
    # EDM paper: λ(σ) = (σ² + σ_d²)/(σσ_d)² on the D (= x₀) loss
    edm_x0 = (sigma**2 + sd**2) / (sigma * sd) ** 2
    assert_close(in_units(lambda_weight(edm_x0), "x0")(LAM), weighting("edm", sigma_data=sd)(LAM))


def lambda_weight(values: torch.Tensor):
    """A Weighting that returns fixed values on LAM (test helper)."""

    @dataclasses.dataclass(frozen=True)
    class _Fixed(Weighting):
        def __call__(self, logsnr):
            assert logsnr.shape == values.shape
            return values

    return _Fixed()


def test_sd3_weights_match_diffusers():
    training_utils = pytest.importorskip("diffusers.training_utils")
    t = torch.linspace(0.02, 0.98, 49, dtype=F64)
    lam = 2 * (torch.log1p(-t) - torch.log(t))
    flow = parameterization("flow").loss_factor(lam)
    for scheme in ("sigma_sqrt", "cosmap"):
        ref = training_utils.compute_loss_weighting_for_sd3(weighting_scheme=scheme, sigmas=t).to(F64)
        assert_close(weighting(scheme)(lam), ref * flow, rtol=1e-6, atol=0)
        assert_close(weighting(scheme, units="x0")(lam), ref * lam.neg().exp(), rtol=1e-6, atol=0)
    # σ⁻² on the x₀ loss is exactly the plain flow-matching loss
    assert_close(weighting("sigma_sqrt", units="x0")(lam), flow)
    assert_close(weighting("sigma_sqrt")(LAM), 16 * torch.cosh(LAM / 4) ** 4)


def test_elbo_weight_makes_the_effective_weighting_constant():
    d = _StdNormal()
    w = weighting("elbo", density=d)
    assert_close(w(LAM) * d.log_prob(LAM).exp(), torch.ones_like(LAM))


def test_combinators():
    a, b = weighting("min_snr", gamma=5.0), weighting("sigmoid", bias=1.0)
    assert_close(product(a, b)(LAM), a(LAM) * b(LAM))
    assert_close(weighting("product", a=a, b=b)(LAM), a(LAM) * b(LAM))
    assert_close(scaled(a, 0.25)(LAM), 0.25 * a(LAM))
    for name in ("eps", "x0", "v", "flow", "edm"):
        for process in ("vp", "ve", "flow"):
            p = parameterization(name)
            assert_close(
                in_units(b, name, process=process)(LAM), b(LAM) * p.loss_factor(LAM, process=process)
            )


@settings(max_examples=30, deadline=None)
@given(
    lams=st.lists(st.floats(-12.0, 12.0), min_size=5, max_size=5),
    seed=st.integers(0, 2**31 - 1),
    name=st.sampled_from(["x0", "v", "flow", "edm"]),
    process=st.sampled_from(["vp", "flow"]),
)
def test_in_units_weights_the_same_loss(lams, seed, name, process):
    """w_own(λ)·‖pred − target‖² = in_units(w_own, p)(λ)·‖ε̂ − ε‖² on random wrong predictions."""
    lam = torch.tensor(lams, dtype=F64)
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(5, 8, generator=g, dtype=F64), torch.randn(5, 8, generator=g, dtype=F64)
    a, s = (broadcast(c, x0) for c in alpha_sigma(logsnr=lam, process=process))
    p = parameterization(name)
    target = p.target(x0=x0, eps=eps, alpha=a, sigma=s)
    pred = target + torch.randn(5, 8, generator=g, dtype=F64)
    _, eps_hat = p.to_x0_eps(pred, z=a * x0 + s * eps, alpha=a, sigma=s)
    own = weighting("soft_min_snr", sigma_data=1.0)
    lhs = own(lam) * (pred - target).pow(2).sum(1)
    rhs = in_units(own, p, process=process)(lam) * (eps_hat - eps).pow(2).sum(1)
    assert_close(lhs, rhs, rtol=1e-8, atol=0)


def test_dtype_and_shape_follow_the_input():
    lam32 = torch.linspace(-5, 5, 7, dtype=torch.float32).reshape(7)
    for name in sorted(LIMITS):
        out = weighting(name)(lam32)
        assert out.dtype == torch.float32 and out.shape == (7,)
    assert weighting("min_snr")([0.0, 1.0]).dtype == F64


def test_serialisation_round_trip():
    comps = [weighting(n) for n in sorted(LIMITS)] + [
        weighting("p2", k=2.0, gamma=0.5),
        weighting("sigma_sqrt", units="x0"),
        weighting("debiased", snr_max=INF),
        product(weighting("min_snr", gamma=1.0), weighting("debiased")),
        scaled(weighting("edm", sigma_data=1.0), 3.0),
        in_units(weighting("sigmoid", bias=-1.0), "v", process="vp"),
        in_units(weighting("constant"), parameterization("edm", sigma_data=0.7)),
    ]
    for w in comps:
        again = from_dict(w.to_dict())
        assert again == w
        assert_close(again(LAM), w(LAM))
    d = pytest.importorskip("noiselevels.training.densities")
    elbo = weighting("elbo", density=d.density("logit_normal"))
    assert from_dict(elbo.to_dict()) == elbo


def test_registry_lists_all_names():
    expected = set(LIMITS) | {"elbo", "product", "scaled", "in_units"}
    # training/tool_weightings.py registers the tools' own curves (ai_toolkit_weighted, kohya) in the
    # same registry
    defined_here = {n for n in WEIGHTINGS.names() if WEIGHTINGS.get(n).__module__ == weightings.__name__}
    assert defined_here == expected


@pytest.mark.parametrize(
    ("name", "kw", "match"),
    [
        ("min_snr", {"gamma": -5.0}, "gamma must be > 0"),
        ("min_snr", {"gamma": 0.0}, "gamma must be > 0"),
        ("max_snr", {"gamma": float("nan")}, "gamma must be a finite number"),
        ("snr_gamma", {"gamma": -1.0}, "gamma must be > 0"),
        ("p2", {"k": 0.0}, "k must be > 0"),
        ("p2", {"gamma": -0.5}, "gamma must be >= 0"),
        ("soft_min_snr", {"sigma_data": 0.0}, "sigma_data must be > 0"),
        ("edm", {"sigma_data": -0.5}, "sigma_data must be > 0"),
        ("debiased", {"snr_max": -1.0}, "snr_max must be > 0"),
        ("constant", {"value": -1.0}, "value must be >= 0"),
        ("sigmoid", {"bias": INF}, "bias must be a finite number"),
        ("sigma_sqrt", {"units": "v"}, "units must be one of flow, x0"),
        ("v_pred_like_loss", {"c": -0.1}, "c must be >= 0"),
        ("min_snr", {"gama": 5.0}, "unknown parameter.*'gama'.*valid parameters: gamma"),
        ("min-snr", {}, "unknown weighting 'min-snr'; valid names: .*min_snr"),
        ("product", {"a": "min_snr", "b": "edm"}, "a must be a Weighting"),
        ("scaled", {"weighting": weighting("edm"), "factor": -2.0}, "factor must be >= 0"),
        (
            "in_units",
            {"weighting": weighting("edm"), "parameterization": "velocity"},
            "unknown parameterization",
        ),
        ("in_units", {"weighting": weighting("edm"), "parameterization": "v", "process": "vq"}, "process"),
        ("elbo", {"density": "logit_normal"}, "density must be a Density"),
    ],
)
def test_bad_input_raises_clear_errors(name, kw, match):
    with pytest.raises(ValueError, match=match):
        weighting(name, **kw)


def test_nan_logsnr_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        weighting("min_snr")(torch.tensor([0.0, float("nan")]))
