"""Regression tests of issue 17's command-line items: empty values, sizes refused before allocating,
output files checked before work, adapters that are not safetensors, images PIL refuses."""

from __future__ import annotations

import shutil

import pytest
import torch

from noiselevels.options import MemoryEstimateError, check_memory
from noiselevels.runs.checkpoint import load_checkpoint, save_checkpoint
from tests.reliability._cli import TINY, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("found")
    (d / "c.toml").write_text(TINY)
    r = run_cli(["train", str(d / "c.toml"), "--out", str(d / "run"), "--steps", "2", "--no-progress"])
    assert r.code == 0, r.err
    return d / "run"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    d = tmp_path_factory.mktemp("adapter") / "ft"
    r = run_cli(["finetune", "--base", "mnist-base", "--class", "7", "--num-images", "4", "--steps", "1",
                 "--rank", "2", "--batch-size", "2", "--out", str(d)])  # fmt: skip
    assert r.code == 0, r.err
    return d


# ---------------------------------------------------------------------------------------------
# empty strings and zeros are values, not "the current folder" or "the default"
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "name"),
    [(["train", "--out", ""], "--out"),
     (["sample", "", "--out", "x.png"], "DIR"),
     (["finetune", "--base", "", "--class", "7", "--out", "x"], "--base"),
     (["train", "--out", "x", "--data", ""], "--data"),
     (["finetune", "--base", "mnist-base", "--class", "7", "--out", "x", "--timestep-type", ""],
      "--timestep-type"),
     (["train", "--out", "x", "--set", " "], "--set")],
)  # fmt: skip
def test_an_empty_value_is_refused(tmp_path, monkeypatch, argv, name):
    monkeypatch.chdir(tmp_path)
    run_cli(argv).one_line_error(f"{name} is empty")
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


def test_zero_points_and_nrow_are_refused(run_dir, tmp_path):
    run_cli(["inspect", "--preset", "kohya:sigmoid", "--points", "0"]).one_line_error("--points must be >= 2")
    r = run_cli(["sample", str(run_dir), "--num", "2", "--steps", "2", "--nrow", "0",
                 "--out", str(tmp_path / "g.png")])  # fmt: skip
    r.one_line_error("--nrow must be >= 1")
    assert not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------------------------------------
# sizes that cannot be allocated: refused with the estimate, before allocating (and without a hang)
# ---------------------------------------------------------------------------------------------
def test_check_memory_names_the_estimate():
    check_memory(1e6, "a small grid")
    with pytest.raises(MemoryEstimateError, match=r"^--steps 9 needs about 1e\+06 GB of memory, more than"):
        check_memory(1e15, "--steps 9", "use fewer steps")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [(["spacing", "show", "karras", "--steps", "1000000000"], "--steps 1000000000 needs about"),
     (["sample", "RUN", "--steps", "1000000000", "--out", "OUT/s.png"], "--steps 1000000000 needs about"),
     (["sample", "RUN", "--num", "1000000000", "--out", "OUT/s.png"], "--num 1000000000 needs about"),
     (["spectral", "digits", "--size", "100000"], "images at size 100000 needs about"),
     (["train", "RUN/../c.toml", "--out", "OUT/t", "--set", "model.channels=[100000, 100000]"],
      "parameters needs about"),
     (["finetune", "--base", "mnist-base", "--class", "7", "--rank", "100000", "--out", "OUT/f"],
      "rank must be <= 128")],
)  # fmt: skip
def test_a_size_that_cannot_be_allocated_is_refused(run_dir, tmp_path, argv, needle):
    argv = [a.replace("RUN", str(run_dir)).replace("OUT", str(tmp_path)) for a in argv]
    run_cli(argv).one_line_error(needle)
    assert not any(tmp_path.iterdir())


def test_a_lora_rank_beyond_memory_is_refused():
    from noiselevels.runs.lora import add_lora

    model = torch.nn.Sequential(torch.nn.Linear(10**5, 10**5, device="meta"))
    with pytest.raises(MemoryEstimateError, match=r"LoRA rank 90000 \(18,000,000,000 adapter parameters\)"):
        add_lora(model, rank=90_000)


def test_spacing_optimize_needs_samples():
    r = run_cli(["spacing", "optimize", "--problem", "gaussian", "--steps", "3", "--num-samples", "0"])
    r.one_line_error("--num-samples must be >= 1")


# ---------------------------------------------------------------------------------------------
# outputs: checked before the work, nothing partial
# ---------------------------------------------------------------------------------------------
def test_save_tensor_to_a_folder_is_refused_before_the_png(run_dir, tmp_path):
    r = run_cli(["sample", str(run_dir), "--num", "2", "--steps", "2", "--out", str(tmp_path / "g.png"),
                 "--save-tensor", str(tmp_path)])  # fmt: skip
    r.one_line_error("--save-tensor", "is a folder")
    assert not (tmp_path / "g.png").exists()


def test_nan_weights_do_not_sample_an_image(run_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad, ignore=shutil.ignore_patterns("checkpoints"))
    ck = load_checkpoint(run_dir / "checkpoints")
    nan = {k: torch.full_like(v, float("nan")) for k, v in ck.model.items()}
    save_checkpoint(bad / "checkpoints", ck.step, model=nan, ema=nan, optimizer=ck.optimizer, extra=ck.extra,
                    state=ck.state)  # fmt: skip
    r = run_cli(["sample", str(bad), "--num", "2", "--steps", "2", "--out", str(tmp_path / "g.png")])
    r.one_line_error("non-finite samples")
    assert not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------------------------------------
# adapters: local paths never reach the Hub, pickles are refused, truncation is one line
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def no_hub(monkeypatch):
    import huggingface_hub
    import peft.utils.save_and_load as sl

    def refuse(*a, **k):
        raise AssertionError("a local adapter path went to the Hub")

    for mod in (huggingface_hub, sl):
        for name in ("hf_hub_download", "file_exists"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, refuse)


def _sample_with(run_adapter: str, tmp_path):
    return run_cli(["sample", "mnist-base", "--adapter", run_adapter, "--class", "7", "--num", "1",
                    "--steps", "2", "--out", str(tmp_path / "g.png")])  # fmt: skip


def test_a_relative_adapter_without_weights_stays_local(adapter, tmp_path, monkeypatch, no_hub):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(adapter / "adapter" / "adapter_config.json", tmp_path / "a" / "b")
    monkeypatch.chdir(tmp_path)
    _sample_with("a/b", tmp_path).one_line_error("has no adapter_model.safetensors")


def test_a_pickled_adapter_is_refused_in_one_line(adapter, tmp_path, no_hub):
    d = tmp_path / "pickled"
    shutil.copytree(adapter, d)
    from safetensors.torch import load_file

    weights = load_file(d / "adapter" / "adapter_model.safetensors")
    (d / "adapter" / "adapter_model.safetensors").unlink()
    torch.save(weights, d / "adapter" / "adapter_model.bin")  # what peft writes with safe_serialization=False
    line = _sample_with(str(d), tmp_path).one_line_error("adapter_model.bin, a pickle file")
    assert "weights_only" not in line


def test_a_truncated_adapter_is_one_line(adapter, tmp_path):
    d = tmp_path / "cut"
    shutil.copytree(adapter, d)
    f = d / "adapter" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    _sample_with(str(d), tmp_path).one_line_error("truncated or corrupt")
    assert not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------------
def test_a_decompression_bomb_is_one_line(tmp_path, monkeypatch):
    from PIL import Image

    Image.new("L", (16, 16)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 256 pixels > 2 × limit: PIL's bomb error
    run_cli(["spectral", str(tmp_path / "bomb.png")]).one_line_error("bomb.png", "decompression bomb")
