"""Tests of noiselevels.spectral: RAPSD, bounds, tight schedules, per-instance family, mixture, solver."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels import spectral as sp
from noiselevels.sampling.solvers import solve

F64 = torch.float64


def power_law_images(
    n: int, a: float, beta: float, *, b: int = 2, dc: float = 0.0, seed: int = 0
) -> torch.Tensor:
    """Real (b, 1, n, n) images whose every DFT coefficient in ring k has |X|² = a·(k/n)^(−β) exactly
    (random phases from white noise keep the Hermitian symmetry); the DC coefficient has |X|² = dc."""
    g = torch.Generator().manual_seed(seed)
    freqs, idx, _ = sp.rings(n, n)
    spec = torch.fft.fft2(torch.randn(b, 1, n, n, generator=g, dtype=F64), norm="ortho")
    f = freqs[idx]
    mag2 = torch.where(f > 0, a * f.clamp_min(1e-12) ** (-beta), torch.zeros((), dtype=F64))
    spec = spec / spec.abs() * mag2.sqrt()
    spec[..., 0, 0] = math.sqrt(dc)
    return torch.fft.ifft2(spec, norm="ortho").real


# ------------------------------------------------------------------------------------------------
# RAPSD
# ------------------------------------------------------------------------------------------------
def test_white_noise_is_flat_at_its_variance():
    s = 0.7
    g = torch.Generator().manual_seed(0)
    x = s * torch.randn(64, 3, 32, 32, generator=g, dtype=F64)
    freqs, power = sp.rapsd(x)
    _, _, counts = sp.rings(32, 32)
    mean = power.mean(0)
    # each ring averages counts·B·C exponential-like |X|² of mean s² (up to Hermitian pairs: ×2 std)
    z = (mean / s**2 - 1.0) / (2.0 / torch.sqrt(counts * 64 * 3))
    assert_close(z, torch.zeros_like(z), atol=4.5, rtol=0)
    assert freqs[0] == 0 and (freqs[1:] > freqs[:-1]).all()


@pytest.mark.parametrize("shape", [(3, 2, 17, 32), (2, 1, 28, 28), (1, 3, 5, 9)])
def test_parseval_and_dc(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(shape, generator=g, dtype=F64) * 2 - 0.3
    _, power = sp.rapsd(x)
    _, _, counts = sp.rings(shape[2], shape[3])
    c = shape[1]
    assert_close((power * counts).sum(1) * c, x.square().flatten(1).sum(1))
    hw = shape[2] * shape[3]
    dc = (x.mean((2, 3)) ** 2).mean(1) * hw  # channel-averaged H·W·mean²
    assert_close(power[:, 0], dc)


def test_rings_partition_every_coefficient():
    freqs, idx, counts = sp.rings(12, 20)
    assert_close(torch.bincount(idx.flatten(), minlength=freqs.numel()).to(F64), counts)
    assert (counts > 0).all() and idx.shape == (12, 20)


def test_three_dim_input_is_one_channel():
    x = torch.randn(2, 8, 8, dtype=F64)
    assert_close(sp.rapsd(x)[1], sp.rapsd(x[:, None])[1])


# ------------------------------------------------------------------------------------------------
# bounds
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 2.0, 3.0])
def test_power_law_images_reproduce_closed_form_bounds(beta):
    n, a, dc, tau_lo, tau_hi = 32, 0.01, 5.0, 0.05, 20.0
    x = power_law_images(n, a, beta, dc=dc)
    freqs, power = sp.rapsd(x)
    expected = torch.where(freqs > 0, a * freqs.clamp_min(1e-12) ** (-beta), torch.full_like(freqs, dc))
    assert_close(power, expected.expand(2, -1))
    lo, hi = sp.bounds(x, tau_lo=tau_lo, tau_hi=tau_hi, dc="separate", quantisation_floor=False)
    # max over non-DC rings at f = 1/n, min at f = ½
    lo_exp = math.log(tau_lo) - math.log(a) - beta * math.log(n)
    hi_exp = math.log(tau_hi) - math.log(a) - beta * math.log(2.0)
    assert_close(lo, torch.full((2,), lo_exp, dtype=F64))
    assert_close(hi, torch.full((2,), hi_exp, dtype=F64))
    lo_inc, hi_inc = sp.bounds(x, tau_lo=tau_lo, tau_hi=tau_hi, dc="include", quantisation_floor=False)
    p_max = max(dc, a * n**beta)
    assert_close(lo_inc, torch.full((2,), math.log(tau_lo) - math.log(p_max), dtype=F64))
    assert_close(hi_inc, hi)


@pytest.mark.parametrize("dc", ["include", "separate"])
@pytest.mark.parametrize("c", [0.1, 0.5, 3.0])
def test_scaling_law(dc, c):
    from noiselevels.runs.data import load_dataset

    x = load_dataset("mnist", num_images=20).data.to(F64)
    lo, hi = sp.bounds(x, dc=dc, quantisation_floor=False)
    lo_c, hi_c = sp.bounds(c * x, dc=dc, quantisation_floor=False)
    assert_close(lo_c, lo - 2 * math.log(c))
    assert_close(hi_c, hi - 2 * math.log(c))


def _natural_images():
    skd = pytest.importorskip("skimage.data")
    out = []
    for name in ("camera", "moon", "coins", "astronaut", "grass"):
        im = getattr(skd, name)().astype(np.float64)
        if im.ndim == 3:
            im = im[..., :3] @ np.array([0.299, 0.587, 0.114])
        x = torch.tensor(im / 127.5 - 1.0)[None, None, :256, :256]
        out.append(F.avg_pool2d(x, x.shape[-1] // 64))  # 64×64 natural images
    return torch.cat(out)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("dc", ["include", "separate"])
def test_upsampling_moves_logsnr_min_by_log4(mode, dc):
    x = _natural_images()
    kw = {} if mode == "nearest" else {"align_corners": False}
    up = F.interpolate(x, scale_factor=2, mode=mode, **kw)
    lo, _ = sp.bounds(x, dc=dc)
    lo_up, _ = sp.bounds(up, dc=dc)
    assert_close(lo_up - lo, torch.full_like(lo, -math.log(4.0)), atol=0.15, rtol=0)


def test_quantisation_floor_caps_logsnr_max():
    x = power_law_images(32, 1e-7, 2.0, dc=1.0)  # tiny high-frequency power: λ_max far above the floor
    _, hi_free = sp.bounds(x, quantisation_floor=False)
    _, hi = sp.bounds(x)
    lam_q = -2 * math.log(sp.QUANTISATION_SIGMA)
    assert (hi_free > lam_q).all()
    assert_close(hi, torch.full_like(hi, lam_q))
    _, hi_custom = sp.bounds(x, quantisation_floor=0.01)
    assert_close(hi_custom, torch.full_like(hi, -2 * math.log(0.01)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2×2"):
        sp.bounds(torch.zeros(2, 1, 1, 1))
    with pytest.raises(ValueError, match="at least 2×2"):
        sp.rapsd(torch.zeros(2, 1, 1, 8))
    nan = torch.randn(3, 1, 8, 8)
    nan[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf pixels \(image index \[1\]"):
        sp.bounds(nan)
    const = torch.full((2, 1, 8, 8), 0.3)
    with pytest.raises(ValueError, match="constant images"):
        sp.bounds(const, dc="separate")
    with pytest.raises(ValueError, match="all-zero"):
        sp.bounds(torch.zeros(1, 1, 8, 8))
    # documented result: a constant non-zero image under dc="include" has λ_max = +inf (capped by the floor)
    lo, hi = sp.bounds(const, quantisation_floor=False)
    assert torch.isinf(hi).all() and torch.isfinite(lo).all()
    assert_close(sp.bounds(const)[1], torch.full((2,), -2 * math.log(sp.QUANTISATION_SIGMA), dtype=F64))
    with pytest.raises(ValueError, match="tau_lo must be < tau_hi"):
        sp.bounds(torch.randn(1, 1, 8, 8), tau_lo=2.0, tau_hi=1.0)
    with pytest.raises(ValueError, match="dc must be one of"):
        sp.bounds(torch.randn(1, 1, 8, 8), dc="drop")
    with pytest.raises(ValueError, match="quantisation floor"):
        sp.bounds(1e-6 * torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        sp.rapsd(torch.zeros(8))


def test_summary_per_class():
    lo = torch.tensor([-8.0, -7.0, -6.0, -5.0], dtype=F64)
    hi = torch.tensor([5.0, 6.0, 7.0, 8.0], dtype=F64)
    s = sp.summarize(lo, hi, torch.tensor([0, 0, 1, 1]), quantiles=(0.0, 0.5, 1.0))
    assert s["all"]["logsnr_min"]["quantiles"] == {"0": -8.0, "0.5": -6.5, "1": -5.0}
    assert s["per_class"]["1"]["logsnr_max"]["mean"] == 7.5
    assert s["per_class"]["0"]["width"]["min"] == 13.0


# ------------------------------------------------------------------------------------------------
# tight schedules
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist16():
    from noiselevels.runs.data import load_dataset

    return load_dataset("mnist", num_images=16).data


@pytest.mark.parametrize("kind", ["frequency", "power", "mixed"])
def test_tight_schedules_monotone_and_hit_bounds(mnist16, kind):
    scheds = sp.tight_schedules(mnist16, kind=kind)
    lo, hi = sp.bounds(mnist16)
    t = torch.linspace(0, 1, 2001, dtype=F64)
    for b, s in enumerate(scheds):
        lam = s.logsnr(t)
        assert (lam[1:] < lam[:-1]).all()
        assert_close(lam[[0, -1]], torch.stack([hi[b], lo[b]]), rtol=0, atol=1e-12)
        assert_close(s.t_of(lam), t, rtol=0, atol=1e-9)
        assert s.logsnr_max == pytest.approx(float(hi[b])) and s.logsnr_min == pytest.approx(float(lo[b]))
        assert (s.dlogsnr_dt(t[1:-1]) < 0).all()


def test_power_focus_spends_more_time_where_the_power_is(mnist16):
    # MNIST's power sits in the DC and the lowest rings, which drown last (at low λ): a power-focused
    # schedule passes the high-λ range (where only weak high frequencies drown) quickly and spends its
    # t where the power drowns, so its λ(½) is lower than the frequency-focused one's
    f = sp.tight_schedules(mnist16, kind="frequency")
    p = sp.tight_schedules(mnist16, kind="power")
    t = torch.tensor([0.5], dtype=F64)
    assert all(float(pb.logsnr(t)) < float(fb.logsnr(t)) for fb, pb in zip(f, p))


def test_global_tight_schedule_covers_the_data_set(mnist16):
    g = sp.global_tight_schedule(mnist16, knots=65)
    lo, hi = sp.bounds(mnist16)
    assert g.logsnr_min == pytest.approx(float(lo.min())) and g.logsnr_max == pytest.approx(float(hi.max()))
    lam = g.logsnr(torch.linspace(0, 1, 501, dtype=F64))
    assert (lam[1:] < lam[:-1]).all()


def test_tight_schedule_registry_round_trip():
    from noiselevels.catalog import from_dict
    from noiselevels.schedules import schedule

    s = schedule("tight", t_knots=(0.0, 0.3, 1.0), logsnr_knots=(6.0, 0.0, -8.0))
    assert from_dict(s.to_dict()) == s
    assert_close(
        s.logsnr(torch.tensor([0.0, 0.15, 0.3, 1.0], dtype=F64)),
        torch.tensor([6.0, 3.0, 0.0, -8.0], dtype=F64),
    )
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedule("tight", t_knots=(0.0, 1.0), logsnr_knots=(0.0, 1.0))
    with pytest.raises(ValueError, match="from 0 to 1"):
        schedule("tight", t_knots=(0.0, 0.5), logsnr_knots=(1.0, 0.0))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.01, 5.0), min_size=1, max_size=8),
    st.floats(-20, 5),
    st.floats(0.0, 1.0),
)
def test_tight_schedule_round_trip_property(steps, lam_min, u):
    lam = torch.tensor([0.0, *np.cumsum(steps)], dtype=F64)
    lam = (lam.max() - lam) + lam_min  # decreasing, ends at lam_min
    t = torch.linspace(0, 1, lam.numel(), dtype=F64) ** 1.5
    s = sp.TightSchedule(t_knots=tuple(t.tolist()), logsnr_knots=tuple(lam.tolist()))
    tt = torch.tensor([u], dtype=F64)
    assert_close(s.t_of(s.logsnr(tt)), tt, rtol=0, atol=1e-10)


# ------------------------------------------------------------------------------------------------
# per-instance family, mixture, per-row solver
# ------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(st.floats(-15, 0), st.floats(0.5, 20), st.floats(0, 1))
def test_instance_schedules_round_trip(lo, width, u):
    fam = sp.InstanceSchedules(shape_t=(0.0, 0.2, 1.0), shape_s=(1.0, 0.4, 0.0))
    lo_t, hi_t = torch.tensor([lo], dtype=F64), torch.tensor([lo + width], dtype=F64)
    t = torch.tensor([u], dtype=F64)
    lam = fam.logsnr(t, logsnr_min=lo_t, logsnr_max=hi_t)
    assert lo - 1e-9 <= float(lam) <= lo + width + 1e-9
    assert_close(fam.t_of(lam, logsnr_min=lo_t, logsnr_max=hi_t), t, rtol=0, atol=1e-10)


def test_instance_sigmas_follow_each_instance(mnist16):
    fam = sp.InstanceSchedules.from_data(mnist16, knots=33)
    assert sp.InstanceSchedules.from_dict(fam.to_dict()) == fam
    lo, hi = fam.bounds(mnist16[:4])
    sig = fam.sigmas(8, logsnr_min=lo, logsnr_max=hi)
    assert sig.shape == (4, 9) and (sig[:, -1] == 0).all() and (sig[:, 1:] < sig[:, :-1]).all()
    assert_close(sig[:, 0], torch.exp(-0.5 * lo))
    assert_close(sig[:, -2], torch.exp(-0.5 * hi))
    k = fam.sigmas(8, logsnr_min=lo, logsnr_max=hi, spacing="karras", spacing_params={"rho": 7.0})
    assert_close(k[:, 0], torch.exp(-0.5 * lo))
    assert_close(k[:, -2], torch.exp(-0.5 * hi))
    lam, extra = fam.draw(mnist16[:4], generator=torch.Generator().manual_seed(0))
    assert ((lam >= lo) & (lam <= hi)).all()
    assert_close(extra, torch.stack([lo, hi], 1).float())


def test_mixture_conditional_sampling_stays_in_the_training_range():
    g = torch.Generator().manual_seed(0)
    n = 200
    labels = torch.arange(n) % 2
    lo = torch.where(labels == 0, -9.0, -6.0).to(F64) + 0.4 * torch.randn(n, generator=g, dtype=F64)
    hi = torch.where(labels == 0, 5.0, 8.0).to(F64) + 0.4 * torch.randn(n, generator=g, dtype=F64)
    mix = sp.BoundsMixture.fit(lo, hi, labels, components=3)
    for c in (0, 1):
        m = labels == c
        s_lo, s_hi = mix.sample(500, labels=torch.full((500,), c), generator=torch.Generator().manual_seed(c))
        assert float(s_lo.min()) >= float(lo[m].min()) and float(s_lo.max()) <= float(lo[m].max())
        assert float(s_hi.min()) >= float(hi[m].min()) and float(s_hi.max()) <= float(hi[m].max())
        assert abs(float(s_lo.mean()) - float(lo[m].mean())) < 0.15
    again = sp.BoundsMixture.from_dict(mix.to_dict())
    a = mix.sample(10, generator=torch.Generator().manual_seed(3))
    b = again.sample(10, generator=torch.Generator().manual_seed(3))
    assert_close(a, b)
    with pytest.raises(ValueError, match="no mixture for class 5"):
        mix.sample(2, labels=torch.tensor([5, 5]))


def _gaussian_denoiser(c: float):
    return lambda x, sigma: x * (c**2 / (c**2 + sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2))


@pytest.mark.parametrize("solver", sp.PER_INSTANCE_SOLVERS)
def test_per_instance_solver_matches_solve(solver):
    den = _gaussian_denoiser(0.8)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 1, 4, 4, generator=g, dtype=F64)
    grids = torch.stack(
        [
            torch.tensor([40.0, 10.0, 2.0, 0.5, 0.05, 0.0], dtype=F64),
            torch.tensor([20.0, 4.0, 1.5, 0.3, 0.01, 0.0], dtype=F64),
            torch.tensor([80.0, 30.0, 3.0, 1.0, 0.1, 0.0], dtype=F64),
        ]
    )
    xs = x * grids[:, :1, None, None]
    out = sp.solve_per_instance(den, xs, sigmas=grids, solver=solver)
    ref = torch.cat([solve(den, xs[i : i + 1], sigmas=grids[i], solver=solver) for i in range(3)])
    assert_close(out, ref)


def test_per_instance_solver_errors():
    den = _gaussian_denoiser(1.0)
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="must be one of"):
        sp.solve_per_instance(den, x, sigmas=torch.ones(2, 3), solver="lms")
    with pytest.raises(ValueError, match="strictly decreasing"):
        sp.solve_per_instance(den, x, sigmas=torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="ends in 0"):
        sp.solve_per_instance(den, x, sigmas=torch.tensor([[2.0, 0.0], [2.0, 1.0]]))


# ------------------------------------------------------------------------------------------------
# training, sampling and the command line
# ------------------------------------------------------------------------------------------------
def test_resolve_spectral_config_rejects_typos():
    assert sp.resolve_spectral_config({})["kind"] == "mixed"
    with pytest.raises(ValueError, match="unknown key"):
        sp.resolve_spectral_config({"knd": "power"})
    with pytest.raises(ValueError, match="shape must be"):
        sp.resolve_spectral_config({"shape": "cosine"})


def test_tiny_per_instance_training_run_end_to_end(tmp_path):
    from noiselevels.runs.config import TrainConfig
    from noiselevels.runs.run import generate, load_run
    from noiselevels.runs.train import train

    cfg = TrainConfig.from_dict(
        {
            "noise": {"process": "vp", "parameterization": "v", "density": "logit_normal"},
            "data": {"name": "mnist", "num_images": 20, "batch_size": 4},
            "model": {"kind": "unet", "channels": [8, 8, 8], "num_classes": 10},
            "train": {"steps": 2, "log_every": 1, "ckpt_every": 0, "warmup": 0},
            "spectral": {"components": 1, "knots": 9},
        }
    )
    seen = []
    res = train(cfg, tmp_path / "run", progress=False, callback=lambda step, out: seen.append(out.logsnr))
    assert res.status == "completed" and (tmp_path / "run" / "spectral.json").is_file()
    run = load_run(tmp_path / "run")
    assert run.model.config.extra_dim == 2 and run.spectral is not None
    lo, hi = run.spectral.mixture.mixtures["all"].box[0], run.spectral.mixture.mixtures["all"].box[3]
    lam = torch.cat(seen)
    assert ((lam >= lo - 1e-9) & (lam <= hi + 1e-9)).all()  # every level inside some image's own range
    x = generate(
        run.model,
        run.noise,
        (1, 28, 28),
        num=3,
        steps=2,
        labels=torch.tensor([0, 1, 2]),
        spacing="schedule",
        solver="euler",
        spectral=run.spectral,
    )
    assert x.shape == (3, 1, 28, 28) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="own σ range"):
        generate(run.model, run.noise, (1, 28, 28), num=1, steps=2, sigma_max=80.0, spectral=run.spectral)


def test_cli_spectral(tmp_path, capsys):
    import json

    from noiselevels.cli import main

    out_json, out_png = tmp_path / "b.json", tmp_path / "r.png"
    rc = main(["spectral", "digits", "--num-images", "30", "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0 and out_png.stat().st_size > 0
    d = json.loads(out_json.read_text())
    assert len(d["images"]) == 30 and "per_class" in d["summary"]
    assert d["global_tight_schedule"]["name"] == "tight"
    assert "logsnr_min: median" in capsys.readouterr().out
    assert main(["spectral", "two_moons"]) == 2
    assert "not an image data set" in capsys.readouterr().err
    assert main(["spectral", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing' is neither an image file or folder nor an embedded data set (" in err and "mnist" in err
