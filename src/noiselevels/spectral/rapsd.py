"""Radially averaged power spectral density (RAPSD) of images.

With the unitary 2-D DFT X = fft2(x, norm="ortho") (so Σ|X|² = Σx², Parseval) the RAPSD of an image is
P(f) = mean of |X(k)|² over the ring of the frequency plane at radius f (cycles/pixel), averaged over
channels. Ring r holds the coefficients with round(|k|·N) = r, N = max(H, W); its frequency is r/N.
White noise of variance s² has P(f) = s² in every ring (in expectation), so the noise of
z = α·x + σ·ε has P_noise(f) = σ² and the SNR of frequency f is α²·P(f)/σ² = e^λ·P(f): the
*per-frequency* noise level is λ_f = λ + log P(f) (λ = log(α²/σ²)).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor

__all__ = ["rapsd", "rings"]

_F64 = torch.float64


def _check_images(images: Any, what: str = "images") -> Tensor:
    """(B, C, H, W) or (B, H, W) finite images → float64 (B, C, H, W); clear errors otherwise."""
    if not isinstance(images, Tensor):
        try:
            images = torch.as_tensor(images)
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"{what} must be a tensor of shape (B, C, H, W); got {type(images).__name__}"
            ) from e
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"{what} must have shape (B, C, H, W) or (B, H, W); got {tuple(images.shape)}")
    b, _, h, w = images.shape
    if b == 0 or images.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {tuple(images.shape)}")
    if h < 2 or w < 2:
        raise ValueError(f"{what} must be at least 2×2 pixels to have a spectrum; got {h}×{w}")
    x = images.detach().to("cpu", _F64)
    bad = ~torch.isfinite(x).flatten(1).all(1)
    if bad.any():
        idx = torch.nonzero(bad).flatten().tolist()
        raise ValueError(
            f"{what} contain NaN or inf pixels (image index {idx[:5]}{'...' if len(idx) > 5 else ''})"
        )
    return x


@functools.lru_cache(maxsize=32)
def _ring_table(h: int, w: int) -> tuple[Tensor, Tensor, Tensor]:
    """(freqs (F,), flat ring index (H·W,), counts (F,)) of the non-empty rings of an H×W plane."""
    n = max(h, w)
    fy = torch.fft.fftfreq(h, dtype=_F64)
    fx = torch.fft.fftfreq(w, dtype=_F64)
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    k = torch.round(r * n).long().flatten()
    counts = torch.bincount(k).to(_F64)
    present = torch.nonzero(counts > 0).flatten()
    remap = torch.full((counts.numel(),), -1, dtype=torch.long)
    remap[present] = torch.arange(present.numel())
    return present.to(_F64) / n, remap[k], counts[present]


def rings(height: int, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ring partition of an H×W frequency plane.

    Returns ``(freqs (F,), index (H, W), counts (F,))``: ring frequencies r/N in cycles/pixel
    (N = max(H, W), float64, increasing, ring 0 = DC alone), each DFT coefficient's ring index (in
    ``torch.fft.fft2`` layout) and the number of coefficients per ring. Every coefficient is in exactly
    one ring (empty rings are dropped), so Σ_k counts_k·P_k = Σ|X|²/C (Parseval).
    """
    for nm, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"{nm} must be an integer >= 2; got {v!r}")
    freqs, index, counts = _ring_table(height, width)
    return freqs.clone(), index.reshape(height, width).clone(), counts.clone()


def rapsd(images: Tensor) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectral density of a batch of images.

    Args:
        images: (B, C, H, W) or (B, H, W), any real values (finite), H, W ≥ 2.

    Returns:
        ``(freqs (F,), power (B, F))`` in float64: P_b(f_k) = mean over channels and over the ring k of
        |X(k)|², X = fft2(x, norm="ortho") (unitary, Parseval: Σx² = Σ|X|²). White noise of variance s²
        gives s² in every ring in expectation; the DC ring is P(0) = H·W·mean². See :func:`rings`.
    """
    x = _check_images(images)
    b, _, h, w = x.shape
    freqs, index, counts = _ring_table(h, w)
    spec = torch.fft.fft2(x, norm="ortho")
    p = (spec.real.square() + spec.imag.square()).mean(1).reshape(b, h * w)
    acc = torch.zeros(b, freqs.numel(), dtype=_F64).index_add_(1, index, p)
    return freqs.clone(), acc / counts
