"""Regression tests of every item issue 17 found: each bad input gives one line and exit 2 (or works)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from noiselevels.runs.config import DEFAULT_NOISE, TrainConfig
from noiselevels.runs.loop import NonFiniteLossError, TrainStep
from tests.reliability._cli import TINY, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "c.toml").write_text(TINY)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# an infinite loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "clip", "what"),
    [("1e37", "1.0", "non-finite "), ("1e36", "0", "non-finite gradient norm")],
)
def test_an_overflowing_weighting_stops_at_step_1(tiny, value, clip, what):
    """Per-sample losses finite, their float32 mean (1e37) or the gradient (1e36) not: stopped at step 1
    (before, the run finished with 'loss inf' and, with clipping, dropped the inf norm silently)."""
    r = run_cli(["train", str(tiny / "c.toml"), "--out", str(tiny / "run"), "--no-progress",
                 "--set", "noise.weighting.name=constant", "--set", f"noise.weighting.value={value}",
                 "--set", f"train.grad_clip={clip}"])  # fmt: skip
    line = r.one_line_error(what, "at step 1", "lower the weighting")
    assert "last good checkpoint: none" in line
    assert not (tiny / "run" / "checkpoints").exists() or not any((tiny / "run" / "checkpoints").iterdir())


def test_train_step_checks_the_reduced_loss_and_the_gradient_norm():
    """The step itself: a finite per-sample loss whose mean is inf; a loss whose gradient is inf."""
    w = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([w], lr=0.1)
    step = TrainStep(opt, [w], lr=0.1)
    losses = torch.full((2,), 3e38) * w  # each finite, their sum inf
    with pytest.raises(NonFiniteLossError, match="non-finite mean loss at step 1"):
        step(0, losses.sum(), losses, torch.zeros(2))
    w2 = torch.nn.Parameter(torch.ones(2))
    big = torch.nn.Parameter(torch.ones(2))
    step2 = TrainStep(torch.optim.SGD([w2, big], lr=0.1), [w2, big], lr=0.1, grad_clip=1.0)
    loss2 = (w2 * 2e38)[0] - (big * 2e38)[0]  # 0, gradients ±2e38: their norm overflows
    with pytest.raises(NonFiniteLossError, match="non-finite gradient norm at step 4"):
        step2(3, loss2, loss2.detach().reshape(1), torch.zeros(1))
    torch.testing.assert_close(w2.detach(), torch.ones(2))  # no optimizer step was taken


# ---------------------------------------------------------------------------------------------
# defaults and tables
# ---------------------------------------------------------------------------------------------
def test_a_configuration_without_noise_trains_the_documented_default():
    """No config, no --set noise.*: the [noise] of examples/train/mnist_v_cosine.toml."""
    cfg = TrainConfig.from_dict({})
    assert dict(cfg.noise) == DEFAULT_NOISE
    import tomllib
    from pathlib import Path

    example = tomllib.loads(
        (Path(__file__).parents[2] / "examples" / "train" / "mnist_v_cosine.toml").read_text()
    )
    assert example["noise"] == DEFAULT_NOISE


def test_bare_train_command_trains(tmp_path):
    r = run_cli(
        [
            "train",
            "--data",
            "mnist",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--set",
            "data.num_images=50",
            "--set",
            "data.batch_size=4",
            "--set",
            "model.channels=[8]",
        ]
    )
    assert r.code == 0, r.err
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["noise"]["process"] == "vp" and stored["noise"]["parameterization"] == "v"


def test_partial_noise_is_still_an_error(tiny):
    """Only a default for a missing [noise]: a [noise] without process is not silently completed."""
    r = run_cli(["train", "--data", "digits", "--out", str(tiny / "x"), "--set", "noise.density.name=beta"])
    r.one_line_error("needs 'process'")


@pytest.mark.parametrize(
    "args",
    [["--set", "model=3"], ["--set", "train=[1]"], ["--set", "noise=3"], ["--set", "data='x'"],
     ["--set", "adaptive=5"], ["--set", "spectral=[]"]],
)  # fmt: skip
def test_a_scalar_where_a_table_belongs(tiny, args):
    section = args[1].split("=")[0]
    run_cli(["train", str(tiny / "c.toml"), "--out", str(tiny / "x"), *args]).one_line_error(
        f"[{section}] must be a table"
    )


def test_a_scalar_table_in_a_toml_file(tmp_path):
    (tmp_path / "c.toml").write_text("noise = 3\n")
    run_cli(["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "x")]).one_line_error(
        "[noise] must be a table"
    )


def test_huge_profile_bins_is_refused(tiny):
    r = run_cli(["train", str(tiny / "c.toml"), "--out", str(tiny / "x"),
                 "--set", "train.profile_bins=10000000"])  # fmt: skip
    r.one_line_error("profile_bins must be an integer in [2, 10000]")


# ---------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------
def test_resume_keeps_loss_profile_npz_numeric(tiny):
    """Empty bins are null in the checkpoint; after a resume the npz arrays were object arrays."""
    run = str(tiny / "run")
    assert run_cli(["train", str(tiny / "c.toml"), "--out", run, "--steps", "2", "--no-progress",
                    "--set", "train.profile_bins=200"]).code == 0  # fmt: skip
    assert run_cli(["train", "--resume", run, "--steps", "4", "--no-progress"]).code == 0
    with np.load(tiny / "run" / "loss_profile.npz", allow_pickle=False) as z:
        for k in ("count", "mean", "var"):
            assert z[k].dtype == np.float64 and z[k].shape == (2, 200), (k, z[k].dtype)
        assert np.isnan(z["mean"]).any()  # empty bins stayed NaN


# ---------------------------------------------------------------------------------------------
# run folders: corrupt files, resume, overwriting
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def trained(tiny):
    """A 2-step run (checkpoint at step 2)."""
    r = run_cli(["train", str(tiny / "c.toml"), "--out", str(tiny / "run"), "--steps", "2", "--no-progress"])
    assert r.code == 0, r.err
    return tiny / "run"


def _ckpt(run):
    return next((run / "checkpoints").glob("ckpt-*"))


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [("manifest.json", '{"step": 2, "files": ["model.safetensors"]}', "manifest.json has the wrong shape"),
     ("manifest.json", '{"step": 2, "files": {"model.safetensors": 3}}', "manifest.json has the wrong shape"),
     ("manifest.json", "[1, 2]", "unreadable manifest.json"),
     ("state.json", "[1]", None)],
)  # fmt: skip
def test_a_manifest_of_the_wrong_shape_is_one_line(trained, tmp_path, name, text, needle):
    (_ckpt(trained) / name).write_text(text)
    r = run_cli(["sample", str(trained), "--num", "1", "--steps", "2", "--out", str(tmp_path / "g.png")])
    r.one_line_error("corrupt checkpoint", *([needle] if needle else []))


def test_a_truncated_data_json_names_the_file(trained, tmp_path):
    f = trained / "data.json"
    f.write_text(f.read_text()[:10])
    r = run_cli(["sample", str(trained), "--num", "1", "--steps", "2", "--out", str(tmp_path / "g.png")])
    r.one_line_error(str(f))


def test_resume_with_a_config_that_no_longer_fits_the_weights(trained):
    cfg = json.loads((trained / "config.json").read_text())
    cfg["model"]["channels"] = [8, 8]
    (trained / "config.json").write_text(json.dumps(cfg))
    run_cli(["train", "--resume", str(trained), "--no-progress"]).one_line_error(
        "cannot resume", "does not fit the run's config.json"
    )


def test_resume_with_fewer_steps_keeps_the_stored_configuration(trained):
    before = (trained / "config.json").read_text()
    run_cli(["train", "--resume", str(trained), "--steps", "1"]).one_line_error("at step 2, past --steps 1")
    assert (trained / "config.json").read_text() == before


def test_a_run_with_unusable_checkpoints_is_not_overwritten_without_force(trained, tiny):
    (_ckpt(trained) / "manifest.json").unlink()  # no loadable checkpoint left
    (trained / "checkpoints" / "LATEST").unlink(missing_ok=True)
    log = (trained / "log.jsonl").read_text()
    argv = ["train", str(tiny / "c.toml"), "--out", str(trained), "--steps", "1", "--no-progress"]
    run_cli(argv).one_line_error("already holds a run", "--force")
    assert (trained / "log.jsonl").read_text() == log
    assert run_cli([*argv, "--force"]).code == 0
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["LATEST", "ckpt-00000001"]


def test_finetune_negative_samples_is_refused_before_training(tmp_path):
    r = run_cli(
        ["finetune", "--base", "mnist-base", "--class", "7", "--out", str(tmp_path / "f"), "--samples", "-1"]
    )
    r.one_line_error("--samples must be >= 0")
    assert not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------------
# spectral: what it says it wrote, and which file each record is
# ---------------------------------------------------------------------------------------------
def test_spectral_plot_and_json_name_what_they_wrote(tmp_path):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate((40, 200, 90)):
        Image.fromarray((np.arange(64).reshape(8, 8) * 3 + v).astype(np.uint8) % 255).save(
            folder / f"im{i}.png"
        )
    r = run_cli(
        ["spectral", str(folder), "--json", str(tmp_path / "b.json"), "--plot", str(tmp_path / "plot")]
    )
    assert r.code == 0, r.err
    assert f"wrote {tmp_path / 'plot.png'}" in r.out and (tmp_path / "plot.png").is_file()
    records = json.loads((tmp_path / "b.json").read_text())["images"]
    assert [rec["file"] for rec in records] == [str(folder / f"im{i}.png") for i in range(3)]
    run_cli(["spectral", str(folder), "--plot", str(tmp_path)]).one_line_error("--plot", "is a folder")


# ---------------------------------------------------------------------------------------------
# sweeps: every run validated before any starts, Ray checked before OUT is written, interrupts
# ---------------------------------------------------------------------------------------------
SWEEP = """
[sweep]
base = "{base}"
class = 7
num_images = 10
[finetune]
steps = 2
batch_size = 4
rank = 2
[eval]
num_new = 4
num_other = 4
steps = 2
features = "pixels"
[grid]
timestep_type = ["linear", "shift"]
"""


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from tests.reliability._cli import make_tiny_base

    return make_tiny_base(tmp_path_factory.mktemp("base") / "tiny.safetensors")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [(("steps = 2", "steps = 0"), "steps must be an integer >= 1; got 0"),
     (("rank = 2", 'rank = "four"'), "rank must be an integer >= 1; got 'four'"),
     (('features = "pixels"', 'features = "bogus"'), "[eval] features must be"),
     (("[grid]", "[configs.x]\nnoise = 3\n[grid]"), "configuration 'x': noise must be a table; got 3")],
)  # fmt: skip
def test_every_sweep_run_is_validated_before_any_starts(tiny_base, tmp_path, edit, needle):
    (tmp_path / "s.toml").write_text(SWEEP.format(base=tiny_base).replace(*edit, 1))
    run_cli(["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out")]).one_line_error(needle)
    assert not (tmp_path / "out").exists()


def test_backend_ray_without_ray_leaves_nothing(tiny_base, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    (tmp_path / "s.toml").write_text(SWEEP.format(base=tiny_base))
    argv = ["sweep", str(tmp_path / "s.toml"), "--out", str(tmp_path / "out"), "--backend", "ray"]
    run_cli(argv).one_line_error("--backend ray needs Ray Tune")
    assert not (tmp_path / "out").exists()


def test_a_worker_ended_by_a_signal_is_interrupted_not_failed(tmp_path, monkeypatch, capsys):
    import noiselevels.runs.sweep as sw
    from noiselevels.runs.sweep_guard import signal_name

    assert signal_name(-15) == "SIGTERM" and signal_name(-9) == "SIGKILL" and signal_name(1) is None

    class Killed:
        def __init__(self, *a, **k):
            pass

        def wait(self):
            return -15

        def poll(self):
            return -15

    monkeypatch.setattr(sw.subprocess, "Popen", Killed)
    (tmp_path / "r").mkdir()
    failed, interrupted = sw._run_local([("r", tmp_path / "r")], 1, progress=True)
    assert failed == {} and interrupted == ["r"]
    out = capsys.readouterr().out
    assert "interrupted r (SIGTERM)" in out and "failed" not in out
