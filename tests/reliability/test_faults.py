"""Faults survived: SIGKILL of a training run at random points (resume is bitwise), SIGKILL of a sweep
(its worker dies too, finished runs stay, the rest is redone), two sweeps into one folder (a lock
naming the holder), a full disk during a checkpoint (one line, the last good checkpoint kept).

A checkpoint write killed half-way: tests/runs/test_checkpoint.py (test_killed_write_leaves_previous_...).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from noiselevels.runs.checkpoint import load_checkpoint
from noiselevels.runs.config import load_train_config
from noiselevels.runs.sweep import load_sweep, run_sweep
from noiselevels.runs.train import train
from tests.reliability._cli import TINY, make_tiny_base, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 10


def _config(tmp_path: Path):
    (tmp_path / "c.toml").write_text(TINY)
    return load_train_config(
        tmp_path / "c.toml",
        overrides=[f"train.steps={STEPS}", "train.ckpt_every=1", "train.log_every=3"],
    )


def _same_run(a: Path, b: Path) -> None:
    """Bit for bit: weights, EMA, optimizer state, the log's losses and the loss profile."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    assert ca.step == cb.step == STEPS
    for part in ("model", "ema", "optimizer"):
        ta, tb = getattr(ca, part), getattr(cb, part)
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (part, k)
    la = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"], r.get("grad_norm")) for r in la] == [
        (r["step"], r["loss"], r.get("grad_norm")) for r in lb
    ]
    with np.load(a / "loss_profile.npz") as za, np.load(b / "loss_profile.npz") as zb:
        for k in ("steps", "count", "mean", "var"):
            np.testing.assert_array_equal(za[k], zb[k])


def _fork_train(cfg, out: Path) -> int:
    """A child process (forked: torch is already imported) training ``cfg`` into ``out`` slowly enough
    to be killed between, or inside, its per-step checkpoint writes."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            train(cfg, out, progress=False, callback=lambda step, res: time.sleep(0.02))
        except BaseException:
            code = 1
        os._exit(code)
    return pid


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_points_then_resume_is_bitwise(tmp_path):
    cfg = _config(tmp_path)
    train(cfg, tmp_path / "ref", progress=False)
    kills = []
    for seed in range(3):
        rng = random.Random(seed)
        out = tmp_path / f"killed{seed}"
        after, delay = rng.randint(1, STEPS - 3), rng.uniform(0.0, 0.03)
        pid = _fork_train(cfg, out)
        deadline = time.monotonic() + 60
        while not (out / "checkpoints" / f"ckpt-{after:08d}").exists():
            assert time.monotonic() < deadline, "the child never reached its kill point"
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the child ended before its kill point"
            time.sleep(0.002)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        kills.append((out, load_checkpoint(out).step))
        train(None, out, resume=True, progress=False)
        _same_run(out, tmp_path / "ref")
    assert all(1 <= step < STEPS for _, step in kills), kills  # each was killed mid-run


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(tmp_path, monkeypatch):
    import safetensors.torch as st

    (tmp_path / "c.toml").write_text(TINY)
    real, calls = st.save_file, []

    def full_disk(tensors, path, metadata=None):
        calls.append(path)
        if "ckpt-00000004" in str(path) and len([c for c in calls if "ckpt-00000004" in str(c)]) == 2:
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(st, "save_file", full_disk)
    run = tmp_path / "run"
    r = run_cli(["train", str(tmp_path / "c.toml"), "--out", str(run), "--no-progress"])
    line = r.one_line_error("No space left on device", "the last good checkpoint")
    assert "ckpt-00000002 is kept" in line
    assert load_checkpoint(run).step == 2
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp")]
    monkeypatch.setattr(st, "save_file", real)  # space freed: the run resumes from step 2
    assert run_cli(["train", "--resume", str(run), "--no-progress"]).code == 0
    assert load_checkpoint(run).step == 4


# ---------------------------------------------------------------------------------------------
# sweeps
# ---------------------------------------------------------------------------------------------
SWEEP = """
[sweep]
base = "{base}"
class = 7
num_images = 10
seeds = [0]
[finetune]
steps = 10
batch_size = 4
rank = 2
[eval]
num_new = 10
num_other = 12
steps = 2
features = "pixels"
[grid]
timestep_type = ["linear"]
"""


def _workers_of(out: Path) -> list[int]:
    """PIDs of live sweep workers on run folders under ``out``."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = next(x for x in (p / "status").read_text().splitlines() if x.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "noiselevels.runs.sweep --worker" in cmd and str(out) in cmd and "zombie" not in state:
            pids.append(int(p.name))
    return pids


def _wait(cond, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_sweep_killed_then_rerun_and_a_second_sweep_refused(tmp_path):
    base = make_tiny_base(tmp_path / "tiny.safetensors")
    toml = tmp_path / "s.toml"
    toml.write_text(SWEEP.format(base=base))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    sweep = subprocess.Popen([sys.executable, "-m", "noiselevels", "sweep", str(toml), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
    try:
        lock = out / ".sweep.lock"
        _wait(lambda: lock.is_file() and lock.read_text().strip(), "the lock")
        # a second sweep into the same folder: refused at once, naming the holder
        run_cli(["sweep", str(toml), "--out", str(out)]).one_line_error(f"another sweep (PID {sweep.pid})")
        # wait for the first finished run and the next worker, then kill the sweep with -9
        _wait(lambda: any((out / "runs").glob("*/result.json")) and _workers_of(out), "a finished run")
        finished = list((out / "runs").glob("*/result.json"))
        done_before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in finished}
        workers = _workers_of(out)
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        _wait(lambda: not any(w in _workers_of(out) for w in workers), "the workers to die", timeout=10)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    res = run_sweep(load_sweep(toml), out, progress=False)  # the dead holder's lock is taken over
    assert not res.failed and not res.interrupted
    assert sorted(res.skipped) == sorted(p.parent.name for p in done_before)
    for p, (data, mtime) in done_before.items():  # finished runs untouched
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime
    meta = json.loads((out / "sweep.json").read_text())
    assert all((out / "runs" / rid / "result.json").is_file() for rid in meta["runs"])
    report = (out / "report.md").read_text()
    assert "linear" in report
    assert not (out / ".sweep.lock").exists()
