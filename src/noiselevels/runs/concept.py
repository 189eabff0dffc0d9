"""Evaluating a fine-tune on the user's own concept, without a classifier of it.

:func:`evaluate_concept` measures a base model and its adapter on a folder of the concept's images:

* **validation loss at fixed noise levels** (``noiselevels.runs.validation``) on held-out images of the
  concept — ``validation_images`` when given, else a fixed, seeded 20 % split of the folder
  (``validation.holdout_split``; when the fine-tune recorded which images it held out, those) — for the
  adapted model, the base without the adapter, and their paired difference;
* **retention** (``noiselevels.runs.retention``) on a retention set that does not carry the trigger;
* **samples** of the evaluation prompts (the same prompts and seeds for every model: sample i depends
  only on (seed, i)) and, with a local CLIP / DINO folder, **feature metrics**
  (``noiselevels.runs.features``) of those samples against the held-out images.

A *subject* adapts one kind of model to these measurements: :class:`RunSubject` (the project's own
models — ``mnist-base``, an exported base, a run folder — with a ``noiselevels finetune`` adapter; the
concept's trigger is its label, the retention set is real MNIST images of the other trained classes
for an MNIST base, else samples of the base) and, for diffusers pipelines,
``noiselevels.runs.concept_pipeline.PipelineSubject`` (``concept_pipeline.load_subject`` picks one).
A subject has ``process``, ``parameterization``, ``base`` and ``adapted`` (the model contract
``model(z, λ, **cond)``),
``read_images(folder) -> (data, names, captions)``, ``items(read, indices)`` (validation items of what
``read_images`` returned), ``pixels(read, indices)`` (their images, for feature metrics),
``retention_set(num, seed) -> (items, description)``, ``eval_prompts(prompts)`` and
``sample(which, prompts, seed, steps) -> images in [−1, 1]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noiselevels.runs.bases import BaseModel, load_base, sample
from noiselevels.runs.data import IMAGE_EXTENSIONS, balanced_indices, load_dataset
from noiselevels.runs.features import FeatureModel, feature_metrics
from noiselevels.runs.lora import load_adapter
from noiselevels.runs.retention import retention
from noiselevels.runs.validation import DEFAULT_GRID, Item, holdout_split, items_from, validation_loss

__all__ = ["RunSubject", "evaluate_concept", "finetune_info", "image_names", "validation_set"]


def image_names(folder: str | os.PathLike) -> list[str]:
    """The image files of a flat folder, sorted (the order every loader here uses)."""
    root = Path(os.path.expanduser(str(folder)))
    if not root.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a directory")
    files = (p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    names = sorted(p.name for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not names:
        raise ValueError(
            f"image folder {str(folder)!r} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return names


class RunSubject:
    """A project model (``noiselevels.runs.bases.load_base``) and optionally its adapted version."""

    kind = "run"

    def __init__(self, base: BaseModel, adapted: torch.nn.Module | None = None, label: int | None = None):
        self.base_model, self.noise = base, base.noise
        self.process, self.parameterization = base.noise.process, base.noise.parameterization
        self.base, self.adapted = base.model, adapted
        self.shape = tuple(base.data["shape"])
        conditional = base.num_classes is not None
        self.label = (label if label is not None else base.spare_label) if conditional else None
        if conditional and self.label is None:
            raise ValueError(f"base {base.source!r} is class-conditional: the concept's label is needed")
        self.trigger = self.label
        self.description = base.source

    @classmethod
    def load(cls, base: str | os.PathLike | None, adapter: str | os.PathLike | None) -> RunSubject:
        """``base`` (default: the adapter's recorded base) with the adapter folder attached."""
        if adapter is None:
            if base is None:
                raise ValueError("give a base model (or an adapter whose finetune.json names its base)")
            return cls(load_base(base))
        adapted, label = load_adapter(adapter, base)
        base = base if base is not None else finetune_info(adapter)["base"]
        return cls(load_base(base), adapted.model, label)

    def read_images(self, folder) -> tuple[Tensor, list[str], list[str]]:
        names = image_names(folder)
        ds = load_dataset(f"folder:{Path(os.path.expanduser(str(folder)))}", split="all", size=self.shape[-1],
                          channels=self.shape[0])  # fmt: skip
        return ds.data, names, [""] * len(names)

    def _cond(self, n: int, labels: Tensor | None = None) -> dict[str, Tensor]:
        if self.label is None:
            return {}
        return {"labels": labels if labels is not None else torch.full((n,), self.label, dtype=torch.long)}

    def items(self, data: tuple[Tensor, list[str], list[str]], idx: Sequence[int]) -> list[Item]:
        x, names, _ = data
        return items_from(x[list(idx)], self._cond(len(idx)), [names[i] for i in idx])

    def pixels(self, data: tuple[Tensor, list[str], list[str]], idx: Sequence[int]) -> Tensor:
        return data[0][list(idx)]

    def retention_set(self, num: int, seed: int, *, steps: int = 12,
                      regularisation_images=None) -> tuple[list[Item], str]:  # fmt: skip
        """MNIST base: ``num`` real MNIST validation images of its other trained classes (class-balanced,
        seeded) with their labels; otherwise ``num`` samples of the base (``steps`` steps)."""
        if regularisation_images is not None:
            raise ValueError("regularisation images are for pipelines; a project base is retained on its "
                             "other classes (or its own samples)")  # fmt: skip
        others = [c for c in (self.base_model.trained_classes or []) if c != self.label]
        if self.label is not None and others and self.base_model.data.get("name") == "mnist":
            ds = load_dataset("mnist", split="val", size=self.shape[-1], channels=self.shape[0])
            keep = torch.isin(ds.labels, torch.tensor(others)).nonzero().squeeze(1)
            pick = keep[balanced_indices(ds.subset(keep), min(num, len(keep)), seed=seed)]
            return (items_from(ds.data[pick], {"labels": ds.labels[pick]}),
                    f"{len(pick)} real MNIST validation images of the other classes {others}")  # fmt: skip
        xs = self.sample("base", self.eval_prompts(None) * num, seed=seed + 1, steps=steps)
        return items_from(xs, self._cond(len(xs))), f"{num} samples of the base model"

    def eval_prompts(self, prompts: Sequence[Any] | None) -> list[Any]:
        """The prompts of a run model are labels: the concept's label (or None, unconditional)."""
        if prompts:
            return list(prompts)
        return [self.label]

    def sample(self, which: str, prompts: Sequence[Any], *, seed: int, steps: int) -> Tensor:
        model = self.base if which == "base" else self.adapted
        labels = None if self.label is None else torch.tensor([int(p) for p in prompts])
        return sample(model, self.noise, self.shape, labels=labels, num=len(prompts), steps=steps, seed=seed)


def validation_set(subject, images, validation_images=None, *, adapter=None, fraction: float = 0.2,
                   seed: int = 0) -> tuple[list[Item], Tensor, str]:  # fmt: skip
    """The held-out validation items, their images (for feature metrics) and a sentence saying where
    they came from (module docstring)."""
    if validation_images is not None:
        data = subject.read_images(validation_images)
        idx = list(range(len(data[1])))
        what = f"{len(idx)} images of {validation_images}"
        return subject.items(data, idx), subject.pixels(data, idx), what
    if images is None:
        raise ValueError(
            "give the concept's images (--images DIR) or held-out ones (--validation-images DIR)"
        )
    data = subject.read_images(images)
    names = data[1]
    recorded = finetune_info(adapter).get("holdout") if adapter is not None else None
    if recorded and set(recorded) <= set(names):
        val = [names.index(n) for n in recorded]
        what = f"the {len(val)} images of {images} the fine-tune held out ({', '.join(recorded)})"
    else:
        _, val = holdout_split(len(names), fraction=fraction, seed=seed)
        held = ", ".join(names[i] for i in val)
        what = (f"a fixed split of {images}: {len(val)} of {len(names)} images ({held}; seed {seed}, "
                f"{fraction:.0%}) — the fine-tune may have trained on them")  # fmt: skip
    return subject.items(data, val), subject.pixels(data, val), what


def finetune_info(adapter: str | os.PathLike) -> dict[str, Any]:
    """The ``finetune.json`` of a fine-tune folder (or of the folder above an ``adapter/`` folder);
    {} when there is none."""
    p = Path(os.path.expanduser(str(adapter)))
    for f in (p / "finetune.json", p.parent / "finetune.json"):
        if f.is_file():
            return json.loads(f.read_text())
    return {}


def evaluate_concept(
    subject,
    *,
    images=None,
    validation_images=None,
    adapter=None,
    eval_prompts: Sequence[Any] | None = None,
    samples_per_prompt: int = 2,
    steps: int = 12,
    features: str | os.PathLike | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    seed: int = 0,
    repeats: int = 1,
    retention_images: int = 32,
    regularisation_images: str | os.PathLike | None = None,
    batch_size: int = 64,
    with_samples: bool = True,
) -> dict[str, Any]:
    """All concept measurements of ``subject`` (module docstring) as a JSON-able dict, plus the
    samples under ``"samples"`` (a tensor, (P·k, C, H, W); removed before writing JSON) and their
    prompts under ``"sample_prompts"``."""
    items, ref_images, source = validation_set(subject, images, validation_images, adapter=adapter, seed=seed)
    kw = {"process": subject.process, "parameterization": subject.parameterization, "grid": grid,
          "seed": seed, "repeats": repeats, "batch_size": batch_size}  # fmt: skip
    out: dict[str, Any] = {"model": subject.description, "adapter": None if adapter is None else str(adapter),
                           "validation_source": source}  # fmt: skip
    if subject.adapted is not None:
        out["validation"] = validation_loss(subject.adapted, items, baseline=subject.base, **kw)
        r_items, r_source = subject.retention_set(retention_images, seed, steps=steps,
                                                  regularisation_images=regularisation_images)  # fmt: skip
        out["retention"] = retention(subject.base, subject.adapted, r_items, source=r_source, **kw)
    else:
        out["validation"] = validation_loss(subject.base, items, **kw)
    if not with_samples and features is None:
        return out
    prompts = [p for p in subject.eval_prompts(eval_prompts) for _ in range(samples_per_prompt)]
    which = "adapted" if subject.adapted is not None else "base"
    samples = subject.sample(which, prompts, seed=seed, steps=steps)
    out["samples"], out["sample_prompts"] = samples, [str(p) for p in prompts]
    out["sampler"] = {"steps": steps, "seed": seed, "samples_per_prompt": samples_per_prompt}
    if features is not None:
        text = [str(p) for p in prompts] if all(isinstance(p, str) for p in prompts) else None
        out["features"] = feature_metrics(FeatureModel(features), samples, prompts=text, reference=ref_images)
    return out
