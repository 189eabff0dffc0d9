"""The trainer: one loop for CPU, one GPU, many GPUs (``accelerate launch``), with the loss profile over λ.

A run is described by a TOML file with six sections::

    [noise]      process / parameterization / density / weighting / preset (noiselevels.config)
    [data]       name, size, channels, classes, num_images, batch_size
    [model]      the network (noiselevels.runs.models.build_model; in_channels etc. default from the data)
    [train]      steps, lr, warmup, weight_decay, ema_decay, grad_clip, seed, log_every, ckpt_every,
                 sample_every, precision, profile_bins, keep_checkpoints, stratified
    [adaptive]   optional: an adaptive noise-level sampler (noiselevels.training.adaptive)
    [spectral]   optional: per-instance (spectral) noise-level schedules (noiselevels.spectral)

``train(config, out_dir)`` trains with AdamW (linear warm-up to ``lr``, then constant), keeps an EMA of
the weights, clips the gradient norm, and writes into ``out_dir``::

    config.json, config.toml   the resolved configuration (presets expanded, defaults filled in)
    log.jsonl                  one record per log interval: step, loss, lr, images/s and (with
                               ``grad_clip`` > 0) grad_norm, the interval's mean gradient norm
                               before clipping; the last record may be a final partial interval
    loss_profile.json/.npz     per log interval, the mean and variance of the ε-unit loss ‖ε̂−ε‖²/D
                               in ``profile_bins`` bins of λ over the training range
    loss_profile.png           the profile plotted (matplotlib, imported lazily)
    checkpoints/               atomic safetensors checkpoints (noiselevels.runs.checkpoint)
    samples/                   image grids every ``sample_every`` steps (0 = never)

**The loss profile.** The training loss is an average over noise levels of very different
difficulty; its total hides where the model is still learning. The trainer bins the unweighted
ε-unit loss of every sample by its λ and records, per bin, count, mean and variance — the
diagnostic that shows which levels the objective's effective weighting W(λ) = p(λ)·w(λ) neglects.

**Resuming.** ``train(..., resume=True)`` (``noiselevels train --resume --out DIR``) restores the
weights, EMA, optimizer, the objective's noise generator, the global torch RNG, the data iterator's
position, the adaptive sampler and the partially accumulated log interval from the newest checkpoint,
so a resumed run reproduces the loss curve of an uninterrupted run with the same seed (bitwise on
CPU). ``steps`` may be raised on resume to train longer.

**Robustness.** Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and returns. A
non-finite loss stops the run before the optimizer step with a ``NonFiniteLossError`` naming the λ
range of the offending samples; the last good checkpoint is left untouched.

**Multi-GPU / multi-node.** The loop is built on 🤗 accelerate. ``noiselevels train CONFIG --out DIR``
runs single-process (on CPU when no GPU is visible); ``accelerate launch --multi_gpu --num_processes 4
-m noiselevels train CONFIG --out DIR`` runs data-parallel on GPUs (add ``--num_machines``,
``--machine_rank``, ``--main_process_ip`` for several nodes). Several CPU processes (gloo) are
started with ``torchrun --standalone --nproc_per_node 2 -m noiselevels train CONFIG --out DIR``
(``accelerate launch --cpu`` starts only one process without an MPI setup); accelerate picks the
process group up from the environment either way. ``batch_size`` is the global batch, split
evenly over the processes; each process draws its own data order and noise (seeded from ``seed`` and
its rank); losses and the loss profile are reduced over processes; only the main process writes.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noiselevels.runs.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    optimizer_state_from_flat,
    optimizer_state_to_flat,
    save_checkpoint,
    write_json_atomic,
)

__all__ = [
    "DataConfig",
    "LossProfile",
    "NonFiniteLossError",
    "Run",
    "TrainConfig",
    "TrainOptions",
    "TrainResult",
    "load_run",
    "load_train_config",
    "train",
]

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


class NonFiniteLossError(ValueError):
    """The loss became NaN or ±inf; the message names the step and the λ range of the bad samples."""


# ------------------------------------------------------------------------------------------------
# configuration
# ------------------------------------------------------------------------------------------------
def _check_keys(section: str, d: Mapping[str, Any], cls) -> None:
    valid = [f.name for f in dataclasses.fields(cls)]
    bad = [k for k in d if k not in valid]
    if bad:
        raise ValueError(
            f"unknown key(s) {', '.join(map(repr, bad))} in [{section}]; valid keys: {', '.join(valid)}"
        )


def _int(section: str, name: str, value: Any, lo: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ValueError(f"[{section}] {name} must be an integer >= {lo}; got {value!r}")
    return value


def _float(section: str, name: str, value: Any, lo: float, hi: float) -> float:
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
        _int("data", "batch_size", self.batch_size, 1)
        for k in ("size", "channels", "num_images"):
            if getattr(self, k) is not None:
                _int("data", k, getattr(self, k), 1)
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(_int("data", "classes", c) for c in self.classes))

    def load(self, split: str = "train"):
        from noiselevels.runs.data import load_dataset

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
        _int("train", "steps", self.steps, 1)
        _float("train", "lr", self.lr, 0.0, 10.0)
        _int("train", "warmup", self.warmup)
        _float("train", "weight_decay", self.weight_decay, 0.0, 10.0)
        _float("train", "ema_decay", self.ema_decay, 0.0, 0.999999)
        _float("train", "grad_clip", self.grad_clip, 0.0, math.inf)
        _int("train", "seed", self.seed)
        for k in ("log_every", "ckpt_every", "sample_every"):
            _int("train", k, getattr(self, k))
        if self.log_every < 1:
            raise ValueError(f"[train] log_every must be an integer >= 1; got {self.log_every!r}")
        _int("train", "profile_bins", self.profile_bins, 2)
        _int("train", "keep_checkpoints", self.keep_checkpoints, 1)
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
        _check_keys("top level", d, cls)
        data = dict(d.get("data", {}))
        _check_keys("data", data, DataConfig)
        opts = dict(d.get("train", {}))
        _check_keys("train", opts, TrainOptions)
        if "classes" in data and data["classes"] is not None:
            data["classes"] = tuple(data["classes"])
        return cls(
            noise=dict(d.get("noise", {})),
            data=DataConfig(**data),
            model=dict(d.get("model", {})),
            train=TrainOptions(**opts),
            adaptive=dict(d["adaptive"]) if d.get("adaptive") else None,
            spectral=dict(d["spectral"]) if d.get("spectral") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "noise": _plain(self.noise),
            "data": _plain(dataclasses.asdict(self.data)),
            "model": _plain(self.model),
            "train": dataclasses.asdict(self.train),
        }
        if self.adaptive:
            out["adaptive"] = _plain(self.adaptive)
        if self.spectral is not None:
            out["spectral"] = _plain(self.spectral)
        return out

    def replace(self, **sections) -> TrainConfig:
        return dataclasses.replace(self, **sections)


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    return obj


def _read_toml(path: str | os.PathLike) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"cannot parse configuration {path}: {e}") from None


def load_train_config(
    path: str | os.PathLike | None = None, *, overrides: list[str] | tuple[str, ...] = ()
) -> TrainConfig:
    """Read a TOML (or a run folder's config.json) into a ``TrainConfig``; apply ``--set`` overrides.

    ``overrides`` are ``"section.key=value"`` strings with TOML-typed values (noiselevels.config).
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
            d = _read_toml(p)
    if overrides:
        from noiselevels.config import apply_overrides

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
# the loss profile over λ
# ------------------------------------------------------------------------------------------------
class LossProfile:
    """Binned statistics of the ε-unit loss over λ (count, mean, variance per bin and log interval).

    Bins: ``num_bins`` equal-width bins over [lo, hi]; levels outside go into the edge bins.
    ``add(logsnr, eps_mse)`` accumulates the current interval; ``close(step)`` appends the interval
    to ``history`` (mean and unbiased variance per bin; NaN for empty bins) and starts a new one.
    """

    def __init__(self, lo: float, hi: float, num_bins: int):
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"loss profile range must be finite with lo < hi; got [{lo}, {hi}]")
        self.edges = torch.linspace(lo, hi, num_bins + 1, dtype=torch.float64)
        self.acc = torch.zeros(3, num_bins, dtype=torch.float64)  # count, sum, sum of squares
        self.history: list[dict[str, Any]] = []
        # [adaptive]: the sampler's current curve (proposal / exp u(λ) / warp), saved to adaptive.json
        # and drawn over the profile (noiselevels.training.adaptive, ``profile_overlay()``)
        self.overlay: Callable[[], dict[str, Any]] | None = None

    @property
    def centers(self) -> Tensor:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def add(self, logsnr: Tensor, eps_mse: Tensor) -> None:
        lam = logsnr.detach().to("cpu", torch.float64)
        val = eps_mse.detach().to("cpu", torch.float64)
        idx = torch.bucketize(lam, self.edges[1:-1]).clamp(0, self.acc.shape[1] - 1)
        self.acc[0].index_add_(0, idx, torch.ones_like(val))
        self.acc[1].index_add_(0, idx, val)
        self.acc[2].index_add_(0, idx, val * val)

    def snapshot(self, step: int) -> dict[str, Any]:
        """The current interval's record (count, mean, unbiased variance per bin), without closing it."""
        n, s, ss = self.acc
        mean = torch.where(n > 0, s / n.clamp_min(1), torch.nan)
        centred = (ss - n * mean.nan_to_num() ** 2).clamp_min(0)
        var = torch.where(n > 1, centred / (n - 1).clamp_min(1), torch.nan)
        return {"step": int(step), "count": n.tolist(), "mean": mean.tolist(), "var": var.tolist()}

    def close(self, step: int) -> dict[str, Any]:
        """Append the current interval's record to ``history`` and start a new interval."""
        rec = self.snapshot(step)
        self.history.append(rec)
        self.acc.zero_()
        return rec

    def state_dict(self) -> dict[str, Any]:
        return {"edges": self.edges.tolist(), "acc": self.acc.tolist(), "history": self.history}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.edges = torch.tensor(state["edges"], dtype=torch.float64)
        self.acc = torch.tensor(state["acc"], dtype=torch.float64)
        self.history = [dict(h) for h in state["history"]]

    def save(self, out_dir: Path, *, plot: bool = True, pending: dict[str, Any] | None = None) -> None:
        """Write loss_profile.json and .npz (and the PNG when ``plot``); ``pending`` is an extra,
        not yet closed interval record to include (the end of a run)."""
        import numpy as np

        history = self.history if pending is None else [*self.history, pending]
        data = {"edges": self.edges.tolist(), "centers": self.centers.tolist(), "history": history}
        write_json_atomic(out_dir / "loss_profile.json", _nan_to_none(data))
        overlay = self.overlay() if self.overlay is not None else None  # [adaptive]
        if overlay is not None:
            step = history[-1]["step"] if history else None
            write_json_atomic(out_dir / "adaptive.json", _nan_to_none({"step": step, **overlay}))
        if history:
            tmp = out_dir / ".loss_profile.tmp.npz"
            np.savez(
                tmp,
                edges=self.edges.numpy(),
                steps=np.array([h["step"] for h in history]),
                count=np.array([h["count"] for h in history]),
                mean=np.array([h["mean"] for h in history]),
                var=np.array([h["var"] for h in history]),
            )
            os.replace(tmp, out_dir / "loss_profile.npz")
            if plot:
                plot_loss_profile(history, self.centers, out_dir / "loss_profile.png", overlay=overlay)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, list):
        return [_nan_to_none(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    return obj


def plot_loss_profile(
    history: list[dict[str, Any]],
    centers: Tensor,
    path: str | os.PathLike,
    *,
    max_curves: int = 6,
    overlay: Mapping[str, Any] | None = None,
) -> None:
    """Plot the mean ε-unit loss per λ bin for up to ``max_curves`` log intervals (±1 std for the last);
    ``overlay`` ({"label", "logsnr", "value"}, an adaptive sampler's curve) is drawn on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    hist = history
    pick = sorted({round(i) for i in np.linspace(0, len(hist) - 1, min(max_curves, len(hist)))})
    c = centers.numpy()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    cmap = plt.get_cmap("viridis")
    for j, i in enumerate(pick):
        m = np.array(hist[i]["mean"], dtype=float)
        ax.plot(c, m, color=cmap(j / max(1, len(pick) - 1)), lw=1.4, label=f"step {hist[i]['step']}")
    last = hist[-1]
    m, sd = np.array(last["mean"], dtype=float), np.sqrt(np.array(last["var"], dtype=float))
    ax.fill_between(c, np.maximum(m - sd, 1e-8), m + sd, color="gray", alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("λ = log SNR  (noisy ←  → clean)")
    ax.set_ylabel("ε-unit loss  ‖ε̂ − ε‖² / D")
    ax.set_title("loss profile over noise levels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    if overlay is not None:  # [adaptive]
        ax2 = ax.twinx()
        ax2.plot(overlay["logsnr"], overlay["value"], color="C3", ls="--", lw=1.4, label=overlay["label"])
        ax2.set_ylabel(overlay["label"], color="C3")
        ax2.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def profile_range(density, *, q: float = 1e-3, clip: float = 20.0) -> tuple[float, float]:
    """The training λ range for the loss profile: the density's [q, 1−q] quantiles within ±clip."""
    u = torch.tensor([q, 1.0 - q], dtype=torch.float64)
    lo, hi = (float(v) for v in density.icdf(u))
    lo = max(lo, -clip) if math.isfinite(lo) else -clip
    hi = min(hi, clip) if math.isfinite(hi) else clip
    if not lo < hi:
        lo, hi = lo - 1.0, lo + 1.0
    return lo, hi


# ------------------------------------------------------------------------------------------------
# building the pieces
# ------------------------------------------------------------------------------------------------
def noise_config(noise: Mapping[str, Any]):
    """The resolved [noise] section (noiselevels.config.NoiseConfig)."""
    from noiselevels import schedules  # noqa: F401  (fill the registries the [noise] tables name)
    from noiselevels.config import NoiseConfig
    from noiselevels.training import densities, weightings  # noqa: F401

    return NoiseConfig.from_dict(dict(noise))


def build_model_for(model_cfg: Mapping[str, Any], dataset_meta: Mapping[str, Any]):
    """Build the network of ``[model]`` with shape defaults filled in from the data set's metadata.

    Returns ``(model, resolved_model_config_dict)``.
    """
    from noiselevels.runs.models import build_model

    cfg = dict(model_cfg)
    shape = list(dataset_meta["shape"])
    cfg.setdefault("kind", "unet" if len(shape) == 3 else "mlp")
    if cfg["kind"] == "unet":
        cfg.setdefault("in_channels", shape[0])
    elif cfg["kind"] == "mlp":
        cfg.setdefault("dim", shape[0])
    model = build_model(cfg)
    resolved = model.config.to_dict() if hasattr(getattr(model, "config", None), "to_dict") else cfg
    return model, dict(resolved)


def build_adaptive(section: Mapping[str, Any], objective):
    """The ``[adaptive]`` hook: build the sampler that replaces the objective's density.

    The adaptive issue provides ``noiselevels.training.adaptive.from_config(section, objective=...)``
    returning an object with ``sample(n, generator=) -> (logsnr, weight)``, ``update(logsnr, loss)``,
    ``state_dict()`` and ``load_state_dict()``; the trainer attaches it to the objective (its
    ``sampler`` field), feeds it every step's (λ, ε-unit loss), gathered over processes, and
    checkpoints its state.
    """
    try:
        from noiselevels.training import adaptive
    except ModuleNotFoundError as e:
        raise ValueError("[adaptive] needs noiselevels.training.adaptive, which is not available") from e
    return adaptive.from_config(dict(section), objective=objective)


def _lr_at(step: int, opts: TrainOptions) -> float:
    """Linear warm-up over ``warmup`` steps (step counted from 0), then constant."""
    if opts.warmup <= 0:
        return opts.lr
    return opts.lr * min(1.0, (step + 1) / opts.warmup)


def _split_state(state: Mapping[str, Any], prefix: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors, rest = {}, {}
    for k, v in state.items():
        if isinstance(v, Tensor):
            tensors[f"{prefix}{k}"] = v.detach().cpu()
        else:
            rest[k] = v
    return tensors, rest


# ------------------------------------------------------------------------------------------------
# results
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrainResult:
    """What ``train`` returns: where it wrote, how far it got, and the per-interval log records.

    ``log`` holds the complete log intervals; ``final_record`` is the last record written to
    ``log.jsonl`` — the final partial interval's when the run stopped inside one (None if nothing was
    logged)."""

    out_dir: Path
    step: int
    status: str  # "completed" | "interrupted"
    log: list[dict[str, Any]]
    checkpoint: Path | None
    images_per_second: float
    main_process: bool = True
    final_record: dict[str, Any] | None = None


class _SigintFlag:
    """Turns the first Ctrl-C into a flag checked between steps; a second one interrupts at once."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ------------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------------
@torch.enable_grad()
def train(
    config: TrainConfig | Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    steps: int | None = None,
    progress: bool = True,
    sampler=None,
    callback: Callable[[int, Any], None] | None = None,
    model=None,
) -> TrainResult:
    """Train a model as configured, writing the run into ``out_dir`` (see the module docstring).

    Args:
        config: a ``TrainConfig`` or its dict form (the TOML's tables).
        out_dir: the run folder (created). With ``resume=True`` the newest checkpoint there is
            restored and the stored configuration is used (``config`` may then be None; its
            [train] steps is still taken from ``steps`` when given).
        steps: override ``[train] steps`` (the total number of optimizer steps).
        progress: show a tqdm progress bar (main process only).
        sampler: an adaptive noise-level sampler (see ``build_adaptive``) instead of [adaptive].
        callback: called as ``callback(step, objective_output)`` after every step (tests, probes).
        model: a ready ``torch.nn.Module`` to train instead of building [model] (its config is
            recorded only if it has ``.config.to_dict()``).

    Returns a ``TrainResult``. Raises ``NonFiniteLossError`` on a NaN/inf loss.
    """
    from accelerate import Accelerator

    out = Path(out_dir)
    if resume:
        stored = out / "config.json"
        if not stored.is_file():
            raise ValueError(f"cannot resume: {stored} does not exist (not a run folder?)")
        cfg = load_train_config(stored)
        if latest_checkpoint(out / "checkpoints") is None:
            raise CheckpointError(f"cannot resume: no checkpoint under {out / 'checkpoints'}")
    else:
        cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config or {})
        if latest_checkpoint(out / "checkpoints") is not None:
            raise ValueError(
                f"run folder {out} already holds checkpoints; continue it with --resume or choose a new --out"
            )
    if steps is not None:
        cfg = cfg.replace(train=dataclasses.replace(cfg.train, steps=_int("train", "steps", steps, 1)))
    opts = cfg.train

    cpu = not torch.cuda.is_available()
    accelerator = Accelerator(cpu=cpu, mixed_precision=PRECISIONS[opts.precision])
    rank, world = accelerator.process_index, accelerator.num_processes
    if cfg.data.batch_size % world:
        raise ValueError(
            f"[data] batch_size {cfg.data.batch_size} must be divisible by the number of processes {world}"
        )
    local_batch = cfg.data.batch_size // world
    device = accelerator.device

    # ---- data, objective, model
    train_set = cfg.data.load("train")
    meta = train_set.metadata()
    nc = noise_config(cfg.noise)
    objective = nc.objective()
    if opts.stratified:
        objective = dataclasses.replace(objective, stratified=True)
    if cfg.adaptive and sampler is None:
        sampler = build_adaptive(cfg.adaptive, objective)
    if sampler is not None:
        fields = {f.name for f in dataclasses.fields(objective)}
        if "sampler" not in fields:
            raise ValueError("this Objective has no 'sampler' field; adaptive sampling is not supported")
        objective = dataclasses.replace(objective, sampler=sampler)
    # ---- spectral per-instance schedules (noiselevels.spectral): bounds, shape, mixture; model gets
    # (λ_min, λ_max) as its 2-d ``extra`` input
    spec = None
    if cfg.spectral is not None:
        from noiselevels.spectral import SpectralRun, resolve_spectral_config

        spec = SpectralRun.fit(cfg.spectral, train_set.data, train_set.labels)
        cfg = cfg.replace(spectral=resolve_spectral_config(cfg.spectral), model={"extra_dim": 2, **cfg.model})
    # ---- end spectral
    torch.manual_seed(opts.seed)  # identical initial weights on every process
    if model is None:
        model, model_cfg = build_model_for(cfg.model, meta)
    else:
        c = getattr(model, "config", None)
        model_cfg = c.to_dict() if hasattr(c, "to_dict") else dict(cfg.model)
    conditional = model_cfg.get("num_classes") is not None
    if conditional and train_set.labels is None:
        raise ValueError(f"[model] is class-conditional but data set {cfg.data.name!r} has no labels")
    resolved = cfg.replace(noise=_plain(nc.to_dict()), model=model_cfg)
    ema = copy.deepcopy(model).requires_grad_(False).eval() if opts.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=_lr_at(0, opts), weight_decay=opts.weight_decay, betas=(0.9, 0.999)
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    if ema is not None:
        ema.to(device)
    raw = accelerator.unwrap_model(model)

    data_iter = train_set.batches(local_batch, seed=opts.seed * 1_000_003 + rank)
    # a CPU generator: densities draw λ on the CPU, and a run's noise is the same on any device
    noise_gen = torch.Generator().manual_seed(opts.seed * 7919 + 17 + rank)
    torch.manual_seed(opts.seed * 104_729 + 31 + rank)  # dropout, classifier-free label dropout
    profile = LossProfile(*profile_range(objective.density or nc.density), opts.profile_bins)
    if sampler is not None and callable(getattr(sampler, "profile_overlay", None)):
        profile.overlay = sampler.profile_overlay  # [adaptive]
    log: list[dict[str, Any]] = []
    interval = _new_interval()
    step = 0

    # ---- resume
    if resume:
        ck = load_checkpoint(out / "checkpoints")
        st = ck.state
        if st.get("world_size", 1) != world:
            raise ValueError(
                f"cannot resume a run written by {st.get('world_size')} process(es) with {world}; "
                "use the same number of processes"
            )
        raw.load_state_dict(ck.model)
        if ema is not None and ck.ema is not None:
            ema.load_state_dict(ck.ema)
        optimizer.load_state_dict(optimizer_state_from_flat(ck.optimizer, st["optimizer"]))
        step = ck.step
        data_iter.load_state_dict({**st["data_iter"], "seed": data_iter.seed})
        noise_gen.set_state(ck.extra[f"rng.noise.{rank}"])
        torch.set_rng_state(ck.extra[f"rng.torch.{rank}"])
        if torch.cuda.is_available() and f"rng.cuda.{rank}" in ck.extra:
            torch.cuda.set_rng_state(ck.extra[f"rng.cuda.{rank}"])
        profile.load_state_dict(st["profile"])
        log = list(st["log"])
        interval = {**_new_interval(), **st["interval"]}  # older checkpoints: no grad-norm sums
        if sampler is not None:
            sampler_state = dict(st.get("sampler", {}))
            for k, v in ck.extra.items():
                if k.startswith("sampler."):
                    sampler_state[k[len("sampler.") :]] = v
            sampler.load_state_dict(sampler_state)

    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", resolved.to_dict())
        (out / "config.toml").write_text(to_toml(resolved.to_dict()))
        write_json_atomic(out / "data.json", meta)
        if spec is not None:
            write_json_atomic(out / "spectral.json", _nan_to_none(spec.to_dict()))

    def checkpoint() -> Path | None:
        states = {
            "noise": noise_gen.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state()
        if world > 1:
            from accelerate.utils import gather_object

            all_states = gather_object([states])
        else:
            all_states = [states]
        if not main:
            accelerator.wait_for_everyone()
            return None
        extra = {f"rng.{k}.{r}": v for r, s in enumerate(all_states) for k, v in s.items()}
        opt_tensors, opt_meta = optimizer_state_to_flat(optimizer.state_dict())
        state = {
            "world_size": world,
            "optimizer": opt_meta,
            "data_iter": data_iter.state_dict(),
            "profile": profile.state_dict(),
            "log": log,
            "interval": interval,
        }
        if sampler is not None:
            s_tensors, s_rest = _split_state(sampler.state_dict(), "sampler.")
            extra.update(s_tensors)
            state["sampler"] = s_rest
        path = save_checkpoint(
            out / "checkpoints",
            step,
            model=raw.state_dict(),
            ema=None if ema is None else ema.state_dict(),
            optimizer=opt_tensors,
            extra=extra,
            state=_nan_to_none(state),
            keep=opts.keep_checkpoints,
        )
        accelerator.wait_for_everyone()
        return path

    ema_params = None if ema is None else [p for p in ema.parameters()]
    model_params = [p for p in raw.parameters()]
    ema_buffers = None if ema is None else list(zip(ema.buffers(), raw.buffers()))

    bar = None
    if progress and main:
        from tqdm.auto import tqdm

        bar = tqdm(total=opts.steps, initial=step, desc="train", dynamic_ncols=True, smoothing=0.1)
    last_ckpt: Path | None = None
    final_rec: dict[str, Any] | None = None
    status = "completed"
    t_interval = time.perf_counter()
    imgs_interval = 0
    total_time, total_imgs = 0.0, 0
    model.train()
    with _SigintFlag() as sigint:
        while step < opts.steps:
            x, y = next(data_iter)
            x = x.to(device, non_blocking=True)
            cond = {"labels": y.to(device)} if conditional else {}
            if spec is not None:  # spectral: each example's λ under its own schedule, (λ_min, λ_max) → extra
                lam_i, extra = spec.draw(x, generator=noise_gen)
                cond = {**cond, "logsnr": lam_i, "extra": extra}
            for g in optimizer.param_groups:
                g["lr"] = _lr_at(step, opts)
            with accelerator.autocast():
                res = objective(model, x, generator=noise_gen, **cond)
            loss = res.loss.float().mean()
            finite = torch.isfinite(res.loss.detach()).all()
            if world > 1:
                finite = accelerator.reduce(finite.float().reshape(1), "min").bool().all()
            if not bool(finite):
                bad = ~torch.isfinite(res.loss.detach())
                lam = res.logsnr.detach()[bad] if bad.any() else res.logsnr.detach()
                where = "on another process"
                if lam.numel():
                    where = f"λ in [{lam.min().item():.4g}, {lam.max().item():.4g}]"
                keep = latest_checkpoint(out / "checkpoints")
                raise NonFiniteLossError(
                    f"non-finite loss at step {step + 1} ({int(bad.sum())} of {bad.numel()} samples, "
                    f"{where}); "
                    f"run stopped, last good checkpoint: {keep if keep is not None else 'none'}"
                )
            accelerator.backward(loss)
            if opts.grad_clip > 0:
                norm = accelerator.clip_grad_norm_(model.parameters(), opts.grad_clip)
                norm = float("nan") if norm is None else float(norm)  # the norm before clipping
                if math.isfinite(norm):
                    interval["grad_norm"] += norm
                    interval["grad_n"] += 1
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if ema is not None:
                decay = min(opts.ema_decay, (1.0 + step) / (10.0 + step))
                with torch.no_grad():
                    torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
                    for be, bm in ema_buffers:
                        be.copy_(bm)
            lam_d, mse_d = res.logsnr.detach(), res.eps_mse.detach()
            if world > 1:
                lam_d, mse_d = accelerator.gather(lam_d), accelerator.gather(mse_d)
            if main:
                profile.add(lam_d, mse_d)
            if sampler is not None:
                sampler.update(lam_d, mse_d)
            if world > 1:
                loss_g = accelerator.reduce(loss.detach().reshape(1), "mean")
            else:
                loss_g = loss.detach()
            interval["loss"] += float(loss_g)
            interval["n"] += 1
            imgs_interval += cfg.data.batch_size
            if callback is not None:
                callback(step, res)
            if bar is not None:
                bar.update(1)
            stop = sigint.hit
            if world > 1:
                stop = bool(accelerator.reduce(torch.tensor([float(stop)], device=device), "max").item())
            regular = step % opts.log_every == 0
            final = step == opts.steps or stop
            if regular or final:
                dt = time.perf_counter() - t_interval
                rec = {
                    "step": step,
                    "loss": interval["loss"] / max(1, interval["n"]),
                    "lr": optimizer.param_groups[0]["lr"],
                    "images_per_second": imgs_interval / dt if dt > 0 else float("nan"),
                }
                if interval["grad_n"]:
                    rec["grad_norm"] = interval["grad_norm"] / interval["grad_n"]
                final_rec = rec
                if regular:
                    # a closed interval: part of the state, so a resumed run logs exactly the same
                    total_time += dt
                    total_imgs += imgs_interval
                    log.append(rec)
                    interval = _new_interval()
                    if main:
                        profile.close(step)
                        _write_log(out, log)
                        profile.save(out, plot=final or bool(opts.ckpt_every and step % opts.ckpt_every == 0))
                    t_interval, imgs_interval = time.perf_counter(), 0
                elif main:
                    # the last, partial interval of this invocation: written, but left open in the
                    # checkpoint so that resuming continues the interval instead of splitting it
                    total_time += dt
                    total_imgs += imgs_interval
                    _write_log(out, [*log, rec])
                    profile.save(out, pending=profile.snapshot(step))
                if main and bar is not None:
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", img_s=f"{rec['images_per_second']:.0f}")
            if opts.sample_every and step % opts.sample_every == 0 and main:
                grid_path = out / "samples" / f"step_{step:08d}.png"
                _sample_grid(ema if ema is not None else raw, nc, meta, grid_path, spectral=spec)
            if (opts.ckpt_every and step % opts.ckpt_every == 0) or final:
                last_ckpt = checkpoint()
            if stop:
                status = "interrupted"
                break
    if bar is not None:
        bar.close()
    if last_ckpt is None and main:
        last_ckpt = latest_checkpoint(out / "checkpoints")
    accelerator.end_training()
    ips = total_imgs / total_time if total_time > 0 else float("nan")
    return TrainResult(
        out_dir=out,
        step=step,
        status=status,
        log=log,
        checkpoint=last_ckpt,
        images_per_second=ips,
        main_process=main,
        final_record=final_rec if final_rec is not None else (log[-1] if log else None),
    )


def _new_interval() -> dict[str, Any]:
    """The running sums of one log interval (part of the checkpoint state)."""
    return {"loss": 0.0, "n": 0, "grad_norm": 0.0, "grad_n": 0}


def _write_log(out: Path, log: list[dict[str, Any]]) -> None:
    tmp = out / ".log.jsonl.tmp"
    tmp.write_text("".join(json.dumps(_nan_to_none(r)) + "\n" for r in log))
    os.replace(tmp, out / "log.jsonl")


# ------------------------------------------------------------------------------------------------
# loading a run (for sample / evaluate / spacing optimize / fine-tuning)
# ------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A trained run loaded from its folder."""

    path: Path
    config: TrainConfig
    model: torch.nn.Module
    noise: Any  # NoiseConfig
    step: int
    data: dict[str, Any]
    spectral: Any = None  # noiselevels.spectral.SpectralRun of a per-instance run (spectral.json)

    @property
    def process(self) -> str:
        return self.noise.process

    @property
    def parameterization(self):
        return self.objective.parameterization

    @property
    def objective(self):
        return self.noise.objective()

    @property
    def conditional(self) -> bool:
        return self.config.model.get("num_classes") is not None

    def trained_sigma_range(self) -> tuple[float, float] | None:
        """(σ_min, σ_max) on the VE scale of the levels the model was trained on: the training
        density's [0.1 %, 99.9 %] quantiles within λ ∈ [−20, 20] (the loss profile's range,
        :func:`profile_range`). None for a per-instance (spectral) run, whose range is per image."""
        if self.spectral is not None:
            return None
        lo, hi = profile_range(self.noise.density)
        return math.exp(-hi / 2), math.exp(-lo / 2)

    def denoiser(self, **cond):
        """The k-diffusion denoiser D(x, σ) → x̂₀ of the model (noiselevels.sampling.denoiser)."""
        from noiselevels.sampling.denoiser import as_denoiser

        return as_denoiser(self.model, process=self.process, parameterization=self.parameterization, **cond)


def load_run(path: str | os.PathLike, *, ema: bool = True, device: str | torch.device = "cpu") -> Run:
    """Load a run folder written by ``train``: its configuration and the newest checkpoint's weights
    (the EMA weights when ``ema`` and they exist). The model is returned in eval mode.

    Raises ``ValueError`` (one line) for a folder that is not a run or holds a corrupt checkpoint.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run folder (no config.json)")
    cfg = load_train_config(path / "config.json")
    ck = load_checkpoint(path / "checkpoints")
    meta_path = path / "data.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else cfg.data.load("train").metadata()
    model, _ = build_model_for(cfg.model, meta)
    weights = ck.ema if (ema and ck.ema is not None) else ck.model
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {ck.path} does not fit the configured model: {first}") from None
    model.to(device).eval().requires_grad_(False)
    spectral = None
    if (path / "spectral.json").is_file():  # a per-instance (spectral) run
        from noiselevels.spectral import SpectralRun

        spectral = SpectralRun.from_dict(json.loads((path / "spectral.json").read_text()))
    return Run(
        path=path, config=cfg, model=model, noise=noise_config(cfg.noise), step=ck.step, data=meta,
        spectral=spectral,
    )


# ------------------------------------------------------------------------------------------------
# sampling helper used during training and by `noiselevels sample`
# ------------------------------------------------------------------------------------------------
def default_sigma_range(process: str) -> tuple[float, float]:
    """(σ_min, σ_max) on the VE scale used for sampling unless the user says otherwise: EDM's
    (0.002, 80) — λ from −8.8 to 12.4."""
    return 0.002, 80.0


@torch.no_grad()
def generate(
    model,
    noise_cfg,
    shape: tuple[int, ...],
    *,
    num: int,
    steps: int = 20,
    spacing: str = "karras",
    spacing_params: Mapping[str, Any] | None = None,
    solver: str = "heun",
    sigmas: Tensor | None = None,
    labels: Tensor | None = None,
    guidance: float | None = None,
    seed: int = 0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    spectral=None,
) -> Tensor:
    """Draw ``num`` samples (num, *shape) from a model by solving the probability-flow ODE/SDE.

    Uses ``noiselevels.sampling``: the spacing ``spacing(**spacing_params).sigmas(steps, ...)`` (or the
    explicit VE ``sigmas``, decreasing with a trailing 0), the solver, and the model wrapped by
    ``as_denoiser``; x_T = σ_max·n with n ~ N(0, I) from ``seed``. Returns VE-scale x₀ (data scale).

    ``spectral`` (a ``noiselevels.spectral.SpectralRun``, ``Run.spectral`` of a per-instance run): each
    sample draws its (λ_min, λ_max) from the run's mixture (per label), is conditioned on them and
    follows its own σ grid (``spacing`` over its range, or ``"schedule"``: its own schedule at even t)
    with ``noiselevels.spectral.solve_per_instance`` (euler, heun or dpmpp_2m).
    """
    if spectral is not None:
        return _generate_spectral(
            model, noise_cfg, shape, spectral, num=num, steps=steps, spacing=spacing,
            spacing_params=spacing_params, solver=solver, sigmas=sigmas, labels=labels, guidance=guidance,
            seed=seed, sigma_min=sigma_min, sigma_max=sigma_max, batch_size=batch_size, device=device,
        )
    from noiselevels.sampling.denoiser import as_denoiser
    from noiselevels.sampling.solvers import solve
    from noiselevels.sampling.spacings import spacing as make_spacing

    lo, hi = default_sigma_range(noise_cfg.process)
    lo = lo if sigma_min is None else sigma_min
    hi = hi if sigma_max is None else sigma_max
    if sigmas is None:
        sigmas = make_spacing(spacing, **dict(spacing_params or {})).sigmas(steps, sigma_min=lo, sigma_max=hi)
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    objective = noise_cfg.objective()
    g = torch.Generator().manual_seed(seed)
    outs = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        noise = torch.randn((n, *shape), generator=g)
        cond: dict[str, Any] = {}
        if labels is not None:
            cond["labels"] = labels[start : start + n].to(device)
        if guidance is not None and guidance != 1.0:
            if labels is None:
                raise ValueError("guidance needs class labels (a class-conditional model and --class)")
            cond.update(guidance=float(guidance), uncond={"labels": None})
        den = as_denoiser(
            model, process=noise_cfg.process, parameterization=objective.parameterization, **cond
        )
        x = (noise * float(sigmas[0])).to(device)
        x = solve(den, x, sigmas=sigmas.to(device), solver=solver, generator=g)
        outs.append(x.float().cpu())
    return torch.cat(outs)


@torch.no_grad()
def _generate_spectral(
    model, noise_cfg, shape, spectral, *, num, steps, spacing, spacing_params, solver, sigmas, labels,
    guidance, seed, sigma_min, sigma_max, batch_size, device,
) -> Tensor:
    """``generate`` for a per-instance (spectral) run; see ``generate``."""
    from noiselevels.sampling.denoiser import as_denoiser
    from noiselevels.spectral import solve_per_instance

    if sigmas is not None or sigma_min is not None or sigma_max is not None:
        raise ValueError(
            "a per-instance (spectral) run samples each instance's own σ range; drop sigmas / sigma_min / "
            "sigma_max (choose --spacing, e.g. 'schedule' or 'karras')"
        )
    if guidance is not None:
        raise ValueError("classifier-free guidance is not supported for per-instance (spectral) sampling")
    objective = noise_cfg.objective()
    g = torch.Generator().manual_seed(seed)
    outs = []
    for start in range(0, num, batch_size):
        n = min(batch_size, num - start)
        lab = None if labels is None else labels[start : start + n].cpu()
        grid, extra = spectral.sampling_grid(
            n, steps, labels=lab, spacing=spacing, spacing_params=spacing_params, generator=g
        )
        noise = torch.randn((n, *shape), generator=g)
        cond: dict[str, Any] = {"extra": extra.to(device=device, dtype=noise.dtype)}
        if lab is not None:
            cond["labels"] = lab.to(device)
        param = objective.parameterization
        den = as_denoiser(model, process=noise_cfg.process, parameterization=param, **cond)
        x = (noise * grid[:, :1].reshape(-1, *([1] * len(shape))).to(noise.dtype)).to(device)
        x = solve_per_instance(den, x, sigmas=grid, solver=solver)
        outs.append(x.float().cpu())
    return torch.cat(outs)


def _sample_grid(
    model, noise_cfg, meta: Mapping[str, Any], path: Path, *, num: int = 64, spectral=None
) -> None:
    from noiselevels.runs.images import make_grid, save_image

    was_training = model.training
    model.eval()
    try:
        labels = None
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes:
            labels = torch.arange(num) % int(num_classes)
        dev = next(model.parameters()).device
        x = generate(
            model, noise_cfg, tuple(meta["shape"]), num=num, steps=20, labels=labels, device=dev,
            spacing="karras" if spectral is None else "schedule", spectral=spectral,
        )
    finally:
        model.train(was_training)
    if len(meta["shape"]) == 3:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(make_grid(x.clamp(-1, 1), nrow=8), path)
