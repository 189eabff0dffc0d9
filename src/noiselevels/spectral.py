"""Spectra of images, per-image noise-level bounds and spectrally-guided per-instance schedules.

After Esteves & Makadia (2026), "spectrally-guided per-instance noise schedules" for pixel diffusion.
The paper's formulas were not available to us; what follows is the derivation of
``research/methods.md`` §7, which is consistent with the paper's description, and is marked *ours*
where it goes beyond it (see ``docs/spectral.md``).

**Radially averaged power spectral density (RAPSD).** With the unitary 2-D DFT X = fft2(x, norm="ortho")
(so Σ|X|² = Σx², Parseval) the RAPSD of an image is P(f) = mean of |X(k)|² over the ring of the
frequency plane at radius f (cycles/pixel), averaged over channels. Ring r holds the coefficients with
round(|k|·N) = r, N = max(H, W); its frequency is r/N. White noise of variance s² has P(f) = s² in
every ring (in expectation), so the noise of z = α·x + σ·ε has P_noise(f) = σ² and the SNR of
frequency f is α²·P(f)/σ² = e^λ·P(f): the *per-frequency* noise level is λ_f = λ + log P(f).

**Bounds** (λ = log(α²/σ²), methods.md §7):

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

**Tight schedules** (construction ours, following methods.md's "sweep a cutoff frequency"). Each ring
k is *drowned* to a degree d_k(λ) = clip((λ_k − λ)/Δ, 0, 1), λ_k = log τ_hi − log P_k, Δ = log(τ_hi/τ_lo):
0 while its SNR ≥ τ_hi, 1 once it is ≤ τ_lo, linear in λ in between. The fraction drowned is
F(λ) = Σ_k w_k d_k(λ) / Σ_k w_k, with weights

* ``frequency``: w_k = the ring's width in log f (each octave gets the same share of t);
* ``power``: w_k = the ring's energy count_k·P_k (t is the fraction of the image's power destroyed);
* ``mixed``: (1 − m)·F_frequency + m·F_power.

F is 0 at λ_max and 1 at λ_min; the schedule is its inverse, λ(t) = F⁻¹(t), from λ_max at t = 0 to
λ_min at t = 1 (F is renormalised to [0, 1] when the quantisation floor caps λ_max, and mixed with a
small λ-linear part, ``linear_mix``, so that λ(t) is continuous and strictly decreasing even where no
ring is in transition). With τ_lo = τ_hi and a monotone spectrum this is exactly methods.md's cutoff
sweep λ(t) = log τ − log P(f_c(t)) with f_c geometric in t (frequency) or with t the fraction of power
above f_c (power); for a power law P = A·f^(−β) the frequency-focused schedule is linear in λ. F is
piecewise linear in λ, so the schedule is exact and tabulated (:class:`TightSchedule`, registered as
``"tight"``). The global tight schedule of a data set inverts the mean of the per-image F.

**Per-instance training and sampling** (the paper's idea; the parameterisation ours). At inference no
spectrum is available, only schedule parameters, so the per-instance schedules used for training and
sampling are a two-parameter family (:class:`InstanceSchedules`): λ_i(t) = λ_min,i + (λ_max,i −
λ_min,i)·s(t), with one normalised shape s (by default that of the training set's global tight
schedule). Training draws t ~ U(0, 1) per example, uses λ_i(t) from the example's own bounds and
conditions the network on (λ, λ_min,i, λ_max,i) through its ``extra`` input; sampling draws (λ_min, λ_max)
from a Gaussian mixture fitted to the training bounds (per class, :class:`BoundsMixture`) and integrates
along the instance's own σ grid (:func:`solve_per_instance`, a batched solver with one grid per row).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from noiselevels.components import SCHEDULES, Schedule, check_positive, check_range

__all__ = [
    "DC_MODES",
    "PER_INSTANCE_SOLVERS",
    "QUANTISATION_SIGMA",
    "SCHEDULE_KINDS",
    "SPECTRAL_DEFAULTS",
    "BoundsMixture",
    "InstanceSchedules",
    "SpectralRun",
    "TightSchedule",
    "bounds",
    "bounds_from_power",
    "global_tight_schedule",
    "plot_rapsd",
    "rapsd",
    "resolve_spectral_config",
    "rings",
    "solve_per_instance",
    "summarize",
    "tight_schedule",
    "tight_schedules",
]

QUANTISATION_SIGMA = (2.0 / 255.0) / math.sqrt(12.0)
"""Standard deviation of 8-bit quantisation noise for data in [−1, 1]: step 2/255, uniform error."""
DC_MODES = ("include", "separate")
SCHEDULE_KINDS = ("frequency", "power", "mixed")
_F64 = torch.float64
_NYQUIST_TOL = 1e-9


# ----------------------------------------------------------------------------------------------
# RAPSD
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# bounds
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# tabulated schedules
# ----------------------------------------------------------------------------------------------
def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of (xp increasing (K,), fp (K,)) at x, clamped to the ends."""
    xc = x.clamp(xp[0], xp[-1])
    i = torch.searchsorted(xp, xc.detach().contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = (xc - x0) / (x1 - x0)
    return f0 + w * (f1 - f0)


@SCHEDULES.register("tight")
@dataclasses.dataclass(frozen=True)
class TightSchedule(Schedule):
    """A tabulated schedule: λ(t) piecewise linear through the knots (t_i, λ_i).

    ``t_knots`` increase strictly from 0 to 1, ``logsnr_knots`` decrease strictly (finite), so
    λ(0) = logsnr_knots[0] = λ_max and λ(1) = logsnr_knots[-1] = λ_min. The spectral constructions
    (:func:`tight_schedule`, :func:`global_tight_schedule`) produce these exactly (F⁻¹ of a piecewise-
    linear F); ``t_of`` is the exact inverse, clamped to [0, 1] outside [λ_min, λ_max].
    """

    t_knots: tuple[float, ...] = (0.0, 1.0)
    logsnr_knots: tuple[float, ...] = (10.0, -10.0)

    def __post_init__(self):
        t = tuple(float(v) for v in self.t_knots)
        lam = tuple(float(v) for v in self.logsnr_knots)
        if len(t) < 2 or len(t) != len(lam):
            raise ValueError(
                f"t_knots and logsnr_knots must have the same length >= 2; got {len(t)} and {len(lam)}"
            )
        if t[0] != 0.0 or t[-1] != 1.0 or any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError("t_knots must increase strictly from 0 to 1")
        if not all(math.isfinite(v) for v in lam) or any(b >= a for a, b in itertools.pairwise(lam)):
            raise ValueError("logsnr_knots must be finite and strictly decreasing (λ_max first)")
        object.__setattr__(self, "t_knots", t)
        object.__setattr__(self, "logsnr_knots", lam)

    @functools.cached_property
    def _tables(self) -> tuple[Tensor, Tensor]:
        return torch.tensor(self.t_knots, dtype=_F64), torch.tensor(self.logsnr_knots, dtype=_F64)

    def _logsnr(self, t: Tensor) -> Tensor:
        tk, lk = self._tables
        return _interp(t, tk, lk)

    def _t_of(self, logsnr: Tensor) -> Tensor:
        tk, lk = self._tables
        return _interp(-logsnr, -lk, tk)

    def describe(self) -> str:
        lam = self.logsnr_knots
        return f"tight({len(self.t_knots)} knots, λ from {lam[0]:.3g} to {lam[-1]:.3g})"


def _check_kind(kind: str, mix: float) -> float:
    if kind not in SCHEDULE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SCHEDULE_KINDS)}; got {kind!r}")
    m = check_range("mix", mix, 0.0, 1.0)
    return {"frequency": 0.0, "power": 1.0}.get(kind, m)


@dataclasses.dataclass
class _Drowning:
    """Per-image piecewise-linear fraction drowned F_b(λ), normalised to [0, 1] on [lo_b, hi_b]."""

    lam_k: Tensor  # (B, K) λ at which ring k starts drowning (SNR = τ_hi); +inf for empty rings
    delta: float
    w_freq: Tensor  # (K,)
    w_pow: Tensor  # (B, K)
    mix: float
    linear_mix: float
    lo: Tensor  # (B,)
    hi: Tensor  # (B,)

    def _raw(self, lam: Tensor) -> Tensor:
        """Unnormalised F at lam (B, M) → (B, M)."""
        d = ((self.lam_k[:, None, :] - lam[:, :, None]) / self.delta).clamp(0.0, 1.0)
        d = torch.where(torch.isnan(d), torch.ones_like(d), d)  # inf − inf cannot occur; guard anyway
        f_freq = (d * self.w_freq).sum(-1) / self.w_freq.sum()
        f_pow = (d * self.w_pow[:, None, :]).sum(-1) / self.w_pow.sum(-1, keepdim=True)
        return (1.0 - self.mix) * f_freq + self.mix * f_pow

    def __call__(self, lam: Tensor) -> Tensor:
        """F at lam (B, M): 0 at λ ≥ hi, 1 at λ ≤ lo, strictly decreasing in between."""
        lam_c = torch.maximum(torch.minimum(lam, self.hi[:, None]), self.lo[:, None])
        f_lo = self._raw(self.lo[:, None])
        f_hi = self._raw(self.hi[:, None])
        span = (f_lo - f_hi).clamp_min(1e-300)
        f = ((self._raw(lam_c) - f_hi) / span).clamp(0.0, 1.0)
        lin = (self.hi[:, None] - lam_c) / (self.hi - self.lo)[:, None]
        return (1.0 - self.linear_mix) * f + self.linear_mix * lin

    def breakpoints(self) -> Tensor:
        """All λ where F changes slope, clipped to [lo, hi], sorted: (B, 2K + 2)."""
        pts = torch.cat([self.lam_k, self.lam_k - self.delta, self.lo[:, None], self.hi[:, None]], dim=1)
        pts = torch.maximum(torch.minimum(pts, self.hi[:, None]), self.lo[:, None])
        return pts.sort(dim=1).values


def _drowning(
    images: Tensor,
    *,
    kind: str,
    mix: float,
    tau_lo: float,
    tau_hi: float,
    dc: str,
    quantisation_floor: bool | float,
    linear_mix: float,
) -> _Drowning:
    m = _check_kind(kind, mix)
    linear_mix = check_range("linear_mix", linear_mix, 0.0, 1.0, closed=True)
    x = _check_images(images)
    freqs, power = rapsd(x)
    lo, hi = bounds_from_power(
        freqs, power, tau_lo=tau_lo, tau_hi=tau_hi, dc=dc, quantisation_floor=quantisation_floor
    )
    if not torch.isfinite(hi).all():
        raise ValueError("an image has a ring with zero power, so λ_max = +inf: use quantisation_floor")
    mask = _ring_mask(freqs, dc)
    f = freqs[mask]
    p = power[:, mask]
    _, _, counts = _ring_table(x.shape[2], x.shape[3])
    n = max(x.shape[2], x.shape[3])
    k = (f * n).round()
    # ring k covers radii [k − ½, k + ½)/N: width in log f; the DC ring gets ring 1's width
    w_freq = torch.where(
        k > 0, torch.log((k + 0.5) / (k - 0.5).clamp_min(0.5)), torch.full_like(k, math.log(3.0))
    )
    w_pow = p * counts[mask]
    lam_k = math.log(tau_hi) - torch.log(p)
    return _Drowning(lam_k, math.log(tau_hi / tau_lo), w_freq, w_pow, m, linear_mix, lo, hi)


def tight_schedules(
    images: Tensor,
    *,
    kind: str = "mixed",
    mix: float = 0.5,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
    linear_mix: float = 0.02,
) -> list[TightSchedule]:
    """One tight schedule per image of (B, C, H, W): λ(t) = F⁻¹(t) from λ_max (t = 0) to λ_min (t = 1).

    ``kind``: ``"frequency"`` (each octave of frequency gets an equal share of t), ``"power"`` (t is the
    fraction of the image's power drowned) or ``"mixed"`` ((1 − mix)·frequency + mix·power, in F).
    ``linear_mix`` ∈ [0, 1] blends in a λ-linear F so λ(t) stays continuous where no ring is in
    transition. Bounds options as in :func:`bounds`. The schedules are exact (F is piecewise linear in λ).
    """
    dr = _drowning(
        images,
        kind=kind,
        mix=mix,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        dc=dc,
        quantisation_floor=quantisation_floor,
        linear_mix=linear_mix,
    )
    lam = dr.breakpoints()
    t = dr(lam)
    out = []
    for b in range(lam.shape[0]):
        lb, tb = lam[b].flip(0), t[b].flip(0)  # λ decreasing, t increasing
        keep = torch.ones_like(lb, dtype=torch.bool)
        keep[1:] = (lb[1:] < lb[:-1]) & (tb[1:] > tb[:-1])
        lb, tb = lb[keep], tb[keep]
        tb[0], tb[-1] = 0.0, 1.0
        lb[0], lb[-1] = dr.hi[b], dr.lo[b]
        out.append(TightSchedule(t_knots=tuple(tb.tolist()), logsnr_knots=tuple(lb.tolist())))
    return out


def tight_schedule(image: Tensor, **kw: Any) -> TightSchedule:
    """The tight schedule of one image (C, H, W) (or (1, C, H, W)); options as :func:`tight_schedules`."""
    x = torch.as_tensor(image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"image must have shape (C, H, W) or (1, C, H, W); got {tuple(x.shape)}")
    return tight_schedules(x, **kw)[0]


def global_tight_schedule(
    images: Tensor,
    *,
    kind: str = "mixed",
    mix: float = 0.5,
    tau_lo: float = 0.1,
    tau_hi: float = 10.0,
    dc: str = "include",
    quantisation_floor: bool | float = True,
    linear_mix: float = 0.02,
    knots: int = 257,
    batch_size: int = 512,
) -> TightSchedule:
    """The tight schedule of a data set: the inverse of the mean fraction drowned F̄(λ) = mean_b F_b(λ),
    tabulated at ``knots`` λ values spaced evenly over [min_b λ_min,b, max_b λ_max,b] (ours). Options as
    :func:`tight_schedules`."""
    if isinstance(knots, bool) or not isinstance(knots, int) or knots < 3:
        raise ValueError(f"knots must be an integer >= 3; got {knots!r}")
    x = _check_images(images)
    parts = []
    for s in range(0, x.shape[0], batch_size):
        parts.append(
            _drowning(
                x[s : s + batch_size],
                kind=kind,
                mix=mix,
                tau_lo=tau_lo,
                tau_hi=tau_hi,
                dc=dc,
                quantisation_floor=quantisation_floor,
                linear_mix=linear_mix,
            )
        )
    lo = min(float(d.lo.min()) for d in parts)
    hi = max(float(d.hi.max()) for d in parts)
    grid = torch.linspace(hi, lo, knots, dtype=_F64)
    total = torch.zeros(knots, dtype=_F64)
    for d in parts:
        total += d(grid.expand(d.lo.shape[0], -1)).sum(0)
    t = total / x.shape[0]
    t[0], t[-1] = 0.0, 1.0
    keep = torch.ones(knots, dtype=torch.bool)
    keep[1:] = t[1:] > t[:-1]
    keep[-1] = True
    return TightSchedule(t_knots=tuple(t[keep].tolist()), logsnr_knots=tuple(grid[keep].tolist()))


# ----------------------------------------------------------------------------------------------
# per-instance schedules: a two-parameter family λ_i(t) = lo_i + (hi_i − lo_i)·s(t)
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InstanceSchedules:
    """The per-instance schedule family used for training and sampling (parameterisation ours).

    λ_i(t) = λ_min,i + (λ_max,i − λ_min,i)·s(t), with the normalised shape s(t) = (λ_g(t) − λ_g(1)) /
    (λ_g(0) − λ_g(1)) of a base schedule λ_g (``shape_t``/``shape_s`` knots: s decreasing from 1 at
    t = 0 to 0 at t = 1). Build it with :meth:`from_data` (shape of the data set's global tight
    schedule) or :meth:`linear` (λ linear in t). The bound options (``tau_lo``, ``tau_hi``, ``dc``,
    ``quantisation_floor``) say how :meth:`bounds` measures an example.
    """

    kind: ClassVar[str] = "instance_schedules"
    shape_t: tuple[float, ...] = (0.0, 1.0)
    shape_s: tuple[float, ...] = (1.0, 0.0)
    tau_lo: float = 0.1
    tau_hi: float = 10.0
    dc: str = "include"
    quantisation_floor: bool | float = True

    def __post_init__(self):
        t = tuple(float(v) for v in self.shape_t)
        s = tuple(float(v) for v in self.shape_s)
        if (
            len(t) < 2
            or len(t) != len(s)
            or t[0] != 0.0
            or t[-1] != 1.0
            or any(b <= a for a, b in itertools.pairwise(t))
        ):
            raise ValueError("shape_t must increase strictly from 0 to 1 and match shape_s in length")
        if s[0] != 1.0 or s[-1] != 0.0 or any(b >= a for a, b in itertools.pairwise(s)):
            raise ValueError("shape_s must decrease strictly from 1 to 0")
        object.__setattr__(self, "shape_t", t)
        object.__setattr__(self, "shape_s", s)
        _check_taus(self.tau_lo, self.tau_hi)
        if self.dc not in DC_MODES:
            raise ValueError(f"dc must be one of {', '.join(DC_MODES)}; got {self.dc!r}")
        _floor_logsnr(self.quantisation_floor)

    # -- construction
    @classmethod
    def from_schedule(cls, schedule: Schedule, **kw: Any) -> InstanceSchedules:
        """The normalised shape of a finite-range schedule (e.g. a :class:`TightSchedule`)."""
        if isinstance(schedule, TightSchedule):
            t = torch.tensor(schedule.t_knots, dtype=_F64)
        else:
            t = torch.linspace(0, 1, 257, dtype=_F64)
        lam = schedule.logsnr(t)
        if not torch.isfinite(lam).all():
            raise ValueError("the base schedule must have a finite range (λ(0), λ(1) finite)")
        s = (lam - lam[-1]) / (lam[0] - lam[-1])
        return cls(shape_t=tuple(t.tolist()), shape_s=tuple(s.tolist()), **kw)

    @classmethod
    def linear(cls, **kw: Any) -> InstanceSchedules:
        """λ_i(t) linear in t from λ_max,i to λ_min,i."""
        return cls(**kw)

    @classmethod
    def from_data(
        cls,
        images: Tensor,
        *,
        kind: str = "mixed",
        mix: float = 0.5,
        tau_lo: float = 0.1,
        tau_hi: float = 10.0,
        dc: str = "include",
        quantisation_floor: bool | float = True,
        knots: int = 65,
    ) -> InstanceSchedules:
        """The shape of the data set's :func:`global_tight_schedule`."""
        g = global_tight_schedule(
            images,
            kind=kind,
            mix=mix,
            tau_lo=tau_lo,
            tau_hi=tau_hi,
            dc=dc,
            quantisation_floor=quantisation_floor,
            knots=knots,
        )
        return cls.from_schedule(
            g, tau_lo=tau_lo, tau_hi=tau_hi, dc=dc, quantisation_floor=quantisation_floor
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstanceSchedules:
        valid = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - valid)
        if bad:
            raise ValueError(f"unknown key(s) {bad} for InstanceSchedules; valid: {sorted(valid)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # -- evaluation
    @functools.cached_property
    def _tables(self) -> tuple[Tensor, Tensor]:
        return torch.tensor(self.shape_t, dtype=_F64), torch.tensor(self.shape_s, dtype=_F64)

    def bounds(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`bounds` of the examples with this family's options."""
        return bounds(
            images,
            tau_lo=self.tau_lo,
            tau_hi=self.tau_hi,
            dc=self.dc,
            quantisation_floor=self.quantisation_floor,
        )

    @staticmethod
    def _check_range(logsnr_min: Tensor, logsnr_max: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = torch.as_tensor(logsnr_min, dtype=_F64), torch.as_tensor(logsnr_max, dtype=_F64)
        if lo.shape != hi.shape:
            raise ValueError(
                f"logsnr_min and logsnr_max shapes differ: {tuple(lo.shape)} vs {tuple(hi.shape)}"
            )
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all() and (lo < hi).all()):
            raise ValueError("per-instance bounds must be finite with logsnr_min < logsnr_max")
        return lo, hi

    def logsnr(self, t: Tensor, *, logsnr_min: Tensor, logsnr_max: Tensor) -> Tensor:
        """λ_i(t) for t, logsnr_min, logsnr_max broadcastable (e.g. all (B,)); float64."""
        lo, hi = self._check_range(logsnr_min, logsnr_max)
        t = torch.as_tensor(t, dtype=_F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        tk, sk = self._tables
        return lo + (hi - lo) * _interp(t, tk, sk)

    def t_of(self, logsnr: Tensor, *, logsnr_min: Tensor, logsnr_max: Tensor) -> Tensor:
        """The inverse of :meth:`logsnr` (clamped to [0, 1])."""
        lo, hi = self._check_range(logsnr_min, logsnr_max)
        s = (torch.as_tensor(logsnr, dtype=_F64) - lo) / (hi - lo)
        tk, sk = self._tables
        return _interp(-s, -sk, tk)

    def draw(self, x0: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training draw for a batch x0 (B, C, H, W): t ~ U(0, 1) per example, λ_i = λ_i(t) under the
        example's own bounds. Returns ``(logsnr (B,) float64, extra (B, 2) = (λ_min, λ_max) in x0's dtype)``
        on x0's device; the uniform draw uses ``generator`` (on its device)."""
        lo, hi = self.bounds(x0)
        gdev = generator.device if generator is not None else None
        t = torch.rand(x0.shape[0], generator=generator, dtype=_F64, device=gdev).cpu()
        lam = self.logsnr(t, logsnr_min=lo, logsnr_max=hi)
        extra = torch.stack([lo, hi], dim=1).to(device=x0.device, dtype=x0.dtype)
        return lam.to(x0.device), extra

    def sigmas(
        self,
        steps: int,
        *,
        logsnr_min: Tensor,
        logsnr_max: Tensor,
        spacing: str = "schedule",
        spacing_params: Mapping[str, Any] | None = None,
    ) -> Tensor:
        """Per-instance VE σ grids (B, steps + 1), decreasing, trailing 0.

        ``spacing="schedule"``: the instance's own schedule at evenly spaced t (t = 1 … 0); any other
        name is a registered spacing (``noiselevels.sampling.spacings``) over [σ(λ_max,i), σ(λ_min,i)].
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        lo, hi = self._check_range(logsnr_min, logsnr_max)
        lo, hi = lo.reshape(-1), hi.reshape(-1)
        if spacing == "schedule":
            if spacing_params:
                raise ValueError("spacing 'schedule' takes no parameters")
            t = torch.linspace(1.0, 0.0, steps, dtype=_F64) if steps > 1 else torch.ones(1, dtype=_F64)
            lam = self.logsnr(
                t[None, :].expand(lo.numel(), -1), logsnr_min=lo[:, None], logsnr_max=hi[:, None]
            )
            sig = torch.exp(-0.5 * lam)
        else:
            from noiselevels.sampling.spacings import spacing as make_spacing

            sp = make_spacing(spacing, **dict(spacing_params or {}))
            rows = [
                torch.as_tensor(
                    sp.sigmas(
                        steps, sigma_min=math.exp(-0.5 * float(h)), sigma_max=math.exp(-0.5 * float(l))
                    ),
                    dtype=_F64,
                )[:steps]
                for l, h in zip(lo.tolist(), hi.tolist())
            ]
            sig = torch.stack(rows)
        return torch.cat([sig, torch.zeros(sig.shape[0], 1, dtype=_F64)], dim=1)


# ----------------------------------------------------------------------------------------------
# Gaussian mixture over (λ_min, λ_max), per class
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Gmm:
    weights: tuple[float, ...]
    means: tuple[tuple[float, float], ...]
    covs: tuple[tuple[tuple[float, float], tuple[float, float]], ...]
    box: tuple[float, float, float, float]  # lo_min, lo_max, hi_min, hi_max of the fitted data

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "means": [list(m) for m in self.means],
            "covs": [[list(r) for r in c] for c in self.covs],
            "box": list(self.box),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Gmm:
        return cls(
            tuple(d["weights"]),
            tuple(tuple(m) for m in d["means"]),
            tuple(tuple(tuple(r) for r in c) for c in d["covs"]),
            tuple(d["box"]),
        )


def _fit_gmm(lo: Tensor, hi: Tensor, components: int, seed: int) -> _Gmm:
    import numpy as np

    xy = np.stack([lo.numpy(), hi.numpy()], axis=1)
    box = (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
    n_unique = len(np.unique(xy, axis=0))
    k = max(1, min(components, n_unique // 2))
    if n_unique < 3:
        mean = xy.mean(0)
        cov = np.cov(xy, rowvar=False) if xy.shape[0] > 1 else np.zeros((2, 2))
        cov = np.atleast_2d(cov) + 1e-6 * np.eye(2)
        return _Gmm((1.0,), (tuple(mean.tolist()),), (tuple(map(tuple, cov.tolist())),), box)
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-6, random_state=seed, n_init=1)
    gm.fit(xy)
    return _Gmm(
        tuple(gm.weights_.tolist()),
        tuple(tuple(m) for m in gm.means_.tolist()),
        tuple(tuple(map(tuple, c)) for c in gm.covariances_.tolist()),
        box,
    )


class BoundsMixture:
    """Gaussian mixtures over (λ_min, λ_max) fitted to a training set's per-image bounds, one for all
    images (key ``"all"``) and one per class when labels are given (scikit-learn's
    ``GaussianMixture``, full covariances). :meth:`sample` draws bounds for new instances (per label)
    and keeps them inside the fitted data's box [min, max] per coordinate with λ_min < λ_max (rejection,
    then clamping for the rare leftovers)."""

    def __init__(self, mixtures: Mapping[str, _Gmm]):
        if "all" not in mixtures:
            raise ValueError("a BoundsMixture needs the 'all' mixture")
        self.mixtures = dict(mixtures)

    @classmethod
    def fit(
        cls,
        logsnr_min: Tensor,
        logsnr_max: Tensor,
        labels: Tensor | None = None,
        *,
        components: int = 4,
        seed: int = 0,
    ) -> BoundsMixture:
        """Fit on (B,) bounds (finite) and optional (B,) integer labels; ``components`` per mixture
        (fewer for small groups)."""
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be an integer >= 1; got {components!r}")
        lo, hi = InstanceSchedules._check_range(logsnr_min, logsnr_max)
        if lo.ndim != 1 or lo.numel() < 1:
            raise ValueError(f"bounds must have shape (B,) with B >= 1; got {tuple(lo.shape)}")
        mix = {"all": _fit_gmm(lo, hi, components, seed)}
        if labels is not None:
            labels = torch.as_tensor(labels).long().cpu()
            if labels.shape != lo.shape:
                raise ValueError(f"labels must have shape {tuple(lo.shape)}; got {tuple(labels.shape)}")
            for c in sorted(set(labels.tolist())):
                m = labels == c
                mix[str(c)] = _fit_gmm(lo[m], hi[m], components, seed)
        return cls(mix)

    def to_dict(self) -> dict[str, Any]:
        return {k: g.to_dict() for k, g in self.mixtures.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BoundsMixture:
        return cls({k: _Gmm.from_dict(v) for k, v in d.items()})

    def _sample_one(self, g: _Gmm, n: int, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        w = torch.tensor(g.weights, dtype=_F64)
        mu = torch.tensor(g.means, dtype=_F64)
        cov = torch.tensor(g.covs, dtype=_F64)
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(2, dtype=_F64))
        lo_min, lo_max, hi_min, hi_max = g.box
        out = torch.empty(n, 2, dtype=_F64)
        todo = torch.arange(n)
        for _ in range(100):
            if todo.numel() == 0:
                break
            comp = torch.multinomial(w, todo.numel(), replacement=True, generator=gen)
            z = torch.randn(todo.numel(), 2, generator=gen, dtype=_F64)
            s = mu[comp] + (chol[comp] @ z[:, :, None])[:, :, 0]
            ok = (s[:, 0] >= lo_min) & (s[:, 0] <= lo_max) & (s[:, 1] >= hi_min) & (s[:, 1] <= hi_max)
            ok &= s[:, 0] < s[:, 1]
            out[todo[ok]] = s[ok]
            todo = todo[~ok]
        if todo.numel():  # clamp the (rare) leftovers into the box
            comp = torch.multinomial(w, todo.numel(), replacement=True, generator=gen)
            s = mu[comp].clone()
            s[:, 0] = s[:, 0].clamp(lo_min, lo_max)
            s[:, 1] = torch.maximum(s[:, 1].clamp(hi_min, hi_max), s[:, 0] + 1e-3)
            out[todo] = s
        return out[:, 0], out[:, 1]

    def sample(
        self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """n draws (λ_min (n,), λ_max (n,)), float64, CPU. With ``labels`` (n,) each draw comes from its
        class's mixture (label −1 = unconditional, the ``"all"`` mixture)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        lo, hi = torch.empty(n, dtype=_F64), torch.empty(n, dtype=_F64)
        if labels is None:
            return self._sample_one(self.mixtures["all"], n, generator)
        labels = torch.as_tensor(labels).long().cpu()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
        for c in sorted(set(labels.tolist())):
            key = "all" if c < 0 else str(c)
            if key not in self.mixtures:
                raise ValueError(
                    f"no mixture for class {c}; fitted classes: "
                    f"{', '.join(k for k in self.mixtures if k != 'all') or '(none)'}"
                )
            m = labels == c
            lo[m], hi[m] = self._sample_one(self.mixtures[key], int(m.sum()), generator)
        return lo, hi


# ----------------------------------------------------------------------------------------------
# a batched solver: one σ grid per row
# ----------------------------------------------------------------------------------------------
PER_INSTANCE_SOLVERS = ("euler", "heun", "dpmpp_2m")


def solve_per_instance(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    *,
    sigmas: Tensor,
    solver: str = "heun",
) -> Tensor:
    """Integrate the probability-flow ODE with a different VE σ grid for every row of the batch.

    Same methods and formulas as ``noiselevels.sampling.solvers`` (``euler``, ``heun`` = EDM Alg. 1
    without churn, ``dpmpp_2m``), but with σ a (B,) tensor at each step: ``sigmas`` is (B, N + 1),
    strictly decreasing per row, all rows ending in 0 or none. With identical rows it equals ``solve``
    on that grid (tested). ``denoiser(x, sigma (B,)) → x̂₀``; x starts at σ = sigmas[:, 0].
    """
    if solver not in PER_INSTANCE_SOLVERS:
        raise ValueError(
            f"per-instance solver must be one of {', '.join(PER_INSTANCE_SOLVERS)}; got {solver!r}"
        )
    s = torch.as_tensor(sigmas, dtype=_F64).detach().cpu()
    if s.ndim != 2 or s.shape[0] != x.shape[0] or s.shape[1] < 2:
        raise ValueError(
            f"sigmas must have shape (B, N + 1) with B = {x.shape[0]}, N >= 1; got {tuple(s.shape)}"
        )
    if not torch.isfinite(s).all() or (s < 0).any() or (s[:, 1:] >= s[:, :-1]).any():
        raise ValueError("each row of sigmas must be finite, >= 0 and strictly decreasing")
    last_zero = s[:, -1] == 0
    if last_zero.any() and not last_zero.all():
        raise ValueError("either every row of sigmas ends in 0 or none does")
    dev, dt = x.device, x.dtype

    def col(i: int) -> Tensor:
        return s[:, i].to(dev)

    def bc(v: Tensor) -> Tensor:
        return v.to(dt).reshape(-1, *([1] * (x.ndim - 1)))

    n = s.shape[1] - 1
    old = None
    for i in range(n):
        si, sn = col(i), col(i + 1)
        den = denoiser(x, si.to(dt))
        if solver == "dpmpp_2m":
            ratio = sn / si
            if old is None or bool((sn == 0).all()):
                x = bc(ratio) * x + bc(1.0 - ratio) * den
            else:
                h = torch.log(si / sn)
                h_last = torch.log(col(i - 1) / si)
                r = h_last / h
                d = bc(1.0 + 1.0 / (2.0 * r)) * den - bc(1.0 / (2.0 * r)) * old
                x = bc(ratio) * x + bc(1.0 - ratio) * d
            old = den
            continue
        d = (x - den) / bc(si)
        step = bc(sn - si)
        if solver == "euler" or bool((sn == 0).all()):
            x = x + d * step
        else:
            x2 = x + d * step
            d2 = (x2 - denoiser(x2, sn.to(dt))) / bc(sn)
            x = x + (d + d2) / 2 * step
    return x


# ----------------------------------------------------------------------------------------------
# plot
# ----------------------------------------------------------------------------------------------
def plot_rapsd(
    freqs: Tensor,
    power: Tensor,
    path: str,
    *,
    logsnrs: Sequence[float] = (-6.0, 0.0, 6.0),
    max_curves: int = 16,
    title: str = "RAPSD against the noise floor of a few λ",
) -> None:
    """Plot up to ``max_curves`` RAPSD curves P(f) (log-log, DC drawn at f = 1/(2N)) with the noise
    power e^(−λ) of the given λ values (VE scale: the noise of z/α has P_noise(f) = σ²/α² = e^(−λ)).
    A frequency is visible above its line and drowned below it — high noise hides the low
    frequencies last."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    f = freqs.clone()
    if f[0] == 0:
        f[0] = f[1] / 2
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for b in range(min(max_curves, power.shape[0])):
        ax.loglog(f.numpy(), power[b].clamp_min(1e-12).numpy(), lw=0.8, alpha=0.6, color="tab:blue")
    if power.shape[0] > 1:
        ax.loglog(f.numpy(), power.mean(0).clamp_min(1e-12).numpy(), lw=2.0, color="black", label="mean")
    cmap = plt.get_cmap("autumn")
    for j, lam in enumerate(logsnrs):
        ax.axhline(
            math.exp(-lam),
            ls="--",
            lw=1.2,
            color=cmap(j / max(1, len(logsnrs) - 1)),
            label=f"noise at λ = {lam:.3g}",
        )
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.axvline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("frequency f (cycles/pixel; DC drawn at the left edge)")
    ax.set_ylabel("power P(f) (unitary DFT)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# the [spectral] section of a training run: per-instance training and sampling
# ----------------------------------------------------------------------------------------------
SPECTRAL_DEFAULTS: dict[str, Any] = {
    "kind": "mixed",
    "mix": 0.5,
    "tau_lo": 0.1,
    "tau_hi": 10.0,
    "dc": "include",
    "quantisation_floor": True,
    "shape": "tight",
    "knots": 65,
    "components": 4,
    "seed": 0,
}
"""Keys of the ``[spectral]`` table of a training configuration and their defaults: the tight-schedule
``kind``/``mix`` and bound options (:func:`bounds`), ``shape`` of the per-instance family (``"tight"``:
the training set's global tight schedule; ``"linear"``: λ linear in t), ``knots`` of that shape, and
the Gaussian mixture's ``components`` and ``seed``."""


def resolve_spectral_config(section: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[spectral]`` table with defaults filled in; unknown keys or bad values raise ValueError."""
    if not isinstance(section, Mapping):
        raise ValueError(f"[spectral] must be a table; got {section!r}")
    bad = sorted(set(section) - set(SPECTRAL_DEFAULTS))
    if bad:
        raise ValueError(f"unknown key(s) {bad} in [spectral]; valid keys: {', '.join(SPECTRAL_DEFAULTS)}")
    cfg = {**SPECTRAL_DEFAULTS, **dict(section)}
    _check_kind(cfg["kind"], cfg["mix"])
    _check_taus(cfg["tau_lo"], cfg["tau_hi"])
    _ring_mask(torch.zeros(1, dtype=_F64), cfg["dc"])
    _floor_logsnr(cfg["quantisation_floor"])
    if cfg["shape"] not in ("tight", "linear"):
        raise ValueError(f"[spectral] shape must be 'tight' or 'linear'; got {cfg['shape']!r}")
    for k, lo in (("knots", 3), ("components", 1), ("seed", 0)):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"[spectral] {k} must be an integer >= {lo}; got {v!r}")
    return cfg


@dataclasses.dataclass
class SpectralRun:
    """What a per-instance run needs at training and sampling time: the schedule family, the mixture
    over bounds, the resolved ``[spectral]`` config and the training set's bounds summary. Written to a
    run folder as ``spectral.json`` (:meth:`to_dict`) and read back with :meth:`from_dict`."""

    family: InstanceSchedules
    mixture: BoundsMixture
    config: dict[str, Any]
    summary: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def fit(cls, section: Mapping[str, Any], images: Tensor, labels: Tensor | None = None) -> SpectralRun:
        """Measure the training images' bounds, build the family's shape and fit the mixture."""
        cfg = resolve_spectral_config(section)
        opts = {k: cfg[k] for k in ("tau_lo", "tau_hi", "dc", "quantisation_floor")}
        if cfg["shape"] == "tight":
            fam = InstanceSchedules.from_data(
                images, kind=cfg["kind"], mix=cfg["mix"], knots=cfg["knots"], **opts
            )
        else:
            fam = InstanceSchedules.linear(**opts)
        lo, hi = fam.bounds(images)
        mix = BoundsMixture.fit(lo, hi, labels, components=cfg["components"], seed=cfg["seed"])
        return cls(fam, mix, cfg, summarize(lo, hi, labels))

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "family": self.family.to_dict(),
            "mixture": self.mixture.to_dict(),
            "summary": self.summary,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpectralRun:
        try:
            return cls(
                InstanceSchedules.from_dict(d["family"]),
                BoundsMixture.from_dict(d["mixture"]),
                dict(d["config"]),
                dict(d.get("summary", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a spectral run description (spectral.json): {e}") from None

    def draw(self, x0: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training: (λ (B,), extra (B, 2)) for a batch; see :meth:`InstanceSchedules.draw`."""
        return self.family.draw(x0, generator=generator)

    def sampling_grid(
        self,
        n: int,
        steps: int,
        *,
        labels: Tensor | None = None,
        spacing: str = "schedule",
        spacing_params: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Inference: draw n bounds from the mixture (per label) and return their σ grids
        (n, steps + 1) and the conditioning ``extra`` (n, 2) = (λ_min, λ_max) (float64)."""
        lo, hi = self.mixture.sample(n, labels=labels, generator=generator)
        sig = self.family.sigmas(
            steps, logsnr_min=lo, logsnr_max=hi, spacing=spacing, spacing_params=spacing_params
        )
        return sig, torch.stack([lo, hi], dim=1)
