"""Each tool preset maps to the documented (process, parameterisation, p(λ), w(λ)); disagreements kept."""

import math

import pytest
import torch
from torch.testing import assert_close

import noiselevels.presets as presets_pkg
from noiselevels import catalog
from noiselevels.analysis import compare
from noiselevels.config import NoiseConfig
from noiselevels.levels import flow_t
from noiselevels.presets import (
    PRESETS,
    TOOLS,
    AiToolkitWeighted,
    KohyaWeighting,
    ai_toolkit,
    describe_preset,
    diffusers,
    kohya,
    list_presets,
    onetrainer,
    preset,
    qualified_name,
    simpletuner,
)
from noiselevels.presets._common import _uniform_flow
from noiselevels.schedules import flux_mu
from noiselevels.training import tool_weightings
from noiselevels.training.densities import density
from noiselevels.training.tool_weightings.ai_toolkit import AI_TOOLKIT_WEIGHTS

LAM = torch.linspace(-9.0, 9.0, 361, dtype=torch.float64)
SNR = torch.exp(LAM)
FLOW_F = (1 + torch.exp(-LAM / 2)) ** 2  # flow loss → ε units
V_F = 1 + torch.exp(-LAM)  # v loss (vp) → ε units


def normal_logpdf(x, mean, std):
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std * math.sqrt(2 * math.pi))


def test_vocabularies_present():
    names = set(list_presets())
    expected = {
        "ai-toolkit:" + n
        for n in (
            "linear",
            "sigmoid",
            "weighted",
            "shift",
            "lognorm_blend",
            "content",
            "style",
            "snr_gamma",
            "min_snr_gamma",
        )
    }
    expected |= {
        "kohya:" + n
        for n in (
            "uniform",
            "sigmoid",
            "shift",
            "flux_shift",
            "sigma",
            "ddpm",
            "min_snr_gamma",
            "debiased_estimation_loss",
            "scale_v_pred_loss_like_noise_pred",
            "v_pred_like_loss",
        )
    }
    expected |= {
        "diffusers:" + n
        for n in ("sd3", "logit_normal", "mode", "cosmap", "sigma_sqrt", "none", "flux", "snr_gamma")
    }
    expected |= {
        "onetrainer:" + n
        for n in ("uniform", "logit_normal", "heavy_tail", "beta", "cos_map", "sigmoid", "inverted_parabola")
    }
    expected |= {"simpletuner:" + n for n in ("sigmoid", "uniform", "beta", "snr_gamma", "ddpm")}
    assert expected <= names
    assert set(list_presets("kohya")) == {n for n in names if n.startswith("kohya:")}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips(name):
    cfg = preset(name)
    assert cfg.preset == name and cfg.description
    W = cfg.effective_weighting()(LAM)
    assert torch.isfinite(W).all() and (W >= 0).all() and (W > 0).any()
    assert NoiseConfig.from_dict(cfg.to_dict()) == cfg
    assert name in describe_preset(name)


def test_unknown_preset_and_param():
    with pytest.raises(ValueError, match=r"unknown preset 'kohya:sigmoidd'; valid presets: .*kohya:sigmoid"):
        preset("kohya:sigmoidd")
    with pytest.raises(
        ValueError, match=r"unknown parameter.*'sigmoid_scal'.*valid parameters: sigmoid_scale"
    ):
        preset("kohya:sigmoid", sigmoid_scal=1.0)
    with pytest.raises(ValueError, match="sigmoid_scale must be > 0"):
        preset("kohya:sigmoid", sigmoid_scale=-1.0)
    with pytest.raises(ValueError, match="unknown weighting_scheme 'sigma'"):
        preset("kohya:sigmoid", weighting_scheme="sigma")
    with pytest.raises(ValueError, match="unknown tool"):
        list_presets("comfy")


# -- logit-normal family: sigmoid(k·n) ⇒ λ ~ N(−2·mean, (2k)²) ---------------------------------------
@pytest.mark.parametrize("k", [0.5, 1.0, 1.7])
def test_kohya_sigmoid_is_logit_normal(k):
    cfg = preset("kohya:sigmoid", sigmoid_scale=k)
    assert (cfg.process, cfg.parameterization) == ("flow", "flow")
    assert_close(cfg.density.log_prob(LAM), normal_logpdf(LAM, 0.0, 2 * k))
    assert_close(cfg.weighting(LAM), FLOW_F)  # --weighting_scheme none: the plain flow loss


def test_kohya_shift_and_flux_shift():
    cfg = preset("kohya:shift", sigmoid_scale=1.0, discrete_flow_shift=3.0)
    assert_close(cfg.density.log_prob(LAM), normal_logpdf(LAM, -2 * math.log(3.0), 2.0))
    mu = flux_mu(4096)
    assert mu == pytest.approx(1.15)
    cfg = preset("kohya:flux_shift", image_seq_len=4096)
    assert_close(cfg.density.log_prob(LAM), normal_logpdf(LAM, -2 * mu, 2.0))
    # sampled σ = S(sigmoid(n); 3) really has this density: compare with the draw made the kohya way
    g = torch.Generator().manual_seed(0)
    s0 = torch.sigmoid(torch.randn(200_000, generator=g, dtype=torch.float64))
    s = 3 * s0 / (1 + 2 * s0)
    lam = 2 * torch.log((1 - s) / s)
    assert float(lam.mean()) == pytest.approx(-2 * math.log(3.0), abs=0.02)
    assert float(lam.std()) == pytest.approx(2.0, abs=0.02)


def test_same_name_same_thing_across_tools():
    base = preset("kohya:sigmoid")
    # ai-toolkit's sigmoid is the same logit-normal, but its index randint(0, 999) never reads the cleanest
    # of the 1000 sorted levels (max_denoising_steps 999 is excluded): TV ≈ 1e-4, not 0
    assert compare(base, preset("ai-toolkit:sigmoid")).tv < 2e-4
    assert compare(base, preset("simpletuner:sigmoid", flow_schedule_shift=0)).tv == 0.0
    # SimpleTuner's flow_schedule_shift defaults to 3.0, as kohya's --discrete_flow_shift
    assert compare(preset("kohya:shift"), preset("simpletuner:sigmoid")).tv < 1e-12
    # OneTrainer's LOGIT_NORMAL (std w + 1) is the same logit-normal drawn into integer timesteps: its cdf
    # at each timestep's own level σ = (i + 1)/1000 is the logit-normal's, and the whole differs by TV < 0.005
    assert compare(base, preset("onetrainer:logit_normal")).tv < 0.005
    ot = preset("onetrainer:logit_normal", noising_weight=0.5, noising_bias=0.2)
    lam_i = _flow_lam_of_timesteps()
    assert_close(ot.density.cdf(lam_i), torch.special.ndtr((lam_i + 0.4) / 3.0))


def _flow_lam_of_timesteps():
    """λ of OneTrainer's flow timesteps i = 0 … 998 (σ = (i + 1)/1000; i = 999 is λ = −∞)."""
    sigma = torch.arange(1, 1000, dtype=torch.float64) / 1000
    return 2 * torch.log((1 - sigma) / sigma)


def test_onetrainer_sigmoid_is_not_logit_normal():
    ot, ko = preset("onetrainer:sigmoid", noising_weight=1.0), preset("kohya:sigmoid")
    assert ot.density.name == "onetrainer_timesteps" and ko.density.name == "logit_normal"
    assert compare(ot, ko).tv_density > 0.2
    # multinomial over the 1000 timesteps ∝ sigmoid(w(j/999 − ½)) (no shift)
    q = torch.sigmoid(torch.linspace(0.0, 1.0, 1000, dtype=torch.float64) - 0.5)
    assert_close(ot.density.probs, q / q.sum())


# -- ai-toolkit --------------------------------------------------------------------------------------
def test_ai_toolkit_linear_and_shift():
    """Index cells [0, 999) of the 1000-level grid: σ uniform on [0.001, 1], i.e. the uniform-σ density
    truncated at the cleanest level (max_denoising_steps = 999 is excluded by randint)."""
    lam = LAM[LAM < 2 * math.log(0.999 / 0.001)]
    W = preset("ai-toolkit:linear").effective_weighting()
    assert_close(W(lam), 0.5 * torch.exp(-lam / 2) / 0.999)
    # the Flux scheduler's max_shift is 1.15 (toolkit/sampler.py 84); 1.16 is only a fallback
    mu = flux_mu(4096, max_shift=1.15)
    assert mu == pytest.approx(1.15)
    cfg = preset("ai-toolkit:shift", image_seq_len=4096)
    shifted = preset("ai-toolkit:flux_shift")
    lam = LAM[LAM < 2 * math.log(0.999 / 0.001) - 2 * mu]
    want = 0.125 / torch.cosh((lam + 2 * mu) / 4) ** 2 / 0.999
    assert_close(cfg.density.prob(lam), want)
    assert_close(shifted.density.prob(lam), want)


def test_ai_toolkit_weighted_is_the_table():
    """The flow-loss weight at the grid level σ_i = 1 − i/1000 is the tool's table entry i."""
    w = AiToolkitWeighted()
    i = torch.arange(1, 1000, dtype=torch.float64)
    sig = 1 - i / 1000
    table = torch.tensor(AI_TOOLKIT_WEIGHTS, dtype=torch.float64)
    assert_close(w(2 * torch.log((1 - sig) / sig)), table[1:], rtol=1e-12, atol=0)
    assert float(sig[int(w(2 * torch.log((1 - sig) / sig)).argmax())]) == pytest.approx(0.876)
    cfg = preset("ai-toolkit:weighted")
    assert_close(cfg.weighting(LAM), w(LAM) * FLOW_F)


def test_ai_toolkit_content_style():
    """content / style are ``content_or_style`` on the default sigmoid type (not on a uniform grid):
    the cubic index of the N(0, 2²) cdf F (content F^(1/3), style 1 − (1 − F)^(1/3)) read on a sorted sample
    of 1000 levels, which differs from the continuous cubic by up to 0.04 at the ends (index 0 is the
    minimum of 1000 draws, drawn with probability 0.1); tests/presets/test_ai_toolkit.py checks the
    tool's own draws to KS 0.005."""
    F = torch.special.ndtr(LAM / 2)
    mid = (LAM > -5) & (LAM < 5)
    content = preset("ai-toolkit:content").density.cdf(LAM)
    style = preset("ai-toolkit:style").density.cdf(LAM)
    assert_close(content[mid], F[mid] ** (1 / 3), atol=0.01, rtol=0)
    assert_close(style[mid], 1 - (1 - F[mid]) ** (1 / 3), atol=0.01, rtol=0)
    assert (content - F ** (1 / 3)).abs().max() < 0.05 and (style - 1 + (1 - F) ** (1 / 3)).abs().max() < 0.05
    # on the linear grid they are the cubic index of uniform σ: Beta(1, ⅓) / Beta(⅓, 1) over σ
    t = flow_t(logsnr=LAM)
    got = preset("ai-toolkit:linear", content_or_style="style").density.cdf(LAM)
    assert_close(got, 1 - t ** (1 / 3), atol=2e-3, rtol=0)


def test_ai_toolkit_lognorm_blend_is_the_table_law():
    """1000 entries: 250 evenly spaced (one each) + 749 non-maximal log-normal ones + the maximum, whose
    entry the balanced index never reads (the preset cuts the cleanest 1/1000)."""
    d = preset("ai-toolkit:lognorm_blend").density
    assert d.name == "truncated" and d.base.name == "flow_time_atoms"
    assert sum(d.base.weights) == pytest.approx(1000.0, rel=1e-12)
    assert float(d.cdf(torch.tensor([math.inf], dtype=torch.float64))) == 1.0


def test_ai_toolkit_snr_gamma_vs_min_snr_gamma():
    s = preset("ai-toolkit:snr_gamma", gamma=5.0).weighting(LAM)
    m = preset("ai-toolkit:min_snr_gamma", gamma=5.0).weighting(LAM)
    assert_close(s, 5.0 / SNR)  # unclamped
    assert_close(m, torch.clamp(5.0 / SNR, max=1.0))
    # no v variant: min(γ/SNR, 1) multiplies the v loss;
    # kohya/diffusers' v formula is min-SNR in ε units
    mv = preset("ai-toolkit:min_snr_gamma", gamma=5.0, prediction_type="v_prediction").weighting(LAM)
    kv = preset("kohya:min_snr_gamma", gamma=5.0, v_parameterization=True).weighting(LAM)
    assert_close(mv, kv * V_F)


# -- kohya DDPM flags --------------------------------------------------------------------------------
def test_kohya_min_snr_is_min_snr_for_eps_and_v():
    e = preset("kohya:min_snr_gamma", gamma=5.0).weighting(LAM)
    v = preset("kohya:min_snr_gamma", gamma=5.0, v_parameterization=True).weighting(LAM)
    assert_close(e, torch.clamp(SNR, max=5.0) / SNR)
    assert_close(v, e)
    assert_close(
        preset("diffusers:snr_gamma", snr_gamma=5.0, prediction_type="v_prediction").weighting(LAM), e
    )


def test_debiased_disagreement_kohya_vs_onetrainer():
    lam = LAM[LAM < math.log(1000.0)]
    snr = torch.exp(lam)
    assert_close(preset("kohya:debiased_estimation_loss").weighting(lam), 1 / torch.sqrt(snr))
    kohya_v = preset("kohya:debiased_estimation_loss", v_parameterization=True).weighting(lam)
    assert_close(kohya_v, 1 / snr)  # 1/(SNR + 1) on the v loss
    ot_v = preset("onetrainer:uniform", loss_weight_fn="DEBIASED_ESTIMATION", model="v").weighting(lam)
    assert_close(ot_v, torch.sqrt(snr + 1) / snr)  # 1/√(SNR + 1) on the v loss
    assert not torch.allclose(kohya_v, ot_v)


def test_kohya_v_scalings():
    lam = LAM[LAM < math.log(1000.0)]
    snr = torch.exp(lam)
    assert_close(preset("kohya:scale_v_pred_loss_like_noise_pred").weighting(lam), torch.ones_like(lam))
    assert_close(
        preset("kohya:v_pred_like_loss", v_pred_like_loss=0.2).weighting(lam), 1 + 0.2 * (snr + 1) / snr
    )


def test_kohya_chain_multiplies_in_target_units():
    lam = LAM[LAM < math.log(1000.0)]
    snr = torch.exp(lam)
    w = KohyaWeighting(min_snr_gamma=5.0, debiased_estimation_loss=True, v_prediction=True)
    on_v = torch.clamp(snr, max=5.0) / (snr + 1) / (snr + 1)
    assert_close(w(lam), on_v * (1 + torch.exp(-lam)))
    w = KohyaWeighting(min_snr_gamma=5.0, v_pred_like_loss=0.1)
    assert_close(w(lam), torch.clamp(snr, max=5.0) / snr * (1 + 0.1 * (snr + 1) / snr))
    with pytest.raises(ValueError, match="min_snr_gamma must be >= 0"):
        KohyaWeighting(min_snr_gamma=-1.0)


def test_kohya_min_max_timestep_truncates():
    cfg = preset("kohya:ddpm", min_timestep=100, max_timestep=900)
    sched = cfg.schedule
    lo = float(sched.logsnr(torch.tensor(0.9, dtype=torch.float64)))
    hi = float(sched.logsnr(torch.tensor(0.1, dtype=torch.float64)))
    assert cfg.density.support == pytest.approx((lo, hi))
    # inside, the density is uniform in t: the same shape as the untruncated one, scaled by 1/0.8
    full = preset("kohya:ddpm").density
    lam = torch.linspace(lo + 0.01, hi - 0.01, 50, dtype=torch.float64)
    assert_close(cfg.density.prob(lam), full.prob(lam) / 0.8)
    with pytest.raises(ValueError, match="min_timestep < max_timestep"):
        preset("kohya:ddpm", min_timestep=500, max_timestep=100)


# -- diffusers SD3: one name for both functions --------------------------------------------------------
def test_diffusers_one_name_two_functions():
    none, cosmap, sigma_sqrt = (
        preset("diffusers:none"),
        preset("diffusers:cosmap"),
        preset("diffusers:sigma_sqrt"),
    )
    # the density function silently falls back to uniform for cosmap / sigma_sqrt (SD3's shifted table)
    assert cosmap.density == sigma_sqrt.density == _uniform_flow(3.0)
    assert cosmap.density.name == "uniform_t"
    # 'none' is only the Flux script's (its default): uniform on the unshifted table, the plain flow loss
    assert none.density == preset("diffusers:flux", weighting_scheme="cosmap").density
    assert none.density == _uniform_flow(1.0)
    assert_close(none.weighting(LAM), FLOW_F)
    # the weight function falls back to 1 for logit_normal / mode (on the preconditioned x0 loss)
    ln = preset("diffusers:logit_normal")
    assert ln.density.name == "logit_normal"
    assert_close(ln.weighting(LAM), torch.exp(-LAM))  # weight 1 on the x0 loss
    assert_close(preset("diffusers:mode").weighting(LAM), torch.exp(-LAM))
    # sigma_sqrt on the x0 loss is exactly the plain flow loss
    assert_close(sigma_sqrt.weighting(LAM), FLOW_F)
    # without preconditioning the weight multiplies the flow loss: σ⁻²·(1 + e^(−λ/2))²
    s = flow_t(logsnr=LAM)
    raw = preset("diffusers:sigma_sqrt", precondition_outputs=False).weighting(LAM)
    assert_close(raw, FLOW_F / s**2)
    c = flow_t(logsnr=LAM)
    assert_close(cosmap.weighting(LAM), 2 / (math.pi * (1 - 2 * c + 2 * c * c)) * torch.exp(-LAM))


def test_diffusers_sd3_shift_moves_logit_normal():
    cfg = preset("diffusers:sd3", weighting_scheme="logit_normal", logit_mean=0.5, logit_std=1.2, shift=3.0)
    # u indexes the descending table, σ = shift(1 − u): logit-normal(−0.5 + log 3, 1.2) over σ
    # (it was logit-normal(+0.5 + log 3): the mean's sign was flipped)
    assert_close(cfg.density.log_prob(LAM), normal_logpdf(LAM, -2 * (-0.5 + math.log(3.0)), 2.4))
    mode = preset("diffusers:sd3", weighting_scheme="mode", mode_scale=1.29, shift=3.0).density
    base = density("mode", scale=1.29)
    assert_close(mode.log_prob(LAM), base.log_prob(LAM + 2 * math.log(3.0)))


# -- OneTrainer ------------------------------------------------------------------------------------------
def test_onetrainer_distributions():
    # integer timesteps: at each timestep's own level the cdf is the continuous distribution's (tests/presets/
    # test_onetrainer.py compares every preset with a re-implementation of the tool's sampler)
    lam_i = _flow_lam_of_timesteps()
    for name, dens in [
        ("heavy_tail", density("mode", scale=1.29)),
        ("beta", density("beta", a=2.0, b=3.0)),
        ("uniform", density("uniform_t", schedule=preset("kohya:shift").schedule)),
    ]:
        cfg = preset(
            f"onetrainer:{name}", noising_weight=1.29 if name == "heavy_tail" else 2.0, noising_bias=3.0
        )
        assert_close(cfg.density.cdf(lam_i), dens.cdf(lam_i))
    shifted = preset("onetrainer:logit_normal", timestep_shift=2.0).density
    assert_close(shifted.cdf(lam_i), torch.special.ndtr((lam_i + 2 * math.log(2.0)) / 2.0))
    # the multinomial ones: weights at the 1000 points j/999 (no shift)
    x = torch.linspace(0.0, 1.0, 1000, dtype=torch.float64)
    ip = preset("onetrainer:inverted_parabola", noising_weight=2.0, noising_bias=0.1).density.probs
    q = torch.clamp(2 - 2.0 * (x - 0.6) ** 2, min=0.0)
    assert_close(ip, q / q.sum())
    q = 2 / (math.pi * (1 - 2 * x + 2 * x**2))
    assert_close(preset("onetrainer:cos_map").density.probs, q / q.sum())
    # loss weights: P2 on ε (1 + SNR)^−γ; flow models take only CONSTANT and SIGMA (σ on the flow loss)
    p2 = preset("onetrainer:uniform", loss_weight_fn="P2", loss_weight_strength=1.0, model="eps").weighting(
        LAM
    )
    assert_close(p2, 1 / (1 + SNR))
    sigma = preset("onetrainer:uniform", loss_weight_fn="SIGMA").weighting(LAM)
    assert_close(sigma, FLOW_F * flow_t(logsnr=LAM))
    with pytest.raises(ValueError, match="not implemented for flow matching models"):
        preset("onetrainer:uniform", loss_weight_fn="P2")
    with pytest.raises(ValueError, match="unknown loss_weight_fn 'sigma'"):
        preset("onetrainer:uniform", loss_weight_fn="sigma")


def test_one_module_per_tool_and_registered_tool_weightings():
    modules = {"ai-toolkit": ai_toolkit, "kohya": kohya, "diffusers": diffusers}
    modules |= {"onetrainer": onetrainer, "simpletuner": simpletuner}
    assert set(modules) == set(TOOLS)
    for tool, module in modules.items():
        assert module.TABLE.tool == tool
        assert set(module.TABLE.entries) == set(list_presets(tool))
        assert module.__doc__ and "Options mapped" in module.__doc__
    assert len(PRESETS) == sum(len(m.TABLE.entries) for m in modules.values())
    # the tools' own weightings are registered components (catalog), re-exported by the presets
    assert presets_pkg.AiToolkitWeighted is tool_weightings.AiToolkitWeighted
    assert presets_pkg.KohyaWeighting is tool_weightings.KohyaWeighting
    assert catalog.registry("weighting").get("ai_toolkit_weighted") is AiToolkitWeighted
    assert catalog.registry("weighting").get("kohya") is KohyaWeighting
    w = KohyaWeighting(min_snr_gamma=5.0, v_prediction=True)
    assert catalog.from_dict(w.to_dict()) == w
    assert qualified_name("sigmoid") == "ai-toolkit:sigmoid"
    assert qualified_name("kohya:sigmoid") == "kohya:sigmoid"
