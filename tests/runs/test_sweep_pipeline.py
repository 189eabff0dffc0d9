"""A sweep over a tiny random-initialised SD pipeline and a folder of captioned images: 2 timestep types × 2
seeds (1 training step each), the data encoded once before the runs, a report with validation loss ± spread,
retention, sample grids and the loss-over-λ plot; bad pipeline sweep files refused before anything runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from noiselevels.runs.report import collect
from noiselevels.runs.sweep import parse_sweep, run_sweep

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from noiselevels.runs.families.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd", tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concept")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((36, 40, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
        (folder / f"im{i}.txt").write_text(f"a photo of [trigger] toy, view {i % 2}")
    return folder


def table(base, images, **eval_extra):
    return {
        "sweep": {"base": str(base), "images": str(images), "seeds": [0, 1]},
        "finetune": {"trigger": "sks", "resolution": 32, "rank": 2, "steps": 1, "batch_size": 1,
                     "lr": 1e-2},
        "eval": {"prompts": ["a photo of sks toy"], "steps": 1, "samples_per_prompt": 2,
                 "retention_images": 1, "levels": [-6.0, 0.0, 6.0], **eval_extra},
        "grid": {"timestep_type": ["sigmoid", "shift"]},
    }  # fmt: skip


def test_pipeline_sweep_report(tiny_sd, images, tmp_path):
    out = tmp_path / "sweep"
    res = run_sweep(parse_sweep(table(tiny_sd, images)), out, workers=2, progress=False)
    assert not res.failed, res.failed
    assert len(res.finished) == 5  # base + 2 types × 2 seeds
    data = collect(out)
    held = sorted(p.name for p in (out / "data" / "validation").glob("*.png"))
    assert len(held) == 1 and sorted(p.name for p in (out / "data" / "train").glob("*.png")) != held
    for rs in data["configs"].values():
        assert sorted(r["seed"] for r in rs) == [0, 1]
        for r in rs:
            v = r["validation"]
            assert [c["logsnr"] for c in v["model"]["curve"]] == [-6.0, 0.0, 6.0] and r["holdout"] == held
            assert v["difference"]["overall"]["mean"] != 0.0 and r["retention"]["change"]["num_items"] == 1
            info = json.loads((out / "runs" / r["id"] / "finetune.json").read_text())
            assert info["cache"]["encoded_images"] == 0  # encoded once, before the runs
    # the same fixed noise for every run: the base's loss is the baseline inside every run
    b = data["base"]["validation"]["model"]["overall"]["mean"]
    for rs in data["configs"].values():
        assert rs[0]["validation"]["baseline"]["overall"]["mean"] == pytest.approx(b, rel=1e-6)
    md = (out / "report.md").read_text()
    assert "| sigmoid | 2 |" in md and "| shift | 2 |" in md and " ± " in md
    assert "retention: change ↓" in md and "Verdict on Δ val vs base:" in md
    for f in ("samples.png", "validation_loss.png", "report.html"):
        assert (out / f).is_file(), f


def test_bad_pipeline_sweeps_refused(tiny_sd, images, tmp_path):
    d = table(tiny_sd, images)
    d["finetune"]["ranks"] = 3
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'ranks' in \\[finetune\\]"):
        parse_sweep(d)
    for change, message in (
        (lambda d: d["grid"].update(timestep_type=["nope"]), "configuration 'nope': unknown timestep type"),
        (lambda d: d["eval"].update(prompts="one"), "prompts must be a list of strings"),
        (lambda d: d["eval"].update(samples_per_prompt=0), "samples_per_prompt must be >= 1"),
        (lambda d: d["eval"].update(features=str(tmp_path)), "not a local CLIP/DINO folder"),
    ):
        d = table(tiny_sd, images)
        change(d)
        with pytest.raises(ValueError, match=message):
            run_sweep(parse_sweep(d), tmp_path / "o", progress=False)
        assert not (tmp_path / "o" / "runs").exists()
