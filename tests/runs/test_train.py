"""noiselevels.runs.train: tiny runs per parameterisation, resume equality, loss profile, failures."""

from __future__ import annotations

import json
import math
import os
import signal
import tomllib
from pathlib import Path

import pytest
import torch

from noiselevels.runs.checkpoint import load_checkpoint
from noiselevels.runs.train import (
    LossProfile,
    NonFiniteLossError,
    TrainConfig,
    load_run,
    load_train_config,
    noise_config,
    to_toml,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")




TINY_MODEL = {"channels": [8, 16], "emb_dim": 16, "fourier_features": 4}


def tiny(parameterization="v", process="vp", **train_kw):
    opts = {"steps": 20, "log_every": 5, "ckpt_every": 10, "warmup": 5, "lr": 2e-3}
    opts.update(train_kw)
    return {
        "noise": {
            "process": process,
            "parameterization": parameterization,
            "density": {"name": "logit_normal", "mean": 0.0, "std": 1.0},
            "weighting": {"name": "min_snr", "gamma": 5.0},
        },
        "data": {"name": "digits", "batch_size": 16, "num_images": 160},
        "model": dict(TINY_MODEL),
        "train": opts,
    }


@pytest.mark.parametrize(
    "process, parameterization",
    [("vp", "eps"), ("vp", "x0"), ("vp", "v"), ("flow", "flow"), ("ve", "edm")],
)
def test_twenty_steps_per_parameterization(tmp_path, process, parameterization):
    res = train(tiny(parameterization, process), tmp_path, progress=False)
    assert res.status == "completed" and res.step == 20
    assert [r["step"] for r in res.log] == [5, 10, 15, 20]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in res.log)
    for name in ("config.json", "config.toml", "log.jsonl", "loss_profile.json", "loss_profile.npz",
                 "loss_profile.png"):
        assert (tmp_path / name).is_file(), name
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["noise"]["parameterization"] == parameterization
    assert stored["model"]["kind"] == "unet" and stored["model"]["in_channels"] == 1
    assert load_checkpoint(tmp_path).step == 20


def test_log_records_grad_norm_and_the_final_partial_interval(tmp_path):
    res = train(tiny("eps", steps=7, log_every=3, ckpt_every=0), tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [3, 6, 7] and [r["step"] for r in res.log] == [3, 6]
    assert res.final_record == log[-1]  # the partial interval, step 7
    assert all(math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0 for r in log)
    no_clip = tiny("eps", steps=3, log_every=3, ckpt_every=0, grad_clip=0.0)
    off = train(no_clip, tmp_path / "off", progress=False)
    assert "grad_norm" not in off.final_record and off.final_record == off.log[-1]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = tiny("flow", "flow", steps=12, log_every=2, ckpt_every=5)
    full = train(cfg, tmp_path / "full", progress=False)
    part = train(cfg, tmp_path / "part", progress=False, steps=5)
    assert part.step == 5
    resumed = train(None, tmp_path / "part", resume=True, steps=12, progress=False)
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in full.log]
    prof_a = json.loads((tmp_path / "full" / "loss_profile.json").read_text())
    prof_b = json.loads((tmp_path / "part" / "loss_profile.json").read_text())
    assert prof_a == prof_b
    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "part")
    for key in a.model:
        torch.testing.assert_close(b.model[key], a.model[key], rtol=0, atol=0)
        torch.testing.assert_close(b.ema[key], a.ema[key], rtol=0, atol=0)


def test_loss_profile_statistics():
    prof = LossProfile(-2.0, 2.0, 4)  # bins [-2,-1), [-1,0), [0,1), [1,2]
    lam = torch.tensor([-5.0, -1.5, -0.5, -0.25, 0.5, 1.5, 1.75, 9.0], dtype=torch.float64)
    val = torch.tensor([1.0, 3.0, 2.0, 4.0, 7.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    prof.add(lam, val)
    rec = prof.close(10)
    assert rec["count"] == [2.0, 2.0, 1.0, 3.0]
    f64 = torch.float64
    want_mean = torch.tensor([2.0, 3.0, 7.0, 2.0], dtype=f64)
    torch.testing.assert_close(torch.tensor(rec["mean"], dtype=f64), want_mean)
    torch.testing.assert_close(
        torch.tensor(rec["var"][:2] + rec["var"][3:], dtype=f64), torch.tensor([2.0, 2.0, 1.0], dtype=f64)
    )
    assert math.isnan(rec["var"][2])
    assert prof.snapshot(11)["count"] == [0.0] * 4 and len(prof.history) == 1


def test_config_round_trip_and_errors(tmp_path):
    cfg = TrainConfig.from_dict(tiny())
    text = to_toml(cfg.to_dict())
    assert TrainConfig.from_dict(tomllib.loads(text)) == cfg
    path = tmp_path / "c.toml"
    path.write_text(text)
    over = load_train_config(path, overrides=["train.lr=0.01", "data.name=mnist"])
    assert over.train.lr == 0.01 and over.data.name == "mnist"
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'lr_typo' in \[train\]"):
        TrainConfig.from_dict({"train": {"lr_typo": 1}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'optim'"):
        TrainConfig.from_dict({"optim": {}})
    with pytest.raises(ValueError, match="precision"):
        TrainConfig.from_dict({"train": {"precision": "fp8"}})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig.from_dict({"data": {"batch_size": 0}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3")
    with pytest.raises(ValueError, match=r"bad\.toml"):
        load_train_config(bad)


class _NaNBelow(torch.nn.Module):
    """A tiny model that returns NaN for λ < threshold from its ``after``-th call on."""

    def __init__(self, after: int, threshold: float = 0.0):
        super().__init__()
        self.lin = torch.nn.Conv2d(1, 1, 1)
        self.calls, self.after, self.threshold = 0, after, threshold

    def forward(self, z, logsnr, **_):
        self.calls += 1
        out = self.lin(z)
        if self.calls >= self.after:
            bad = (logsnr < self.threshold).reshape(-1, 1, 1, 1)
            out = torch.where(bad, torch.nan, out)
        return out


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = tiny(ckpt_every=2, steps=10)
    msg = r"non-finite loss at step 5 .*λ in \[-[0-9.]+, -[0-9.e-]+\]"
    with pytest.raises(NonFiniteLossError, match=msg):
        train(cfg, tmp_path, progress=False, model=_NaNBelow(after=5))
    ck = load_checkpoint(tmp_path)
    assert ck.step == 4
    assert all(torch.isfinite(v).all() for v in ck.model.values())


def test_sigint_saves_a_checkpoint_and_resume_continues(tmp_path):
    cfg = tiny(steps=8, ckpt_every=0, log_every=4)

    def interrupt(step, _out):
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)

    res = train(cfg, tmp_path, progress=False, callback=interrupt)
    assert res.status == "interrupted" and res.step == 3
    assert load_checkpoint(tmp_path).step == 3
    res2 = train(None, tmp_path, resume=True, progress=False)
    assert res2.status == "completed" and res2.step == 8
    full = train(cfg, tmp_path / "full", progress=False)
    assert [r["loss"] for r in res2.log] == [r["loss"] for r in full.log]


def test_load_run_gives_the_ema_model(tmp_path):
    train(tiny(steps=4, ckpt_every=0), tmp_path, progress=False)
    run = load_run(tmp_path)
    ck = load_checkpoint(tmp_path)
    for k, v in run.model.state_dict().items():
        torch.testing.assert_close(v, ck.ema[k], rtol=0, atol=0)
    assert run.process == "vp" and run.step == 4 and not run.model.training
    out = run.model(torch.zeros(2, 1, 8, 8), torch.zeros(2))
    assert out.shape == (2, 1, 8, 8)


def test_resume_errors(tmp_path):
    with pytest.raises(ValueError, match=r"config\.json does not exist"):
        train(None, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train(tiny(), tmp_path, steps=0, progress=False)
    train(tiny(steps=1, ckpt_every=0), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(tiny(steps=1), tmp_path / "r", progress=False)


def test_adaptive_sampler_is_fed_and_resumed_exactly(tmp_path):
    kind = "importance"
    cfg = tiny(steps=6, log_every=2, ckpt_every=3)
    cfg["adaptive"] = {"kind": kind}
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", progress=False, steps=3)
    resumed = train(None, tmp_path / "part", resume=True, steps=6, progress=False)
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in full.log]
    ck = load_checkpoint(tmp_path / "full")
    assert "sampler" in ck.state and json.loads((tmp_path / "full" / "config.json").read_text())["adaptive"]


def test_example_configs_load():
    from pathlib import Path

    from noiselevels.demo import DEMO_CONFIG
    from noiselevels.runs.train import noise_config

    root = Path(__file__).resolve().parents[2] / "examples" / "train"
    paths = sorted(root.glob("*.toml"))
    assert len(paths) >= 4
    for p in paths:
        cfg = load_train_config(p)
        noise_config(cfg.noise)
    # the demo trains exactly the documented example
    assert load_train_config(root / "mnist_v_cosine.toml") == TrainConfig.from_dict(DEMO_CONFIG)


def test_sample_every_writes_grids(tmp_path):
    train(tiny(steps=2, sample_every=2, ckpt_every=0), tmp_path, progress=False)
    assert (tmp_path / "samples" / "step_00000002.png").read_bytes()[:4] == b"\x89PNG"


EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples" / "train"
TRAIN_EXAMPLES = sorted(EXAMPLES_DIR.glob("*.toml"))


@pytest.mark.parametrize("path", TRAIN_EXAMPLES, ids=lambda p: p.name)
def test_train_examples_load(path):
    cfg = load_train_config(path)
    assert noise_config(cfg.noise).process in ("vp", "ve", "flow")


def test_flow_logitnormal_example_is_the_plain_flow_matching_loss():
    """Its comment promises the plain flow-matching (velocity) MSE: in ε units (1 + e^(−λ/2))²."""
    nc = noise_config(load_train_config(EXAMPLES_DIR / "mnist_flow_logitnormal.toml").noise)
    lam = torch.linspace(-12.0, 12.0, 97, dtype=torch.float64)
    torch.testing.assert_close(nc.weighting(lam).to(torch.float64), (1 + torch.exp(-lam / 2)) ** 2)
