"""noiselevels.runs.finetune: base models, LoRA adapters (save/load round trip), base + adapter sampling,
noise-level resolution, the concept's images and their errors, and the ``finetune`` command."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_models import TINY_UNET2D, TINY_UNET2D_CONDITION

from noiselevels.cli import main
from noiselevels.presets import preset
from noiselevels.runs.finetune import (
    add_lora,
    concept_images,
    export_base,
    finetune,
    load_adapter,
    load_base,
    load_model,
    lora_targets,
    resolve_noise,
    sample,
    save_base,
)
from noiselevels.runs.models import DiffusersUNet, UNet

CLASSES = [0, 1, 2, 3, 4, 5, 6, 8, 9]
SHAPE = (1, 8, 8)


def make_tiny_base(path):
    """A small class-conditional UNet on 8×8 MNIST "trained" without 7 (random weights: the tests
    check plumbing, not quality)."""
    torch.manual_seed(0)
    cfg = {"kind": "unet", "in_channels": 1, "channels": [8, 16], "emb_dim": 16, "fourier_features": 2,
           "num_classes": 10}  # fmt: skip
    model = UNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k != "kind"})
    with torch.no_grad():  # the zero-initialised output layer would make every sample identical
        model.conv_out.weight.normal_(0, 0.1)
    config = {
        "noise": {"preset": "ai-toolkit:sigmoid"},
        "data": {"name": "mnist", "size": 8, "classes": CLASSES, "batch_size": 8},
        "model": model.config.to_dict(),
        "train": {"steps": 1},
    }
    data = {"name": "mnist", "shape": list(SHAPE), "num_classes": 10, "split": "train"}
    return save_base(model, config=config, data=data, path=path)


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    return make_tiny_base(tmp_path_factory.mktemp("base") / "tiny.safetensors")


@pytest.fixture(scope="module")
def tuned(base_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    x, _, _ = concept_images(class_label=7, num_images=12, shape=SHAPE)
    res = finetune(str(base_path), x, timestep_type="weighted", out_dir=out, steps=3, batch_size=4, rank=2)
    return res, out


def test_load_base_spare_label(base_path):
    b = load_base(str(base_path))
    assert b.spare_label == 7
    assert b.trained_classes == CLASSES
    assert b.noise.process == "flow" and b.noise.parameterization == "flow"
    assert not b.model.training


def test_load_base_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_base(str(tmp_path / "nope.safetensors"))
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="no noiselevels configuration"):
        load_base(str(plain))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read base model"):
        load_base(str(bad))


def test_adapter_round_trip(tuned, base_path):
    res, out = tuned
    files = sorted(p.name for p in (out / "adapter").iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors"]
    # only the adapter is saved: LoRA matrices and the one trainable label row
    keys = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert keys and all("lora_" in k or "trainable_tokens" in k for k in keys)
    row = [v for k, v in keys.items() if "trainable_tokens" in k]
    assert len(row) == 1 and row[0].shape == (1, 16)
    info = json.loads((out / "finetune.json").read_text())
    assert (
        info["label"] == 7
        and info["base"] == str(base_path)
        and info["timestep_type"] == "ai-toolkit:weighted"
    )

    loaded, label = load_adapter(out)
    assert label == 7
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, *SHAPE, generator=g)
    lam = torch.linspace(-6, 6, 5)
    labels = torch.tensor([7, 7, 0, 3, 10])
    with torch.no_grad():
        assert torch.equal(loaded.model(z, lam, labels=labels), res.model(z, lam, labels=labels))
        base_out = load_base(str(base_path)).model(z, lam, labels=labels)
    assert not torch.allclose(base_out, res.model(z, lam, labels=labels))


def test_adapter_starts_as_identity(base_path):
    b = load_base(str(base_path))
    import copy

    pm = add_lora(copy.deepcopy(b.model), rank=2, label=7)
    z = torch.randn(3, *SHAPE)
    lam = torch.zeros(3)
    labels = torch.tensor([7, 1, 2])
    with torch.no_grad():
        torch.testing.assert_close(pm(z, lam, labels=labels), b.model(z, lam, labels=labels))
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)


def test_base_plus_adapter_sampling(tuned, base_path):
    _, out = tuned
    run = load_model(str(base_path), adapter=out)
    labels = torch.full((6,), 7)
    x1 = sample(run.model, run.noise, SHAPE, labels=labels, num=6, steps=3, seed=3)
    x2 = sample(run.model, run.noise, SHAPE, labels=labels, num=6, steps=3, seed=3)
    assert x1.shape == (6, *SHAPE) and torch.isfinite(x1).all()
    torch.testing.assert_close(x1, x2)
    xb = sample(load_model(str(base_path)).model, run.noise, SHAPE, labels=labels, num=6, steps=3, seed=3)
    assert not torch.allclose(x1, xb)


def test_adapter_errors(tmp_path, tuned):
    with pytest.raises(ValueError, match="not a fine-tune folder"):
        load_adapter(tmp_path)
    other = tmp_path / "other.safetensors"
    torch.manual_seed(1)
    m = UNet(channels=(16, 32), emb_dim=16, fourier_features=2, num_classes=10)
    save_base(m, config={"noise": {"preset": "ai-toolkit:linear"}, "model": m.config.to_dict(),
                         "data": {"classes": CLASSES}}, data={"shape": list(SHAPE)}, path=other)  # fmt: skip
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(tuned[1], base=str(other))


def test_resolve_noise(base_path):
    b = load_base(str(base_path))
    for name in ("linear", "sigmoid", "weighted", "shift"):
        nc = resolve_noise(name, b.noise)
        ref = preset(f"ai-toolkit:{name}")
        assert nc.density == ref.density and nc.weighting == ref.weighting
        assert (nc.process, nc.parameterization) == ("flow", "flow")
    # a vp/ε preset: its p(λ) and ε-unit w(λ), the base's process and parameterisation
    nc = resolve_noise("kohya:min_snr_gamma", b.noise)
    assert nc.density == preset("kohya:min_snr_gamma").density
    assert (nc.process, nc.parameterization) == ("flow", "flow")
    custom = resolve_noise({"density": {"name": "logit_normal", "mean": 0.5, "std": 1.0}}, b.noise)
    assert custom.density.to_dict()["mean"] == 0.5
    with pytest.raises(ValueError, match=r"unknown timestep type 'nope'.*linear.*sigmoid"):
        resolve_noise("nope", b.noise)


def test_concept_images_and_errors(tmp_path):
    x, real, _ = concept_images(class_label=7, num_images=30, shape=SHAPE)
    assert x.shape == (30, *SHAPE) and real.shape == (470, *SHAPE)
    with pytest.raises(ValueError, match="does not exist"):
        concept_images(images=tmp_path / "missing", shape=SHAPE)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        concept_images(images=empty, shape=SHAPE)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"a\.png"):
        concept_images(images=broken, shape=SHAPE)
    from PIL import Image

    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        Image.fromarray((torch.rand(12, 12) * 255).byte().numpy(), mode="L").save(few / f"{i}.png")
    imgs, real, _ = concept_images(images=few, num_images=3, shape=SHAPE)
    assert imgs.shape == (3, *SHAPE) and real is None
    with pytest.raises(ValueError, match="holds 3 images, fewer than num_images = 30"):
        concept_images(images=few, num_images=30, shape=SHAPE)
    with pytest.raises(ValueError, match="class must be an MNIST label"):
        concept_images(class_label=12, shape=SHAPE)


def test_finetune_argument_errors(base_path):
    x, _, _ = concept_images(class_label=7, num_images=4, shape=SHAPE)
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        finetune(str(base_path), x, steps=1, rank=0)
    with pytest.raises(ValueError, match="lr must be a number in"):
        finetune(str(base_path), x, steps=1, lr=5.0)
    with pytest.raises(ValueError, match=r"images must have shape \(N, 1, 8, 8\)"):
        finetune(str(base_path), torch.zeros(4, 1, 28, 28), steps=1)
    with pytest.raises(ValueError, match=r"label must be an integer in 0\.\.9"):
        finetune(str(base_path), x, steps=1, label=11)


def test_cli_finetune(base_path, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["--class", "7", "--num-images", "8", "--timestep-type", "shift", "--steps", "2"]
    args += ["--batch-size", "4", "--rank", "2", "--samples", "4", "--out", str(out)]
    rc = main(["finetune", "--base", str(base_path), *args])
    assert rc == 0
    assert (out / "adapter" / "adapter_model.safetensors").is_file() and (out / "samples.png").is_file()
    assert "adapter:" in capsys.readouterr().out


def test_cli_errors_are_one_line(base_path, tmp_path, capsys):
    out = tmp_path / "bad"
    rc = main(
        ["finetune", "--base", str(base_path), "--class", "7", "--timestep-type", "nope", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("noiselevels: error: unknown timestep type 'nope'")
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["finetune", "--base", str(base_path), "--images", str(empty), "--out", str(out)])
    assert rc == 2 and "contains no images" in capsys.readouterr().err
    rc = main(["finetune", "--base", "no-such-base", "--class", "7", "--out", str(out)])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_cli_evaluate_without_class_fails_before_training(base_path, tmp_path, capsys):
    """--evaluate needs --class (held-out real images); with --images it is refused up front, not
    after the whole fine-tune has run and written its adapter."""
    out = tmp_path / "ev"
    folder = write_pngs(tmp_path / "concept", 4)
    rc = main(["finetune", "--base", str(base_path), "--images", str(folder), "--evaluate", "--steps", "2",
               "--samples", "0", "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("noiselevels: error: --evaluate needs --class")
    assert not out.exists()


def test_cli_sample_with_adapter(tuned, base_path, tmp_path):
    _, out = tuned
    png = tmp_path / "s.png"
    args = ["sample", str(base_path), "--adapter", str(out), "--class", "7", "--num", "4", "--steps", "2"]
    assert main([*args, "--solver", "euler", "--out", str(png)]) == 0
    assert png.is_file()


def test_prior_preservation(base_path, tmp_path):
    x, _, _ = concept_images(class_label=7, num_images=4, shape=SHAPE)
    res = finetune(str(base_path), x, steps=2, batch_size=4, rank=2, prior_weight=1.0, prior_images=9,
                   out_dir=tmp_path / "p")  # fmt: skip
    info = json.loads((tmp_path / "p" / "finetune.json").read_text())
    assert info["prior_weight"] == 1.0 and info["prior_images"] == 9 and res.log
    with pytest.raises(ValueError, match="prior_weight must be a finite number >= 0"):
        finetune(str(base_path), x, steps=1, prior_weight=-1.0)


# ----------------------------------------------------------------------------------------------
# diffusers bases (noiselevels.runs.models.DiffusersUNet), end to end
# ----------------------------------------------------------------------------------------------
# model config, name of the label embedding (the trigger row's module) in the DiffusersUNet
DIFFUSERS_BASES = {
    "UNet2DModel": ({"model": "UNet2DModel", "unet": TINY_UNET2D}, "unet.class_embedding"),
    "UNet2DConditionModel": ({"model": "UNet2DConditionModel", "unet": TINY_UNET2D_CONDITION}, "label_emb"),
}


def make_diffusers_base(tmp_path, model, *, num_classes=3, classes=(0, 1)):
    """A tiny DiffusersUNet base made the way ``mnist-base`` is: a ``noiselevels train`` run (2 steps on
    8×8 'brightness' images of ``classes``; with the defaults label 2 is the spare slot) exported with
    ``export_base``. Random-ish weights: these tests check plumbing, not quality."""
    from noiselevels.runs.train import train

    cfg = {
        "noise": {"preset": "ai-toolkit:sigmoid"},
        "data": {"name": "brightness", "size": 8, "classes": list(classes), "batch_size": 4},
        "model": {"kind": "diffusers_unet", **model, "num_classes": num_classes},
        "train": {"steps": 2, "ckpt_every": 2, "seed": 0},
    }
    train(cfg, tmp_path / "run", progress=False)
    return export_base(tmp_path / "run", tmp_path / "base.safetensors")


def write_pngs(folder, n, size=8):
    """``n`` random grey-level PNG images in ``folder`` (the concept of a fine-tune)."""
    from PIL import Image

    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        img = (torch.rand(size, size, generator=g) * 255).byte().numpy()
        Image.fromarray(img, mode="L").save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("kind", sorted(DIFFUSERS_BASES))
def test_diffusers_base_finetune_end_to_end(kind, tmp_path):
    model_cfg, emb_name = DIFFUSERS_BASES[kind]
    base_path = make_diffusers_base(tmp_path, model_cfg)
    on_disk = base_path.read_bytes()
    b = load_base(str(base_path))
    assert isinstance(b.model, DiffusersUNet) and b.spare_label == 2 and b.data["shape"] == list(SHAPE)

    x, _, _ = concept_images(images=write_pngs(tmp_path / "concept", 6), shape=SHAPE)
    out = tmp_path / "ft"
    res = finetune(str(base_path), x, out_dir=out, steps=3, batch_size=4, rank=2, lr=1e-2)
    assert res.label == 2

    # only the adapter is saved: LoRA matrices and the one label row, a fraction of the base's size
    adapter = out / "adapter" / "adapter_model.safetensors"
    assert sorted(p.name for p in adapter.parent.iterdir()) == ["adapter_config.json", adapter.name]
    assert [p.relative_to(out) for p in out.rglob("*.safetensors")] == [adapter.relative_to(out)]
    keys = load_file(str(adapter))
    assert keys and all("lora_" in k or "trainable_tokens" in k for k in keys)
    emb_base = b.model.get_submodule(emb_name).weight
    assert [v.shape for k, v in keys.items() if "trainable_tokens" in k] == [(1, emb_base.shape[1])]
    n_base = sum(p.numel() for p in b.model.parameters())
    assert sum(v.numel() for v in keys.values()) < n_base / 2
    assert adapter.stat().st_size < base_path.stat().st_size / 2

    # the trigger row is trained, the other rows (trained classes, null label) are the base's
    with torch.no_grad():
        rows = res.model.get_base_model().get_submodule(emb_name)(torch.arange(len(emb_base)))
    assert (rows != emb_base).any(dim=1).tolist() == [False, False, True, False]

    # base + adapter from disk reproduces the fine-tuned model exactly, and differs from the base
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, *SHAPE, generator=g)
    lam = torch.linspace(-6, 6, 5)
    labels = torch.tensor([2, 2, 0, 1, 3])
    run = load_model(str(base_path), adapter=out)
    with torch.no_grad():
        tuned_out = res.model(z, lam, labels=labels)
        assert torch.equal(run.model(z, lam, labels=labels), tuned_out)
        base_out = b.model(z, lam, labels=labels)
    assert not torch.allclose(tuned_out, base_out)

    # the base is untouched, on disk and inside the adapted model (adapter disabled = the base;
    # last, because leaving peft's disable_adapter() switches the adapter's gradients back on)
    assert base_path.read_bytes() == on_disk
    with torch.no_grad(), res.model.disable_adapter():
        assert torch.equal(res.model(z, lam, labels=labels), base_out)

    # sampling with the adapter: Python and `noiselevels sample BASE --adapter DIR --class C`
    xs = sample(run.model, run.noise, SHAPE, labels=torch.full((4,), 2), num=4, steps=3, seed=3)
    assert xs.shape == (4, *SHAPE) and torch.isfinite(xs).all()
    png = tmp_path / "s.png"
    args = ["sample", str(base_path), "--adapter", str(out), "--class", "2", "--num", "4", "--steps", "2"]
    assert main([*args, "--out", str(png)]) == 0 and png.is_file()

    # --target matches the full module names; peft stores them shortened in adapter_config.json,
    # and the reloaded adapter must sit on exactly the same modules
    def adapted(m):
        return {n.removeprefix("base_model.model.") for n, mod in m.named_modules() if hasattr(mod, "lora_A")}

    target = r"mid_block\..*to_q$"  # not the to_q layers of the other blocks (UNet2DConditionModel)
    res = finetune(str(base_path), x, out_dir=tmp_path / "t", steps=1, batch_size=2, rank=2, target=target)
    want = set(lora_targets(b.model, target))
    assert want and all(n.startswith("unet.mid_block.") and n.endswith(".to_q") for n in want)
    assert adapted(res.model) == adapted(load_model(str(base_path), adapter=tmp_path / "t").model) == want


def test_diffusers_base_label_errors(tmp_path):
    x = torch.zeros(2, *SHAPE)
    model_cfg = DIFFUSERS_BASES["UNet2DModel"][0]
    # every class trained: no spare slot, the trigger row must be named
    full = make_diffusers_base(tmp_path / "full", model_cfg, classes=(0, 1, 2))
    with pytest.raises(ValueError, match=r"no spare label slot .*--label K .*0\.\.2"):
        finetune(str(full), x, steps=1, batch_size=2)
    res = finetune(str(full), x, steps=1, batch_size=2, label=1)
    assert res.label == 1
    # no label embedding at all: a label is refused, an unconditional fine-tune works
    uncond = make_diffusers_base(tmp_path / "uncond", model_cfg, num_classes=None)
    with pytest.raises(ValueError, match=r"needs a class-conditional base.*sets no num_classes"):
        finetune(str(uncond), x, steps=1, batch_size=2, label=0)
    assert finetune(str(uncond), x, steps=1, batch_size=2).label is None
    with pytest.raises(ValueError, match="label= needs a class-conditional model: a label embedding"):
        add_lora(load_base(str(uncond)).model, rank=2, label=0)
