"""Teach a base model a new concept from a few images with a low-rank adapter (LoRA), and measure it.

The workflow of fine-tuners (kohya, ai-toolkit, OneTrainer, SimpleTuner): take a trained base model, add
low-rank adapters (Hu et al. 2021, "LoRA", eq. 3: W = W₀ + (α/r)·B·A with B ∈ R^{d×r}, A ∈ R^{r×k}),
train only the adapters on 20–30 images of a concept the model has never seen, and save only them.
Which noise levels the fine-tune trains on — the tools' "timestep type" — is the question this module
lets one answer with an experiment (``noiselevels.runs.sweep``).

**Base models.** ``load_base(spec)`` accepts

* ``"mnist-base"``: the model shipped in ``noiselevels/assets/mnist-base.safetensors``, trained by
  ``scripts/train_base_model.py`` on the embedded MNIST set *without the digit 7* (class-conditional,
  rectified flow with velocity prediction; its command, seed and Fréchet distance per class are in
  ``mnist-base.json``);
* a ``.safetensors`` file written by :func:`export_base` (weights + resolved configuration in its metadata);
* a run folder of ``noiselevels train`` (its newest checkpoint, EMA weights).

**The new concept's trigger.** A class-conditional model has a label embedding with ``num_classes + 1``
rows (the last is the classifier-free "null" label). The base is trained with one class left out, so
its row is a *spare slot* that never received a gradient; the fine-tune trains that row (peft's
``trainable_token_indices``: only the row's delta is stored in the adapter) together with the LoRA
matrices, and the concept is then sampled with that label. We chose the spare slot over growing the
embedding because it keeps the base model's shape (a base can serve any number of adapters and the
adapter file holds one 128-number row, not a new embedding matrix). A base without a declared spare
slot needs ``label=`` (the row to re-purpose) explicitly.

**Noise levels.** ``noise`` is a ``timestep type`` — any preset of ``noiselevels.presets`` (bare names
such as ``linear``, ``sigmoid``, ``weighted``, ``shift`` are ai-toolkit's), a ``NoiseConfig``, or a
``[noise]`` table (custom density / weighting). Only its **density p(λ) and ε-unit weighting w(λ)** are
used: the process and the parameterisation are the base model's (a model trained to predict flow
velocity cannot be fine-tuned as an ε-predictor). Because weights are in ε-MSE units the effective
weighting W(λ) = p(λ)·w(λ) of the timestep type is exactly the one trained.

**Outputs of** :func:`finetune` in ``out_dir``: ``adapter/`` (peft's ``adapter_config.json`` +
``adapter_model.safetensors``, the only weights written), ``finetune.json`` (the base, the trigger label,
the resolved noise configuration, hyper-parameters, wall time), ``log.jsonl`` and ``loss_profile.json``
(the ε-unit loss binned over λ, as the trainer writes it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "BASES",
    "TIMESTEP_TYPES",
    "BaseModel",
    "FinetuneResult",
    "add_lora",
    "base_fd_per_class",
    "concept_images",
    "evaluate_finetune",
    "export_base",
    "finetune",
    "load_adapter",
    "load_base",
    "load_model",
    "resolve_noise",
    "sample",
    "save_base",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BASES = {"mnist-base": ASSETS / "mnist-base.safetensors", "mnist-all": ASSETS / "mnist-all.safetensors"}
_META_KEY = "noiselevels.base"
# the timestep types of the study (ai-toolkit's names); any other preset name works too
TIMESTEP_TYPES = ("linear", "sigmoid", "weighted", "shift")


# ----------------------------------------------------------------------------------------------
# base models
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class BaseModel:
    """A model to fine-tune or sample: the network (eval mode), its noise configuration and data.

    ``config``: the resolved training configuration (dict with noise/data/model/train);
    ``data``: the data set metadata (``shape``, ``num_classes``, ...); ``spare_label``: the label row
    never trained in the base (the new concept's slot) or None; ``source``: where it came from.
    """

    model: nn.Module
    noise: Any  # NoiseConfig
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
    from noiselevels.runs.train import load_run

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
    from noiselevels.runs.train import build_model_for, load_run, noise_config

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
            "noiselevels.runs.finetune.export_base, or a run folder of 'noiselevels train'"
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
    on a Karras grid of ``steps`` steps (``noiselevels.runs.train.generate``), no guidance."""
    from noiselevels.runs.train import generate

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


def _real_by_class(shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """All MNIST images (converted to ``shape``) and their labels."""
    from noiselevels.runs.data import load_dataset

    ds = load_dataset("mnist", split="all", size=int(shape[-1]), channels=int(shape[0]))
    return ds.data, ds.labels


def base_fd_per_class(
    base: str | os.PathLike | BaseModel, *, num: int = 300, seed: int = 0, steps: int = 12
) -> dict[int, float]:
    """Fréchet distance (MNIST-classifier features, ``noiselevels.runs.metrics``) per class between ``num``
    class-conditional samples of an MNIST base model and all real images of that class."""
    from noiselevels.runs.metrics import feature_extractor, frechet_distance

    b = load_base(base)
    feats = feature_extractor("mnist")
    if b.num_classes is None:
        raise ValueError("base_fd_per_class needs a class-conditional model")
    x_real, y_real = _real_by_class(tuple(b.data["shape"]))
    out = {}
    for c in range(b.num_classes):
        x = sample(b.model, b.noise, b.data["shape"], labels=torch.full((num,), c), num=num, steps=steps,
                   seed=seed + c)  # fmt: skip
        out[c] = frechet_distance(feats(x), feats(x_real[y_real == c]))
    return out


# ----------------------------------------------------------------------------------------------
# noise levels of the fine-tune
# ----------------------------------------------------------------------------------------------
def resolve_noise(timestep_type: Any, base_noise) -> Any:
    """The ``NoiseConfig`` a fine-tune trains with: the density and ε-unit weighting of
    ``timestep_type`` with the base model's process and parameterisation.

    ``timestep_type``: a preset name (``"linear"`` = ``"ai-toolkit:linear"``; any ``tool:name`` of
    ``noiselevels.presets.list_presets()``), a ``[noise]`` table (dict; custom density / weighting, may
    name a ``preset`` and override parts of it), or a ``NoiseConfig``.
    """
    from noiselevels.config import NoiseConfig
    from noiselevels.presets import list_presets, preset

    if isinstance(timestep_type, NoiseConfig):
        nc = timestep_type
    elif isinstance(timestep_type, str):
        names = list_presets()
        name = timestep_type if ":" in timestep_type else f"ai-toolkit:{timestep_type}"
        if name not in names:
            short = sorted(n.split(":", 1)[1] for n in names if n.startswith("ai-toolkit:"))
            raise ValueError(
                f"unknown timestep type {timestep_type!r}; valid: {', '.join(short)} (ai-toolkit), any "
                f"tool:name preset ({', '.join(n for n in names if not n.startswith('ai-toolkit:'))}), "
                "or a [noise] table"
            )
        nc = preset(name)
    elif isinstance(timestep_type, Mapping):
        from noiselevels.runs.train import noise_config

        table = dict(timestep_type)
        table.setdefault("process", base_noise.process)
        table.setdefault("parameterization", base_noise.parameterization)
        nc = noise_config(table)
    else:
        raise ValueError(
            f"timestep type must be a preset name, a [noise] table or a NoiseConfig; got {timestep_type!r}"
        )
    return dataclasses.replace(
        nc, process=base_noise.process, parameterization=base_noise.parameterization
    )


# ----------------------------------------------------------------------------------------------
# LoRA
# ----------------------------------------------------------------------------------------------
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
    import re

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
    cfg = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=lora_targets(model, target), **extra
    )
    return get_peft_model(model, cfg)


# ----------------------------------------------------------------------------------------------
# the concept's images
# ----------------------------------------------------------------------------------------------
def concept_images(
    *,
    images: str | os.PathLike | None = None,
    class_label: int | None = None,
    num_images: int | None = None,
    shape: tuple[int, ...] = (1, 28, 28),
) -> tuple[Tensor, Tensor | None, str]:
    """The fine-tuning images (N, C, H, W) in [−1, 1] and, for ``class_label``, the held-out real
    images of that class (all MNIST images of the class not used for training), plus a description.

    ``images``: a folder of images (resized / centre-cropped to the base's size); ``class_label``: the
    first ``num_images`` MNIST train images of that class. Raises ``ValueError`` for an empty or
    unreadable folder and for fewer images than ``num_images``.
    """
    from noiselevels.runs.data import load_dataset

    if (images is None) == (class_label is None):
        raise ValueError("give exactly one of images= (a folder) or class_label= (an MNIST class)")
    if num_images is not None and (isinstance(num_images, bool) or not isinstance(num_images, int)
                                   or num_images < 1):  # fmt: skip
        raise ValueError(f"num_images must be an integer >= 1; got {num_images!r}")
    c, h = shape[0], shape[-1]
    if images is not None:
        folder = Path(os.path.expanduser(str(images)))
        if not folder.is_dir():
            raise ValueError(f"image folder {str(images)!r} does not exist or is not a directory")
        try:
            ds = load_dataset(f"folder:{folder}", split="all", size=h, channels=c)
        except OSError as e:
            raise ValueError(f"cannot read the images in {str(images)!r}: {e}") from None
        x = ds.data
        if num_images is not None:
            if len(x) < num_images:
                raise ValueError(
                    f"image folder {str(images)!r} holds {len(x)} images, "
                    f"fewer than num_images = {num_images}"
                )
            x = x[:num_images]
        return x, None, f"{len(x)} images from {images}"
    ds = load_dataset("mnist", split="all", size=h, channels=c)
    if isinstance(class_label, bool) or not isinstance(class_label, int) or not 0 <= class_label < 10:
        raise ValueError(f"class must be an MNIST label in 0..9; got {class_label!r}")
    x = ds.data[ds.labels == class_label]
    n = num_images if num_images is not None else 30
    if n > len(x) - 50:
        raise ValueError(f"num_images must be in 1..{len(x) - 50} for MNIST class {class_label}; got {n}")
    return x[:n], x[n:], f"first {n} MNIST images of class {class_label}"


# ----------------------------------------------------------------------------------------------
# fine-tuning
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the adapted model (a ``peft.PeftModel``, eval mode, no gradients:
    the same outputs, bit for bit, as ``load_model(base, adapter)``), the trigger label, the resolved
    noise configuration, the run folder (or None), the log and the training time."""

    model: nn.Module
    base: BaseModel
    label: int | None
    noise: Any
    out_dir: Path | None
    log: list[dict[str, Any]]
    train_seconds: float
    profile: dict[str, Any]


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
    return v


def finetune(
    base: str | os.PathLike | BaseModel,
    images: Tensor,
    *,
    timestep_type: Any = "sigmoid",
    out_dir: str | os.PathLike | None = None,
    rank: int = 8,
    alpha: float | None = None,
    lr: float = 2e-3,
    steps: int = 300,
    batch_size: int = 16,
    warmup: int = 10,
    seed: int = 0,
    label: int | None = None,
    target: str | None = None,
    adaptive: Mapping[str, Any] | None = None,
    prior_weight: float = 0.0,
    prior_images: int = 90,
    profile_bins: int = 40,
    log_every: int = 25,
    extra_info: Mapping[str, Any] | None = None,
) -> FinetuneResult:
    """Train LoRA adapters (and the trigger's label row) of ``base`` on ``images`` (N, C, H, W) in [−1, 1].

    Each step draws ``batch_size`` of the images uniformly (with replacement) and the noise levels
    from the timestep type's p(λ) (or the ``adaptive`` sampler of ``noiselevels.training.adaptive``,
    built like the trainer's ``[adaptive]`` section), and minimises the mean of w(λ)·‖ε̂ − ε‖² in the
    base's parameterisation (see :func:`resolve_noise`). AdamW on the adapter parameters only, linear
    warm-up over ``warmup`` steps, gradient norm clipped at 1. The model runs in eval mode (no
    classifier-free label dropout: the null label is not re-trained). Deterministic given ``seed``.

    ``label``: the trigger label (default: the base's spare slot; required for a conditional base
    without one). With ``out_dir`` the adapter and its metadata are written (module docstring).

    ``prior_weight`` > 0 turns on prior preservation (DreamBooth, Ruiz et al. 2023, eq. 2): before
    training, the base model draws ``prior_images`` samples spread evenly over its trained classes
    (other than ``label``); every step adds ``prior_weight`` × the same loss on a batch of them with
    their labels, so the adapter is also asked to keep reproducing what the base did for the other
    classes (at twice the cost per step).
    """
    from noiselevels.runs.train import LossProfile, build_adaptive, profile_range

    b = load_base(base)
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("warmup", warmup, 0)
    _check_int("seed", seed, 0)
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 1):
        raise ValueError(f"lr must be a number in (0, 1]; got {lr!r}")
    if not isinstance(images, Tensor) or images.ndim != 1 + len(b.data["shape"]) or list(
        images.shape[1:]
    ) != list(b.data["shape"]):
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, {', '.join(map(str, b.data['shape']))}); got {got}")
    if len(images) < 1:
        raise ValueError("images is empty: a fine-tune needs at least one image")
    conditional = b.num_classes is not None
    if conditional and label is None:
        label = b.spare_label
        if label is None:
            raise ValueError(
                f"base {b.source!r} has no spare label slot (no class was left out of its training "
                f"data); pass label= (--label K on the command line), the class row 0..{b.num_classes - 1} "
                "to re-purpose"
            )
    if not conditional and label is not None:
        raise ValueError(
            f"label= (--label) needs a class-conditional base; {b.source!r} has no label embedding (its "
            "model config sets no num_classes): fine-tune it without a label"
        )
    nc = resolve_noise(timestep_type, b.noise)
    objective = nc.objective()
    sampler = None
    if adaptive:
        sampler = build_adaptive(dict(adaptive), objective)
        objective = dataclasses.replace(objective, sampler=sampler)

    import copy

    torch.manual_seed(seed)
    model = copy.deepcopy(b.model).requires_grad_(False)
    pm = add_lora(model, rank=rank, alpha=alpha, label=label, target=target)
    pm.eval()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    profile = LossProfile(*profile_range(nc.density), profile_bins)
    if not (isinstance(prior_weight, (int, float)) and not isinstance(prior_weight, bool)
            and 0 <= prior_weight < math.inf):  # fmt: skip
        raise ValueError(f"prior_weight must be a finite number >= 0; got {prior_weight!r}")
    prior_x = prior_y = None
    if prior_weight > 0:
        _check_int("prior_images", prior_images, 1)
        others = [c for c in (b.trained_classes or []) if c != label]
        if not conditional or not others:
            raise ValueError("prior_weight > 0 needs a class-conditional base with other trained classes")
        prior_y = torch.tensor(others)[torch.arange(prior_images) % len(others)]
        prior_x = sample(b.model, b.noise, tuple(b.data["shape"]), labels=prior_y, num=prior_images,
                         seed=seed + 99)  # fmt: skip
    cond_labels = torch.full((batch_size,), label, dtype=torch.long) if conditional else None
    log: list[dict[str, Any]] = []
    acc, n_acc = 0.0, 0
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        for grp in opt.param_groups:
            grp["lr"] = lr * min(1.0, step / warmup) if warmup else lr
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        cond = {"labels": cond_labels} if conditional else {}
        res = objective(pm, images[idx], generator=g, **cond)
        loss = res.loss.float().mean()
        if prior_x is not None:
            j = torch.randint(0, len(prior_x), (batch_size,), generator=g)
            prior = objective(pm, prior_x[j], generator=g, labels=prior_y[j])
            loss = loss + prior_weight * prior.loss.float().mean()
        if not torch.isfinite(loss):
            raise ValueError(f"non-finite fine-tuning loss at step {step}; lower lr (now {lr})")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        profile.add(res.logsnr, res.eps_mse)
        if sampler is not None:
            sampler.update(res.logsnr.detach(), res.eps_mse.detach())
        acc += float(loss.detach())
        n_acc += 1
        if step % log_every == 0 or step == steps:
            log.append({"step": step, "loss": acc / n_acc, "seconds": time.perf_counter() - t0})
            acc, n_acc = 0.0, 0
    train_seconds = time.perf_counter() - t0
    # frozen like a model of load_model: a parameter's requires_grad flag changes torch's matmul path
    # (folding of batched inputs), so only then do the two give bit-identical outputs
    pm.requires_grad_(False)
    profile.close(steps)
    prof = {"centers": profile.centers.tolist(), "mean": profile.history[-1]["mean"],
            "count": profile.history[-1]["count"]}  # fmt: skip
    result = FinetuneResult(pm, b, label, nc, None, log, train_seconds, prof)
    if out_dir is not None:
        result.out_dir = _save(result, Path(out_dir), rank=rank, alpha=alpha, lr=lr, steps=steps,
                               batch_size=batch_size, seed=seed, target=target, adaptive=adaptive,
                               prior_weight=prior_weight, prior_images=prior_images,
                               num_images=len(images), profile=profile, extra=extra_info)  # fmt: skip
    return result


def _save(res: FinetuneResult, out: Path, *, profile, extra, **hp) -> Path:
    from noiselevels.runs.checkpoint import write_json_atomic
    from noiselevels.runs.profile import nan_to_none as _nan_to_none

    out.mkdir(parents=True, exist_ok=True)
    res.model.save_pretrained(str(out / "adapter"))
    readme = out / "adapter" / "README.md"
    if readme.is_file():  # peft's model-card stub; the json below documents the adapter
        readme.unlink()
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in res.log))
    profile.save(out, plot=False)
    info = {
        "base": res.base.source,
        "label": res.label,
        "noise": res.noise.to_dict(),
        "timestep_type": res.noise.preset,
        **{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in hp.items()},
        "train_seconds": res.train_seconds,
        "final_loss": res.log[-1]["loss"] if res.log else None,
        **dict(extra or {}),
    }
    write_json_atomic(out / "finetune.json", _nan_to_none(info))
    return out


def _adapter_paths(adapter: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    p = Path(os.path.expanduser(str(adapter)))
    info_path = p / "finetune.json" if (p / "finetune.json").is_file() else p.parent / "finetune.json"
    adir = p / "adapter" if (p / "adapter").is_dir() else p
    if not (adir / "adapter_config.json").is_file():
        raise ValueError(f"{str(adapter)!r} is not a fine-tune folder (no adapter/adapter_config.json)")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return adir, info


def _attach(model: nn.Module, adir: Path, source: str) -> nn.Module:
    """A copy of ``model`` with the peft adapter in ``adir`` loaded (eval mode, no gradients)."""
    import copy

    from peft import PeftModel

    try:
        pm = PeftModel.from_pretrained(copy.deepcopy(model), str(adir))
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
        from noiselevels.runs.train import noise_config

        noise = noise_config(info["noise"])
    out = dataclasses.replace(b, model=pm, noise=noise, source=f"{b.source} + {adir}")
    return out, info.get("label")


def load_model(
    base: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    *,
    ema: bool = True,
    device: str | torch.device = "cpu",
):
    """What ``noiselevels sample`` / ``evaluate`` load for ``RUN_OR_BASE [--adapter DIR]``: a
    ``noiselevels.runs.train.Run`` (model in eval mode, noise configuration, data metadata). ``base`` is a
    run folder (loaded with ``noiselevels.runs.train.load_run``), ``mnist-base`` or an exported safetensors
    file; ``adapter`` a fine-tune folder of :func:`finetune`, attached to that model."""
    from noiselevels.runs.train import Run, TrainConfig, load_run

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


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def _features(features: Any):
    from noiselevels.runs.metrics import FeatureExtractor, feature_extractor

    if isinstance(features, FeatureExtractor):
        return features
    if features == "pixels":
        return FeatureExtractor(
            lambda x: torch.nn.functional.avg_pool2d(x, 4, ceil_mode=True).flatten(1), name="pixels"
        )
    if features == "mnist":
        return feature_extractor("mnist")
    raise ValueError(f"features must be 'mnist', 'pixels' or a FeatureExtractor; got {features!r}")


def evaluate_finetune(
    model: nn.Module,
    noise,
    shape: tuple[int, ...],
    *,
    label: int,
    real_new: Tensor,
    other_classes: list[int],
    num_new: int = 200,
    num_other: int = 270,
    steps: int = 12,
    seed: int = 1234,
    features: Any = "mnist",
) -> dict[str, Any]:
    """Fréchet distances (MNIST-classifier features) of an adapted model.

    ``fd_new``: ``num_new`` samples with the trigger ``label`` vs ``real_new`` (held-out real images of
    the concept); ``fd_other``: ``num_other`` samples spread evenly over ``other_classes`` vs all real
    MNIST images of those classes (the retention measure: compare with the base's value). Returns the
    two distances and the new concept's samples (``samples_new``, the first 16).

    ``features``: ``"mnist"`` (the shipped classifier's features), ``"pixels"`` (4×4 average-pooled
    pixels: no classifier needed, for smoke tests only) or a ``noiselevels.runs.metrics.FeatureExtractor``.
    """
    from noiselevels.runs.metrics import frechet_distance

    feats = _features(features)
    x_new = sample(model, noise, shape, labels=torch.full((num_new,), label), num=num_new, steps=steps,
                   seed=seed)  # fmt: skip
    out: dict[str, Any] = {"fd_new": frechet_distance(feats(x_new), feats(real_new))}
    if other_classes and num_other:
        oc = torch.tensor(other_classes)
        lab = oc[torch.arange(num_other) % len(oc)]
        x_o = sample(model, noise, shape, labels=lab, num=num_other, steps=steps, seed=seed + 1)
        x_real, y_real = _real_by_class(tuple(shape))
        real = x_real[torch.isin(y_real, oc)]
        out["fd_other"] = frechet_distance(feats(x_o), feats(real))
    out["samples_new"] = x_new[:16]
    return out
