"""VAE latents and text embeddings computed once and kept on disk, so a sweep of N runs encodes its data once.

A fine-tune of a latent model (``noiselevels.runs.finetune_latent``) trains on the VAE latents of its images
and the text encoders' embeddings of their captions; neither depends on the noise levels, the LoRA or the
seed, so they are computed once and every later run with the same images, model and bucket reads them.

**Keys.** One safetensors file per entry, named by a SHA-256 over:

* a latent: the image file's content hash (not its name or date), the model identity, the bucket
  (width, height) and the dtype;
* a text embedding: the caption text, the model identity and the dtype.

The **model identity** (:func:`model_identity`) hashes the model family and, for every file of the
pipeline folder's VAE, text encoder and tokenizer components, its relative path, size and modification time
(not its bytes: a 10 GB text encoder is not re-read per run); replacing a weight file or re-saving the
pipeline changes the identity, a copied or renamed image folder does not.

**Files.** ``DIR/latents/<key>.safetensors`` (tensor ``latent``: (C, h, w) as the VAE returned it, scaled
and shifted) and ``DIR/text/<key>.safetensors`` (the tensors of ``encode_prompts`` for one caption, first
dimension 1). Each is written to a temporary name in the same folder and moved into place with
``os.replace`` (atomic on POSIX), so an interrupted run leaves no half-written entry and parallel runs of a
sweep may share the folder. The default folder is ``$NOISELEVELS_CACHE`` or ``~/.cache/noiselevels/latents``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.runs.captions import (
    CaptionedImage,
    bucket_resolutions,
    load_rgb,
    resize_to_bucket,
    select_bucket,
)

__all__ = [
    "LatentCache",
    "LatentData",
    "default_cache_dir",
    "model_identity",
    "prepare_latent_data",
]

_COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2",
               "tokenizer_3")  # fmt: skip


def default_cache_dir() -> Path:
    """``$NOISELEVELS_CACHE`` or ``~/.cache/noiselevels/latents``."""
    env = os.environ.get("NOISELEVELS_CACHE")
    return Path(os.path.expanduser(env)) if env else Path.home() / ".cache" / "noiselevels" / "latents"


def model_identity(folder: str | os.PathLike, family: str) -> str:
    """A hex digest naming the encoders of the pipeline in ``folder`` (module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"pipeline folder {str(folder)!r} does not exist")
    parts: list[Any] = [family]
    for comp in _COMPONENTS:
        d = root / comp
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_file():
                st = p.stat()
                parts.append([str(p.relative_to(root)), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class LatentCache:
    """The cache folder ``root`` for one model ``identity`` (module docstring); counts what it computed
    (``encoded_images``, ``encoded_prompts``) and what it read (``read_images``, ``read_prompts``)."""

    def __init__(self, root: str | os.PathLike, identity: str):
        if not isinstance(identity, str) or not identity:
            raise ValueError(f"identity must be a non-empty string; got {identity!r}")
        self.root = Path(os.path.expanduser(str(root)))
        self.identity = identity
        self.stats = {"encoded_images": 0, "read_images": 0, "encoded_prompts": 0, "read_prompts": 0}

    def latent_path(self, sha256: str, bucket: tuple[int, int], dtype: torch.dtype) -> Path:
        key = _key("latent", sha256, self.identity, list(bucket), str(dtype))
        return self.root / "latents" / f"{key}.safetensors"

    def text_path(self, caption: str, dtype: torch.dtype) -> Path:
        return self.root / "text" / f"{_key('text', caption, self.identity, str(dtype))}.safetensors"

    @staticmethod
    def _read(path: Path) -> dict[str, Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        if not path.is_file():
            return None
        try:
            return load_file(str(path))
        except (SafetensorError, OSError):  # a damaged entry is recomputed and replaced
            return None

    @staticmethod
    def _write(path: Path, tensors: Mapping[str, Tensor]) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, path)

    def latents(self, items: Sequence[tuple[CaptionedImage, tuple[int, int]]],
                encode: Callable[[Tensor], Tensor], *, dtype: torch.dtype, device: Any,
                batch_size: int = 4) -> list[Tensor]:  # fmt: skip
        """The latent of each (image, bucket): read from the cache, or encoded with ``encode`` (pixels
        (B, 3, H, W) in [−1, 1] → latents) in batches of one bucket and written."""
        out: list[Tensor | None] = []
        todo: dict[tuple[int, int], list[int]] = {}
        for i, (img, bucket) in enumerate(items):
            hit = self._read(self.latent_path(img.sha256, bucket, dtype))
            out.append(None if hit is None else hit["latent"])
            if hit is None:
                todo.setdefault(bucket, []).append(i)
            else:
                self.stats["read_images"] += 1
        for bucket, idx in todo.items():
            for j in range(0, len(idx), batch_size):
                chunk = idx[j : j + batch_size]
                px = np.stack([resize_to_bucket(load_rgb(items[i][0].path), bucket) for i in chunk])
                with torch.no_grad():
                    lat = encode(torch.from_numpy(px).to(device=device, dtype=dtype))
                for i, z in zip(chunk, lat):
                    out[i] = z.detach().to("cpu")
                    self._write(self.latent_path(items[i][0].sha256, bucket, dtype), {"latent": out[i]})
                self.stats["encoded_images"] += len(chunk)
        return out  # type: ignore[return-value]

    def prompts(self, captions: Iterable[str], encode: Callable[[list[str]], dict[str, Tensor]],
                *, dtype: torch.dtype) -> dict[str, dict[str, Tensor]]:  # fmt: skip
        """The text embeddings of each distinct caption (first dimension 1): read, or encoded one
        caption at a time with ``encode`` and written."""
        out: dict[str, dict[str, Tensor]] = {}
        for c in dict.fromkeys(captions):
            path = self.text_path(c, dtype)
            hit = self._read(path)
            if hit is None:
                with torch.no_grad():
                    emb = encode([c])
                if not isinstance(emb, Mapping) or not all(isinstance(v, Tensor) for v in emb.values()):
                    raise TypeError(f"encode_prompts must return a dict of tensors; got {type(emb).__name__}")
                hit = {k: v.detach().to("cpu") for k, v in emb.items()}
                self._write(path, hit)
                self.stats["encoded_prompts"] += 1
            else:
                self.stats["read_prompts"] += 1
            out[c] = hit
        return out


@dataclasses.dataclass
class LatentData:
    """A captioned folder encoded for one model: per image its latent (C, h, w), bucket and caption;
    the text embeddings of every caption (and of ``""``, the dropped caption); the images per bucket."""

    items: list[CaptionedImage]
    latents: list[Tensor]
    buckets: list[tuple[int, int]]
    text: dict[str, dict[str, Tensor]]
    stats: dict[str, int]
    upscaled: int

    def by_bucket(self) -> dict[tuple[int, int], list[int]]:
        out: dict[tuple[int, int], list[int]] = {}
        for i, b in enumerate(self.buckets):
            out.setdefault(b, []).append(i)
        return dict(sorted(out.items()))

    def text_batch(self, captions: Sequence[str], device: Any = None) -> dict[str, Tensor]:
        """The conditioning of a batch: each caption's tensors concatenated along the first dimension."""
        keys = self.text[captions[0]].keys()
        out = {}
        for k in keys:
            parts = [self.text[c][k] for c in captions]
            shapes = {tuple(p.shape[1:]) for p in parts}
            if len(shapes) > 1:
                raise ValueError(f"text embedding {k!r} differs in shape across captions: {sorted(shapes)}")
            out[k] = torch.cat(parts).to(device)
        return out


def prepare_latent_data(
    latent_model,
    items: Sequence[CaptionedImage],
    *,
    resolution: int,
    step: int,
    cache: LatentCache,
    dtype: torch.dtype = torch.float32,
    device: Any = "cpu",
    text_dtype: torch.dtype | None = None,
) -> LatentData:
    """Bucket ``items`` around ``resolution`` (size step ``step``), and get every image's latent and every
    caption's text embedding (plus ``""``) through ``cache``: computed with ``latent_model.encode_images`` /
    ``encode_prompts`` only when not cached. ``dtype``: the pixels' (and the latent key's) dtype;
    ``text_dtype`` (default ``dtype``): the text encoders' (the text key's)."""
    if not items:
        raise ValueError("no images to encode")
    resos = bucket_resolutions(resolution, step)
    buckets = [select_bucket(*it.size, resos) for it in items]
    upscaled = sum(1 for it, (bw, bh) in zip(items, buckets) if it.size[0] < bw or it.size[1] < bh)
    latents = cache.latents(list(zip(items, buckets)), latent_model.encode_images, dtype=dtype, device=device)
    text = cache.prompts([it.caption for it in items] + [""], latent_model.encode_prompts,
                         dtype=dtype if text_dtype is None else text_dtype)  # fmt: skip
    return LatentData(list(items), latents, buckets, text, dict(cache.stats), upscaled)
