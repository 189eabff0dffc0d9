"""``noiselevels inspect`` and ``noiselevels compare``: plots + JSON written, one-line errors with exit 2."""

import json
import math
from pathlib import Path

import pytest

from noiselevels.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs"
KOHYA = EXAMPLES / "kohya_flux_sigmoid.toml"
AI_TOOLKIT = EXAMPLES / "ai_toolkit_flux_lora.toml"


@pytest.mark.parametrize("config", [KOHYA, AI_TOOLKIT], ids=lambda p: p.name)
def test_inspect_example_writes_plots_and_json(config, tmp_path, capsys):
    out = tmp_path / "plots"
    js = tmp_path / "curves.json"
    assert main(["inspect", str(config), "--out", str(out), "--json", str(js), "--points", "401"]) == 0
    text = capsys.readouterr().out
    assert "median λ of W" in text and "training draws p(λ)" in text
    for name in ("logsnr.png", "tool_axis.png"):
        png = out / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["config"]["process"] == "flow"
    curves = data["curves"]
    assert len(curves["logsnr"]) == len(curves["effective"]) == 401
    assert curves["logsnr"][0] == -10.0 and curves["logsnr"][-1] == 10.0
    assert set(data["summary"]) >= {"median", "interval", "bands", "monotone"}
    assert data["tool_axis"]["axis"].startswith("flow t")


def test_inspect_all_examples_json_only(tmp_path):
    for config in sorted(EXAMPLES.glob("*.toml")):
        js = tmp_path / f"{config.stem}.json"
        assert main(["inspect", str(config), "--no-plots", "--json", str(js), "--points", "101"]) == 0, config
        assert json.loads(js.read_text())["curves"]["effective"]


def test_inspect_flags_and_preset(tmp_path, capsys):
    js = tmp_path / "x.json"
    argv = [
        "inspect",
        "--process",
        "vp",
        "--parameterization",
        "v",
        "--schedule",
        "cosine",
        "--density",
        "uniform_t",
        "--weighting",
        "min_snr",
        "--weighting-param",
        "gamma=5",
        "--no-plots",
        "--json",
        str(js),
        "--range",
        "-5",
        "5",
        "--points",
        "101",
    ]
    assert main(argv) == 0
    data = json.loads(js.read_text())
    assert data["config"]["weighting"] == {"name": "min_snr", "gamma": 5.0}
    assert data["curves"]["logsnr"][0] == -5.0
    assert (
        main(
            ["inspect", "--preset", "kohya:shift", "--preset-param", "discrete_flow_shift=3.0", "--no-plots"]
        )
        == 0
    )
    assert "preset: kohya:shift" in capsys.readouterr().out
    assert main(["inspect", "--preset", "kohya:sigmoid", "--density-param", "std=2.0", "--no-plots"]) == 2
    assert main(["inspect", str(KOHYA), "--set", "noise.preset_params.sigmoid_scale=2.0", "--no-plots"]) == 0
    assert "std=2.0" in capsys.readouterr().out
    assert main(["inspect", "--list-presets"]) == 0
    assert "onetrainer:sigmoid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["inspect", "--preset", "kohya:nope"], "unknown preset 'kohya:nope'"),
        (["inspect"], "nothing to inspect"),
        (
            ["inspect", "--process", "vp", "--density", "logit_normal", "--density-param", "stdd=1"],
            "unknown key(s) 'stdd'",
        ),
        (
            ["inspect", "--density", "logit_normal", "--process", "vp", "--density-param", "std"],
            "must look like",
        ),
        (["inspect", "missing.toml"], "configuration file 'missing.toml' does not exist"),
        (["compare", "kohya:sigmoid", "kohya:nope"], "neither a TOML file nor a preset"),
        (["compare", "kohya:sigmoid?sigmoid_scal=1", "ai-toolkit:sigmoid"], "unknown parameter"),
    ],
)
def test_bad_input_one_line_exit_2(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("noiselevels: error:") and err.count("\n") == 1
    assert match in err


def test_bad_toml_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[noise]\nprocess = "flow"\ndensity = "logit_normal"\nweigting = 1\n')
    assert main(["inspect", str(bad), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key(s) 'weigting'" in err and "bad.toml" in err


def test_compare(tmp_path, capsys):
    js = tmp_path / "cmp.json"
    out = tmp_path / "cmp"
    argv = [
        "compare",
        str(KOHYA),
        "onetrainer:sigmoid",
        "--out",
        str(out),
        "--json",
        str(js),
        "--points",
        "401",
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "total-variation distance" in text and "verdict" in text
    assert (out / "compare_logsnr.png").is_file() and (out / "compare_tool_axis.png").is_file()
    data = json.loads(js.read_text())
    assert 0.1 < data["comparison"]["tv_density"] < 1.0  # OneTrainer's "sigmoid" is not kohya's
    # identical effective weightings (same name in two tools)
    assert main(["compare", str(KOHYA), "ai-toolkit:sigmoid", "--no-plots", "--json", str(js)]) == 0
    # the same logit-normal; ai-toolkit never draws its cleanest grid level (max_denoising_steps = 999
    # is excluded from its random index), which moves W by < 2e-4 in TV
    assert json.loads(js.read_text())["comparison"]["tv"] < 2e-4
    assert "same effective weighting" in capsys.readouterr().out


def test_inspect_sampler_levels_against_training(tmp_path, capsys):
    """--spacing/--steps: where a sampler's levels fall against the training density."""
    import torch
    from torch.testing import assert_close

    from noiselevels.config import load_config
    from noiselevels.sampling.spacings import spacing
    from noiselevels.schedules import schedule

    sd = EXAMPLES / "kohya_sdxl_min_snr.toml"
    js = tmp_path / "a.json"
    argv = ["inspect", str(sd), "--spacing", "karras", "--steps", "20", "--sigma-max", "80"]
    assert main([*argv, "--out", str(tmp_path), "--json", str(js)]) == 0
    text = capsys.readouterr().out
    # SD's table tops out at σ_ve = 14.6146: every karras level above it is noisier than any training draw
    table_max = float(schedule("ddpm", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
                      .logsnr_table().min().mul(-0.5).exp())  # fmt: skip
    sig = spacing("karras").sigmas(20, sigma_max=80.0)
    never = int((sig[:-1] > table_max).sum())
    assert never == 6
    data = json.loads(js.read_text())["sampler"]
    lam = -2.0 * torch.log(sig[:-1])
    assert_close(torch.tensor(data["logsnr"], dtype=torch.float64), lam)
    cdf = torch.tensor(data["training_cdf"], dtype=torch.float64)
    assert_close(cdf, load_config(sd).density.cdf(lam).to(torch.float64))
    assert torch.all(cdf[:never] == 0) and torch.all(cdf[never:] > 0)
    k = round(data["fraction_noisy_tail"] * 20)
    assert k == int((cdf < 0.01).sum()) >= never
    assert f"{k} of 20 sampler levels are noisier than all but 1 % of training draws" in text
    assert round(data["fraction_unseen"] * 20) == never and data["training_support"][1] is None
    assert data["training_support"][0] == pytest.approx(-2 * math.log(table_max))
    assert f"{never} of 20 sampler levels are outside the training range λ ∈ [-5.364, inf]" in text
    assert (tmp_path / "logsnr.png").is_file()
    # ComfyUI's simple grid steps through the same table: its noisiest level is the table's own edge
    assert main(["inspect", str(sd), "--spacing", "simple", "--no-plots"]) == 0
    assert "0 of 20 sampler levels are outside the training range" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--steps", "5"], "--steps needs --spacing NAME"),
        (["--spacing", "nope"], "unknown spacing 'nope'"),
        (["--spacing", "karras", "--steps", "0"], "got 0"),
    ],
)
def test_inspect_sampler_bad_input(extra, match, capsys):
    assert main(["inspect", str(KOHYA), "--no-plots", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err


def test_inspect_preset_query_like_compare(tmp_path, capsys):
    """--preset takes compare's tool:name?k=v&k=v form, the same as --preset-param k=v."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    query = ["inspect", "--preset", "kohya:shift?discrete_flow_shift=3", "--no-plots"]
    assert main([*query, "--json", str(a)]) == 0
    argv = ["inspect", "--preset", "kohya:shift", "--preset-param", "discrete_flow_shift=3", "--no-plots"]
    assert main([*argv, "--json", str(b)]) == 0
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    assert da == db and da["config"]["density"]["mean"] == pytest.approx(1.0986122886681098)
    capsys.readouterr()
    assert main(["inspect", "--preset", "kohya:shift?3", "--no-plots"]) == 2
    assert "--preset parameter '3' must look like key=value" in capsys.readouterr().err
