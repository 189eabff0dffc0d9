"""Base models to fine-tune or sample: the shipped MNIST bases, exported safetensors files and run folders.

``load_base(spec)`` accepts

* ``"mnist-base"``: the model shipped in ``noiselevels/assets/mnist-base.safetensors``, trained by
  ``scripts/train_base_model.py`` on the embedded MNIST set *without the digit 7* (class-conditional,
  rectified flow with velocity prediction; its command, seed and Fréchet distance per class are in
  ``mnist-base.json``); ``"mnist-all"`` the same on every digit;
* a ``.safetensors`` file written by :func:`export_base` / :func:`save_base` (weights + resolved
  configuration in its metadata);
* a run folder of ``noiselevels train`` (its newest checkpoint, EMA weights).

A base trained with one class left out has a *spare* label row (``BaseModel.spare_label``) that never
received a gradient: the new concept's slot for a fine-tune (``noiselevels.runs.finetune``).
:func:`sample` and :func:`base_fd_per_class` draw from and score a base (images in [−1, 1]).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from noiselevels.config import NoiseConfig
from noiselevels.runs.config import build_model_for, noise_config
from noiselevels.runs.data import load_dataset
from noiselevels.runs.metrics import feature_extractor, frechet_distance
from noiselevels.runs.run import generate, load_run

__all__ = [
    "BASES",
    "BaseModel",
    "base_fd_per_class",
    "export_base",
    "load_base",
    "real_by_class",
    "sample",
    "save_base",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BASES = {"mnist-base": ASSETS / "mnist-base.safetensors", "mnist-all": ASSETS / "mnist-all.safetensors"}
_META_KEY = "noiselevels.base"


@dataclasses.dataclass
class BaseModel:
    """A model to fine-tune or sample: the network (eval mode), its noise configuration and data.

    ``config``: the resolved training configuration (dict with noise/data/model/train);
    ``data``: the data set metadata (``shape``, ``num_classes``, ...); ``spare_label``: the label row
    never trained in the base (the new concept's slot) or None; ``source``: where it came from.
    """

    model: nn.Module
    noise: NoiseConfig
    config: dict[str, Any]
    data: dict[str, Any]
    spare_label: int | None
    source: str

    @property
    def num_classes(self) -> int | None:
        return self.config.get("model", {}).get("num_classes")

    @property
    def trained_classes(self) -> list[int] | None:
        c = self.config.get("data", {}).get("classes")
        if c is not None:
            return list(c)
        return None if self.num_classes is None else list(range(self.num_classes))


def _spare_label(cfg: Mapping[str, Any]) -> int | None:
    k = cfg.get("model", {}).get("num_classes")
    classes = cfg.get("data", {}).get("classes")
    if k is None or classes is None:
        return None
    missing = [c for c in range(k) if c not in set(classes)]
    return missing[0] if len(missing) == 1 else None


def export_base(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Write a trained run's EMA weights and resolved configuration into one safetensors file."""
    run = load_run(run_dir, ema=True)
    return save_base(run.model, config=run.config.to_dict(), data=run.data, path=path, step=run.step)


def save_base(
    model: nn.Module, *, config: Mapping[str, Any], data: Mapping[str, Any], path: str | os.PathLike,
    step: int = 0,
) -> Path:  # fmt: skip
    """Write ``model``'s weights with its training configuration (dict with ``noise``, ``data``,
    ``model``, ...) and data metadata (``shape``, ``num_classes``) into one safetensors file, atomically."""
    from safetensors.torch import save_file

    meta = {"config": dict(config), "data": dict(data), "step": int(step)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    os.replace(tmp, path)
    return path


def load_base(spec: str | os.PathLike | BaseModel, *, device: str | torch.device = "cpu") -> BaseModel:
    """Resolve ``spec`` (a name in ``BASES``, a safetensors file of :func:`export_base`, or a run folder)."""
    if isinstance(spec, BaseModel):
        return spec
    s = str(spec)
    if s in BASES:
        path = BASES[s]
        if not path.is_file():
            raise ValueError(
                f"base model {s!r} is not installed ({path} is missing); "
                "create it with scripts/train_base_model.py"
            )
    else:
        path = Path(os.path.expanduser(s))
    if path.is_dir():
        run = load_run(path, ema=True, device=device)
        cfg = run.config.to_dict()
        return BaseModel(run.model, run.noise, cfg, dict(run.data), _spare_label(cfg), str(path))
    if not path.is_file():
        raise ValueError(
            f"base model {s!r} not found: give one of {', '.join(BASES)}, a .safetensors file written by "
            "noiselevels.runs.bases.export_base, or a run folder of 'noiselevels train'"
        )
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(_META_KEY)
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"cannot read base model {str(path)!r}: {e}") from None
    if meta is None:
        raise ValueError(f"{str(path)!r} has no noiselevels configuration in its metadata (not a base model)")
    meta = json.loads(meta)
    cfg = meta["config"]
    model, _ = build_model_for(cfg["model"], meta["data"])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"base model {str(path)!r} does not fit its configuration: {e}") from None
    model.to(device).eval().requires_grad_(False)
    return BaseModel(model, noise_config(cfg["noise"]), cfg, meta["data"], _spare_label(cfg), s)


# ----------------------------------------------------------------------------------------------
# sampling
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def sample(
    model: nn.Module,
    noise,
    shape: tuple[int, ...],
    *,
    labels: Tensor | None,
    num: int,
    steps: int = 12,
    solver: str = "dpmpp_2m",
    seed: int = 0,
    batch_size: int = 250,
) -> Tensor:
    """``num`` samples (num, *shape) in [−1, 1] of a (possibly adapted) model: the probability-flow ODE
    on a Karras grid of ``steps`` steps (``noiselevels.runs.run.generate``), no guidance."""
    was = model.training
    model.eval()
    try:
        x = generate(
            model, noise, tuple(shape), num=num, steps=steps, solver=solver, labels=labels, seed=seed,
            batch_size=batch_size,
        )  # fmt: skip
    finally:
        model.train(was)
    return x.clamp(-1.0, 1.0)


def real_by_class(shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """All MNIST images (converted to ``shape``) and their labels."""
    ds = load_dataset("mnist", split="all", size=int(shape[-1]), channels=int(shape[0]))
    return ds.data, ds.labels


def base_fd_per_class(
    base: str | os.PathLike | BaseModel, *, num: int = 300, seed: int = 0, steps: int = 12
) -> dict[int, float]:
    """Fréchet distance (MNIST-classifier features, ``noiselevels.runs.metrics``) per class between ``num``
    class-conditional samples of an MNIST base model and all real images of that class."""
    b = load_base(base)
    feats = feature_extractor("mnist")
    if b.num_classes is None:
        raise ValueError("base_fd_per_class needs a class-conditional model")
    x_real, y_real = real_by_class(tuple(b.data["shape"]))
    out = {}
    for c in range(b.num_classes):
        x = sample(b.model, b.noise, b.data["shape"], labels=torch.full((num,), c), num=num, steps=steps,
                   seed=seed + c)  # fmt: skip
        out[c] = frechet_distance(feats(x), feats(x_real[y_real == c]))
    return out

