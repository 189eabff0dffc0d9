"""Sweeps over a diffusers pipeline and a captioned image folder, and the concept metrics of every sweep run.

A sweep file whose ``[sweep] base`` is a pipeline (a folder with ``model_index.json`` or a cached hub id)::

    [sweep]
    base = "path/to/stable-diffusion-v1-5"
    images = "path/to/concept"           # images + same-name .txt captions
    validation_images = "path/to/held"   # optional; else a fixed, seeded 20 % of `images` is held out
    seeds = [0, 1]

    [finetune]                            # any argument of noiselevels.runs.finetune_latent.finetune_latent
    trigger = "sks"
    resolution = 512
    rank = 16
    steps = 500

    [eval]
    prompts = ["a photo of sks toy on a beach", "sks toy, watercolour"]
    steps = 20                            # sampling steps of the sample grids
    samples_per_prompt = 2
    # levels = [-8, -6, ..., 8]; repeats = 1; retention_images = 8; features = "path/to/clip"

    [grid]
    timestep_type = ["sigmoid", "shift"]

Every run fine-tunes with ``finetune_latent`` on the training images into its run folder, then
``noiselevels.runs.concept.evaluate_concept`` measures it on the held-out images with the sweep's
evaluation seed (the same fixed noise and sample seeds for every run): validation loss at fixed levels
(adapter, base, paired difference), retention on the captions without the trigger, samples of the
evaluation prompts (``samples.safetensors``) and, with ``features``, CLIP/DINO metrics. The base
pseudo-run evaluates the base alone (validation loss and samples).

**Data once**: the held-out split is written once into ``OUT/data/train`` and ``OUT/data/validation``
(copies, created atomically by whichever run gets there first) and every run reads the latents and text
embeddings from the shared cache ``OUT/cache`` (``runs.latent_cache``, keyed by file content and model),
so the first run encodes them and the others read them.

For the project's own bases (``mnist-base``, …) :func:`run_concept_metrics` adds the same validation and
retention measurements to a sweep run: held-out real images of the MNIST class (or the folder's split),
the other classes for retention.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from noiselevels.runs.captions import read_caption_folder
from noiselevels.runs.concept import RunSubject, evaluate_concept, image_names
from noiselevels.runs.concept_pipeline import PipelineSubject
from noiselevels.runs.families import is_pipeline, load_pipeline, resolve_pipeline
from noiselevels.runs.finetune import resolve_noise
from noiselevels.runs.finetune_latent import finetune_latent
from noiselevels.runs.report import noise_arg
from noiselevels.runs.retention import retention
from noiselevels.runs.validation import DEFAULT_GRID, holdout_split, validation_loss

__all__ = [
    "CONCEPT_EVAL_KEYS",
    "encode_pipeline_data",
    "execute_pipeline",
    "image_names",
    "is_pipeline_base",
    "pipeline_data",
    "pipeline_finetune_keys",
    "run_concept_metrics",
    "validate_pipeline",
]

# [eval] keys of the concept measurements (besides num_new, num_other, steps, seed, features)
CONCEPT_EVAL_KEYS = ("prompts", "samples_per_prompt", "retention_images", "levels", "repeats",
                     "regularisation_images", "num_validation")  # fmt: skip
_NOT_SWEPT = ("base", "images", "out_dir", "seed", "cache_dir", "identity", "dtype", "device", "resume",
              "progress", "extra_info")  # fmt: skip


def is_pipeline_base(base: Any) -> bool:
    """Whether a sweep's base names a diffusers pipeline (``runs.families.is_pipeline``)."""
    return is_pipeline(base)


def pipeline_finetune_keys() -> tuple[str, ...]:
    """Every ``finetune_latent`` argument a sweep may set (all but the data, seed and output ones)."""
    return tuple(p for p in inspect.signature(finetune_latent).parameters if p not in _NOT_SWEPT)


def _copy_pair(src: Path, dst: Path) -> None:
    shutil.copy2(src, dst / src.name)
    cap = src.with_suffix(".txt")
    if cap.is_file():
        shutil.copy2(cap, dst / cap.name)


def pipeline_data(concept: Mapping[str, Any], out: str | os.PathLike, *, seed: int = 0) -> dict[str, Any]:
    """The training and validation folders of a sweep (module docstring): ``{"train", "validation",
    "holdout", "cache"}``. With ``validation_images`` the training folder is ``images`` itself."""
    out = Path(out)
    images = Path(os.path.expanduser(str(concept["images"])))
    cache = str(out / "cache")
    if concept.get("validation_images"):
        return {"train": str(images), "validation": str(concept["validation_images"]), "holdout": None,
                "cache": cache}  # fmt: skip
    names = image_names(images)
    train, val = holdout_split(len(names), seed=seed)
    target = out / "data"
    if not (target / "done").is_file():
        tmp = out / f".data-{uuid.uuid4().hex[:8]}"
        for sub, idx in (("train", train), ("validation", val)):
            (tmp / sub).mkdir(parents=True)
            for i in idx:
                _copy_pair(images / names[i], tmp / sub)
        (tmp / "done").write_text("")
        try:
            os.replace(tmp, target)
        except OSError:  # another run made it first
            shutil.rmtree(tmp, ignore_errors=True)
    return {"train": str(target / "train"), "validation": str(target / "validation"),
            "holdout": [names[i] for i in val], "cache": cache}  # fmt: skip


def _eval_kwargs(ev: Mapping[str, Any]) -> dict[str, Any]:
    """``evaluate_concept`` keywords from an ``[eval]`` table (the evaluation seed defaults to 0 and is
    the same for every run: same noise, same sample seeds)."""
    levels = ev.get("levels")
    return {
        "eval_prompts": ev.get("prompts"),
        "samples_per_prompt": int(ev.get("samples_per_prompt", 2)),
        "steps": int(ev.get("steps", 12)),
        "features": ev.get("features"),
        "grid": tuple(levels) if levels else DEFAULT_GRID,
        "seed": int(ev.get("seed", 0)),
        "repeats": int(ev.get("repeats", 1)),
        "retention_images": int(ev.get("retention_images", 8)),
        "regularisation_images": ev.get("regularisation_images"),
    }


def _split_samples(res: dict[str, Any]) -> tuple[Tensor | None, dict[str, Any]]:
    samples = res.pop("samples", None)
    return samples, res


def execute_pipeline(spec: Mapping[str, Any], run_dir: Path, t0: float) -> tuple[dict[str, Any], Any]:
    """One run of a pipeline sweep (module docstring): (result, samples of the evaluation prompts)."""
    folder = resolve_pipeline(spec["base"])
    data = pipeline_data(spec["concept"], run_dir.parents[1])
    params = dict(spec["params"])
    if "noise" in params:
        params["timestep_type"] = noise_arg(params)
        params.pop("noise")
    kw = _eval_kwargs(spec["eval"])
    base = load_pipeline(folder).eval().requires_grad_(False)
    result: dict[str, Any] = {"id": run_dir.name, "config": spec["config"], "seed": spec["seed"],
                              "kind": spec["kind"], "holdout": data["holdout"]}  # fmt: skip
    common = {"folder": folder, "resolution": params.get("resolution"), "cache_dir": data["cache"],
              "description": f"{base.family} pipeline {spec['base']}"}  # fmt: skip
    if spec["kind"] == "base":
        subject = PipelineSubject(base, None, trigger=params.get("trigger"), **common)
        train_s, final = 0.0, None
    else:
        res = finetune_latent(folder, data["train"], out_dir=run_dir, seed=spec["seed"],
                              cache_dir=data["cache"], progress=False,
                              extra_info={"holdout": data["holdout"]}, **params)  # fmt: skip
        subject = PipelineSubject(base, res.model, trigger=params.get("trigger"), **common)
        train_s, final = res.train_seconds, (res.log[-1]["loss"] if res.log else None)
    m = evaluate_concept(subject, validation_images=data["validation"], **kw)
    samples, m = _split_samples(m)
    result.update(m)
    result.update(train_seconds=train_s, final_loss=final, wall_seconds=time.perf_counter() - t0)
    return result, samples


def run_concept_metrics(base, model, label, *, concept: Mapping[str, Any], real_new: Tensor | None,
                        x_val: Tensor | None, ev: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Validation loss at fixed levels and retention of a project model's fine-tune (module docstring):
    on ``real_new[:num_validation]`` (an MNIST class's held-out images, default 50) or ``x_val`` (the
    folder's held-out split; then also ``samples``, 16 of the concept, a tensor). The evaluation seed
    is the sweep's, the same for every run."""
    subject = RunSubject(base, model, label)
    x = real_new[: int(ev.get("num_validation", 50))] if real_new is not None else x_val
    if x is None or len(x) == 0:
        return {}
    kw = {**_eval_kwargs(ev), "retention_images": int(ev.get("retention_images", 45))}
    grid_kw = {"process": subject.process, "parameterization": subject.parameterization, "grid": kw["grid"],
               "seed": kw["seed"], "repeats": kw["repeats"]}  # fmt: skip
    items = subject.items((x, [str(i) for i in range(len(x))], [""] * len(x)), range(len(x)))
    if model is None:
        out = {"validation": validation_loss(subject.base, items, **grid_kw)}
    else:
        out = {"validation": validation_loss(model, items, baseline=subject.base, **grid_kw)}
        r_items, src = subject.retention_set(kw["retention_images"], kw["seed"], steps=kw["steps"])
        out["retention"] = retention(subject.base, model, r_items, source=src, **grid_kw)
    if real_new is None:  # a folder concept: 16 samples of it (an MNIST class's come with its FD)
        prompts = subject.eval_prompts(None) * 16
        out["samples"] = subject.sample("base" if model is None else "adapted", prompts, seed=kw["seed"],
                                        steps=kw["steps"])  # fmt: skip
    return out


def validate_pipeline(sweep) -> None:
    """What can fail before a pipeline sweep starts: the pipeline loads (offline), every configuration's
    timestep type resolves against its noise configuration, the image folders hold captioned images, the
    evaluation settings are valid."""
    if "images" not in sweep.concept:
        raise ValueError("a pipeline sweep needs [sweep] images = 'DIR' (a folder of captioned images)")
    lm = load_pipeline(sweep.base)
    for name, params in sweep.configs.items():
        try:
            resolve_noise(noise_arg(params), lm.noise)
        except ValueError as e:
            raise ValueError(f"configuration {name!r}: {e}") from None
    n = len(read_caption_folder(sweep.concept["images"]))
    if sweep.concept.get("validation_images"):
        read_caption_folder(sweep.concept["validation_images"])
    elif n < 2:
        raise ValueError(f"[sweep] images holds {n} image: hold-out needs 2 or more (or validation_images)")
    kw = _eval_kwargs(sweep.eval)
    for key in ("samples_per_prompt", "steps", "repeats", "retention_images"):
        if kw[key] < 1:
            raise ValueError(f"[eval] {key} must be >= 1; got {kw[key]}")
    feats = kw["features"]
    if feats is not None and not (Path(os.path.expanduser(str(feats))) / "config.json").is_file():
        raise ValueError(f"[eval] features = {feats!r} is not a local CLIP/DINO folder (no config.json)")
    prompts = kw["eval_prompts"]
    if prompts is not None and not (isinstance(prompts, list) and all(isinstance(p, str) for p in prompts)):
        raise ValueError(f"[eval] prompts must be a list of strings; got {prompts!r}")


def encode_pipeline_data(sweep, out: str | os.PathLike) -> dict[str, int]:
    """Encode the sweep's training and validation images once, before any run starts, into the shared
    cache ``OUT/cache``: for every distinct (resolution, trigger) of the configurations, the latents of
    both folders and the text embeddings of their captions (the runs then only read them). Returns the
    cache's counts."""
    data = pipeline_data(sweep.concept, out)
    folder = resolve_pipeline(sweep.base)
    lm = load_pipeline(folder).eval().requires_grad_(False)
    stats: dict[str, int] = {}
    seen = set()
    for params in sweep.configs.values():
        key = (params.get("resolution"), params.get("trigger"))
        if key in seen:
            continue
        seen.add(key)
        subject = PipelineSubject(lm, None, folder=folder, trigger=key[1], resolution=key[0],
                                  cache_dir=data["cache"])  # fmt: skip
        for f in (data["train"], data["validation"]):
            subject.read_images(f)
        for k, v in subject.cache.stats.items():
            stats[k] = stats.get(k, 0) + v
    return stats
