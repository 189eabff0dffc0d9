"""Teach a base model a new concept from a few images with a low-rank adapter (LoRA), and measure it.

The workflow of fine-tuners (kohya, ai-toolkit, OneTrainer, SimpleTuner): take a trained base model, add
low-rank adapters (Hu et al. 2021, "LoRA", eq. 3: W = W₀ + (α/r)·B·A with B ∈ R^{d×r}, A ∈ R^{r×k}),
train only the adapters on 20–30 images of a concept the model has never seen, and save only them.
Which noise levels the fine-tune trains on — the tools' "timestep type" — is the question this module
lets one answer with an experiment (``noiselevels.runs.sweep``).

**Base models** (``noiselevels.runs.bases``): ``mnist-base`` (shipped, trained without the digit 7), a
``.safetensors`` file of ``export_base``, or a run folder of ``noiselevels train``. **Adapters**
(``noiselevels.runs.lora``): ``add_lora``, ``load_adapter``, ``load_model``. Their names are re-exported
here (``from noiselevels.runs.finetune import load_base, add_lora`` keeps working).

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

**The training step** is the trainer's (``noiselevels.runs.loop.TrainStep``): the same linear warm-up
rule, finite-loss check, gradient clipping (at 1) and optimizer step; only the forward pass (adapter
parameters, optional prior preservation) is the fine-tune's.
"""

from __future__ import annotations

import copy
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

from noiselevels.config import NoiseConfig
from noiselevels.presets import list_presets, preset, qualified_name
from noiselevels.runs.bases import (
    BASES,
    BaseModel,
    base_fd_per_class,
    export_base,
    load_base,
    real_by_class,
    sample,
    save_base,
)
from noiselevels.runs.checkpoint import write_json_atomic
from noiselevels.runs.config import build_adaptive, noise_config
from noiselevels.runs.data import load_dataset
from noiselevels.runs.loop import LogInterval, TrainStep, log_due, record_levels
from noiselevels.runs.lora import add_lora, load_adapter, load_model, lora_targets
from noiselevels.runs.metrics import FeatureExtractor, feature_extractor, frechet_distance
from noiselevels.runs.profile import LossProfile, nan_to_none, profile_range
from noiselevels.training.adaptive import AdaptiveSampler

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
    "lora_targets",
    "resolve_noise",
    "sample",
    "save_base",
]

# the timestep types of the study (ai-toolkit's names); any other preset name works too
TIMESTEP_TYPES = ("linear", "sigmoid", "weighted", "shift")


# ----------------------------------------------------------------------------------------------
# noise levels of the fine-tune
# ----------------------------------------------------------------------------------------------
def resolve_noise(timestep_type: Any, base_noise: NoiseConfig) -> NoiseConfig:
    """The ``NoiseConfig`` a fine-tune trains with: the density and ε-unit weighting of
    ``timestep_type`` with the base model's process and parameterisation.

    ``timestep_type``: a preset name (``"linear"`` = ``"ai-toolkit:linear"``; any ``tool:name`` of
    ``noiselevels.presets.list_presets()``), a ``[noise]`` table (dict; custom density / weighting, may
    name a ``preset`` and override parts of it), or a ``NoiseConfig``.
    """
    if isinstance(timestep_type, NoiseConfig):
        nc = timestep_type
    elif isinstance(timestep_type, str):
        names = list_presets()
        name = qualified_name(timestep_type)
        if name not in names:
            short = sorted(n.split(":", 1)[1] for n in names if n.startswith("ai-toolkit:"))
            raise ValueError(
                f"unknown timestep type {timestep_type!r}; valid: {', '.join(short)} (ai-toolkit), any "
                f"tool:name preset ({', '.join(n for n in names if not n.startswith('ai-toolkit:'))}), "
                "or a [noise] table"
            )
        nc = preset(name)
    elif isinstance(timestep_type, Mapping):
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


def _check_args(b: BaseModel, images: Any, *, steps, batch_size, warmup, seed, lr) -> None:
    """The hyper-parameters and the images' shape (N, *base shape), N >= 1."""
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1)
    _check_int("warmup", warmup, 0)
    _check_int("seed", seed, 0)
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr <= 1):
        raise ValueError(f"lr must be a number in (0, 1]; got {lr!r}")
    shape = list(b.data["shape"])
    if not isinstance(images, Tensor) or images.ndim != 1 + len(shape) or list(images.shape[1:]) != shape:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must have shape (N, {', '.join(map(str, shape))}); got {got}")
    if len(images) < 1:
        raise ValueError("images is empty: a fine-tune needs at least one image")


def _trigger_label(b: BaseModel, label: int | None) -> int | None:
    """The trigger label: ``label``, or the base's spare slot; None for an unconditional base."""
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
    return label


def _prior_set(
    b: BaseModel, label: int | None, *, prior_weight: Any, prior_images: int, seed: int
) -> tuple[Tensor | None, Tensor | None]:
    """Prior preservation's images and labels: ``prior_images`` samples of the base spread evenly over
    its trained classes other than ``label`` (None, None when ``prior_weight`` is 0)."""
    if not (isinstance(prior_weight, (int, float)) and not isinstance(prior_weight, bool)
            and 0 <= prior_weight < math.inf):  # fmt: skip
        raise ValueError(f"prior_weight must be a finite number >= 0; got {prior_weight!r}")
    if prior_weight == 0:
        return None, None
    _check_int("prior_images", prior_images, 1)
    others = [c for c in (b.trained_classes or []) if c != label]
    if b.num_classes is None or not others:
        raise ValueError("prior_weight > 0 needs a class-conditional base with other trained classes")
    prior_y = torch.tensor(others)[torch.arange(prior_images) % len(others)]
    prior_x = sample(b.model, b.noise, tuple(b.data["shape"]), labels=prior_y, num=prior_images,
                     seed=seed + 99)  # fmt: skip
    return prior_x, prior_y


@dataclasses.dataclass
class _Batches:
    """What each fine-tuning step draws from: the concept's images (with the trigger's labels) and the
    prior set; one generator for the picks and the objective's noise."""

    images: Tensor
    labels: Tensor | None
    prior_x: Tensor | None
    prior_y: Tensor | None
    prior_weight: float
    batch_size: int
    generator: torch.Generator

    def loss(self, objective, model: nn.Module):
        """(scalar loss, per-sample losses, their λ, the concept batch's objective output)."""
        g, n = self.generator, self.batch_size
        idx = torch.randint(0, len(self.images), (n,), generator=g)
        cond = {"labels": self.labels} if self.labels is not None else {}
        res = objective(model, self.images[idx], generator=g, **cond)
        loss, losses, lam = res.loss.float().mean(), res.loss, res.logsnr
        if self.prior_x is not None:
            j = torch.randint(0, len(self.prior_x), (n,), generator=g)
            prior = objective(model, self.prior_x[j], generator=g, labels=self.prior_y[j])
            loss = loss + self.prior_weight * prior.loss.float().mean()
            losses, lam = torch.cat([losses, prior.loss]), torch.cat([lam, prior.logsnr])
        return loss, losses, lam, res


def _train_adapter(pm, objective, batches: _Batches, step_fn: TrainStep, *, steps, log_every, profile,
                   sampler: AdaptiveSampler | None) -> list[dict[str, Any]]:  # fmt: skip
    """The fine-tuning loop: ``steps`` training steps; the log records {step, loss, seconds}."""
    log: list[dict[str, Any]] = []
    interval = LogInterval()
    t0 = time.perf_counter()
    for k in range(steps):
        loss, losses, lam, res = batches.loss(objective, pm)
        step = step_fn(k, loss, losses, lam).step
        record_levels(profile, sampler, res.logsnr, res.eps_mse)
        interval.add(float(loss.detach()))
        if log_due(step, log_every, steps):
            log.append({"step": step, "loss": interval.mean_loss(), "seconds": time.perf_counter() - t0})
            interval = LogInterval()
    return log


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
    warm-up over ``warmup`` steps, gradient norm clipped at 1 (``noiselevels.runs.loop.TrainStep``). The
    model runs in eval mode (no classifier-free label dropout: the null label is not re-trained).
    Deterministic given ``seed``.

    ``label``: the trigger label (default: the base's spare slot; required for a conditional base
    without one). With ``out_dir`` the adapter and its metadata are written (module docstring).

    ``prior_weight`` > 0 turns on prior preservation (DreamBooth, Ruiz et al. 2023, eq. 2): before
    training, the base model draws ``prior_images`` samples spread evenly over its trained classes
    (other than ``label``); every step adds ``prior_weight`` × the same loss on a batch of them with
    their labels, so the adapter is also asked to keep reproducing what the base did for the other
    classes (at twice the cost per step).
    """
    b = load_base(base)
    _check_args(b, images, steps=steps, batch_size=batch_size, warmup=warmup, seed=seed, lr=lr)
    label = _trigger_label(b, label)
    nc = resolve_noise(timestep_type, b.noise)
    objective = nc.objective()
    sampler = None
    if adaptive:
        sampler = build_adaptive(dict(adaptive), objective)
        objective = dataclasses.replace(objective, sampler=sampler)
    torch.manual_seed(seed)
    pm = add_lora(copy.deepcopy(b.model).requires_grad_(False), rank=rank, alpha=alpha, label=label,
                  target=target)  # fmt: skip
    pm.eval()
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    step_fn = TrainStep(opt, params, lr=lr, warmup=warmup, grad_clip=1.0,
                        note=lambda: f"fine-tune stopped; lower lr (now {lr})")  # fmt: skip
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    profile = LossProfile(*profile_range(nc.density), profile_bins)
    prior_x, prior_y = _prior_set(b, label, prior_weight=prior_weight, prior_images=prior_images, seed=seed)
    cond_labels = torch.full((batch_size,), label, dtype=torch.long) if b.num_classes is not None else None
    batches = _Batches(images, cond_labels, prior_x, prior_y, prior_weight, batch_size, g)
    t0 = time.perf_counter()
    log = _train_adapter(pm, objective, batches, step_fn, steps=steps, log_every=log_every, profile=profile,
                         sampler=sampler)  # fmt: skip
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
    write_json_atomic(out / "finetune.json", nan_to_none(info))
    return out


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def _features(features: Any):
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
    feats = _features(features)
    x_new = sample(model, noise, shape, labels=torch.full((num_new,), label), num=num_new, steps=steps,
                   seed=seed)  # fmt: skip
    out: dict[str, Any] = {"fd_new": frechet_distance(feats(x_new), feats(real_new))}
    if other_classes and num_other:
        oc = torch.tensor(other_classes)
        lab = oc[torch.arange(num_other) % len(oc)]
        x_o = sample(model, noise, shape, labels=lab, num=num_other, steps=steps, seed=seed + 1)
        x_real, y_real = real_by_class(tuple(shape))
        real = x_real[torch.isin(y_real, oc)]
        out["fd_other"] = frechet_distance(feats(x_o), feats(real))
    out["samples_new"] = x_new[:16]
    return out
