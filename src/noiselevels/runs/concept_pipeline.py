"""A diffusers pipeline (``noiselevels.runs.families``) and its LoRA as the subject of a concept evaluation.

:class:`PipelineSubject` gives ``noiselevels.runs.concept.evaluate_concept`` what it needs of a latent model:

* **validation items**: the folder's images with their ``.txt`` captions (``runs.captions``: the trigger
  rule of ai-toolkit), bucketed around ``resolution`` (default: the pipeline's native size) and encoded
  to VAE latents with the text encoders' embeddings of their captions — through the on-disk
  ``runs.latent_cache`` (keyed by file content), so a sweep encodes its data once;
* **retention set**: regularisation images with their captions when given, else samples of the base
  model (``runs.families.generate``, the same seeds every time) for the retention prompts — the captions
  without the trigger word (``retention.without_trigger``), one sample each, cycling up to the size
  asked for;
* **samples** of the evaluation prompts (default: the first captions of the validation images) with the
  pipeline's default guidance at the evaluation size; sample j of every prompt uses the seed pair
  (seed, j), the same for every model.

Memory: the adapted model is a second copy of the pipeline with the LoRA loaded (``families.lora.
apply_adapter``), so a base and an adapter need twice the denoiser's memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.runs.captions import bucket_step, load_rgb, read_caption_folder, resize_to_bucket
from noiselevels.runs.concept import RunSubject, finetune_info
from noiselevels.runs.families import load_pipeline, resolve_pipeline
from noiselevels.runs.families.generate import generate_images
from noiselevels.runs.families.lora import apply_adapter, lora_info
from noiselevels.runs.latent_cache import LatentCache, default_cache_dir, model_identity, prepare_latent_data
from noiselevels.runs.retention import without_trigger
from noiselevels.runs.validation import Item

__all__ = ["PipelineSubject", "latent_multiple", "load_subject"]


def latent_multiple(lm: Any) -> int:
    """The multiple the denoiser needs of the latent's height and width: 2^(stages − 1) for a UNet, the
    patch size of an SD3 transformer, 2 for Flux (its 2×2 packing)."""
    if lm.family == "flux":
        return 2
    cfg = lm.network.config
    if lm.family == "sd3":
        return int(cfg.patch_size)
    return 2 ** (len(cfg.block_out_channels) - 1)


class PipelineSubject:
    """A pipeline's ``LatentModel`` (``base``) and optionally a copy with a LoRA (``adapted``)."""

    kind = "pipeline"

    def __init__(
        self,
        base: Any,
        adapted: Any = None,
        *,
        folder: str | os.PathLike,
        trigger: str | None = None,
        resolution: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        guidance: float | None = None,
        description: str = "",
    ):
        self.base, self.adapted = base, adapted
        self.process, self.parameterization = base.noise.process, base.noise.parameterization
        self.trigger, self.guidance = trigger, guidance
        self.resolution = int(resolution or base.native_resolution)
        self.folder = Path(folder)
        self.cache = LatentCache(cache_dir or default_cache_dir(), model_identity(self.folder, base.family))
        self.description = description or str(folder)
        self._captions: list[str] = []

    @classmethod
    def load(
        cls,
        spec: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        *,
        resolution: int | None = None,
        cache_dir: str | os.PathLike | None = None,
    ) -> PipelineSubject:
        """The pipeline ``spec`` (folder or cached hub id) and, with ``adapter``, a second copy with the
        LoRA; the trigger and resolution default to those the fine-tune recorded."""
        folder = resolve_pipeline(spec)
        base = load_pipeline(folder).eval().requires_grad_(False)
        adapted, info = None, {}
        if adapter is not None:
            sub = Path(os.path.expanduser(str(adapter))) / "adapter"
            adapter = sub if sub.is_dir() else adapter  # a fine-tune run folder: its adapter/
            info = {**lora_info(adapter), **finetune_info(adapter)}
            adapted = apply_adapter(load_pipeline(folder), adapter)
        return cls(
            base,
            adapted,
            folder=folder,
            trigger=info.get("trigger"),
            resolution=resolution or info.get("resolution"),
            cache_dir=cache_dir,
            description=f"{base.family} pipeline {spec}",
        )

    # -- data -------------------------------------------------------------------------------------
    def read_images(self, folder) -> tuple[Any, list[str], list[str]]:
        """The folder encoded for the model (``latent_cache.LatentData``), its file names and captions."""
        items = read_caption_folder(folder, trigger=self.trigger)
        step = bucket_step(self.base.vae_scale_factor, latent_multiple(self.base))
        data = prepare_latent_data(
            self.base,
            items,
            resolution=self.resolution,
            step=step,
            cache=self.cache,
            dtype=self.base.dtype,
            device=self.base.device,
        )
        caps = [it.caption for it in items]
        self._captions = caps
        return data, [it.path.name for it in items], caps

    def items(self, read: tuple[Any, list[str], list[str]], idx: Sequence[int]) -> list[Item]:
        """Validation items of the images ``idx`` of ``read`` (what :meth:`read_images` returned)."""
        data, out = read[0], []
        for i in idx:
            cap = data.items[i].caption
            cond = {k: v[0] for k, v in data.text[cap].items()}
            out.append(Item(data.latents[i].float(), cond, data.items[i].path.name))
        return out

    def pixels(self, read: tuple[Any, list[str], list[str]], idx: Sequence[int]) -> Tensor:
        """The images themselves (not the VAE's reconstruction), centre-cropped to resolution²."""
        data, r = read[0], self.resolution
        arrs = [resize_to_bucket(load_rgb(data.items[i].path), (r, r)) for i in idx]  # (3, r, r) in [−1, 1]
        return torch.from_numpy(np.stack(arrs))

    def retention_set(
        self, num: int, seed: int, *, steps: int = 12, regularisation_images: str | os.PathLike | None = None
    ) -> tuple[list[Item], str]:
        """Regularisation images (all of them) when given, else ``num`` base samples of the captions
        without the trigger (module docstring)."""
        if regularisation_images is not None:
            read = self.read_images(regularisation_images)
            return self.items(read, range(len(read[1]))), f"{len(read[1])} regularisation images"
        prompts = sorted(set(without_trigger(self._captions or [""], self.trigger)))
        chosen = [prompts[i % len(prompts)] for i in range(num)]
        out = []
        for j, p in enumerate(chosen):
            z = generate_images(
                self.base,
                p,
                num=1,
                height=self.resolution,
                width=self.resolution,
                steps=steps,
                seed=seed + 1000 + j,
                guidance=self.guidance,
                latents_only=True,
            )
            cond = {k: v[0] for k, v in self.base.encode_prompts([p]).items()}
            out.append(Item(z[0].float(), cond, f"retention{j}"))
        shown = ", ".join(repr(p) for p in prompts[:3]) + (" …" if len(prompts) > 3 else "")
        return out, f"{num} samples of the base model for the prompts without the trigger ({shown})"

    # -- samples ----------------------------------------------------------------------------------
    def eval_prompts(self, prompts: Sequence[str] | None) -> list[str]:
        if prompts:
            return [str(p) for p in prompts]
        caps = list(dict.fromkeys(self._captions)) or [self.trigger or ""]
        return caps[:2]

    def sample(self, which: str, prompts: Sequence[str], *, seed: int, steps: int) -> Tensor:
        """One image per entry of ``prompts``; the j-th occurrence of a prompt uses seeds (seed, j)."""
        model = self.base if which == "base" else self.adapted
        made = {
            p: generate_images(
                model,
                p,
                num=list(prompts).count(p),
                height=self.resolution,
                width=self.resolution,
                steps=steps,
                seed=seed,
                guidance=self.guidance,
            )
            for p in dict.fromkeys(prompts)
        }
        used = dict.fromkeys(made, 0)
        out = []
        for p in prompts:
            out.append(made[p][used[p]])
            used[p] += 1
        return torch.stack(out)


def load_subject(model: str | os.PathLike | None, adapter: str | os.PathLike | None = None):
    """The subject of ``noiselevels.runs.concept.evaluate_concept`` for ``model`` — a diffusers pipeline
    (:class:`PipelineSubject`) or a project base / run folder (``concept.RunSubject``) — with the fine-tune
    folder ``adapter`` attached (its recorded base when ``model`` is None)."""
    if model is not None and (Path(os.path.expanduser(str(model))) / "model_index.json").is_file():
        return PipelineSubject.load(model, adapter)
    return RunSubject.load(model, adapter)
