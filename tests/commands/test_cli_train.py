"""Tests of `noiselevels train / sample / evaluate` on the command line (tiny runs, CPU)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from noiselevels.cli import main
from noiselevels.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")



CONFIG = """
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
steps = 4
log_every = 2
ckpt_every = 2
warmup = 2
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "c.toml").write_text(CONFIG)
    assert main(["train", str(d / "c.toml"), "--out", str(d / "run"), "--no-progress"]) == 0
    return d / "run"


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("noiselevels: error: ")
    for n in needles:
        assert n in err[0], err[0]


def test_train_writes_a_run(run_dir):
    assert load_checkpoint(run_dir).step == 4
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]


def test_summary_loss_is_that_of_the_last_log_record(tmp_path, capsys):
    """5 steps logged every 2: the summary reports the final partial interval (step 5), the same
    record as the last line of log.jsonl, not the last complete interval (steps 3-4)."""
    (tmp_path / "c.toml").write_text(CONFIG)
    out_dir = str(tmp_path / "run")
    assert main(["train", str(tmp_path / "c.toml"), "--out", out_dir, "--steps", "5", "--no-progress"]) == 0
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 5] and log[-1]["loss"] != log[-2]["loss"]
    out = capsys.readouterr().out
    assert f"completed at step 5, loss {log[-1]['loss']:.4f};" in out, out


def test_resume_and_overrides(run_dir, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    assert main(["train", "--resume", str(d), "--steps", "6", "--no-progress"]) == 0
    assert load_checkpoint(d).step == 6
    assert "completed at step 6" in capsys.readouterr().out
    # --data and --set change the stored configuration
    cfg = run_dir.parent / "c.toml"
    out = tmp_path / "other"
    assert main(["train", str(cfg), "--out", str(out), "--steps", "2", "--set", "train.lr=0.003",
                 "--set", "noise.parameterization=eps", "--no-progress"]) == 0
    stored = json.loads((out / "config.json").read_text())
    assert stored["train"]["lr"] == 0.003 and stored["train"]["steps"] == 2
    assert stored["noise"]["parameterization"] == "eps"


def test_sample_writes_a_png(run_dir, tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["sample", str(run_dir), "--steps", "3", "--num", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"sigmas": [80.0, 5.0, 0.5, 0.0]}))
    out2 = tmp_path / "s2.png"
    assert main(["sample", str(run_dir), "--sigmas", str(grid), "--solver", "euler", "--num", "2",
                 "--spacing-param", "rho=7", "--out", str(out2)]) == 0
    assert out2.is_file()
    grid.write_text("[1.0, 2.0]")
    assert main(["sample", str(run_dir), "--sigmas", str(grid), "--out", str(out2)]) == 2
    _one_line_error(capsys, "decreasing")
    assert main(["sample", str(run_dir), "--class", "3", "--out", str(out2)]) == 2
    _one_line_error(capsys, "class-conditional")


def test_evaluate_json(run_dir, tmp_path):
    out = tmp_path / "m.json"
    code = main(["evaluate", str(run_dir), "--num", "16", "--steps", "2", "--bpd-images", "8",
                 "--bpd-levels", "1", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["bpd"] > 0 and res["fd"] is not None and res["kid"] is not None


def test_bad_config_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "bad.toml")
    bad.write_text("[train]\nstep = 3\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "'step'", "valid keys")
    assert main(["train", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "does not exist")
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    _one_line_error(capsys, "cannot resume")


def test_corrupt_checkpoint_is_one_line_exit_2(run_dir, tmp_path, capsys):
    d = tmp_path / "run"
    shutil.copytree(run_dir, d)
    ck = load_checkpoint(d).path
    data = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["sample", str(d), "--num", "2", "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "corrupt checkpoint", "model.safetensors")
    assert main(["train", "--resume", str(d), "--no-progress"]) == 2
    _one_line_error(capsys, "corrupt checkpoint")
    assert main(["evaluate", str(d)]) == 2
    _one_line_error(capsys, "corrupt checkpoint")
    (d / "config.json").write_text("{broken")
    assert main(["sample", str(d), "--out", str(tmp_path / "x.png")]) == 2
    _one_line_error(capsys, "config.json")


@pytest.mark.slow
def test_two_processes_with_gloo(tmp_path):
    """Data-parallel training on CPU: 2 processes (torchrun → gloo), global batch split 8 + 8."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to the interpreter")
    (tmp_path / "c.toml").write_text(CONFIG.replace("steps = 4", "steps = 3"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "noiselevels", "train",
           str(tmp_path / "c.toml"), "--out", str(tmp_path / "run"), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
    ck = load_checkpoint(tmp_path / "run")
    assert ck.step == 3 and ck.state["world_size"] == 2
    assert {"rng.noise.0", "rng.noise.1"} <= set(ck.extra)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3


@pytest.mark.slow
def test_demo_smoke(tmp_path):
    """`make demo-train` end to end with a 2-step run and a handful of samples."""
    from noiselevels.demo import main as demo_main

    out = tmp_path / "demo"
    args = ["train", "--out", str(out), "--steps", "2", "--num", "16", "--bpd-images", "4", "--no-progress"]
    assert demo_main(args) == 0
    assert torch.is_grad_enabled()  # evaluation under no_grad must not leak into the caller
    report = (out / "report.md").read_text()
    for name in ("samples_8steps.png", "samples_24steps.png", "loss_profile.png", "effective_weighting.png"):
        assert (out / name).is_file() and name in report
    assert "Bits per dimension" in report and "FD" in report


def test_demo_defaults_to_the_study(monkeypatch, tmp_path):
    """`make demo` (no job named) runs the timestep-type study; options go to it."""
    import noiselevels.demo as demo

    seen = {}
    monkeypatch.setattr(demo, "study", lambda out, *, workers: seen.update(out=out, workers=workers) or 0)
    assert demo.main([]) == 0 and seen == {"out": "runs/demo/timestep-types", "workers": None}
    assert demo.main(["--workers", "3", "--out", str(tmp_path)]) == 0
    assert seen == {"out": str(tmp_path), "workers": 3}


def test_train_enables_grad_inside_no_grad(tmp_path):
    """`train()` called from a no_grad block still trains (it enables grad itself)."""
    from noiselevels.runs.train import train

    cfg = {
        "noise": {"process": "flow", "parameterization": "flow", "density": {"name": "logit_normal"}},
        "data": {"name": "digits", "batch_size": 8, "num_images": 40},
        "model": {"channels": [8, 16], "emb_dim": 16, "fourier_features": 4},
        "train": {"steps": 2, "log_every": 1, "ckpt_every": 0, "warmup": 1},
    }
    with torch.no_grad():
        res = train(cfg, tmp_path / "run", progress=False)
        assert not torch.is_grad_enabled()  # and the caller's mode is restored
    assert res.step == 2 and res.status == "completed"


def test_sample_with_a_grid_from_spacing_show(run_dir, tmp_path, capsys):
    """`noiselevels spacing show --format json` output feeds `sample --sigmas` unchanged."""
    assert main(["spacing", "show", "karras", "--steps", "3", "--format", "json"]) == 0
    grid = tmp_path / "karras.json"
    grid.write_text(capsys.readouterr().out)
    out = tmp_path / "g.png"
    assert main(["sample", str(run_dir), "--sigmas", str(grid), "--num", "2", "--out", str(out)]) == 0
    assert "--sigmas grid" in capsys.readouterr().out and out.is_file()
