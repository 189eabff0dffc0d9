"""Model families: a diffusers pipeline as the project's model at noise level λ.

``load_pipeline(spec)`` reads a diffusers pipeline folder (with ``model_index.json``) or a hub id from
the local Hugging Face cache (offline; never downloads), detects the family from ``model_index.json``'s
``_class_name`` and returns its adapter, a ``LatentModel`` (``base.py``):

=========  ==============================  =========================  ===========================
family     pipeline class                  network                    process / timestep
=========  ==============================  =========================  ===========================
``sd``     StableDiffusionPipeline         UNet2DConditionModel       DDPM β table (ε / v), t ∈ [0, T)
``sdxl``   StableDiffusionXLPipeline       UNet2DConditionModel       as sd + pooled text, time ids
``sd3``    StableDiffusion3Pipeline        SD3Transformer2DModel      flow, 1000·σ
``flux``   FluxPipeline                    FluxTransformer2DModel     flow, σ; packed 2×2 latents
=========  ==============================  =========================  ===========================

The adapter is the objective's model (``model(z, λ, **cond)`` → the prediction of
``model.noise.parameterization``'s target), a denoiser for the project's solvers
(``model.denoiser(cond, guidance_scale=w)``, ``solve_latents``), and carries the VAE
(``encode_images`` / ``decode_latents``), the text encoders (``encode_prompts``), the scheduler's own
grid (``scheduler_grid``) and the LoRA target modules (``default_lora_targets``). Tiny random pipelines
of every family for tests and trials: ``tiny.build_tiny_pipeline``.

**Adding a family** (Qwen-Image, Lumina, Wan, … follow the same pattern): write a ``LatentModel``
subclass in a module here with

1. ``family``, ``pipeline_class`` (the ``_class_name`` in model_index.json), ``cond_keys``,
   ``default_lora_targets`` (cite the training script they come from), ``default_guidance``;
2. ``_network(pipe)`` (the denoising module), ``_noise_config()`` (the process and parameterisation of
   its scheduler: most new models are flow models and reuse ``flow._flow_noise``);
3. ``encode_prompts(prompts)`` → per-row tensors (use the pipeline's own ``encode_prompt``);
4. ``timestep(λ)`` — the network's own time convention (read the pipeline's denoising loop: what it
   passes as ``timestep`` and whether the network rescales it) — and ``_predict(z, λ, cond)`` with the
   family's extra inputs (packing, position ids, masks), returning unpacked latents;
5. ``scheduler_grid(steps, height=, width=)`` replaying the pipeline's ``set_timesteps`` call, and
   ``image_seq_len`` if the network sees tokens;

then add it to ``FAMILIES`` below, a builder to ``tiny.py``, and the family to the parametrised tests in
tests/runs/families (the pipeline-equality test is what proves steps 4 and 5).
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import torch

from noiselevels.runs.families.base import LatentModel, PipelineDenoiser, SchedulerGrid, solve_latents
from noiselevels.runs.families.flow import Flux, StableDiffusion3
from noiselevels.runs.families.sd import StableDiffusion, StableDiffusionXL

__all__ = [
    "FAMILIES",
    "LatentModel",
    "PipelineDenoiser",
    "SchedulerGrid",
    "family_of",
    "is_pipeline",
    "load_pipeline",
    "resolve_pipeline",
    "solve_latents",
]

FAMILIES: dict[str, type[LatentModel]] = {
    cls.family: cls for cls in (StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux)
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _supported() -> str:
    return ", ".join(f"{c.pipeline_class} ({name})" for name, c in FAMILIES.items())


def is_pipeline(spec: Any) -> bool:
    """Whether ``spec`` names a diffusers pipeline: a folder with model_index.json, or a string of the
    form owner/name that is not an existing path (a hub id; ``load_pipeline`` says if it is not cached)."""
    if not isinstance(spec, (str, Path)):
        return False
    path = Path(spec)
    if path.exists():
        return (path / "model_index.json").is_file()
    return bool(_HUB_ID.match(str(spec)))


def resolve_pipeline(spec: str | Path) -> Path:
    """The local folder of a pipeline folder or a hub id in the local Hugging Face cache (offline)."""
    path = Path(spec)
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"{spec} is not a diffusers pipeline folder (it has no model_index.json)")
        return path
    if not _HUB_ID.match(str(spec)):
        raise ValueError(f"{spec!r} is neither a folder nor a Hugging Face hub id (owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(str(spec), local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        folder = None
    if folder is None or not (folder / "model_index.json").is_file():
        raise ValueError(
            f"{spec} is no folder here, and as a hub id it is not in the local Hugging Face cache (offline; "
            f"nothing is downloaded): download it first (`huggingface-cli download {spec}`) or pass a folder"
        )
    return folder


def family_of(folder: str | Path) -> str:
    """The family name of a pipeline folder from model_index.json's ``_class_name``."""
    index = json.loads((Path(folder) / "model_index.json").read_text())
    name = index.get("_class_name") if isinstance(index, dict) else None
    for family, cls in FAMILIES.items():
        if cls.pipeline_class == name:
            return family
    raise ValueError(f"{folder}: pipeline class {name!r} is not supported; supported: {_supported()}")


def load_pipeline(
    spec: str | Path, *, dtype: torch.dtype = torch.float32, device: Any = "cpu"
) -> LatentModel:
    """The ``LatentModel`` of a diffusers pipeline folder or cached hub id (see the module docstring).

    Weights are read from safetensors only (``use_safetensors=True``: no pickle). Raises ValueError
    with one line for a path that is not a pipeline, a hub id that is not cached, or an unsupported
    pipeline class (naming the supported ones).
    """
    folder = resolve_pipeline(spec)
    family = family_of(folder)
    from diffusers import DiffusionPipeline

    with _quiet_loading():
        pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    return FAMILIES[family](pipe)


@contextlib.contextmanager
def _quiet_loading():
    """diffusers' and transformers' loading progress bars off while loading (restored afterwards)."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    was = [(m, m.is_progress_bar_enabled()) for m in (dlog, tlog)]
    for m, _ in was:
        m.disable_progress_bar()
    try:
        yield
    finally:
        for m, enabled in was:
            if enabled:
                m.enable_progress_bar()
