"""Image folders as fine-tuners keep them: same-name ``.txt`` captions, a trigger word, aspect-ratio buckets.

**Layout** (kohya sd-scripts and ai-toolkit): ``DIR/name.png`` with its caption in ``DIR/name.txt`` (UTF-8).
The whole file, stripped, is the caption (ai-toolkit ``toolkit/dataloader_mixins.py`` ``load_caption``;
kohya's ``library/train_util.py`` ``read_caption`` keeps only the first line unless wildcards are on — a
one-line caption reads the same in both). An image without a ``.txt`` has the empty caption (ai-toolkit's
behaviour; the trigger is still added). Images: ``.png .jpg .jpeg .webp .bmp`` (case-insensitive), sorted by
name; sub-folders are not read.

**Trigger** (``--trigger WORD``; ai-toolkit 27a03a9 ``toolkit/prompt_utils.py``
``inject_trigger_into_prompt``):
every ``[trigger]`` (and ``[name]``) in the caption is replaced by the word; if the word then does not occur
in the caption it is prepended with one space (``"WORD " + caption``). Without ``--trigger`` the
placeholders are removed. kohya has no trigger option of its own (its ``caption_prefix`` prepends
unconditionally); the ai-toolkit rule is the one used.

**Caption dropout** (``--caption-dropout p``): with probability p a training sample's caption is the empty
string — ai-toolkit's ``caption_dropout_rate`` returns ``''`` before the trigger is injected, so the
dropped caption has no trigger either (the unconditional prompt of classifier-free guidance).

**Odd images** (PIL and numpy only): the EXIF orientation is applied first (``ImageOps.exif_transpose``, as
ai-toolkit does); palette, 16-bit, CMYK and grayscale images are converted to RGB; an alpha channel is
composited onto white (kohya's ``load_image`` ``convert("RGB")`` drops alpha and keeps whatever colour the
transparent pixels hold — usually black — which trains the model on an unseen background); images smaller
than their bucket are up-scaled (kohya's default, ``bucket_no_upscale`` off), and how many were is reported.

**Buckets** (kohya ``library/model_util.py`` ``make_bucket_resolutions`` and ``train_util.BucketManager``,
sd-scripts 48d368f): for a target ``resolution`` R and a size step s (a multiple of the latent's
down-sampling, :func:`bucket_step`), the buckets are (R', R') with R' = ⌊R/s⌋·s and, for every width
w = min_size, min_size + s, …, max_size, the pair (w, h) and (h, w) with h = min(max_size, ⌊(R²/w)/s⌋·s)
when h ≥ min_size. kohya's defaults are min 256 / max 1024 at R = 512; here min_size = max(s, ⌊R/2⌋ rounded
down to s) and max_size = 2R, the same ratios at any R. An image of aspect a = W/H goes to the bucket of
least |a_bucket − a| (kohya ``select_bucket``), is resized so that it covers the bucket (the side whose
ratio is tighter matches exactly) with PIL's Lanczos filter, and centre-cropped (kohya crops centred unless
``random_crop``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "CaptionedImage",
    "apply_trigger",
    "bucket_resolutions",
    "bucket_step",
    "cover_crop",
    "drop_captions",
    "load_rgb",
    "read_caption_folder",
    "resize_to_bucket",
    "select_bucket",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_PLACEHOLDERS = ("[trigger]", "[name]")


@dataclasses.dataclass(frozen=True)
class CaptionedImage:
    """One image of the folder: its path, the caption after the trigger rule, the raw caption, the
    SHA-256 of the image file's bytes (the cache key) and its size (width, height) after EXIF rotation."""

    path: Path
    caption: str
    raw_caption: str
    sha256: str
    size: tuple[int, int]


def apply_trigger(caption: str, trigger: str | None) -> str:
    """ai-toolkit's rule (module docstring): ``[trigger]``/``[name]`` → ``trigger``; prepend ``trigger``
    and a space when it does not occur in the caption; without a trigger the placeholders are removed."""
    if not isinstance(caption, str):
        raise TypeError(f"caption must be a string; got {type(caption).__name__}")
    word = "" if trigger is None else trigger
    if not isinstance(word, str):
        raise TypeError(f"trigger must be a string or None; got {type(trigger).__name__}")
    out = caption
    for ph in _PLACEHOLDERS:
        out = out.replace(ph, word)
    if word.strip() and out.count(word) == 0:
        out = word + " " + out
    return out


def drop_captions(captions: Sequence[str], p: float, generator) -> list[str]:
    """Caption dropout: each caption is replaced by ``""`` with probability ``p`` (draws from the torch
    ``generator``, one per caption, so a run is reproducible)."""
    if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1):
        raise ValueError(f"caption dropout must be a probability in [0, 1]; got {p!r}")
    if p == 0:
        return list(captions)
    u = torch.rand(len(captions), generator=generator)
    return ["" if float(ui) < p else c for ui, c in zip(u, captions)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_rgb(path: str | os.PathLike):
    """The image at ``path`` as an RGB ``PIL.Image``: EXIF orientation applied, alpha composited onto
    white, any other mode converted. Raises ``ValueError`` naming the file when PIL cannot read it."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: scale to 8 bits before RGB
        arr = np.asarray(im, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB") if im.mode != "RGB" else im


def _display_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed, read from the header without decoding the pixels: EXIF orientations
    5–8 (a quarter turn) swap the stored width and height."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def read_caption_folder(folder: str | os.PathLike, *, trigger: str | None = None) -> list[CaptionedImage]:
    """The folder's images with their captions (module docstring), sorted by file name.

    Raises ``ValueError`` when the folder does not exist, holds no image, or an image or caption file
    cannot be read (not UTF-8)."""
    root = Path(os.path.expanduser(str(folder)))
    if not root.is_dir():
        raise ValueError(f"image folder {str(folder)!r} does not exist or is not a directory")
    if trigger is not None and (not isinstance(trigger, str) or not trigger.strip()):
        raise ValueError(f"trigger must be a non-empty word; got {trigger!r}")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"image folder {str(folder)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    out = []
    for p in files:
        cap_path = p.with_suffix(".txt")
        raw = ""
        if cap_path.is_file():
            try:
                raw = cap_path.read_text(encoding="utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"caption file {str(cap_path)!r} is not UTF-8 text") from None
        size = _display_size(p)
        out.append(CaptionedImage(p, apply_trigger(raw, trigger), raw, _sha256(p), size))
    return out


def bucket_step(vae_factor: int, latent_multiple: int) -> int:
    """The size step of the buckets in pixels: the VAE's down-sampling factor times the multiple the
    denoiser needs of the latent's height and width (a UNet with k down-sampling stages: 2^k; a patched
    transformer: its patch size; Flux: 2, its 2×2 packing). SD 1.5: 8·8 = 64, SDXL 8·4 = 32, SD3 8·2 = 16,
    Flux 8·2 = 16."""
    for name, v in (("vae_factor", vae_factor), ("latent_multiple", latent_multiple)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    return vae_factor * latent_multiple


def bucket_resolutions(resolution: int, step: int) -> list[tuple[int, int]]:
    """The (width, height) buckets around ``resolution`` (module docstring), sorted."""
    for name, v in (("resolution", resolution), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    if resolution < step:
        raise ValueError(f"resolution {resolution} is smaller than the bucket step {step} of this model")
    area = resolution * resolution
    min_size = max(step, (resolution // 2) // step * step)
    max_size = 2 * resolution
    side = int(math.isqrt(area) // step) * step
    resos = {(side, side)}
    w = min_size
    while w <= max_size:
        h = min(max_size, (area // w) // step * step)
        if h >= min_size:
            resos.add((w, h))
            resos.add((h, w))
        w += step
    return sorted(resos)


def select_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The bucket of least aspect-ratio error |w_b/h_b − width/height| (ties: the first in ``buckets``);
    an exact size match wins (kohya ``select_bucket``)."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1×1; got {width}×{height}")
    if (width, height) in buckets:
        return (width, height)
    a = width / height
    errs = [abs(bw / bh - a) for bw, bh in buckets]
    return tuple(buckets[int(np.argmin(errs))])


def cover_crop(size: tuple[int, int], bucket: tuple[int, int]) -> tuple[int, int, int, int]:
    """(resized width, resized height, crop left, crop top) of an image of ``size`` = (width, height)
    resized to cover ``bucket`` = (width, height) and centre-cropped to it (kohya: the side whose ratio
    is tighter matches exactly)."""
    (w, h), (bw, bh) = size, bucket
    scale = bh / h if w / h > bw / bh else bw / w
    rw, rh = max(bw, int(w * scale + 0.5)), max(bh, int(h * scale + 0.5))
    return rw, rh, (rw - bw) // 2, (rh - bh) // 2


def resize_to_bucket(image, bucket: tuple[int, int]) -> np.ndarray:
    """``image`` (RGB PIL) resized to cover ``bucket`` = (width, height) and centre-cropped to it, as a
    float32 array (3, height, width) in [−1, 1]."""
    from PIL import Image

    bw, bh = bucket
    rw, rh, left, top = cover_crop(image.size, bucket)
    im = image.resize((rw, rh), Image.Resampling.LANCZOS) if (rw, rh) != image.size else image
    im = im.crop((left, top, left + bw, top + bh))
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
