"""LoRA on tiny pipelines' denoisers: diffusers and kohya files that diffusers' load_lora_weights reads.

The tiny pipelines come from conftest.py's session fixture ``tiny_pipeline(family)`` (built once)."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from noiselevels.runs.families.lora import (
    DIFFUSERS_FILE,
    KOHYA_FILE,
    add_lora,
    apply_adapter,
    component_name,
    lora_state_dict,
    match_targets,
    save_lora,
)

# the attention projections diffusers' LoRA training scripts adapt by default
TARGETS = {
    "sd": ["to_q", "to_k", "to_v", "to_out.0"],
    "flux": ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_k_proj", "attn.to_add_out"],
}


def _load(folder):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(folder, local_files_only=True)


def _inputs(family, net):
    """Fixed random inputs for the bare denoiser (1 sample, 8×8 latent)."""
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    t = torch.tensor([500.0])
    if family == "sd":
        return {"sample": r(1, 4, 8, 8), "timestep": t,
                "encoder_hidden_states": r(1, 5, net.config.cross_attention_dim)}  # fmt: skip
    ids = torch.zeros(16, 3)
    ids[:, 1], ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    return {"hidden_states": r(1, 16, 16), "timestep": t / 1000, "encoder_hidden_states": r(1, 5, 32),
            "pooled_projections": r(1, 32), "img_ids": ids, "txt_ids": torch.zeros(5, 3),
            "guidance": torch.tensor([3.5])}  # fmt: skip


def _out(net, kw):
    with torch.no_grad():
        return net(**kw, return_dict=False)[0]


class _Holder(torch.nn.Module):
    """What save_lora reads of a latent model: .network and .family."""

    def __init__(self, net, family):
        super().__init__()
        self.network, self.family = net, family


# SDXL and SD3 files are loaded into diffusers by test_finetune_latent (the CLI's adapters); here the
# converters of the UNet form and of the Flux transformer form, with α ≠ r
@pytest.mark.parametrize("family", ["sd", "flux"])
def test_diffusers_and_kohya_files_load_in_diffusers(family, tiny_pipeline, tmp_path):
    pipe = _load(tiny_pipeline(family))
    comp = "unet" if family == "sd" else "transformer"
    net = getattr(pipe, comp)
    kw = _inputs(family, net)
    base = _out(net, kw)
    fresh = [copy.deepcopy(net) for _ in range(2)]  # for our own loader, below
    holder = _Holder(net, family)
    assert component_name(holder) == comp
    params = add_lora(holder, rank=4, alpha=2.0, targets=TARGETS[family])
    assert params and all(p.requires_grad for p in params)
    assert not any(p.requires_grad for n, p in net.named_parameters() if ".lora_" not in n)
    torch.testing.assert_close(_out(net, kw), base)  # B = 0 at start: the base model exactly
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in params:
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    ours = _out(net, kw)
    assert (ours - base).abs().max() > 1e-3
    d_dir, k_dir = tmp_path / "d", tmp_path / "k"
    save_lora(holder, d_dir, "diffusers")
    save_lora(holder, k_dir, "kohya")
    # a fresh pipeline + diffusers' own loader reproduces the trained adapter's output
    pipe2 = _load(tiny_pipeline(family))
    pipe2.load_lora_weights(str(d_dir))
    torch.testing.assert_close(_out(getattr(pipe2, comp), kw), ours, rtol=1e-4, atol=1e-5)
    pipe2.unload_lora_weights()
    torch.testing.assert_close(_out(getattr(pipe2, comp), kw), base)
    pipe2.load_lora_weights(str(k_dir), weight_name=KOHYA_FILE)
    torch.testing.assert_close(_out(getattr(pipe2, comp), kw), ours, rtol=1e-4, atol=1e-5)
    # our loader reads both formats back to the same outputs
    for d, net4 in zip((d_dir, k_dir), fresh):
        apply_adapter(_Holder(net4, family), d)
        torch.testing.assert_close(_out(net4, kw), ours, rtol=1e-4, atol=1e-5)


def test_kohya_key_names_are_comfyui_forms(tiny_pipeline, tmp_path):
    from safetensors.torch import load_file

    pipe = _load(tiny_pipeline("sd"))
    holder = _Holder(pipe.unet, "sd")
    add_lora(holder, rank=2, targets=["to_q"])
    save_lora(holder, tmp_path, "kohya")
    keys = sorted(load_file(str(tmp_path / KOHYA_FILE)))
    names = sorted(lora_state_dict(holder))
    # ComfyUI: "lora_unet_" + diffusers module name with "." → "_"; sd-scripts: lora_down/lora_up/alpha
    expected = sorted(f"lora_unet_{n.replace('.', '_')}.{s}" for n in names
                      for s in ("lora_down.weight", "lora_up.weight", "alpha"))  # fmt: skip
    assert keys == expected
    assert "lora_unet_up_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha" in keys


def test_flux_kohya_refuses_modules_diffusers_cannot_map(tiny_pipeline, tmp_path):
    pipe = _load(tiny_pipeline("flux"))
    holder = _Holder(pipe.transformer, "flux")
    add_lora(holder, rank=2, targets=["attn.to_q", "proj_mlp"])
    with pytest.raises(ValueError, match=r"cannot hold Flux modules single_transformer_blocks\.0\.proj_mlp"):
        save_lora(holder, tmp_path, "kohya")
    assert save_lora(holder, tmp_path, "diffusers").name == DIFFUSERS_FILE


def test_bad_input_and_local_files_only(tiny_pipeline, tmp_path, monkeypatch):
    import huggingface_hub

    pipe = _load(tiny_pipeline("sd"))
    holder = _Holder(pipe.unet, "sd")
    with pytest.raises(ValueError, match="target 'nope' matches no Linear/Conv2d"):
        match_targets(pipe.unet, ["nope"])
    with pytest.raises(ValueError, match="rank must be an integer >= 1; got 0"):
        add_lora(holder, rank=0, targets=["to_q"])
    with pytest.raises(ValueError, match="no LoRA adapter"):
        save_lora(holder, tmp_path, "diffusers")
    with pytest.raises(ValueError, match="LoRA format must be one of diffusers, kohya; got 'comfy'"):
        save_lora(holder, tmp_path, "comfy")

    def no_network(*a, **k):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="'someone/some-lora' is not a local folder or file"):
        apply_adapter(holder, "someone/some-lora")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_lora_weights.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match=r"pytorch_lora_weights\.bin, a pickled file; only \.safetensors"):
        apply_adapter(holder, "pickled")
    add_lora(holder, rank=2, targets=["to_q"])
    save_lora(holder, tmp_path / "rel", "diffusers")
    with pytest.raises(ValueError, match="already carries a LoRA adapter"):
        apply_adapter(holder, "rel")
    fresh = _Holder(_load(tiny_pipeline("sd")).unet, "sd")
    assert apply_adapter(fresh, "rel") is fresh  # a relative local folder loads


def test_diffusers_own_file_with_alpha_metadata(tiny_pipeline, tmp_path):
    """A LoRA trained and saved by diffusers' own tools (peft add_adapter, save_lora_weights with the
    adapter metadata, α = 4·r) gives the same outputs through apply_adapter."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = _load(tiny_pipeline("sd"))
    fresh = copy.deepcopy(pipe.unet)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=8, target_modules=["to_q", "to_v"]))
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for n, p in pipe.unet.named_parameters():
            if ".lora_" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    kw = _inputs("sd", pipe.unet)
    theirs = _out(pipe.unet, kw)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        unet_lora_adapter_metadata=pipe.unet.peft_config["default"].to_dict(),
    )  # fmt: skip
    apply_adapter(_Holder(fresh, "sd"), tmp_path)
    torch.testing.assert_close(_out(fresh, kw), theirs, rtol=1e-4, atol=1e-5)
    assert (theirs - _out(_load(tiny_pipeline("sd")).unet, kw)).abs().max() > 1e-3
