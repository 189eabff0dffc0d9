"""The model a σ grid is optimised for (``noiselevels spacing optimize --run SPEC``): ``grid_target``.

``SPEC`` is a run folder of ``noiselevels train``, a shipped base (``mnist-base``, ``mnist-all``), a
``.safetensors`` base of ``export_base``, or a diffusers pipeline (a folder with ``model_index.json``, a
cached hub id, or a loaded ``LatentModel``; ``noiselevels.runs.families``). The result is the
denoiser D(x, σ) of one fixed batch of ``num_samples`` conditions, the shape of one sample, examples
of the data (for the KL-bound criterion of stochastic solvers; None for pipelines) and the σ range the
model was trained on:

* class-conditional models: labels drawn uniformly from the classes the model was trained on (seeded),
  or all equal to ``class_label``; ``guidance`` w ≠ 1 is classifier-free guidance with the null label
  (D = D_u + w·(D_c − D_u), ``noiselevels.sampling.denoiser``), part of the problem the grid is fitted to;
* pipelines: prompts drawn (seeded, with replacement) from ``prompts``; ``guidance`` as the pipeline's
  (default: the pipeline's own scale); latents of the native resolution unless ``height``/``width``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noiselevels.runs.bases import load_base, real_by_class
from noiselevels.runs.data import balanced_indices
from noiselevels.runs.families import is_pipeline, load_pipeline
from noiselevels.runs.families.base import LatentModel
from noiselevels.runs.families.generate import _check_size, _denoiser
from noiselevels.runs.profile import profile_range
from noiselevels.runs.run import load_run
from noiselevels.sampling.denoiser import as_denoiser

__all__ = ["GridTarget", "grid_target"]


@dataclasses.dataclass
class GridTarget:
    """What ``optimize_spacing`` needs of a model: its denoiser for one batch of conditions, the shape
    of one sample, data examples (or None), the trained σ range (or None), a description, the dtype."""

    denoiser: Callable[[Tensor, Tensor], Tensor]
    shape: tuple[int, ...]
    x0: Tensor | None
    trained: tuple[float, float] | None
    source: str
    dtype: torch.dtype = torch.float32
    conditions: str = "unconditional"


def _check_guidance(guidance: Any) -> float | None:
    if guidance is None:
        return None
    if isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or guidance != guidance:
        raise ValueError(f"guidance must be a number (1 = none); got {guidance!r}")
    return float(guidance)


def _labels(classes: Sequence[int], n: int, seed: int, class_label: int | None) -> Tensor:
    if class_label is not None:
        if class_label not in classes:
            raise ValueError(f"class {class_label!r} is not one the model was trained on: {list(classes)}")
        return torch.full((n,), int(class_label), dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(classes), (n,), generator=g)
    return torch.tensor(list(classes), dtype=torch.long)[pick]


def _conditioned(model, noise_cfg, classes, num_samples, seed, guidance, class_label):
    """(denoiser, description) of a (possibly class-conditional) noiselevels model."""
    param = noise_cfg.objective().parameterization
    if classes is None:
        if class_label is not None or (guidance is not None and guidance != 1.0):
            raise ValueError("--class and --guidance need a class-conditional model")
        return as_denoiser(model, process=noise_cfg.process, parameterization=param), "unconditional"
    labels = _labels(classes, num_samples, seed, class_label)
    kw: dict[str, Any] = {"labels": labels}
    if guidance is not None and guidance != 1.0:
        kw.update(guidance=guidance, uncond={"labels": None})
    what = f"class {class_label}" if class_label is not None else f"labels drawn from classes {list(classes)}"
    if guidance is not None:
        what += f", guidance {guidance:g}"
    return as_denoiser(model, process=noise_cfg.process, parameterization=param, **kw), what


def grid_target(
    spec: str | Path | LatentModel,
    *,
    num_samples: int,
    seed: int = 0,
    guidance: float | None = None,
    class_label: int | None = None,
    prompts: Sequence[str] | None = None,
    height: int | None = None,
    width: int | None = None,
    with_data: bool = True,
) -> GridTarget:
    """The ``GridTarget`` of ``spec`` (module docstring); ValueError (one line) for what is not a model.
    ``with_data=False`` skips loading data examples of a base (x0 = None; only the KL-bound criterion of
    stochastic solvers needs them)."""
    guidance = _check_guidance(guidance)
    if isinstance(spec, LatentModel) or is_pipeline(spec):
        return _pipeline_target(spec, num_samples, seed, guidance, prompts, height, width)
    if prompts is not None:
        raise ValueError("--prompts is for diffusers pipelines; use --class for a class-conditional model")
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        return _run_target(path, num_samples, seed, guidance, class_label)
    return _base_target(spec, num_samples, seed, guidance, class_label, with_data)


def _run_target(path: Path, num_samples, seed, guidance, class_label) -> GridTarget:
    run = load_run(path)
    classes = None
    if run.conditional:
        classes = run.config.data.classes if getattr(run.config.data, "classes", None) else None
        classes = list(classes) if classes is not None else list(range(int(run.config.model["num_classes"])))
    den, what = _conditioned(run.model, run.noise, classes, num_samples, seed + 2, guidance, class_label)
    train = run.config.data.load("train")  # class-ordered on disk: take a class-balanced subset
    pick = balanced_indices(train, min(num_samples, len(train)), seed=seed + 1)
    x0 = train.data[pick].to(torch.float32)
    return GridTarget(den, tuple(x0.shape[1:]), x0, run.trained_sigma_range(), f"run {path}",
                      conditions=what)


def _base_target(spec, num_samples, seed, guidance, class_label, with_data) -> GridTarget:
    base = load_base(spec)
    shape = tuple(int(s) for s in base.data["shape"])
    classes = base.trained_classes if base.num_classes is not None else None
    den, what = _conditioned(base.model, base.noise, classes, num_samples, seed + 2, guidance, class_label)
    x0 = None
    if with_data:
        data, labels = real_by_class(shape)
        if classes is not None:
            data = data[torch.isin(labels, torch.tensor(classes))]
        g = torch.Generator().manual_seed(seed + 1)
        x0 = data[torch.randperm(data.shape[0], generator=g)[:num_samples]].to(torch.float32)
    lo, hi = profile_range(base.noise.density)
    trained = (math.exp(-hi / 2), math.exp(-lo / 2))
    return GridTarget(den, shape, x0, trained, f"base {spec}", conditions=what)


def _pipeline_target(spec, num_samples, seed, guidance, prompts, height, width) -> GridTarget:
    if not prompts:
        raise ValueError("a pipeline needs prompts: --prompt TEXT or --prompts FILE (one prompt a line)")
    model = spec if isinstance(spec, LatentModel) else load_pipeline(spec)
    h, w = _check_size(model, height or model.native_resolution, width or model.native_resolution)
    g = torch.Generator().manual_seed(seed + 2)
    chosen = [prompts[int(i)] for i in torch.randint(len(prompts), (num_samples,), generator=g)]
    with torch.no_grad():
        cond = model.encode_prompts(chosen)
    den = _denoiser(model, cond, None, guidance, None)
    scale = model.default_guidance if guidance is None else guidance
    what = f"{len(set(chosen))} prompts, guidance {scale:g}"
    return GridTarget(den, (model.latent_channels, h, w), None, tuple(model.sigma_range()),
                      f"pipeline {spec}", conditions=what)
