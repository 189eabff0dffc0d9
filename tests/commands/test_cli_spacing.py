"""Tests of ``noiselevels spacing list | show | optimize`` (noiselevels.commands.spacing)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.testing import assert_close

from noiselevels.cli import main
from noiselevels.commands._args import build_params
from noiselevels.commands.spacing import format_grid
from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings import AYS_TABLES, spacing


def _run(capsys, *argv):
    code = main(["spacing", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_names_every_spacing_with_a_description(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines] == SPACINGS.names()
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)


def test_show_table_has_sigma_logsnr_and_flow_t(capsys):
    code, out, _ = _run(capsys, "show", "karras", "--steps", "18", "--param", "rho=7")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("# karras(rho=7), 18 steps")
    assert lines[1].split() == ["i", "sigma", "logsnr", "flow_t"]
    rows = [line.split() for line in lines[2:]]
    assert len(rows) == 19
    sig = torch.tensor([float(r[1]) for r in rows], dtype=torch.float64)
    assert_close(sig, spacing("karras").sigmas(18), rtol=1e-7, atol=0)
    assert rows[0][1] == "80" and rows[-1][1:] == ["0", "inf", "0.000000"]
    assert float(rows[0][2]) == pytest.approx(-2 * math.log(80), abs=1e-6)
    assert float(rows[0][3]) == pytest.approx(80 / 81, abs=1e-6)


def test_show_json_round_trips_the_grid(capsys):
    code, out, _ = _run(
        capsys, "show", "exponential", "--steps", "6", "--sigma-min", "0.01", "--sigma-max", "20",
        "--format", "json",
    )  # fmt: skip
    assert code == 0
    obj = json.loads(out)
    assert obj["steps"] == 6 and obj["spacing"] == {"kind": "spacing", "name": "exponential"}
    ref = spacing("exponential").sigmas(6, sigma_min=0.01, sigma_max=20.0)
    assert_close(torch.tensor(obj["sigmas"], dtype=torch.float64), ref, rtol=0, atol=0)
    assert obj["logsnrs"][-1] is None  # +inf
    lam = torch.tensor(obj["logsnrs"][:-1], dtype=torch.float64)
    assert_close(lam, -2 * torch.log(ref[:-1]), rtol=0, atol=0)
    assert_close(torch.tensor(obj["flow_t"], dtype=torch.float64), ref / (1 + ref), rtol=1e-15, atol=0)


def test_show_diffusers_snippet_is_exact(capsys):
    code, out, _ = _run(capsys, "show", "ays", "--steps", "10", "--param", "model=sdxl", "--format",
                        "diffusers")  # fmt: skip
    assert code == 0
    line = next(x for x in out.splitlines() if not x.startswith("#"))
    assert line.startswith("scheduler.set_timesteps(sigmas=[") and line.endswith("])")
    values = json.loads(line[len("scheduler.set_timesteps(sigmas=") : -1])
    assert values == [*AYS_TABLES["sdxl"][:-1], 0.0]


def test_diffusers_snippet_drives_an_euler_scheduler(capsys):
    from diffusers import EulerDiscreteScheduler

    _, out, _ = _run(capsys, "show", "karras", "--steps", "8", "--sigma-min", "0.03", "--sigma-max", "14.6",
                     "--format", "diffusers")  # fmt: skip
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    exec(out, {"scheduler": scheduler})  # the printed line runs as is
    ref = spacing("karras").sigmas(8, sigma_min=0.03, sigma_max=14.6)
    assert_close(scheduler.sigmas.to(torch.float64), ref, rtol=1e-6, atol=0)  # float32 inside diffusers


def test_show_comfyui_list(capsys):
    code, out, _ = _run(capsys, "show", "kl_optimal", "--steps", "4", "--format", "comfyui")
    assert code == 0
    values = [float(v) for v in out.splitlines()[1].split(",")]
    assert_close(torch.tensor(values, dtype=torch.float64), spacing("kl_optimal").sigmas(4), rtol=0, atol=0)


def test_show_nested_components(capsys):
    pytest.importorskip("noiselevels.schedules")
    code, out, _ = _run(
        capsys, "show", "uniform_t", "--steps", "10", "--param", "schedule=ddpm",
        "--param", "schedule.beta_schedule=scaled_linear", "--param", "schedule.beta_start=0.00085",
        "--param", "schedule.beta_end=0.012", "--param", "rule=trailing", "--format", "json",
    )  # fmt: skip
    assert code == 0
    obj = json.loads(out)
    assert obj["spacing"]["schedule"]["beta_schedule"] == "scaled_linear"
    assert obj["sigmas"][0] == pytest.approx(14.6146412293, rel=1e-9)  # SD's σ at timestep 999
    pytest.importorskip("noiselevels.training.densities")
    code, out, _ = _run(capsys, "show", "from_density", "--steps", "5", "--param", "density=lognormal_sigma",
                        "--param", "density.p_mean=-0.4", "--format", "comfyui")  # fmt: skip
    assert code == 0 and out.splitlines()[1].startswith("80.0, ")


def test_build_params():
    assert build_params(["rho=7", "model=sd15", "sigmas=[3, 1, 0]", "flag=true"], "--param") == {
        "rho": 7, "model": "sd15", "sigmas": (3, 1, 0), "flag": True,
    }  # fmt: skip
    for bad, match in [
        (["rho"], "--param 'rho' must look like key=value"),
        (["=3"], "empty key"),
        (["rho=1", "rho=2"], "given twice"),
        (["foo.bar=1"], "nested components"),
        (["schedule.beta_end=0.1"], "needs --param schedule=NAME"),
        (["schedule=3"], "expects a schedule name"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_params(bad, "--param")


def test_format_grid_rejects_unknown_formats():
    with pytest.raises(ValueError, match="valid formats: table, json, diffusers, comfyui"):
        format_grid(torch.tensor([1.0, 0.0]), fmt="csv")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "karras", "--steps", "0"], "number of steps n must be an integer >= 1; got 0"),
        (["show", "karras", "--steps", "5", "--sigma-min", "90"], "sigma_min must be < sigma_max"),
        (["show", "ays", "--steps", "5", "--param", "model=sd3"], "unknown AYS table 'sd3'"),
        (["show", "karras", "--steps", "5", "--param", "rho=-1"], "rho must be > 0"),
        (["show", "karas", "--steps", "5"], "unknown spacing 'karas'; valid names:"),
        (["show", "karras", "--steps", "5", "--param", "roh=1"], "unknown parameter(s) 'roh'"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("noiselevels: error: ") and message in err and err.count("\n") == 1


def test_no_action_prints_help(capsys):
    code, out, _ = _run(capsys)
    assert code == 2 and "list" in out and "show" in out


def test_optimize_help_states_the_sigma_defaults_it_uses(capsys):
    with pytest.raises(SystemExit):
        main(["spacing", "optimize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "smallest nonzero σ_ve (default: 0.002)" in text and "largest σ_ve (default: 80.0)" in text
    assert "EulerDiscreteScheduler" in text and "FlowMatchEulerDiscreteScheduler" in text
    assert "batch of the criterion (default: 256)" in text
    assert "maximum sweeps of the search (default: 40)" in text
    with pytest.raises(SystemExit):
        main(["spacing", "show", "--help"])
    assert "(default: the spacing's)" in capsys.readouterr().out


def test_range_warning_names_both_ranges():
    from noiselevels.commands.spacing import range_warning

    grid = torch.tensor([80.0, 1.0, 0.002, 0.0], dtype=torch.float64)
    msg = range_warning(grid, (0.0455, 21.98))
    assert msg is not None and "\n" not in msg
    assert "[0.002, 80]" in msg and "[0.0455, 21.98]" in msg
    assert range_warning(grid, (0.001, 100.0)) is None


def _tiny_flow_run(out, data: str) -> None:
    """A one-step logit-normal flow run of a small MLP on a 2-D toy set, in ``out``."""
    from noiselevels.runs.train import train

    cfg = {
        "noise": {"process": "flow", "parameterization": "flow", "density": {"name": "logit_normal"}},
        "data": {"name": data, "batch_size": 32, "num_images": 64},
        "model": {"kind": "mlp", "hidden": 16, "depth": 1},
        "train": {"steps": 1, "log_every": 1, "ckpt_every": 0, "warmup": 1},
    }
    train(cfg, out, progress=False)


def test_optimize_diffusers_warns_outside_the_trained_range(tmp_path, capsys):
    from noiselevels.runs.run import load_run

    _tiny_flow_run(tmp_path, "two_moons")
    lo, hi = load_run(tmp_path).trained_sigma_range()
    # logit-normal(0, 1) flow t: λ = −2·logit(t) ~ N(0, 4), so σ = e^(−λ/2) spans e^(±3.09) at 0.1/99.9 %
    assert lo == pytest.approx(math.exp(-3.0902), rel=1e-3)
    assert hi == pytest.approx(math.exp(3.0902), rel=1e-3)
    base = ["optimize", "--run", str(tmp_path), "--steps", "2", "--iters", "1", "--num-samples", "4",
            "--init", "karras", "--fix-last", "--format", "diffusers"]  # fmt: skip
    code, out, err = _run(capsys, *base)
    assert code == 0 and out.splitlines()[-1].startswith("scheduler.set_timesteps(sigmas=[80.0, ")
    warn = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "[0.002, 80]" in warn[0] and f"[{lo:.4g}, {hi:.4g}]" in warn[0], err
    code, _, err = _run(capsys, *base, "--sigma-min", "0.05", "--sigma-max", "20")
    assert code == 0 and "warning" not in err
    code, _, err = _run(capsys, *base[:-1], "json")  # other formats: no scheduler to clip, no warning
    assert code == 0 and "warning" not in err


def test_optimize_run_fits_a_class_balanced_training_subset(tmp_path, capsys, monkeypatch):
    """`--run` optimises on a seeded class-balanced subset, not the first N (class-ordered) examples."""
    import noiselevels.sampling.optimize as opt
    from noiselevels.runs.data import balanced_indices
    from noiselevels.runs.run import load_run

    _tiny_flow_run(tmp_path, "gaussian_mixture_2d")
    seen = {}
    real = opt.optimize_spacing
    monkeypatch.setattr(opt, "optimize_spacing", lambda den, **kw: seen.update(kw) or real(den, **kw))
    args = ["optimize", "--run", str(tmp_path), "--steps", "2", "--iters", "1", "--num-samples", "8"]
    code, _, err = _run(capsys, *args, "--init", "karras", "--seed", "3", "--format", "json")
    assert code == 0, err
    data = load_run(tmp_path).config.data.load("train")
    pick = balanced_indices(data, 8, seed=4)
    assert_close(seen["x0"], data.data[pick].to(torch.float32))
    counts = torch.bincount(data.labels[pick])
    classes = int(data.labels.max()) + 1
    assert int(counts.max() - counts.min()) <= 1 and int((counts > 0).sum()) == min(8, classes)
