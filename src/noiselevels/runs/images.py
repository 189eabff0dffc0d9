"""Small image helpers with PIL and numpy (no torchvision).

Images are tensors with values in [−1, 1]: one image (C, H, W) or a batch (N, C, H, W), C = 1 or 3.
Conversion to 8 bits is ``round((x + 1)·127.5)`` clamped to 0..255; loading is the inverse
``u8/127.5 − 1``, so save → load round-trips a tensor quantised to 8 bits exactly.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from noiselevels.options import check_memory

__all__ = ["load_image", "load_image_pil", "make_grid", "resize_center_crop", "save_image", "to_uint8"]


def _check_images(images: Tensor, what: str = "images") -> Tensor:
    if not isinstance(images, Tensor):
        raise ValueError(f"{what} must be a torch tensor; got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"{what} must have shape (N, C, H, W) or (C, H, W) with C = 1 or 3; got {tuple(images.shape)}"
        )
    return images


def to_uint8(images: Tensor) -> np.ndarray:
    """[−1, 1] floats → uint8 array with channels last: (N, H, W, C) or (H, W, C) for one image.
    NaN maps to 0."""
    x = images.detach().to("cpu", torch.float32)
    x = torch.nan_to_num((x + 1.0) * 127.5, nan=0.0).round().clamp(0, 255).to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def make_grid(images: Tensor, nrow: int = 8, *, padding: int = 2, pad_value: float = -1.0) -> Tensor:
    """Tile a batch (N, C, H, W) into one image (C, H', W') with ``nrow`` images per row.

    H' = rows·(H + padding) + padding with rows = ceil(N / nrow) and W' = ncol·(W + padding) + padding
    with ncol = min(nrow, N); the gaps and unused cells are filled with ``pad_value``.
    """
    images = _check_images(images)
    if isinstance(nrow, bool) or not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be an integer >= 1; got {nrow!r}")
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0; got {padding!r}")
    n, c, h, w = images.shape
    if n == 0:
        raise ValueError("make_grid needs at least one image; got an empty batch")
    ncol = min(nrow, n)
    rows = math.ceil(n / ncol)
    grid = images.new_full((c, rows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value)
    for k in range(n):
        r, q = divmod(k, ncol)
        y, x = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y : y + h, x : x + w] = images[k]
    return grid


def save_image(images: Tensor, path: str | os.PathLike, *, nrow: int = 8, padding: int = 2) -> Path:
    """Write one image (C, H, W) or a grid of a batch (N, C, H, W) in [−1, 1] to ``path`` (format from
    the suffix: .png, .jpg, ...). Parent folders are created. Returns the path."""
    images = _check_images(images)
    img = images[0] if images.shape[0] == 1 else make_grid(images, nrow, padding=padding)
    arr = to_uint8(img)
    from PIL import Image

    pil = Image.fromarray(arr[..., 0], mode="L") if arr.shape[-1] == 1 else Image.fromarray(arr, mode="RGB")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pil.save(path)
    except (KeyError, ValueError) as e:
        raise ValueError(f"cannot save image to {str(path)!r}: unknown or unsupported format ({e})") from e
    return path


def load_image_pil(path: str | os.PathLike):
    """Open an image file with PIL as mode ``L`` (grayscale) or ``RGB``; RGBA/LA are composited on black,
    palette and 16-bit images converted. Unreadable files raise ``ValueError`` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                out = Image.alpha_composite(black, rgba)
                return out.convert("L" if mode == "LA" else "RGB")
            if mode in ("L", "RGB"):
                return im.copy()
            if mode in ("1", "I", "I;16", "I;16B", "I;16L", "F"):
                a = np.asarray(im, dtype=np.float64)
                hi = 1.0 if mode == "1" else (65535.0 if a.max() > 255 else 255.0)
                return Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from None


def resize_center_crop(image, size: int):
    """Resize a PIL image so its shorter side is ``size`` (bicubic; box filter when shrinking a lot),
    then crop the centre size×size."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0 if scale < 0.5 else None)
    left, top = (nw - size) // 2, (nh - size) // 2
    return image.crop((left, top, left + size, top + size))


def load_image(path: str | os.PathLike, *, size: int | None = None, channels: int | None = None) -> Tensor:
    """Load an image file as a tensor (C, H, W) in [−1, 1] (float32).

    ``channels`` 1 or 3 converts (default: 1 for grayscale files, 3 otherwise); ``size`` resizes the
    shorter side and centre-crops to size×size.
    """
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be an integer >= 1; got {size!r}")
    if size is not None:
        check_memory(3 * 4 * 3 * size * size, f"size {size}", "give a smaller size")
    im = load_image_pil(path)
    if channels is not None:
        im = im.convert("L" if channels == 1 else "RGB")
    if size is not None:
        im = resize_center_crop(im, size)
    a = torch.from_numpy(np.asarray(im, dtype=np.float32).copy())
    a = a.unsqueeze(0) if a.ndim == 2 else a.permute(2, 0, 1)
    return a / 127.5 - 1.0
