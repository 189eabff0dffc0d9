"""Optional feature metrics of generated samples on a local CLIP or DINO model (transformers format).

``--features PATH`` names a folder written by transformers' ``save_pretrained`` (model + image
processor, and for CLIP its tokenizer); it is read with ``local_files_only=True`` — nothing is
downloaded. On its image features (CLIP: the projected image embedding ``get_image_features``; DINO /
any other vision model: ``pooler_output``, else the first token of ``last_hidden_state``) and, for CLIP,
its text features:

* **image–text similarity** (CLIP only; CLIPScore without the ×2.5 rescale, Hessel et al. 2021 eq. 1):
  the cosine between each sample's image embedding and its prompt's text embedding, mean ± standard
  error over samples;
* **image–image similarity** (DreamBooth's CLIP-I / DINO score, Ruiz et al. 2023 §4.1): the mean cosine
  over all (sample, reference image) pairs, with the concept's held-out images as reference;
* **FD** on these features between the samples and the reference images
  (``noiselevels.runs.metrics.frechet_distance``; with a few dozen images it is dominated by the
  estimate's bias, so compare configurations, never absolute values).

Images enter as (N, C, H, W) in [−1, 1] (grey is repeated to RGB) and are prepared by the folder's own
image processor (resize, crop, normalisation) from uint8 arrays, as for a PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.runs.metrics import frechet_distance

__all__ = ["FeatureModel", "feature_metrics"]


class FeatureModel:
    """A local CLIP / DINO folder: ``image_features(images)`` (N, F) and, with a text tower,
    ``text_features(prompts)`` (N, F); float64 on the CPU."""

    def __init__(self, path: str | os.PathLike, *, device: str | torch.device = "cpu"):
        folder = Path(os.path.expanduser(str(path)))
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"--features {str(path)!r} is not a transformers model folder (no config.json); give a local "
                "CLIP or DINO folder written by save_pretrained (nothing is downloaded)"
            )
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        try:
            self.model = AutoModel.from_pretrained(
                str(folder), local_files_only=True, use_safetensors=True
            ).to(device).eval()
            self.processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot load the feature model in {str(path)!r}: {msg}") from None
        self.has_text = callable(getattr(self.model, "get_text_features", None))
        self.tokenizer = None
        if self.has_text:
            try:
                self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as e:
                raise ValueError(f"the CLIP folder {str(path)!r} has no usable tokenizer: {e}") from None
        self.device = device
        self.name = folder.name

    @staticmethod
    def _pooled(out: Any) -> Tensor:
        if isinstance(out, Tensor):
            return out
        if getattr(out, "pooler_output", None) is not None:
            return out.pooler_output
        return out.last_hidden_state[:, 0]

    @torch.no_grad()
    def image_features(self, images: Tensor, *, batch_size: int = 32) -> Tensor:
        """Features (N, F) of images (N, C, H, W) in [−1, 1], C = 1 or 3."""
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
            got = getattr(images, "shape", images)
            raise ValueError(f"images must have shape (N, 1 or 3, H, W); got {got}")
        x = images.float().clamp(-1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        u8 = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        out = []
        for start in range(0, len(u8), batch_size):
            batch = [np.ascontiguousarray(a) for a in u8[start : start + batch_size]]
            pix = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            if self.has_text:
                f = self._pooled(self.model.get_image_features(pixel_values=pix))
            else:
                f = self._pooled(self.model(pixel_values=pix))
            out.append(f.to("cpu", torch.float64))
        return torch.cat(out)

    @torch.no_grad()
    def text_features(self, prompts: Sequence[str]) -> Tensor:
        """Text embeddings (N, F) of the prompts (CLIP folders only)."""
        if not self.has_text:
            raise ValueError(f"the feature model {self.name!r} has no text model (image–text needs CLIP)")
        tok = self.tokenizer(list(prompts), padding=True, truncation=True, return_tensors="pt")
        tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
        return self._pooled(self.model.get_text_features(**tok)).to("cpu", torch.float64)


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T


def feature_metrics(
    model: FeatureModel,
    samples: Tensor,
    *,
    prompts: Sequence[str] | None = None,
    reference: Tensor | None = None,
) -> dict[str, Any]:
    """The metrics of the module docstring for ``samples`` (N, C, H, W) in [−1, 1]: ``image_text``
    (needs ``prompts``, one per sample, and a CLIP folder), ``image_image`` and ``fd`` (need
    ``reference`` images); each None when not computable, with the feature model's name."""
    fs = model.image_features(samples)
    out: dict[str, Any] = {"feature_model": model.name, "num_samples": len(fs), "image_text": None,
                           "image_text_stderr": None, "image_image": None, "fd": None}  # fmt: skip
    if prompts is not None and model.has_text:
        if len(prompts) != len(fs):
            raise ValueError(f"need one prompt per sample: {len(prompts)} prompts for {len(fs)} samples")
        sims = (torch.nn.functional.normalize(fs, dim=-1)
                * torch.nn.functional.normalize(model.text_features(prompts), dim=-1)).sum(-1)  # fmt: skip
        out["image_text"] = float(sims.mean())
        out["image_text_stderr"] = float(sims.std() / math.sqrt(len(sims))) if len(sims) > 1 else None
    if reference is not None:
        fr = model.image_features(reference)
        out["image_image"] = float(_cos(fs, fr).mean())
        out["num_reference"] = len(fr)
        if len(fs) > 1 and len(fr) > 1:
            out["fd"] = frechet_distance(fs, fr)
    return out
