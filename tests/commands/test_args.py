"""noiselevels.commands._args: the one KEY=VALUE parser of every command, and the commands using it
(`spacing show --param`, `inspect --*-param / --preset`, `sample --spacing-param`)."""

from __future__ import annotations

import json

import pytest

from noiselevels.cli import main
from noiselevels.commands._args import build_params, parse_params, preset_spec
from noiselevels.schedules import schedule
from noiselevels.training.densities import density

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_RUN = """
[noise]
process = "vp"
parameterization = "v"
[noise.density]
name = "logit_normal"
[data]
name = "digits"
batch_size = 16
num_images = 160
[model]
channels = [8, 16]
emb_dim = 16
fourier_features = 4
[train]
steps = 2
log_every = 2
ckpt_every = 2
warmup = 1
"""


def test_values_are_toml_lists_become_tuples():
    got = parse_params(["rho=7", "x=1.5", "flag=false", "model=sdxl", 'name="a b"', "s=[3, 1, 0]"], "--p")
    assert got == {"rho": 7, "x": 1.5, "flag": False, "model": "sdxl", "name": "a b", "s": (3, 1, 0)}
    assert parse_params([], "--p") == {}


def test_nested_component_is_a_table_or_built():
    items = [
        "schedule=ddpm",
        "schedule.beta_schedule=scaled_linear",
        "schedule.beta_end=0.012",
        "rule=trailing",
    ]
    assert parse_params(items, "--param") == {
        "schedule": {"name": "ddpm", "beta_schedule": "scaled_linear", "beta_end": 0.012},
        "rule": "trailing",
    }
    kw = build_params(items, "--param")
    assert kw["schedule"] == schedule("ddpm", beta_schedule="scaled_linear", beta_end=0.012)
    assert kw["rule"] == "trailing"
    assert build_params(["density=logit_normal", "density.std=2"], "--param")["density"] == density(
        "logit_normal", std=2
    )


@pytest.mark.parametrize(
    ("items", "match"),
    [
        (["rho"], "--spacing-param 'rho' must look like key=value"),
        (["=3"], "empty key"),
        (["rho=1", "rho=2"], "--spacing-param 'rho' given twice"),
        (["schedule=ddpm", "schedule.beta_end=1", "schedule.beta_end=2"], "given twice"),
        (["foo.bar=1"], "dotted --spacing-param keys are for nested components"),
        (["schedule.beta_end=0.1"], "needs --spacing-param schedule=NAME"),
        (["schedule=3"], "--spacing-param schedule= expects a schedule name; got 3"),
        (["x=a b"], "cannot parse value"),
    ],
)
def test_bad_assignments(items, match):
    with pytest.raises(ValueError, match=match):
        parse_params(items, "--spacing-param")


def test_build_params_names_unknown_components_and_parameters():
    with pytest.raises(ValueError, match="ddpmm"):
        build_params(["schedule=ddpmm"], "--param")
    with pytest.raises(ValueError, match="beta_ned"):
        build_params(["schedule=ddpm", "schedule.beta_ned=0.1"], "--param")


def test_preset_spec():
    assert preset_spec("kohya:shift", "p") == ("kohya:shift", {})
    assert preset_spec("kohya:shift?discrete_flow_shift=3&sigmoid_scale=1.5", "p") == (
        "kohya:shift",
        {"discrete_flow_shift": 3, "sigmoid_scale": 1.5},
    )
    with pytest.raises(ValueError, match="--preset parameter 'x' must look like key=value"):
        preset_spec("kohya:shift?x", "--preset parameter")


def test_inspect_density_param_builds_a_nested_schedule(tmp_path, capsys):
    """`inspect --density-param schedule=ddpm` (dotted parameters too) builds the density's schedule."""
    js = tmp_path / "c.json"
    argv = ["inspect", "--process", "vp", "--density", "uniform_t", "--density-param", "schedule=ddpm",
            "--density-param", "schedule.beta_end=0.012", "--no-plots", "--json", str(js)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    sched = json.loads(js.read_text())["config"]["density"]["schedule"]
    assert sched["name"] == "ddpm" and sched["beta_end"] == 0.012


def test_inspect_spacing_param_builds_a_nested_schedule(capsys):
    argv = ["inspect", "--process", "vp", "--density", "logit_normal", "--spacing", "uniform_t",
            "--spacing-param", "schedule=ddpm", "--spacing-param", "rule=trailing", "--steps", "10",
            "--no-plots"]  # fmt: skip
    assert main(argv) == 0
    assert "sampler uniform_t(schedule=" in capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("args")
    (d / "c.toml").write_text(TINY_RUN)
    assert main(["train", str(d / "c.toml"), "--out", str(d / "run"), "--no-progress"]) == 0
    return d / "run"


def test_sample_spacing_param_schedule_is_built(tiny_run, tmp_path, capsys):
    """`sample --spacing-param schedule=ddpm` passes a DDPM schedule to the spacing, not the string."""
    out = tmp_path / "s.png"
    argv = ["sample", str(tiny_run), "--spacing", "uniform_t", "--spacing-param", "schedule=ddpm",
            "--spacing-param", "schedule.beta_end=0.012", "--steps", "3", "--num", "2",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and "uniform_t spacing, 3 steps" in capsys.readouterr().out
    argv = ["sample", str(tiny_run), "--spacing", "uniform_t", "--spacing-param", "schedule=nope",
            "--num", "2", "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err
