"""The tools' real config files (tests/presets/fixtures, written in each tool's format) read as the exact
preset they should resolve to: total variation of the normalised W ≤ 0.01."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from noiselevels.analysis import compare
from noiselevels.presets import PRESETS, preset
from noiselevels.presets.files import TABLES, is_tool_file, read_tool_file
from noiselevels.presets.files.families import FAMILIES, image_seq_len

FIX = Path(__file__).parent / "fixtures"

CASES = [
    ("kohya_flux_shift.sh", "kohya", "kohya:flux_shift", {"sigmoid_scale": 1.0, "image_seq_len": 4096}),
    (
        "kohya_flux_shift_dataset.bat",
        "kohya",
        "kohya:flux_shift",
        {"sigmoid_scale": 1.5, "image_seq_len": 2304},
    ),
    ("kohya_flux_config.toml", "kohya", "kohya:shift", {"discrete_flow_shift": 3.1582, "sigmoid_scale": 1.0}),
    ("kohya_sdxl.txt", "kohya", "kohya:ddpm", {"min_snr_gamma": 5}),
    ("ai_toolkit_flux.yaml", "ai-toolkit", "ai-toolkit:weighted", {}),
    ("ai_toolkit_sdxl.yaml", "ai-toolkit", "ai-toolkit:min_snr_gamma", {"gamma": 5}),
    (
        "onetrainer_flux.json",
        "onetrainer",
        "onetrainer:logit_normal",
        {"timestep_shift": 3.0, "model": "flow"},
    ),
    (
        "onetrainer_sdxl.json",
        "onetrainer",
        "onetrainer:uniform",
        {"loss_weight_fn": "MIN_SNR_GAMMA", "loss_weight_strength": 5.0, "model": "eps"},
    ),
    ("simpletuner_flux.json", "simpletuner", "simpletuner:sigmoid", {"flow_schedule_shift": 3.0}),
    ("simpletuner_sdxl.toml", "simpletuner", "simpletuner:ddpm", {"snr_gamma": 5.0}),
    ("simpletuner_schnell.toml", "simpletuner", "simpletuner:fast", {}),
    ("diffusers_sd3.sh", "diffusers", "diffusers:sd3", {"weighting_scheme": "logit_normal", "shift": 3.0}),
    (
        "diffusers_sd15.sh",
        "diffusers",
        "diffusers:snr_gamma",
        {"snr_gamma": 5.0, "prediction_type": "epsilon"},
    ),
]


@pytest.mark.parametrize(("fname", "tool", "name", "params"), CASES, ids=[c[0] for c in CASES])
def test_fixture_reads_as_its_preset(fname, tool, name, params):
    r = read_tool_file(str(FIX / fname))
    assert (r.tool, r.preset) == (tool, name)
    assert r.read_as.startswith(f"{tool} ")
    assert compare(r.config, preset(name, **params)).tv <= 0.01


def test_unmodelled_options_are_listed():
    r = read_tool_file(str(FIX / "kohya_flux_shift.sh"))
    assert any(m.startswith("noise_offset = 0.05") for m in r.unmodelled)
    assert "native resolution; pass --resolution" in r.read_as
    assert any(
        "offset_noise_weight" in m for m in read_tool_file(str(FIX / "onetrainer_flux.json")).unmodelled
    )
    # an option at its "off" value is not listed
    assert not read_tool_file(str(FIX / "ai_toolkit_flux.yaml")).unmodelled


def test_resolution_flag_and_dataset_config():
    r = read_tool_file(str(FIX / "kohya_flux_shift.sh"), resolution="512")
    assert r.params["image_seq_len"] == 1024 and "--resolution" in r.read_as
    r = read_tool_file(str(FIX / "kohya_flux_shift_dataset.bat"))
    assert "kohya_dataset.toml" in r.read_as and r.params["image_seq_len"] == 2304
    assert image_seq_len(FAMILIES["flux"], 1024, 1024) == 4096


def test_stdin_and_forced_tool(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO((FIX / "kohya_sdxl.txt").read_text()))
    assert read_tool_file("-").preset == "kohya:ddpm"
    with pytest.raises(ValueError, match="unknown kohya script"):
        read_tool_file(str(FIX / "diffusers_sd3.sh"), tool="kohya")
    with pytest.raises(ValueError, match="unknown tool"):
        read_tool_file(str(FIX / "kohya_sdxl.txt"), tool="comfy")


def test_tables_have_the_documented_shape():
    for tool, t in TABLES.items():
        assert t.tool == tool and isinstance(t.params, dict) and isinstance(t.unmodelled, dict)


def test_noise_toml_keeps_its_meaning():
    assert not is_tool_file("examples/configs/kohya_flux_sigmoid.toml")
    assert is_tool_file(str(FIX / "kohya_flux_config.toml"))


@pytest.mark.parametrize("fname", ["unknown.txt", "not_a_job.yaml", "kohya_dataset.toml"])
def test_bad_files_one_line_exit_2(fname):
    out = subprocess.run(
        [sys.executable, "-m", "noiselevels", "inspect", str(FIX / fname), "--no-plots"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("noiselevels: error: ")


def test_inspect_and_compare_take_tool_files():
    run = [sys.executable, "-m", "noiselevels"]
    out = subprocess.run([*run, "inspect", str(FIX / "kohya_flux_shift.sh"), "--no-plots"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.splitlines()[0].startswith("read as: kohya flux_train_network.py")
    b = "simpletuner:sigmoid?flow_schedule_shift=3"
    args = [*run, "compare", str(FIX / "simpletuner_flux.json"), b, "--no-plots"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "read as: simpletuner" in out and "0.000" in out


@pytest.mark.skipif("diffusers:flux" not in PRESETS, reason="diffusers:flux not defined")
def test_diffusers_flux_script():
    r = read_tool_file(str(FIX / "diffusers_flux.sh"))
    assert r.preset == "diffusers:flux"
    want = preset("diffusers:flux", weighting_scheme="logit_normal", logit_mean=0.5)
    assert compare(r.config, want).tv <= 0.01


@pytest.mark.parametrize(
    ("flag", "kind"),
    [("--model_prediction_type raw", "raw"), ("", "sigma_scaled"),
     ("--model_prediction_type additive", "additive")],
)
def test_kohya_flux_model_prediction_type(tmp_path, flag, kind):
    """--model_prediction_type is modelled (kohya's default sigma_scaled when absent), never listed as
    missing: with --weighting_scheme sigma_sqrt only sigma_scaled applies the σ⁻² weight."""
    f = tmp_path / "run.sh"
    f.write_text("accelerate launch flux_train_network.py --timestep_sampling shift "
                 f"--weighting_scheme sigma_sqrt {flag}\n")
    r = read_tool_file(str(f))
    assert not [m for m in r.unmodelled if m.startswith("model_prediction_type")]
    want = preset("kohya:shift", weighting_scheme="sigma_sqrt", model_prediction_type=kind)
    assert compare(r.config, want).tv <= 1e-9
    other = "raw" if kind == "sigma_scaled" else "sigma_scaled"
    other_cfg = preset("kohya:shift", weighting_scheme="sigma_sqrt", model_prediction_type=other)
    assert compare(r.config, other_cfg).tv > 0.05


@pytest.mark.parametrize(
    ("arch", "label", "shift_type", "want"),
    [
        ("flux2", "Flux 2", "flux_shift", "ai-toolkit:flux_shift"),
        ("zimage", "Z-Image", "shift", "ai-toolkit:shift"),
    ],
)
def test_ai_toolkit_newer_families(tmp_path, arch, label, shift_type, want):
    """ai-toolkit's Flux 2 and Z-Image models (``model.arch``) are read with their family: Flux 2 shifts
    by resolution (flux_shift at its native 1024² → 4096 tokens), Z-Image's scheduler shifts by 3."""
    f = tmp_path / "job.yaml"
    f.write_text(
        "config:\n  process:\n    - type: sd_trainer\n      train:\n"
        f"        timestep_type: {shift_type}\n      model:\n        arch: {arch}\n"
    )
    r = read_tool_file(str(f))
    assert r.preset == want and label in r.read_as
    params = {"image_seq_len": 4096} if shift_type == "flux_shift" else {"shift": 3.0}
    assert compare(r.config, preset(want, **params)).tv <= 0.01
