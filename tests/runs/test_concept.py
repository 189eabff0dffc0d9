"""noiselevels.runs.concept and ``noiselevels evaluate RUN --adapter DIR --images DIR``: validation loss at
fixed levels of a tiny MNIST-style base and its adapter (paired difference, base alone), retention on the
other classes, the held-out split (seeded, or the one the fine-tune recorded), reproducibility, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_finetune import SHAPE, make_tiny_base

from noiselevels.cli import main
from noiselevels.runs.concept import RunSubject, evaluate_concept, validation_set
from noiselevels.runs.finetune import concept_images, finetune, load_base
from noiselevels.runs.validation import level_errors


def write_folder(folder, x):
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(x):
        a = ((im[0].numpy() + 1) * 127.5).round().astype(np.uint8)
        Image.fromarray(a, mode="L").save(folder / f"img{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("concept")
    base = make_tiny_base(root / "tiny.safetensors")
    x, _, _ = concept_images(class_label=7, num_images=10, shape=SHAPE)
    images = write_folder(root / "sevens", x)
    finetune(str(base), x[:8], timestep_type="weighted", out_dir=root / "ft", steps=3, batch_size=4, rank=2,
             extra_info={"holdout": ["img08.png", "img09.png"]})  # fmt: skip
    return base, images, root / "ft"


def test_cli_evaluate_adapter_json(setup, tmp_path, capsys):
    base, images, ft = setup
    out = tmp_path / "e.json"
    args = ["evaluate", str(base), "--adapter", str(ft), "--images", str(images), "--json", str(out),
            "--retention-images", "9"]  # fmt: skip
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "validation loss, ε-MSE" in text and "adapter − base (paired)" in text and "noisy" in text
    res = json.loads(out.read_text())
    assert "held out (img08.png, img09.png)" in res["validation_source"]
    v = res["validation"]
    assert v["model"]["num_items"] == 2 and v["model"]["curve"][0]["logsnr"] == -8.0
    for band in ("noisy", "mid", "clean"):
        d = v["model"]["bands"][band]["mean"] - v["baseline"]["bands"][band]["mean"]
        assert v["difference"]["bands"][band]["mean"] == pytest.approx(d, rel=1e-9, abs=1e-12)
    assert v["difference"]["overall"]["mean"] != 0.0  # the adapter changed the model
    r = res["retention"]
    assert "other classes [0, 1, 2, 3, 4, 5, 6, 8, 9]" in r["settings"]["source"]
    assert r["change"]["num_items"] == 9 and r["change"]["overall"]["mean"] > 0
    # the same command gives the same numbers (fixed noise and split)
    assert main([*args[:-2], "--json", str(tmp_path / "f.json"), "--retention-images", "9"]) == 0
    assert json.loads((tmp_path / "f.json").read_text()) == res


def test_numbers_are_the_validation_module_s(setup):
    base, images, ft = setup
    subj = RunSubject.load(str(base), ft)
    res = evaluate_concept(subj, images=images, adapter=ft, with_samples=False, retention_images=9)
    items, _, _ = validation_set(subj, images, adapter=ft)
    le = level_errors({"a": subj.adapted}, items, process=subj.process,
                      parameterization=subj.parameterization, batch_size=1)  # fmt: skip
    got = torch.tensor([c["mean"] for c in res["validation"]["model"]["curve"]], dtype=torch.float64)
    torch.testing.assert_close(got, le.errors["a"].mean(0), rtol=1e-5, atol=1e-7)  # batch size 1 vs 64


def test_base_alone_and_seeded_split(setup, tmp_path):
    base, images, _ = setup
    subj = RunSubject(load_base(str(base)))
    res = evaluate_concept(subj, images=images, samples_per_prompt=3, steps=2)
    assert "baseline" not in res["validation"] and "retention" not in res
    assert "a fixed split of" in res["validation_source"] and "2 of 10 images" in res["validation_source"]
    assert res["samples"].shape == (3, *SHAPE) and res["sample_prompts"] == ["7"] * 3
    # validation images given: all of them
    res = evaluate_concept(subj, validation_images=images, with_samples=False)
    assert res["validation"]["model"]["num_items"] == 10


def test_bad_input(setup, tmp_path, capsys):
    base, images, _ = setup
    assert main(["evaluate", str(base), "--images", str(tmp_path)]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["evaluate", str(base), "--images", str(images), "--levels", "1,x"]) == 2
    assert "--levels must be comma-separated" in capsys.readouterr().err
    assert main(["evaluate", str(base), "--images", str(images), "--levels", "2,1"]) == 2
    assert "finite, increasing" in capsys.readouterr().err


def test_sweep_on_an_image_folder_of_a_project_base(setup, tmp_path):
    """A sweep over a project base and an image folder: trained on the folder minus a seeded 20 % split,
    validated and retained there; the concept's samples in the report; [eval] levels accepted."""
    from noiselevels.runs.report import collect
    from noiselevels.runs.sweep import parse_sweep, run_sweep

    base, images, _ = setup
    table = {"sweep": {"base": str(base), "images": str(images), "seeds": [0]},
             "finetune": {"steps": 2, "batch_size": 4, "rank": 2},
             "eval": {"levels": [-4.0, 4.0], "retention_images": 9, "steps": 2},
             "grid": {"timestep_type": ["sigmoid"]}}  # fmt: skip
    res = run_sweep(parse_sweep(table), tmp_path / "s", workers=2, progress=False)
    assert not res.failed, res.failed
    data = collect(tmp_path / "s")
    (r,) = data["configs"]["sigmoid"]
    info = json.loads((tmp_path / "s" / "runs" / r["id"] / "finetune.json").read_text())
    assert info["num_images"] == 8 and len(info["holdout"]) == 2  # 10 images: 8 trained, 2 held out
    assert r["validation"]["model"]["num_items"] == 2 and r["retention"]["change"]["num_items"] == 9
    assert [c["logsnr"] for c in r["validation"]["difference"]["curve"]] == [-4.0, 4.0]
    assert (tmp_path / "s" / "samples.png").is_file()
    assert "| sigmoid | 1 |" in (tmp_path / "s" / "report.md").read_text()
