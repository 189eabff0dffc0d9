"""LoRA on a pipeline's denoiser, saved as diffusers and kohya/ComfyUI read it, and loaded back.

**Training** (:func:`add_lora`): peft's ``inject_adapter_in_model`` puts W = W₀ + (α/r)·B·A (Hu et al. 2021,
eq. 3; B initialised to 0) on the ``Linear``/``Conv2d`` modules of ``latent_model.network`` whose names end
with one of the targets (default ``latent_model.default_lora_targets``); the network keeps its class and
module names, so the model's forward is unchanged apart from the adapters.

**diffusers format** (:func:`save_lora` ``format="diffusers"``): ``pytorch_lora_weights.safetensors`` with
keys ``unet.<module>.lora_A.weight`` / ``.lora_B.weight`` (SD, SDXL) or ``transformer.<module>…`` (SD3,
Flux) — the names diffusers' ``load_lora_adapter`` keeps after removing the component prefix
(diffusers 0.42.1 ``loaders/peft.py:209``) and injects with peft. A file without alphas is loaded with
α = r, i.e. scale 1 (``utils/peft_utils.py:158`` ``r = lora_alpha``; comment at :170), so B is saved
multiplied by α/r. peft's own ``save_pretrained`` keys (``base_model.model.…``) carry no component prefix
and diffusers loads nothing from them, without an error — the reason this writer exists.

**kohya format** (``format="kohya"``): ``lora_kohya.safetensors`` with ``<name>.lora_down.weight`` = A,
``<name>.lora_up.weight`` = B (unscaled) and ``<name>.alpha`` = α (a 0-d tensor, as sd-scripts
``networks/lora.py`` stores it); the scale is α / (rows of ``lora_down``). ``<name>`` is the module path
with ``.`` → ``_`` behind ``lora_unet_`` (UNets) or ``lora_transformer_`` (transformers): ComfyUI maps
``lora_unet_<diffusers name>`` for SD/SDXL (``comfy/lora.py`` ``model_lora_keys_unet``: ``unet_to_diffusers``
keys with ``.``→``_``) and ``lora_transformer_<diffusers name>`` for SD3 ("OneTrainer lora") and Flux.
diffusers reads the UNet form with ``_convert_non_diffusers_lora_to_diffusers``
(``loaders/lora_conversion_utils.py:158``, key renaming ``_convert_unet_lora_key`` :261, alphas :236) and the
Flux form with ``_convert_kohya_flux_lora_to_diffusers`` → ``_convert_mixture_state_dict_to_diffusers``
(:702; it needs the ``.alpha`` keys and maps attention projections and the embedders, not the
feed-forward or ``proj_mlp`` layers: other Flux targets are refused at save time for this format).
diffusers 0.42.1 has no converter for SD3 in this form (``SD3LoraLoaderMixin.lora_state_dict``,
``loaders/lora_pipeline.py:979``, does no renaming and ``load_lora_weights`` then loads nothing): an SD3
kohya file is for ComfyUI and :func:`apply_adapter`; use the diffusers format for diffusers. kohya's own
sd-scripts names SDXL modules by the original (sgm) UNet (``input_blocks_…``) and Flux/SD3 by the
original BFL/MMDiT layers (fused ``qkv``); those files are not written here (a LoRA on separate q, k, v is
not one on the fused matrix at the same rank).

**Reading** diffusers files written by diffusers' own ``save_lora_weights`` honours their
``lora_adapter_metadata`` (``lora_alpha``; per-module patterns are refused).

**Loading** (:func:`apply_adapter`): a folder of :func:`save_lora`, a fine-tune run folder holding one
as ``adapter/``, or a ``.safetensors`` file — local only (never a hub id: a relative path that does not
exist is an error), safetensors only (a pickled ``.bin`` is refused). Either format is recognised by its
keys and injected with B·(α/r) and α = r.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from noiselevels.runs.checkpoint import write_json_atomic

__all__ = [
    "ADAPTER_NAME",
    "DIFFUSERS_FILE",
    "KOHYA_FILE",
    "LORA_FORMATS",
    "add_lora",
    "apply_adapter",
    "check_format",
    "component_name",
    "lora_layers",
    "lora_state_dict",
    "match_targets",
    "read_lora",
    "save_lora",
]

ADAPTER_NAME = "default"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
KOHYA_FILE = "lora_kohya.safetensors"
LORA_FORMATS = ("diffusers", "kohya")
INFO_FILE = "lora.json"
# Flux modules diffusers' kohya→diffusers converter maps (lora_conversion_utils.py:740-775)
_FLUX_KOHYA_OK = (".attn.to_q", ".attn.to_k", ".attn.to_v", ".attn.to_out.0", ".attn.add_q_proj",
                  ".attn.add_k_proj", ".attn.add_v_proj", ".attn.to_add_out")  # fmt: skip
_FLUX_KOHYA_TOP = ("context_embedder", "norm_out.linear", "proj_out", "x_embedder")


def _network(model: Any) -> nn.Module:
    net = getattr(model, "network", model)
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a latent model (.network) or an nn.Module; got {type(model).__name__}")
    return net


def component_name(model: Any) -> str:
    """``"unet"`` for a UNet denoiser, ``"transformer"`` otherwise (the pipeline attribute diffusers
    prefixes the LoRA keys with)."""
    return "unet" if type(_network(model)).__name__.startswith("UNet") else "transformer"


def match_targets(network: nn.Module, targets: Sequence[str], *, strict: bool = True) -> list[str]:
    """Names of the ``Linear``/``Conv2d`` modules equal to, or ending with ``.`` + one of, ``targets``
    (peft's rule for a list of names). Raises ``ValueError`` when a target matches nothing (``strict``;
    a family's default list may name layers a small variant lacks, e.g. SD3's last ``to_add_out``) or,
    not strict, when none does."""
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError(f"targets must be a non-empty list of module names; got {targets!r}")
    mods = [(n, m) for n, m in network.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    out = []
    for t in targets:
        hit = [n for n, _ in mods if n == t or n.endswith("." + t)]
        if not hit and strict:
            raise ValueError(
                f"LoRA target {t!r} matches no Linear/Conv2d module of {type(network).__name__} "
                f"(e.g. {', '.join(n for n, _ in mods[:4])}, …)"
            )
        out += hit
    if not out:
        raise ValueError(f"no LoRA target of {list(targets)} matches a module of {type(network).__name__}")
    return sorted(set(out))


def _inject(network: nn.Module, names: list[str], rank: int, alpha: float) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    if any(True for _ in lora_layers(network)):
        raise ValueError(f"{type(network).__name__} already carries a LoRA adapter")
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=names, init_lora_weights=True)
    inject_adapter_in_model(cfg, network, adapter_name=ADAPTER_NAME)


def add_lora(model: Any, *, rank: int = 16, alpha: float | None = None, targets: Sequence[str] | None = None,
             strict: bool | None = None) -> list[nn.Parameter]:  # fmt: skip
    """Inject LoRA adapters (rank ``rank``, ``alpha`` default = rank) into ``model.network`` in place on
    ``targets`` (default ``model.default_lora_targets``); freeze everything else. Returns the trainable
    adapter parameters. ``strict`` (default: whether ``targets`` was given): every target must match
    (:func:`match_targets`)."""
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an integer >= 1; got {rank!r}")
    alpha = float(rank if alpha is None else alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0; got {alpha!r}")
    net = _network(model)
    if strict is None:
        strict = targets is not None
    if targets is None:
        targets = getattr(model, "default_lora_targets", None)
        if not targets:
            raise ValueError(f"{type(model).__name__} has no default_lora_targets: pass targets=")
    names = match_targets(net, list(targets), strict=strict)
    net.requires_grad_(False)
    _inject(net, names, rank, alpha)
    params = [p for n, p in net.named_parameters() if ".lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def lora_layers(network: nn.Module):
    """(name, layer) of every peft LoRA layer in ``network``."""
    from peft.tuners.lora import LoraLayer

    for n, m in network.named_modules():
        if isinstance(m, LoraLayer) and ADAPTER_NAME in m.lora_A:
            yield n, m


def lora_state_dict(model: Any) -> dict[str, tuple[Tensor, Tensor, float]]:
    """{module name: (A, B, α)} of the adapter on ``model.network`` (detached CPU float32 copies)."""
    out = {}
    for n, m in lora_layers(_network(model)):
        a = m.lora_A[ADAPTER_NAME].weight.detach().to("cpu", torch.float32).clone()
        b = m.lora_B[ADAPTER_NAME].weight.detach().to("cpu", torch.float32).clone()
        out[n] = (a, b, float(m.lora_alpha[ADAPTER_NAME]))
    if not out:
        raise ValueError("the model carries no LoRA adapter (add_lora or apply_adapter first)")
    return out


def _kohya_prefix(component: str) -> str:
    return "lora_unet_" if component == "unet" else "lora_transformer_"


def _check_flux_kohya(names: Sequence[str]) -> None:
    bad = [n for n in names if not (n.endswith(_FLUX_KOHYA_OK) or n in _FLUX_KOHYA_TOP)]
    if bad:
        raise ValueError(
            f"--lora-format kohya cannot hold Flux modules {', '.join(bad[:3])}"
            f"{' …' if len(bad) > 3 else ''}: "
            "diffusers' kohya reader maps only the attention projections (to_q/k/v, to_out.0, add_*_proj, "
            "to_add_out) and the embedders; train with those --targets or save --lora-format diffusers"
        )


def check_format(model: Any, format: str) -> None:
    """Raise ``ValueError`` if the adapter on ``model`` cannot be saved in ``format`` (checked before
    training: a kohya-format Flux LoRA holds only what diffusers' converter maps)."""
    if format not in LORA_FORMATS:
        raise ValueError(f"LoRA format must be one of {', '.join(LORA_FORMATS)}; got {format!r}")
    if format == "kohya" and getattr(model, "family", None) == "flux":
        _check_flux_kohya([n for n, _ in lora_layers(_network(model))])


def _atomic_save(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def save_lora(model: Any, out_dir: str | os.PathLike, format: str = "diffusers", *,
              info: Mapping[str, Any] | None = None) -> Path:  # fmt: skip
    """Write the adapter of ``model`` to ``out_dir`` in ``format`` (module docstring) plus ``lora.json``
    (format, component, rank, alpha, modules, ``info``), each written atomically. Returns the weights
    file."""
    check_format(model, format)
    sd = lora_state_dict(model)
    comp = component_name(model)
    family = getattr(model, "family", None)
    tensors: dict[str, Tensor] = {}
    for name, (a, b, alpha) in sd.items():
        r = a.shape[0]
        if format == "diffusers":
            tensors[f"{comp}.{name}.lora_A.weight"] = a
            tensors[f"{comp}.{name}.lora_B.weight"] = b * (alpha / r)
        else:
            key = _kohya_prefix(comp) + name.replace(".", "_")
            tensors[f"{key}.lora_down.weight"] = a
            tensors[f"{key}.lora_up.weight"] = b
            tensors[f"{key}.alpha"] = torch.tensor(alpha)
    ranks = sorted({a.shape[0] for a, _, _ in sd.values()})
    alphas = sorted({al for _, _, al in sd.values()})
    meta = {"format": "pt", "noiselevels_format": format}
    if format == "kohya":  # the fields kohya's tools show (sd-scripts networks metadata)
        meta.update(ss_network_module="networks.lora", ss_network_dim=str(ranks[0]),
                    ss_network_alpha=str(alphas[0]))  # fmt: skip
    out = Path(os.path.expanduser(str(out_dir)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / (DIFFUSERS_FILE if format == "diffusers" else KOHYA_FILE)
    _atomic_save(tensors, path, meta)
    record = {"format": format, "file": path.name, "component": comp, "family": family, "rank": ranks,
              "alpha": alphas, "modules": sorted(sd), **dict(info or {})}  # fmt: skip
    write_json_atomic(out / INFO_FILE, record)
    return path


def _adapter_folder(adapter_dir: str | os.PathLike) -> Path:
    """The folder of the weights: ``adapter_dir``, or its ``adapter/`` (a fine-tune run folder)."""
    p = Path(os.path.expanduser(str(adapter_dir)))
    if p.is_dir() and (p / "adapter").is_dir() and not any(p.glob("*.safetensors")):
        return p / "adapter"
    return p


def _weights_file(adapter_dir: str | os.PathLike) -> Path:
    p = _adapter_folder(adapter_dir)
    if p.is_file():
        if p.suffix != ".safetensors":
            raise ValueError(
                f"adapter {str(adapter_dir)!r} is not a .safetensors file; pickled weights are not loaded"
            )
        return p
    if not p.is_dir():
        raise ValueError(
            f"adapter {str(adapter_dir)!r} is not a local folder or file (adapters are read from local "
            "files only, never downloaded)"
        )
    for name in (DIFFUSERS_FILE, KOHYA_FILE):
        if (p / name).is_file():
            return p / name
    found = sorted(p.glob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    pickled = sorted(x.name for x in p.iterdir() if x.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if pickled:
        raise ValueError(
            f"adapter folder {str(adapter_dir)!r} holds {pickled[0]}, a pickled file; only .safetensors "
            "adapters are loaded"
        )
    what = "no" if not found else f"{len(found)}"
    raise ValueError(
        f"adapter folder {str(adapter_dir)!r} holds {what} .safetensors LoRA files "
        f"({DIFFUSERS_FILE} or {KOHYA_FILE} expected)"
    )


def read_lora(
    path: str | os.PathLike, network: nn.Module, component: str
) -> dict[str, tuple[Tensor, Tensor]]:
    """{module name: (A, B·α/r)} of a diffusers- or kohya-format LoRA file for ``network``."""
    from safetensors.torch import load_file

    sd = load_file(str(path))
    if any(k.endswith(".lora_down.weight") for k in sd):
        return _read_kohya(sd, path, network, component)
    scale = _diffusers_scale(path, component)
    out: dict[str, tuple[Tensor, Tensor]] = {}
    for k, a in sd.items():
        if not k.endswith(".lora_A.weight"):
            continue
        if not k.startswith(component + "."):
            raise ValueError(f"LoRA key {k!r} is not a {component} key ({component}.… expected)")
        name = k[len(component) + 1 : -len(".lora_A.weight")]
        out[name] = (a, sd[k.replace(".lora_A.weight", ".lora_B.weight")] * scale(a.shape[0]))
    if not out:
        raise ValueError(f"{str(path)!r} holds no LoRA weights (lora_A/lora_B or lora_down/lora_up keys)")
    return out


def _diffusers_scale(path, component: str):
    """r ↦ α/r of a diffusers file: 1 (diffusers' α = r) unless the file carries diffusers'
    ``lora_adapter_metadata`` (``save_lora_weights(..., *_lora_adapter_metadata=…)``, keys
    ``<component>.lora_alpha`` …), whose ``lora_alpha`` is then used; per-module patterns are refused."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        raw = (f.metadata() or {}).get("lora_adapter_metadata")
    if not raw:
        return lambda r: 1.0
    meta = {k[len(component) + 1 :]: v for k, v in json.loads(raw).items() if k.startswith(component + ".")}
    if meta.get("alpha_pattern") or meta.get("rank_pattern"):
        raise ValueError(f"{str(path)!r} sets per-module LoRA ranks or alphas; not supported here")
    alpha = meta.get("lora_alpha")
    return (lambda r: 1.0) if alpha is None else (lambda r: float(alpha) / r)


def _read_kohya(sd, path, network: nn.Module, component: str) -> dict[str, tuple[Tensor, Tensor]]:
    """{module: (lora_down, lora_up·α/rank)}: names mapped back through the network's own module names."""
    out: dict[str, tuple[Tensor, Tensor]] = {}
    prefix = _kohya_prefix(component)
    flat = {n.replace(".", "_"): n for n, _ in network.named_modules()}
    for k, a in sd.items():
        if not k.endswith(".lora_down.weight"):
            continue
        key = k[: -len(".lora_down.weight")]
        if not key.startswith(prefix) or key[len(prefix):] not in flat:
            raise ValueError(f"LoRA key {k!r} names no module of this {component} ({prefix}… expected)")
        b = sd[f"{key}.lora_up.weight"]
        alpha = float(sd[f"{key}.alpha"]) if f"{key}.alpha" in sd else float(a.shape[0])
        out[flat[key[len(prefix):]]] = (a, b * (alpha / a.shape[0]))
    if not out:
        raise ValueError(f"{str(path)!r} holds no LoRA weights (lora_A/lora_B or lora_down/lora_up keys)")
    return out


def apply_adapter(latent_model: Any, adapter_dir: str | os.PathLike) -> Any:
    """Load the LoRA in ``adapter_dir`` (a folder of :func:`save_lora` or a ``.safetensors`` file, either
    format) into ``latent_model.network`` in place; returns ``latent_model`` (eval mode, no gradients)."""
    path = _weights_file(adapter_dir)
    net = _network(latent_model)
    weights = read_lora(path, net, component_name(latent_model))
    ranks = {a.shape[0] for a, _ in weights.values()}
    if len(ranks) > 1:
        raise ValueError(f"{str(path)!r} mixes LoRA ranks {sorted(ranks)}; one rank per file is supported")
    r = ranks.pop()
    _inject(net, sorted(weights), r, float(r))
    layers = dict(lora_layers(net))
    with torch.no_grad():
        for name, (a, b) in weights.items():
            la, lb = layers[name].lora_A[ADAPTER_NAME].weight, layers[name].lora_B[ADAPTER_NAME].weight
            if la.shape != a.shape or lb.shape != b.shape:
                raise ValueError(f"LoRA weights for {name} have shapes {tuple(a.shape)}, {tuple(b.shape)}; "
                                 f"the model needs {tuple(la.shape)}, {tuple(lb.shape)}")  # fmt: skip
            la.copy_(a)
            lb.copy_(b)
    if isinstance(latent_model, nn.Module):
        latent_model.eval().requires_grad_(False)
    else:
        net.eval().requires_grad_(False)
    return latent_model


def lora_info(adapter_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``lora.json`` next to an adapter ({} when absent)."""
    p = _adapter_folder(adapter_dir)
    f = (p if p.is_dir() else p.parent) / INFO_FILE
    return json.loads(f.read_text()) if f.is_file() else {}
