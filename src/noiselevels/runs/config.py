"""A training run's configuration: the TOML sections, their validation, and building the pieces they name.

A run is described by a TOML file with six sections::

    [noise]      process / parameterization / density / weighting / preset (noiselevels.config)
    [data]       name, size, channels, classes, num_images, batch_size          (:class:`DataConfig`)
    [model]      the network (noiselevels.runs.models.build_model; in_channels etc. default from the data)
    [train]      steps, lr, warmup, weight_decay, ema_decay, grad_clip, seed, log_every, ckpt_every,
                 sample_every, precision, profile_bins, keep_checkpoints, stratified (:class:`TrainOptions`)
    [adaptive]   optional: an adaptive noise-level sampler (noiselevels.training.adaptive)
    [spectral]   optional: per-instance (spectral) noise-level schedules (noiselevels.spectral)

:func:`load_train_config` reads such a file (or a run folder's ``config.json``) and applies ``--set``
overrides; :func:`to_toml` writes a resolved configuration back. An unknown key in any section is a
``ValueError`` naming it and the valid keys (``noiselevels.options.check_keys``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

import noiselevels.catalog  # noqa: F401  (fills every registry a [noise] table may name)
from noiselevels.config import NoiseConfig
from noiselevels.config import noise_config as _noise_config
from noiselevels.options import apply_overrides, check_keys, check_memory, read_toml
from noiselevels.runs.data import load_dataset
from noiselevels.runs.models import build_model
from noiselevels.training.adaptive import AdaptiveSampler, from_config

__all__ = [
    "DEFAULT_NOISE",
    "PRECISIONS",
    "DataConfig",
    "TrainConfig",
    "TrainOptions",
    "build_adaptive",
    "build_model_for",
    "load_train_config",
    "noise_config",
    "to_toml",
]

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}
MAX_PROFILE_BINS = 10_000  # λ bins of the loss profile (each log interval stores count/mean/var per bin)

# The [noise] of a configuration without one (``noiselevels train --data mnist --out DIR``): that of
# examples/train/mnist_v_cosine.toml (VP, v-prediction, uniform t under the cosine schedule, min-SNR-5).
DEFAULT_NOISE: dict[str, Any] = {
    "process": "vp",
    "parameterization": "v",
    "schedule": {"name": "cosine"},
    "density": {"name": "uniform_t"},
    "weighting": {"name": "min_snr", "gamma": 5.0},
}


def _check_fields(section: str, d: Mapping[str, Any], cls) -> None:
    check_keys(f"[{section}]", d, [f.name for f in dataclasses.fields(cls)])


def check_int(section: str, name: str, value: Any, lo: int = 0) -> int:
    """``value`` if it is an integer >= ``lo``; else ``ValueError`` naming ``[section] name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"[{section}] {name} must be an integer >= {lo}; got {value!r}")
    return value


def check_float(section: str, name: str, value: Any, lo: float, hi: float) -> float:
    """``value`` as a float if it is a number in [lo, hi]; else ``ValueError`` naming ``[section] name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"[{section}] {name} must be a number in [{lo}, {hi}]; got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The ``[data]`` section: which embedded data set (noiselevels.runs.data.load_dataset) and the batch."""

    name: str = "mnist"
    size: int | None = None
    channels: int | None = None
    classes: tuple[int, ...] | None = None
    num_images: int | None = None
    batch_size: int = 64

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"[data] name must be a data set name; got {self.name!r}")
        check_int("data", "batch_size", self.batch_size, 1)
        for k in ("size", "channels", "num_images"):
            if getattr(self, k) is not None:
                check_int("data", k, getattr(self, k), 1)
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(check_int("data", "classes", c) for c in self.classes))

    def load(self, split: str = "train"):
        return load_dataset(
            self.name,
            split=split,
            size=self.size,
            channels=self.channels,
            classes=self.classes,
            num_images=self.num_images if split == "train" else None,
        )


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """The ``[train]`` section. ``warmup`` is the number of linear lr warm-up steps; ``ema_decay`` 0 turns
    EMA off; ``grad_clip`` 0 turns clipping off; ``*_every`` 0 turns the action off (a final
    checkpoint is always written)."""

    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 50
    ckpt_every: int = 500
    sample_every: int = 0
    precision: str = "fp32"
    profile_bins: int = 60
    keep_checkpoints: int = 2
    stratified: bool = False

    def __post_init__(self):
        check_int("train", "steps", self.steps, 1)
        check_float("train", "lr", self.lr, 0.0, 10.0)
        check_int("train", "warmup", self.warmup)
        check_float("train", "weight_decay", self.weight_decay, 0.0, 10.0)
        check_float("train", "ema_decay", self.ema_decay, 0.0, 0.999999)
        check_float("train", "grad_clip", self.grad_clip, 0.0, math.inf)
        check_int("train", "seed", self.seed)
        for k in ("log_every", "ckpt_every", "sample_every"):
            check_int("train", k, getattr(self, k))
        if self.log_every < 1:
            raise ValueError(f"[train] log_every must be an integer >= 1; got {self.log_every!r}")
        check_int("train", "profile_bins", self.profile_bins, 2)
        if self.profile_bins > MAX_PROFILE_BINS:
            raise ValueError(
                f"[train] profile_bins must be an integer in [2, {MAX_PROFILE_BINS}]; "
                f"got {self.profile_bins!r}"
            )
        check_int("train", "keep_checkpoints", self.keep_checkpoints, 1)
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"[train] precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if not isinstance(self.stratified, bool):
            raise ValueError(f"[train] stratified must be true or false; got {self.stratified!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A whole training run: ``noise`` (the [noise] dict, resolved by noiselevels.config), ``data``,
    ``model`` (dict for noiselevels.runs.models.build_model), ``train``, ``adaptive`` and ``spectral``
    (dicts or None)."""

    noise: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: TrainOptions = dataclasses.field(default_factory=TrainOptions)
    adaptive: Mapping[str, Any] | None = None
    spectral: Mapping[str, Any] | None = None  # per-instance schedules (noiselevels.spectral)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        if not isinstance(d, Mapping):
            raise ValueError(f"a training configuration must be a table/dict; got {type(d).__name__}")
        _check_fields("top level", d, cls)
        for section in ("noise", "data", "model", "train", "adaptive", "spectral"):
            if d.get(section) is not None and not isinstance(d[section], Mapping):
                raise ValueError(f"[{section}] must be a table; got {d[section]!r}")
        data = dict(d.get("data", {}))
        _check_fields("data", data, DataConfig)
        opts = dict(d.get("train", {}))
        _check_fields("train", opts, TrainOptions)
        if "classes" in data and data["classes"] is not None:
            data["classes"] = tuple(data["classes"])
        return cls(
            noise=dict(d["noise"]) if "noise" in d else dict(DEFAULT_NOISE),
            data=DataConfig(**data),
            model=dict(d.get("model", {})),
            train=TrainOptions(**opts),
            adaptive=dict(d["adaptive"]) if d.get("adaptive") else None,
            spectral=dict(d["spectral"]) if d.get("spectral") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "noise": plain(self.noise),
            "data": plain(dataclasses.asdict(self.data)),
            "model": plain(self.model),
            "train": dataclasses.asdict(self.train),
        }
        if self.adaptive:
            out["adaptive"] = plain(self.adaptive)
        if self.spectral is not None:
            out["spectral"] = plain(self.spectral)
        return out

    def replace(self, **sections) -> TrainConfig:
        return dataclasses.replace(self, **sections)


def plain(obj: Any) -> Any:
    """``obj`` as JSON-able dicts and lists (mappings, sequences, objects with ``to_dict``)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return plain(obj.to_dict())
    return obj


def load_train_config(
    path: str | os.PathLike | None = None, *, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a TOML (or a run folder's config.json) into a ``TrainConfig``; apply ``--set`` overrides.

    ``overrides`` are ``"section.key=value"`` strings with TOML-typed values (noiselevels.options).
    """
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"configuration file {p} does not exist")
        if p.suffix == ".json":
            try:
                d = json.loads(p.read_text())
            except ValueError as e:
                raise ValueError(f"cannot parse configuration {p}: {e}") from None
        else:
            d = read_toml(p)
    if overrides:
        d = apply_overrides(d, list(overrides))
    return TrainConfig.from_dict(d)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        items = [f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None]
        return "{ " + ", ".join(items) + " }"
    raise ValueError(f"cannot write {v!r} to TOML")


def to_toml(d: Mapping[str, Any]) -> str:
    """A small TOML writer for resolved configurations (None values are omitted: TOML has no null)."""
    lines: list[str] = []

    def table(prefix: str, t: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in t.items() if not isinstance(v, Mapping) and v is not None}
        subs = {k: v for k, v in t.items() if isinstance(v, Mapping)}
        if prefix and (scalars or not subs):
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{json.dumps(k) if not k.isidentifier() else k} = {_toml_value(v)}")
        if prefix and (scalars or not subs):
            lines.append("")
        for k, v in subs.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", d)
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------
# building the pieces a configuration names
# ------------------------------------------------------------------------------------------------
def noise_config(noise: Mapping[str, Any]) -> NoiseConfig:
    """The resolved [noise] section (``noiselevels.config.noise_config``: a ``preset`` is expanded)."""
    return _noise_config(dict(noise))


def build_model_for(model_cfg: Mapping[str, Any], dataset_meta: Mapping[str, Any]):
    """Build the network of ``[model]`` with shape defaults filled in from the data set's metadata.

    Returns ``(model, resolved_model_config_dict)``.
    """
    cfg = dict(model_cfg)
    shape = list(dataset_meta["shape"])
    cfg.setdefault("kind", "unet" if len(shape) == 3 else "mlp")
    if cfg["kind"] == "unet":
        cfg.setdefault("in_channels", shape[0])
    elif cfg["kind"] == "mlp":
        cfg.setdefault("dim", shape[0])
    _check_model_memory(cfg)
    model = build_model(cfg)
    resolved = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else cfg
    return model, dict(resolved)


def _check_model_memory(cfg: Mapping[str, Any]) -> None:
    """Refuse a network too large for memory before allocating it: its parameters are counted on the
    meta device; weights, gradients, two AdamW moments and the EMA take 5 × 4 bytes per parameter."""
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build_model(dict(cfg)).parameters())
    except (ValueError, TypeError, KeyError):
        raise
    except Exception:  # a model that cannot be built on the meta device: no estimate
        return
    check_memory(20 * n, f"[model] with {n:,} parameters", "use fewer or smaller channels")


def build_adaptive(section: Mapping[str, Any], objective) -> AdaptiveSampler:
    """The ``[adaptive]`` hook: build the sampler that replaces the objective's density.

    ``noiselevels.training.adaptive.from_config(section, objective=...)`` returns an
    ``AdaptiveSampler`` (``sample``, ``update``, ``state_dict``, ``load_state_dict``); the trainer
    attaches it to the objective (its ``sampler`` field), feeds it every step's (λ, ε-unit loss),
    gathered over processes, and checkpoints its state.
    """
    return from_config(dict(section), objective=objective)
