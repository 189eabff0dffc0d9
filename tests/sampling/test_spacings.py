"""Tests of noiselevels.sampling.spacings: reference grids (methods.md, k-diffusion, diffusers, ComfyUI rules,
published AYS tables), closed forms, properties and errors."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from kdiffusion_ref import kdiffusion_sampling
from torch.testing import assert_close

import noiselevels.sampling.spacings as pkg
from noiselevels.catalog import from_dict
from noiselevels.components import SPACINGS, Density
from noiselevels.sampling.spacings import AYS_TABLES, beta_ppf, spacing

F64 = torch.float64


@contextlib.contextmanager
def default_dtype(dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _t(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# published / computed values
# ----------------------------------------------------------------------------------------------
def test_karras_18_step_grid_matches_methods_md():
    expected = [80, 57.586, 40.7856, 28.3746, 19.3525, 12.9101, 8.4009, 5.3152, 3.2568, 1.9233, 1.0882,
                0.5853, 0.2964, 0.1395, 0.0599, 0.0229, 0.0075, 0.002, 0.0]  # fmt: skip
    got = spacing("karras", rho=7).sigmas(18, sigma_min=0.002, sigma_max=80.0)
    assert got.dtype == F64 and got.shape == (19,)
    # the published values are rounded to 4 decimals (5 significant digits for the largest)
    assert_close(got, _t(expected), rtol=0, atol=6e-4)
    assert_close(got[-6:], _t(expected[-6:]), rtol=0, atol=6e-5)


@pytest.mark.parametrize("model", ["sd15", "sdxl", "svd"])
def test_ays_ten_steps_is_the_published_table_with_last_value_zero(model):
    table = list(AYS_TABLES[model])
    got = spacing("ays", model=model).sigmas(10)
    assert_close(got, _t([*table[:-1], 0.0]), rtol=1e-13, atol=0)


def test_ays_tables_equal_methods_md_and_diffusers():
    from diffusers.schedulers.scheduling_utils import AysSchedules

    assert AYS_TABLES["sd15"][0] == 14.6146412293 and AYS_TABLES["sd15"][-1] == 0.0291671582
    assert AYS_TABLES["sdxl"][3] == 2.1811480769 and AYS_TABLES["svd"][0] == 700.0
    assert_close(spacing("ays", model="svd").sigmas(10), _t(AysSchedules["StableDiffusionVideoSigmas"]),
                 rtol=0, atol=0)  # fmt: skip
    # The published SD tables are the SD σ table at diffusers' AYS timesteps (and σ at timestep 0 last);
    # diffusers' own AYS sigma lists are approximations of them (within 1.5 %).
    sd = _ddpm()
    table = torch.exp(-0.5 * sd.logsnr_table())
    for ours, key in [("sd15", "StableDiffusion"), ("sdxl", "StableDiffusionXL")]:
        got = spacing("ays", model=ours).sigmas(10)
        assert_close(got[:-1], table[AysSchedules[f"{key}Timesteps"]], rtol=1e-8, atol=0)
        assert_close(_t(AYS_TABLES[ours][-1:]), table[:1], rtol=1e-8, atol=0)  # 10 decimals
        assert_close(got, _t(AysSchedules[f"{key}Sigmas"]), rtol=0.015, atol=0)


@pytest.mark.parametrize("model", ["sd15", "sdxl", "svd"])
def test_ays_interpolation_is_log_linear_between_the_table_values(model):
    table = _t(AYS_TABLES[model])
    got = spacing("ays", model=model).sigmas(20)  # 21 points on a grid twice as fine as the table
    assert got.shape == (21,) and got[-1] == 0
    assert_close(got[0:20:2], table[:10], rtol=1e-13, atol=0)  # the knots are the table values
    assert_close(got[1:20:2], torch.sqrt(table[:10] * table[1:]), rtol=1e-13, atol=0)  # geometric means


def test_ays_other_step_counts_follow_the_comfyui_rule():
    table = np.array(AYS_TABLES["sdxl"])
    for n in (1, 4, 7, 15, 32):
        xs = np.linspace(0, 1, len(table))
        ys = np.log(table[::-1])
        ref = np.exp(np.interp(np.linspace(0, 1, n + 1), xs, ys))[::-1].copy()
        ref[-1] = 0.0
        assert_close(spacing("ays", model="sdxl").sigmas(n), _t(ref), rtol=1e-13, atol=0)


def test_ays_range_rescales_log_sigma_affinely():
    s = spacing("ays", model="sd15")
    got = s.sigmas(10, sigma_min=0.002, sigma_max=80.0)
    table = torch.log(_t(AYS_TABLES["sd15"]))
    a = (math.log(80.0) - math.log(0.002)) / (table[0] - table[-1])
    expected = torch.exp(math.log(0.002) + (table - table[-1]) * a)
    assert_close(got, torch.cat([expected[:-1], torch.zeros(1, dtype=F64)]), rtol=1e-12, atol=0)
    assert got[0].item() == pytest.approx(80.0, rel=1e-14)


# ----------------------------------------------------------------------------------------------
# k-diffusion reference grids
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 10, 18, 50])
@pytest.mark.parametrize("rho", [1.0, 3.0, 7.0])
@pytest.mark.parametrize("lo_hi", [(0.002, 80.0), (0.03, 14.6)])
def test_karras_matches_kdiffusion(n, rho, lo_hi):
    K = kdiffusion_sampling()
    with default_dtype(F64):
        ref = K.get_sigmas_karras(n, *lo_hi, rho=rho)
    got = spacing("karras", rho=rho).sigmas(n, sigma_min=lo_hi[0], sigma_max=lo_hi[1])
    assert_close(got, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n", [1, 2, 10, 33])
@pytest.mark.parametrize("lo_hi", [(0.002, 80.0), (0.03, 14.6)])
def test_exponential_and_polyexponential_match_kdiffusion(n, lo_hi):
    K = kdiffusion_sampling()
    with default_dtype(F64):
        ref_exp = K.get_sigmas_exponential(n, *lo_hi)
        ref_poly = {rho: K.get_sigmas_polyexponential(n, *lo_hi, rho=rho) for rho in (0.5, 1.0, 2.0)}
    kw = dict(sigma_min=lo_hi[0], sigma_max=lo_hi[1])
    assert_close(spacing("exponential").sigmas(n, **kw), ref_exp, rtol=1e-13, atol=0)
    for rho, ref in ref_poly.items():
        assert_close(spacing("polyexponential", rho=rho).sigmas(n, **kw), ref, rtol=1e-13, atol=0)
    assert_close(spacing("polyexponential").sigmas(n, **kw), ref_exp, rtol=1e-13, atol=0)


@pytest.mark.parametrize("n", [1, 2, 10, 40])
@pytest.mark.parametrize("params", [{}, {"beta_d": 10.0, "beta_min": 0.5, "eps_s": 1e-2}])
def test_vp_matches_kdiffusion(n, params):
    K = kdiffusion_sampling()
    with default_dtype(F64):
        ref = K.get_sigmas_vp(n, **params)
    assert_close(spacing("vp", **params).sigmas(n), ref, rtol=1e-12, atol=0)


def test_vp_with_a_range_is_uniform_in_vp_time():
    s = spacing("vp")
    got = s.sigmas(12, sigma_min=0.01, sigma_max=50.0)
    t = torch.sqrt(0.1**2 + 2 * 19.9 * torch.log1p(got[:-1] ** 2))
    t = (t - 0.1) / 19.9
    assert_close(t.diff(), torch.full((11,), float(t[1] - t[0]), dtype=F64), rtol=1e-10, atol=0)
    assert_close(got[[0, -2]], _t([50.0, 0.01]), rtol=1e-12, atol=0)


# ----------------------------------------------------------------------------------------------
# diffusers reference grids
# ----------------------------------------------------------------------------------------------
SD_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def _euler(**kw):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**{**SD_CONFIG, **kw})


@pytest.mark.parametrize("n", [1, 5, 25])
@pytest.mark.parametrize(
    "option, name, params",
    [
        ("use_karras_sigmas", "karras", {}),
        ("use_exponential_sigmas", "exponential", {}),
        ("use_beta_sigmas", "beta", {}),
    ],
)
def test_diffusers_euler_sigma_options(n, option, name, params):
    pytest.importorskip("scipy")
    plain = _euler(timestep_spacing="leading", steps_offset=1)
    plain.set_timesteps(n)
    lo, hi = float(plain.sigmas[-2]), float(plain.sigmas[0])  # diffusers' range: the spaced sigmas
    ref = _euler(timestep_spacing="leading", steps_offset=1, **{option: True})
    ref.set_timesteps(n)
    if n == 1 and name == "karras":
        lo = hi  # diffusers' own range collapses for one step; only the first value is defined
    got = spacing(name, **params).sigmas(n, sigma_min=min(lo, hi * 0.999), sigma_max=hi)
    assert_close(got[0], ref.sigmas[0].to(F64), rtol=2e-6, atol=0)
    if n > 1:
        got = spacing(name, **params).sigmas(n, sigma_min=lo, sigma_max=hi)
        assert_close(got, ref.sigmas.to(F64), rtol=2e-6, atol=0)


def test_beta_continuous_is_diffusers_formula_with_scipy_quantiles():
    stats = pytest.importorskip("scipy.stats")
    for n in (2, 7, 30):
        ppf = stats.beta.ppf(1 - np.linspace(0, 1, n), 0.6, 0.6)
        ref = np.concatenate([0.002 + ppf * (80.0 - 0.002), [0.0]])
        assert_close(spacing("beta").sigmas(n), _t(ref), rtol=1e-12, atol=0)
    ppf = stats.beta.ppf(1 - np.linspace(0, 1, 9), 2.0, 0.5)
    ref = np.concatenate([0.1 + ppf * (10.0 - 0.1), [0.0]])
    assert_close(spacing("beta", alpha=2.0, beta=0.5).sigmas(9, sigma_min=0.1, sigma_max=10.0), _t(ref),
                 rtol=1e-12, atol=0)  # fmt: skip


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's own root finder, at extreme (a, b)
@settings(max_examples=60, deadline=None)
@given(
    q=st.floats(0.0, 1.0),
    a=st.floats(0.1, 10.0),
    b=st.floats(0.1, 10.0),
)
def test_beta_ppf_matches_scipy(q, a, b):
    stats = pytest.importorskip("scipy.stats")
    ref = float(stats.beta.ppf(q, a, b))
    assume(math.isfinite(ref))  # scipy gives NaN in some extreme tails
    got = beta_ppf(q, a, b)
    assert got == pytest.approx(ref, rel=1e-9, abs=1e-12)


def _ddpm(**kw):
    schedules = pytest.importorskip("noiselevels.schedules")
    return schedules.schedule("ddpm", **{**SD_CONFIG, **kw})


@pytest.mark.parametrize("n", [1, 7, 10, 25, 50, 333])
@pytest.mark.parametrize("rule, offset", [("leading", 0), ("leading", 1), ("linspace", 0), ("trailing", 0)])
def test_uniform_t_discrete_rules_match_diffusers_euler(n, rule, offset):
    sched = _ddpm()
    ref = _euler(timestep_spacing=rule, steps_offset=offset)
    ref.set_timesteps(n)
    s = spacing("uniform_t", schedule=sched, rule=rule, steps_offset=offset)
    assert_close(s.timesteps(n), ref.timesteps.to(F64), rtol=0, atol=2e-4 if rule == "linspace" else 0)
    # diffusers' tables are float32 (1 − ᾱ near timestep 0 loses ~1e-4 relative)
    assert_close(s.sigmas(n), ref.sigmas.to(F64), rtol=1e-4, atol=0)
    table = torch.exp(-0.5 * sched.logsnr_table()).numpy()
    interp = np.interp(ref.timesteps.to(F64).numpy(), np.arange(1000), table)
    assert_close(s.sigmas(n)[:-1], _t(interp), rtol=1e-6 if rule == "linspace" else 1e-14, atol=0)


@pytest.mark.parametrize("n", [4, 10, 50])
@pytest.mark.parametrize("rule", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_uniform_t_discrete_rules_match_diffusers_ddim(n, rule, beta_schedule):
    from diffusers import DDIMScheduler

    sched = _ddpm(beta_schedule=beta_schedule, beta_start=0.0001, beta_end=0.02)
    ref = DDIMScheduler(beta_schedule=beta_schedule, beta_start=0.0001, beta_end=0.02, timestep_spacing=rule)
    ref.set_timesteps(n)
    s = spacing("uniform_t", schedule=sched, rule=rule)
    ts = s.timesteps(n)
    if rule == "linspace":
        ts = ts.round()  # DDIM rounds the linspace timesteps (Euler keeps them fractional)
    assert_close(ts, ref.timesteps.to(F64), rtol=0, atol=0)
    if rule != "linspace":
        acp = ref.alphas_cumprod.to(F64)[ref.timesteps]
        # compare ᾱ = 1/(1 + σ²): diffusers' float32 ᾱ is exact to ~1e-7 absolute
        assert_close(1 / (1 + s.sigmas(n)[:-1] ** 2), acp, rtol=0, atol=5e-7)


def test_uniform_t_trailing_ten_steps_of_methods_md():
    s = spacing("uniform_t", schedule=_ddpm(), rule="trailing")
    assert s.timesteps(10).tolist() == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]


def test_uniform_t_trailing_with_zero_terminal_snr_starts_at_infinite_sigma():
    sched = _ddpm(rescale_betas_zero_snr=True)
    s = spacing("uniform_t", schedule=sched, rule="trailing")
    sig, lam = s.sigmas(5), s.logsnrs(5)
    assert sig[0] == math.inf and lam[0] == -math.inf and lam[-1] == math.inf
    assert not torch.isnan(sig).any() and not torch.isnan(lam).any()
    assert_close(lam[1:-1], sched.logsnr_table()[[799, 599, 399, 199]], rtol=1e-14, atol=0)


def test_uniform_t_continuous_under_flow_is_uniform_in_flow_t():
    schedules = pytest.importorskip("noiselevels.schedules")
    s = spacing("uniform_t", schedule=schedules.schedule("flow"))
    got = s.sigmas(9, sigma_min=0.01, sigma_max=100.0)
    t = torch.linspace(100 / 101, 0.01 / 1.01, 9, dtype=F64)
    assert_close(got, torch.cat([t / (1 - t), torch.zeros(1, dtype=F64)]), rtol=1e-12, atol=0)


def test_beta_with_a_discrete_schedule_follows_the_comfyui_rule():
    stats = pytest.importorskip("scipy.stats")
    sched = _ddpm()
    table = torch.exp(-0.5 * sched.logsnr_table())
    for n in (1, 5, 20):
        idx = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, n, endpoint=False), 0.6, 0.6) * 999).astype(int)
        ref = torch.cat([table[torch.from_numpy(idx)], torch.zeros(1, dtype=F64)])
        assert_close(spacing("beta", schedule=sched).sigmas(n), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="repeat"):
        spacing("beta", schedule=sched).sigmas(400)


# ----------------------------------------------------------------------------------------------
# closed forms
# ----------------------------------------------------------------------------------------------
def test_kl_optimal_is_linear_in_arctan_sigma():
    got = spacing("kl_optimal").sigmas(15, sigma_min=0.01, sigma_max=20.0)
    a = torch.atan(got[:-1])
    expected = torch.linspace(math.atan(20.0), math.atan(0.01), 15, dtype=F64)
    assert_close(a, expected, rtol=1e-13, atol=1e-15)
    assert_close(spacing("kl_optimal").sigmas(1), _t([80.0, 0.0]), rtol=1e-14, atol=0)


def test_linear_quadratic_profile():
    s = spacing("linear_quadratic", threshold_noise=0.025)
    for n in (2, 3, 10, 25):
        prof = s.profile(n)
        m = n // 2
        assert prof[0] == 0 and prof[-1] == 1
        assert_close(prof[:m], torch.arange(m, dtype=F64) * 0.025 / m, rtol=1e-14, atol=1e-16)
        # the quadratic part continues the linear one and reaches 1 at step n: a·i² + b·i + c
        i = torch.arange(m, n + 1, dtype=F64)
        coef = np.polyfit(i.numpy(), prof[m:].numpy(), 2) if n - m >= 2 else None
        if coef is not None:
            fit = np.polyval(coef, np.array([m, n], dtype=np.float64))
            assert fit == pytest.approx([0.025, 1.0], abs=1e-12)
        assert torch.all(prof.diff() > 0)
        got = s.sigmas(n, sigma_max=2.0)
        assert_close(got, 2.0 * (1 - prof), rtol=0, atol=0)
    assert_close(s.sigmas(1), _t([80.0, 0.0]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="sigma_min"):
        s.sigmas(4, sigma_min=0.1)


def test_exponential_logsnrs_are_uniform_in_logsnr():
    got = spacing("exponential").logsnrs(6, logsnr_min=-10.0, logsnr_max=8.0)
    expected = torch.cat([torch.linspace(-10.0, 8.0, 6, dtype=F64), torch.tensor([math.inf], dtype=F64)])
    assert_close(got, expected, rtol=1e-13, atol=1e-13)


def test_logsnrs_are_the_sigma_grid_in_logsnr():
    for name in ("karras", "kl_optimal", "ays", "beta"):
        s = spacing(name)
        lam = s.logsnrs(12, logsnr_min=-8.0, logsnr_max=11.0)
        sig = s.sigmas(12, sigma_min=math.exp(-5.5), sigma_max=math.exp(4.0))
        assert lam[-1] == math.inf and torch.all(lam.diff() > 0)
        assert_close(lam[:-1], -2 * torch.log(sig[:-1]), rtol=1e-14, atol=1e-13)
        assert lam[0].item() == pytest.approx(-8.0, abs=1e-12)
        if name != "ays":  # AYS ends one interpolation step before the table's σ_min
            assert lam[-2].item() == pytest.approx(11.0, abs=1e-12)
    assert_close(spacing("ays").logsnrs(10), -2 * torch.log(spacing("ays").sigmas(10)), rtol=0, atol=0)


@dataclasses.dataclass(frozen=True)
class _Logistic(Density):
    """Logistic(μ, s) over λ, exact cdf/icdf (a test-local density)."""

    name = "test_logistic"
    mu: float = 1.0
    s: float = 2.0

    def cdf(self, logsnr):
        return torch.sigmoid((logsnr - self.mu) / self.s)

    def icdf(self, u):
        return self.mu + self.s * torch.logit(u)


def test_from_density_takes_quantiles_of_the_truncated_density():
    d = _Logistic()
    got = spacing("from_density", density=d).logsnrs(11, logsnr_min=-6.0, logsnr_max=9.0)
    ulo, uhi = torch.sigmoid(torch.tensor((-6.0 - 1.0) / 2.0, dtype=F64)), torch.sigmoid(
        torch.tensor((9.0 - 1.0) / 2.0, dtype=F64)
    )
    u = torch.linspace(float(ulo), float(uhi), 11, dtype=F64)
    expected = 1.0 + 2.0 * torch.logit(u)
    assert_close(got[:-1], expected, rtol=1e-12, atol=1e-12)
    assert got[0] == -6.0 and got[-2] == 9.0 and got[-1] == math.inf


def test_from_density_of_uniform_logsnr_is_exponential():
    densities = pytest.importorskip("noiselevels.training.densities")
    d = densities.density("uniform_logsnr", logsnr_min=-12.0, logsnr_max=12.0)
    got = spacing("from_density", density=d).sigmas(17, sigma_min=0.01, sigma_max=50.0)
    assert_close(got, spacing("exponential").sigmas(17, sigma_min=0.01, sigma_max=50.0), rtol=1e-12, atol=0)


def test_from_density_of_edm_lognormal_puts_steps_where_training_does():
    densities = pytest.importorskip("noiselevels.training.densities")
    d = densities.density("lognormal_sigma", p_mean=-1.2, p_std=1.2)
    got = spacing("from_density", density=d).sigmas(21)  # EDM range 0.002..80
    # the middle step is the median of ln σ restricted to the range: close to p_mean
    mid = math.log(float(got[10]))
    assert -1.3 < mid < -1.1
    with pytest.raises(ValueError, match="no mass"):
        far = densities.density("uniform_logsnr", logsnr_min=20.0, logsnr_max=30.0)
        spacing("from_density", density=far).sigmas(5)


def test_custom_grid_round_trip_and_interpolation():
    s = spacing("custom", sigmas=[10.0, 5.0, 1.0, 0.0])
    assert_close(s.sigmas(3), _t([10.0, 5.0, 1.0, 0.0]), rtol=0, atol=0)
    assert_close(s.sigmas(5), _t([10.0, math.sqrt(50.0), 5.0, math.sqrt(5.0), 1.0, 0.0]), rtol=1e-14, atol=0)
    assert spacing("custom", sigmas=torch.tensor([10.0, 5.0, 1.0])) == s
    assert from_dict(s.to_dict()) == s


# ----------------------------------------------------------------------------------------------
# properties of every spacing
# ----------------------------------------------------------------------------------------------
SPANNING = ["karras", "exponential", "polyexponential", "kl_optimal", "beta", "vp"]


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(SPANNING),
    n=st.integers(1, 60),
    log_lo=st.floats(-7.0, 1.0),
    span=st.floats(0.5, 12.0),
)
def test_grids_span_the_range_and_decrease(name, n, log_lo, span):
    lo, hi = math.exp(log_lo), math.exp(log_lo + span)
    got = spacing(name).sigmas(n, sigma_min=lo, sigma_max=hi)
    assert got.dtype == F64 and got.shape == (n + 1,)
    assert got[-1] == 0 and torch.all(got.diff() < 0)
    assert got[0].item() == pytest.approx(hi, rel=1e-10)
    if n > 1:
        assert got[-2].item() == pytest.approx(lo, rel=1e-10)


@pytest.mark.parametrize("name", ["ays", "custom_", "linear_quadratic", "from_density_", "uniform_t_"])
@pytest.mark.parametrize("n", [1, 2, 9, 40])
def test_other_grids_decrease_to_zero(name, n):
    if name == "custom_":
        s = spacing("custom", sigmas=[20.0, 3.0, 0.5, 0.1])
    elif name == "from_density_":
        s = spacing("from_density", density=_Logistic())
    elif name == "uniform_t_":
        schedules = pytest.importorskip("noiselevels.schedules")
        s = spacing("uniform_t", schedule=schedules.schedule("cosine"))
    else:
        s = spacing(name)
    got = s.sigmas(n)
    assert got.dtype == F64 and got.shape == (n + 1,)
    assert got[-1] == 0 and torch.all(got.diff() < 0) and torch.all(torch.isfinite(got))


def test_registry_names_and_serialisation():
    assert set(SPACINGS.names()) >= {
        "karras", "exponential", "polyexponential", "vp", "beta", "kl_optimal", "linear_quadratic",
        "uniform_t", "ays", "from_density", "custom",
    }  # fmt: skip
    for s in [
        spacing("karras", rho=5.0),
        spacing("exponential"),
        spacing("polyexponential", rho=2.0),
        spacing("vp", beta_d=10.0),
        spacing("beta", alpha=0.5, beta=0.7),
        spacing("kl_optimal"),
        spacing("linear_quadratic", threshold_noise=0.05, linear_steps=3),
        spacing("ays", model="svd"),
    ]:
        assert from_dict(s.to_dict()) == s
        assert_close(from_dict(s.to_dict()).sigmas(7), s.sigmas(7), rtol=0, atol=0)


def test_nested_components_serialise():
    schedules = pytest.importorskip("noiselevels.schedules")
    densities = pytest.importorskip("noiselevels.training.densities")
    for s in [
        spacing("uniform_t", schedule=_ddpm(), rule="leading", steps_offset=1),
        spacing("uniform_t", schedule=schedules.schedule("cosine")),
        spacing("from_density", density=densities.density("logit_normal", mean=0.0, std=1.0)),
    ]:
        assert from_dict(s.to_dict()) == s


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, -3, 1.5, True, "10", None])
def test_bad_step_counts(n):
    with pytest.raises(ValueError, match="number of steps"):
        spacing("karras").sigmas(n)


def test_bad_ranges():
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        spacing("karras").sigmas(10, sigma_min=80.0, sigma_max=80.0)
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        spacing("exponential").sigmas(10, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="sigma_min must be > 0"):
        spacing("exponential").sigmas(10, sigma_min=0.0)
    with pytest.raises(ValueError, match="sigma_max must be a finite"):
        spacing("karras").sigmas(10, sigma_max=math.inf)
    with pytest.raises(ValueError, match="logsnr_min must be < logsnr_max"):
        spacing("karras").logsnrs(10, logsnr_min=3.0, logsnr_max=-3.0)
    with pytest.raises(ValueError, match="logsnr_max must be a finite"):
        spacing("karras").logsnrs(10, logsnr_max=math.inf)


def test_bad_parameters():
    with pytest.raises(ValueError, match="rho must be > 0"):
        spacing("karras", rho=-7.0)
    with pytest.raises(ValueError, match="rho must be > 0"):
        spacing("polyexponential", rho=0.0)
    with pytest.raises(ValueError, match="unknown AYS table 'sd3'; valid tables: sd15, sdxl, svd"):
        spacing("ays", model="sd3")
    with pytest.raises(ValueError, match="unknown spacing 'karas'; valid names: ays, beta"):
        spacing("karas")
    with pytest.raises(ValueError, match=r"unknown parameter.*'roh'.*valid parameters: rho"):
        spacing("karras", roh=7.0)
    with pytest.raises(ValueError, match="valid parameters: sigmas"):
        spacing("custom", sigma=[1.0, 0.0])
    with pytest.raises(ValueError, match="strictly decreasing"):
        spacing("custom", sigmas=[1.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="alpha must be > 0"):
        spacing("beta", alpha=-0.6)
    with pytest.raises(ValueError, match="eps_s must be in"):
        spacing("vp", eps_s=0.0)
    with pytest.raises(ValueError, match="threshold_noise"):
        spacing("linear_quadratic", threshold_noise=1.5)
    with pytest.raises(ValueError, match="linear_steps must be <"):
        spacing("linear_quadratic", linear_steps=5).sigmas(5)
    with pytest.raises(ValueError, match="needs a density"):
        spacing("from_density")


def test_bad_uniform_t():
    schedules = pytest.importorskip("noiselevels.schedules")
    with pytest.raises(ValueError, match="needs a schedule"):
        spacing("uniform_t")
    with pytest.raises(ValueError, match="unknown uniform_t rule 'lead'; valid rules: continuous, leading"):
        spacing("uniform_t", schedule=_ddpm(), rule="lead")
    with pytest.raises(ValueError, match="steps_offset applies to rule='leading' only"):
        spacing("uniform_t", schedule=_ddpm(), rule="trailing", steps_offset=1)
    with pytest.raises(ValueError, match="discrete schedule with a logsnr_table"):
        spacing("uniform_t", schedule=schedules.schedule("cosine"), rule="trailing")
    with pytest.raises(ValueError, match="takes its σ range"):
        spacing("uniform_t", schedule=_ddpm(), rule="trailing").sigmas(10, sigma_min=0.1)
    with pytest.raises(ValueError, match="timesteps outside"):
        spacing("uniform_t", schedule=_ddpm(), rule="leading", steps_offset=5).sigmas(1000)
    with pytest.raises(ValueError, match="discrete rule"):
        spacing("uniform_t", schedule=schedules.schedule("cosine")).timesteps(10)


def test_package_modules_and_reexports():
    # one module per family; the package re-exports every class and helper under its old path
    for name in pkg.__all__:
        assert hasattr(pkg, name), name
    families = {
        "karras": "formula", "exponential": "formula", "polyexponential": "formula", "vp": "formula",
        "kl_optimal": "formula", "linear_quadratic": "formula", "laplace": "formula", "beta": "formula",
        "uniform_t": "discrete", "simple": "tables", "normal": "tables", "sgm_uniform": "tables",
        "ddim_uniform": "tables", "ays": "tables", "custom": "custom", "from_density": "from_density",
    }  # fmt: skip
    assert set(families) == set(SPACINGS.names())
    for name, module in families.items():
        assert SPACINGS.get(name).__module__ == f"noiselevels.sampling.spacings.{module}", name
    s = spacing("uniform_t", schedule=_ddpm(), rule="trailing")
    assert type(s) is pkg.UniformTSpacing and s.to_dict()["name"] == "uniform_t"
