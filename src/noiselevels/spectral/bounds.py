"""Per-image useful noise-level range (λ_min, λ_max) from the RAPSD, and data-set summaries of it.

Bounds (λ = log(α²/σ²); a frequency f has SNR e^λ·P(f), see :mod:`noiselevels.spectral.rapsd`):

* λ_min = log τ_lo − log max_f P(f): below it every frequency has SNR ≤ τ_lo (is drowned), so less
  noise than σ(λ_min) is never needed as a starting point; the maximum is over the DC ring too
  (``dc="include"``, P(0) = H·W·mean²) or over the non-DC rings (``dc="separate"``, the mean treated
  separately, e.g. by a non-centred prior).
* λ_max = log τ_hi − log min_f P(f): above it every frequency has SNR ≥ τ_hi (is intact). With
  ``quantisation_floor`` the level is also capped at λ_q = −2·log σ_q, σ_q = (2/255)/√12 ≈ 0.00226 — the
  standard deviation of 8-bit quantisation noise for data in [−1, 1] — because noise below it is
  indistinguishable from the quantisation of the data itself.

Only the complete rings (f ≤ ½ cycle/pixel, the inscribed circle) enter the bounds; the corner rings
beyond Nyquist along the axes hold few coefficients and are too noisy for a minimum. Consequences
(tested): bounds(c·x) = bounds(x) − 2·log c; a 2× upsampling multiplies the low-frequency power by 4
(the same ring index now holds 4× the energy at half the frequency), so λ_min moves by −log 4 — the
resolution shift of simple diffusion / SD3.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from noiselevels.components import check_positive, check_range
from noiselevels.spectral.rapsd import rapsd

__all__ = ["DC_MODES", "QUANTISATION_SIGMA", "bounds", "bounds_from_power", "summarize"]

QUANTISATION_SIGMA = (2.0 / 255.0) / math.sqrt(12.0)
"""Standard deviation of 8-bit quantisation noise for data in [−1, 1]: step 2/255, uniform error."""
DC_MODES = ("include", "separate")
_F64 = torch.float64
_NYQUIST_TOL = 1e-9


def _check_taus(tau_lo: float, tau_hi: float) -> tuple[float, float]:
    tau_lo = check_positive("tau_lo", tau_lo)
    tau_hi = check_positive("tau_hi", tau_hi)
    if not tau_lo < tau_hi:
        raise ValueError(f"tau_lo must be < tau_hi (drowned below, intact above); got {tau_lo} and {tau_hi}")
    return tau_lo, tau_hi


def _floor_logsnr(quantisation_floor: bool | float) -> float:
    """λ_q = −2·log σ_q of the quantisation floor (+inf when off)."""
    if quantisation_floor is True:
        return -2.0 * math.log(QUANTISATION_SIGMA)
    if quantisation_floor is False or quantisation_floor is None:
        return math.inf
    s = check_positive("quantisation_floor", quantisation_floor)
    return -2.0 * math.log(s)


def _ring_mask(freqs: Tensor, dc: str) -> Tensor:
    if dc not in DC_MODES:
        raise ValueError(f"dc must be one of {', '.join(DC_MODES)}; got {dc!r}")
    mask = freqs <= 0.5 + _NYQUIST_TOL
    if dc == "separate":
        mask = mask & (freqs > 0)
    return mask


def bounds_from_power(
    freqs: Tensor,
    power: Tensor,
    *,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
) -> tuple[Tensor, Tensor]:
    """(λ_min (B,), λ_max (B,)) from a RAPSD ``(freqs (F,), power (B, F))``; see :func:`bounds`."""
    tau_lo, tau_hi = _check_taus(tau_lo, tau_hi)
    lam_q = _floor_logsnr(quantisation_floor)
    p = power[:, _ring_mask(freqs, dc)]
    pmax, pmin = p.max(1).values, p.min(1).values
    flat = pmax <= 0
    if flat.any():
        idx = torch.nonzero(flat).flatten().tolist()
        where = "outside the DC ring (constant images)" if dc == "separate" else "(all-zero images)"
        raise ValueError(
            f"image(s) {idx[:5]}{'...' if len(idx) > 5 else ''} have no power {where}; their noise-level "
            "bounds are undefined"
        )
    lo = math.log(tau_lo) - torch.log(pmax)
    hi = math.log(tau_hi) - torch.log(pmin)  # +inf where a ring is exactly empty
    hi = hi.clamp(max=lam_q)
    above = lo >= hi
    if above.any():
        i = int(torch.nonzero(above).flatten()[0])
        raise ValueError(
            f"image {i}: λ_min = {float(lo[i]):.4g} is not below the quantisation floor's λ_q = {lam_q:.4g}: "
            "its whole spectrum is below 8-bit quantisation noise (data not scaled to [-1, 1]?); pass "
            "quantisation_floor=False or the data's own quantisation σ"
        )
    return lo, hi


def bounds(
    images: Tensor,
    *,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
) -> tuple[Tensor, Tensor]:
    """Per-image useful noise-level range (λ_min (B,), λ_max (B,)), float64.

    λ_min = log τ_lo − log max_f P(f) (every frequency drowned: SNR e^λ·P(f) ≤ τ_lo) and
    λ_max = log τ_hi − log min_f P(f) (every frequency intact: SNR ≥ τ_hi), over the complete rings
    f ≤ ½ (methods.md §7; see the module docstring).

    Args:
        images: (B, C, H, W) or (B, H, W) in the training scale (the project's data are in [−1, 1]).
        tau_lo, tau_hi: per-frequency SNR thresholds, 0 < τ_lo < τ_hi (defaults 0.1 and 10: a
            frequency is drowned at 10 dB below the noise and intact at 10 dB above).
        dc: ``"include"`` (the DC ring, P(0) = H·W·mean², counts: the image mean must be drowned too,
            so a zero-mean prior is right at λ_min) or ``"separate"`` (ignore the DC ring).
        quantisation_floor: True caps λ_max at −2·log((2/255)/√12) ≈ 12.18 (8-bit data in [−1, 1]);
            a number is the data's own quantisation σ; False = no cap.

    Raises ``ValueError`` for images smaller than 2×2, NaN/inf pixels, images without power (constant
    images under ``dc="separate"``, all-zero images) and images whose λ_min is above the cap. A ring
    with exactly zero power gives λ_max = +inf without the cap.
    """
    freqs, power = rapsd(images)
    return bounds_from_power(
        freqs, power, tau_lo=tau_lo, tau_hi=tau_hi, dc=dc, quantisation_floor=quantisation_floor
    )


def _check_pair(logsnr_min: Tensor, logsnr_max: Tensor) -> tuple[Tensor, Tensor]:
    """Per-instance bounds as float64 tensors of one shape, finite, with logsnr_min < logsnr_max."""
    lo, hi = torch.as_tensor(logsnr_min, dtype=_F64), torch.as_tensor(logsnr_max, dtype=_F64)
    if lo.shape != hi.shape:
        raise ValueError(f"logsnr_min and logsnr_max shapes differ: {tuple(lo.shape)} vs {tuple(hi.shape)}")
    if not (torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo < hi).all()):
        raise ValueError("per-instance bounds must be finite with logsnr_min < logsnr_max")
    return lo, hi


def _stats(v: Tensor, quantiles: Sequence[float]) -> dict[str, Any]:
    finite = v[torch.isfinite(v)]
    out: dict[str, Any] = {"count": int(v.numel()), "non_finite": int(v.numel() - finite.numel())}
    if finite.numel():
        q = torch.quantile(finite, torch.tensor(list(quantiles), dtype=_F64))
        out.update(
            mean=float(finite.mean()),
            std=float(finite.std()) if finite.numel() > 1 else 0.0,
            min=float(finite.min()),
            max=float(finite.max()),
            quantiles={f"{p:g}": float(x) for p, x in zip(quantiles, q)},
        )
    return out


def summarize(
    logsnr_min: Tensor,
    logsnr_max: Tensor,
    labels: Tensor | None = None,
    *,
    quantiles: Sequence[float] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99),
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Data-set summary of per-image bounds: count, mean, std, min, max and ``quantiles`` of λ_min,
    λ_max and of the width λ_max − λ_min, overall and (with ``labels`` (B,)) per class, as a JSON-able
    dict ``{"all": {...}, "per_class": {name: {...}}}``."""
    lo, hi = torch.as_tensor(logsnr_min, dtype=_F64), torch.as_tensor(logsnr_max, dtype=_F64)
    if lo.ndim != 1 or lo.shape != hi.shape:
        raise ValueError(
            f"logsnr_min and logsnr_max must have the same shape (B,); got {tuple(lo.shape)}, "
            f"{tuple(hi.shape)}"
        )
    for q in quantiles:
        check_range("quantile", q, 0.0, 1.0)

    def one(m: Tensor) -> dict[str, Any]:
        return {
            "logsnr_min": _stats(lo[m], quantiles),
            "logsnr_max": _stats(hi[m], quantiles),
            "width": _stats(hi[m] - lo[m], quantiles),
        }

    out: dict[str, Any] = {"all": one(torch.ones_like(lo, dtype=torch.bool))}
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        if labels.shape != lo.shape:
            raise ValueError(f"labels must have shape {tuple(lo.shape)}; got {tuple(labels.shape)}")
        out["per_class"] = {}
        for c in sorted(set(labels.tolist())):
            name = class_names[c] if class_names is not None and 0 <= c < len(class_names) else str(c)
            out["per_class"][name] = one(labels == c)
    return out
