"""Low-rank adapters (LoRA) on a base model, and loading a base with an adapter attached.

Hu et al. 2021, "LoRA", eq. 3: W = W₀ + (α/r)·B·A with B ∈ R^{d×r}, A ∈ R^{r×k} on every ``nn.Conv2d``
and ``nn.Linear`` (or those matching a pattern), through peft (imported lazily). With a trigger
``label`` the label embedding's row is trained too (peft's ``trainable_token_indices``: only the
row's delta is stored in the adapter). An adapter folder holds peft's ``adapter_config.json`` and
``adapter_model.safetensors``; ``finetune.json`` next to it names its base and noise configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from noiselevels.options import check_memory
from noiselevels.runs.bases import BaseModel, load_base
from noiselevels.runs.config import TrainConfig, noise_config
from noiselevels.runs.run import Run, load_run

__all__ = ["add_lora", "load_adapter", "load_model", "lora_targets"]


def _label_embedding(model: nn.Module) -> str | None:
    """Name of the module holding the class-label embedding (UNet/MLP/DiffusersUNet), if any."""
    for name in ("embed.label_emb", "label_emb", "unet.class_embedding"):
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(mod, nn.Embedding):
            return name
    return None


def lora_targets(model: nn.Module, pattern: str | None = None) -> list[str]:
    """The modules LoRA adapts: every ``nn.Conv2d`` and ``nn.Linear`` (optionally only those whose
    name matches the regular expression ``pattern``)."""
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if pattern is not None:
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ValueError(f"target pattern {pattern!r} is not a valid regular expression: {e}") from None
        names = [n for n in names if rx.search(n)]
    if not names:
        raise ValueError(f"no Conv2d/Linear module matches target pattern {pattern!r}")
    return names


def _check_lora_memory(model: nn.Module, targets: list[str], rank: int) -> None:
    """Refuse a rank above what any adapted layer can use, or adapters that cannot be allocated: A and B
    hold rank·(fan_in + fan_out) numbers per adapted layer; weights, gradients and two AdamW moments take
    4 × 4 bytes each."""
    n, useful = 0, 0
    for name in targets:
        m = model.get_submodule(name)
        fan_in = m.weight[0].numel() if isinstance(m, nn.Conv2d) else m.in_features
        n += rank * (fan_in + m.weight.shape[0])
        useful = max(useful, min(fan_in, m.weight.shape[0]))
    if rank > useful:
        raise ValueError(
            f"rank must be <= {useful} (the largest min(fan_in, fan_out) of the adapted layers: B·A has no "
            f"higher rank); got {rank}"
        )
    check_memory(16 * n, f"LoRA rank {rank} ({n:,} adapter parameters)", "use a smaller rank")


def add_lora(
    model: nn.Module,
    *,
    rank: int = 8,
    alpha: float | None = None,
    label: int | None = None,
    target: str | None = None,
):
    """Wrap ``model`` in peft LoRA adapters (W₀ + (alpha/rank)·B·A on every Conv2d/Linear, or those
    matching ``target``); with ``label`` the label embedding's row ``label`` is trained too
    (``trainable_token_indices``). Only the adapter parameters require gradients. Returns the
    ``peft.PeftModel`` (called exactly like the model)."""
    from peft import LoraConfig, get_peft_model

    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1; got {rank!r}")
    alpha = float(rank if alpha is None else alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0; got {alpha!r}")
    extra: dict[str, Any] = {}
    if label is not None:
        emb = _label_embedding(model)
        if emb is None:
            raise ValueError(
                "label= needs a class-conditional model: a label embedding (UNet, MLP or DiffusersUNet "
                "built with num_classes); this model has none"
            )
        n = model.get_submodule(emb).num_embeddings
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < n - 1:
            raise ValueError(f"label must be an integer in 0..{n - 2}; got {label!r}")
        extra["trainable_token_indices"] = {emb: [label]}
    targets = lora_targets(model, target)
    _check_lora_memory(model, targets, rank)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, **extra)
    return get_peft_model(model, cfg)




def _adapter_paths(adapter: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    p = Path(os.path.expanduser(str(adapter)))
    info_path = p / "finetune.json" if (p / "finetune.json").is_file() else p.parent / "finetune.json"
    adir = p / "adapter" if (p / "adapter").is_dir() else p
    if not (adir / "adapter_config.json").is_file():
        raise ValueError(f"{str(adapter)!r} is not a fine-tune folder (no adapter/adapter_config.json)")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return adir, info


def _check_adapter_weights(adir: Path) -> None:
    """The adapter's weights are a readable ``adapter_model.safetensors`` in ``adir``: a pickled
    ``.bin`` is refused (loading it could run code), a missing or truncated file is one line."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = adir / "adapter_model.safetensors"
    if not weights.is_file():
        pickled = [n for n in ("adapter_model.bin", "adapter_model.pt") if (adir / n).is_file()]
        if pickled:
            raise ValueError(
                f"adapter {str(adir)!r} holds {pickled[0]}, a pickle file, which noiselevels never loads "
                "(it can run code); save the adapter as adapter_model.safetensors"
            )
        raise ValueError(f"adapter {str(adir)!r} has no adapter_model.safetensors")
    try:
        load_file(str(weights))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"adapter weights {str(weights)!r} are truncated or corrupt ({msg})") from None


def _attach(model: nn.Module, adir: Path, source: str) -> nn.Module:
    """A copy of ``model`` with the peft adapter in ``adir`` loaded (eval mode, no gradients)."""
    from peft import PeftModel

    _check_adapter_weights(adir)
    try:  # an absolute path to a folder holding the weights: peft never asks the Hub
        pm = PeftModel.from_pretrained(copy.deepcopy(model), str(adir.resolve()))
    except (RuntimeError, ValueError, KeyError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"adapter {str(adir)!r} does not fit base {source!r}: {msg}") from None
    return pm.eval().requires_grad_(False)


def load_adapter(
    adapter: str | os.PathLike, base: str | os.PathLike | BaseModel | None = None
) -> tuple[BaseModel, int | None]:
    """Base + adapter: a ``BaseModel`` whose ``model`` is the adapted network (eval mode), and the
    trigger label. ``adapter``: a fine-tune folder (with ``finetune.json`` and ``adapter/``) or the
    ``adapter/`` folder itself; ``base`` defaults to the one recorded in ``finetune.json``."""
    adir, info = _adapter_paths(adapter)
    if base is None:
        if "base" not in info:
            raise ValueError(f"no finetune.json next to {str(adapter)!r}: pass the base model explicitly")
        base = info["base"]
    b = load_base(base)
    pm = _attach(b.model, adir, b.source)
    noise = b.noise
    if "noise" in info:
        noise = noise_config(info["noise"])
    out = dataclasses.replace(b, model=pm, noise=noise, source=f"{b.source} + {adir}")
    return out, info.get("label")


def load_model(
    base: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
) -> Run:
    """What ``noiselevels sample`` / ``evaluate`` load for ``RUN_OR_BASE [--adapter DIR]``: a
    ``noiselevels.runs.run.Run`` (model in eval mode, noise configuration, data metadata). ``base`` is a
    run folder (loaded with ``noiselevels.runs.run.load_run``), ``mnist-base`` or an exported safetensors
    file; ``adapter`` a fine-tune folder of ``noiselevels.runs.finetune.finetune``, attached to that model."""
    p = Path(os.path.expanduser(str(base)))
    if p.is_dir():
        run = load_run(p, ema=ema, device=device)
    else:
        b = load_base(base, device=device)
        run = Run(path=p, config=TrainConfig.from_dict(b.config), model=b.model, noise=b.noise, step=0,
                  data=b.data)  # fmt: skip
    if adapter is not None:
        adir, _ = _adapter_paths(adapter)
        run = dataclasses.replace(run, model=_attach(run.model, adir, str(base)).to(device))
    return run

