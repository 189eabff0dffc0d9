"""Tests of the trainer's [adaptive] section and noiselevels.runs.adaptive (a run folder's sampler):
each kind trains and writes its overlay; the importance sampler resumes exactly and load_adaptive
restores it from the newest checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

import noiselevels as nl
from noiselevels.runs.adaptive import load_adaptive, sampler_state
from noiselevels.runs.train import train
from noiselevels.training.adaptive import AdaptiveSampler, LossImportanceSampler

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_run(adaptive, steps=6):
    return {
        "noise": {
            "process": "vp",
            "parameterization": "v",
            "density": {"name": "logit_normal", "mean": 0.0, "std": 1.0},
            "weighting": {"name": "min_snr", "gamma": 5.0},
        },
        "data": {"name": "digits", "batch_size": 16, "num_images": 64},
        "model": {"channels": [8, 8], "emb_dim": 8, "fourier_features": 4},
        "train": {"steps": steps, "log_every": 2, "ckpt_every": 3, "warmup": 1, "lr": 1e-3},
        "adaptive": adaptive,
    }


@pytest.mark.parametrize("kind", ["uncertainty", "timewarp", "learned_schedule"])
def test_trainer_runs_each_kind(tmp_path, kind):
    extra = {"hidden": 4} if kind == "learned_schedule" else {}
    res = train(
        tiny_run({"kind": kind, "bins": 16, **extra} if kind != "uncertainty" else {"kind": kind}),
        tmp_path,
        progress=False,
        steps=4,
    )
    assert res.step == 4 and all(math.isfinite(r["loss"]) for r in res.log)
    overlay = json.loads((tmp_path / "adaptive.json").read_text())
    assert overlay["kind"] == kind and len(overlay["logsnr"]) == len(overlay["value"])
    assert (tmp_path / "loss_profile.png").is_file()


def test_trainer_importance_sampler_resumes_exactly(tmp_path):
    cfg = tiny_run({"kind": "importance", "bins": 20, "logsnr_min": -10.0, "logsnr_max": 10.0})
    full = train(cfg, tmp_path / "full", progress=False)
    train(cfg, tmp_path / "part", progress=False, steps=3)
    resumed = train(None, tmp_path / "part", resume=True, steps=6, progress=False)
    assert [r["loss"] for r in resumed.log] == [r["loss"] for r in full.log]
    a, b = load_adaptive(tmp_path / "full"), load_adaptive(tmp_path / "part")
    assert isinstance(a, LossImportanceSampler) and a.updates == 6
    torch.testing.assert_close(a.ema, b.ema, rtol=0, atol=0)
    assert (
        json.loads((tmp_path / "full" / "adaptive.json").read_text())["density"]["name"]
        == "piecewise_constant"
    )
    assert isinstance(a, AdaptiveSampler)


def test_load_adaptive_refuses_other_folders(tmp_path):
    with pytest.raises(ValueError, match="not a run folder"):
        load_adaptive(tmp_path)
    cfg = tiny_run(None)
    del cfg["adaptive"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"has no \[adaptive\] section"):
        load_adaptive(tmp_path)


def test_sampler_state_joins_the_json_state_and_the_tensors():
    t = torch.arange(3.0)
    state = {"sampler": {"updates": 4, "bins": 3}, "log": []}
    extra = {"sampler.ema": t, "rng.torch.0": torch.zeros(2)}
    assert sampler_state(state, extra) == {"updates": 4, "bins": 3, "ema": t}
    assert sampler_state({}, {}) == {}


def test_top_level_name():
    assert nl.load_adaptive is load_adaptive
