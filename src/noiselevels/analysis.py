"""What a training configuration actually weights: the effective weighting W(λ) = p(λ)·w(λ).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); weights in ε-MSE units (Kingma & Gao 2023).

A diffusion objective draws λ from a density p(λ) and multiplies the ε-MSE at that level by a weight
w(λ). Its expectation is

    L = ∫ p(λ)·w(λ)·E‖ε̂(z_λ; λ) − ε‖² dλ,

so the whole configuration (schedule, timestep sampler, loss weight, parameterisation) is summarised
by one function of λ, the **effective weighting** W(λ) = p(λ)·w(λ) (Kingma & Gao 2023, eq. 7 and
table 1). Two configurations with the same W train the same model (up to the variance of the
estimate); configurations with different W differ only through W. This module evaluates W on a λ
grid, summarises it, compares two of them, and checks a sampler's levels against a training density.

W is generally not integrable over the whole real line (e.g. rectified flow with uniform t has
W = ½·e^(−λ/2)), so every normalised quantity here is taken over a finite window
[``logsnr_min``, ``logsnr_max``] (default [−10, 10]: σ_ve from 0.0067 to 148, flow t from 0.0067
to 0.9933) on a uniform grid, integrated with the trapezoidal rule.

Kingma & Gao (2023, §4) show that a W that is monotone non-increasing in λ makes the objective a
mixture of ELBOs of noise-augmented data; ``Summary.monotone`` reports it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import Tensor

from noiselevels.components import Density, Weighting, check_finite
from noiselevels.levels import flow_t, logsnr_from_sigma, to_tensor

__all__ = [
    "BANDS",
    "DEFAULT_LOGSNR_RANGE",
    "DEFAULT_POINTS",
    "Alignment",
    "Comparison",
    "Curve",
    "EffectiveWeighting",
    "Summary",
    "alignment",
    "compare",
    "effective_weighting",
    "logsnr_grid",
]

DEFAULT_LOGSNR_RANGE = (-10.0, 10.0)
DEFAULT_POINTS = 2001
#: λ bands used by summaries: noisy λ < −4 (σ_ve > 7.4, flow t > 0.88), clean λ > 4 (flow t < 0.12).
BANDS = {"noisy": (-math.inf, -4.0), "mid": (-4.0, 4.0), "clean": (4.0, math.inf)}


def logsnr_grid(
    logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
    logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
    n: int = DEFAULT_POINTS,
) -> Tensor:
    """A uniform float64 grid of ``n`` λ values over [logsnr_min, logsnr_max], shape (n,)."""
    lo = check_finite("logsnr_min", logsnr_min)
    hi = check_finite("logsnr_max", logsnr_max)
    if not hi > lo:
        raise ValueError(f"logsnr_max must be > logsnr_min; got logsnr_min={lo!r}, logsnr_max={hi!r}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 3:
        raise ValueError(f"n (grid points) must be an integer >= 3; got {n!r}")
    return torch.linspace(lo, hi, n, dtype=torch.float64)


def _flow_t(lam: float) -> float:
    """The flow t = sigmoid(−λ/2) of one λ, for the text summaries."""
    return float(flow_t(logsnr=torch.tensor(lam, dtype=torch.float64)))


def _trapz_cum(y: Tensor, x: Tensor) -> Tensor:
    """Cumulative trapezoid starting at 0, shape like x."""
    inc = 0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])
    return torch.cat([torch.zeros(1, dtype=y.dtype), torch.cumsum(inc, 0)])


# ----------------------------------------------------------------------------------------------
# curves
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Curve:
    """p(λ), w(λ) and W(λ) = p·w on a λ grid; all tensors float64 of shape (n,)."""

    logsnr: Tensor
    density: Tensor
    weight: Tensor
    effective: Tensor

    @property
    def mass(self) -> float:
        """∫ W dλ over the grid (trapezoid): the overall loss scale relative to a plain ε-MSE."""
        return float(_trapz_cum(self.effective, self.logsnr)[-1])

    @property
    def density_mass(self) -> float:
        """∫ p dλ over the grid: the fraction of training draws that fall inside the window."""
        return float(_trapz_cum(self.density, self.logsnr)[-1])

    def normalized(self) -> Tensor:
        """W / ∫W over the window, shape (n,). Raises if W vanishes on the whole window."""
        m = self.mass
        if not (m > 0 and math.isfinite(m)):
            raise ValueError(
                f"the effective weighting has mass {m!r} on λ ∈ [{float(self.logsnr[0])}, "
                f"{float(self.logsnr[-1])}]; widen the window or check the density and weighting"
            )
        return self.effective / m

    def cdf(self) -> Tensor:
        """Cumulative of the normalised W over the window (0 → 1), shape (n,)."""
        c = _trapz_cum(self.normalized(), self.logsnr)
        return c / c[-1]

    def quantile(self, q: float) -> float:
        """λ below which a fraction ``q`` ∈ [0, 1] of the (windowed) effective weight lies."""
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be in [0, 1]; got {q!r}")
        c = self.cdf()
        idx = int(torch.searchsorted(c, torch.tensor([q], dtype=c.dtype), right=False)[0])
        idx = min(max(idx, 1), len(c) - 1)
        c0, c1 = float(c[idx - 1]), float(c[idx])
        x0, x1 = float(self.logsnr[idx - 1]), float(self.logsnr[idx])
        if c1 <= c0:
            return x1
        return x0 + (q - c0) / (c1 - c0) * (x1 - x0)

    def band_fractions(self, bands: dict[str, tuple[float, float]] | None = None) -> dict[str, float]:
        """Fraction of the windowed effective weight in each λ band (default ``BANDS``)."""
        bands = BANDS if bands is None else bands
        c = self.cdf()
        out = {}
        for name, (lo, hi) in bands.items():
            out[name] = _interp(c, self.logsnr, hi) - _interp(c, self.logsnr, lo)
        return out

    def to_dict(self) -> dict[str, list[float]]:
        return {
            "logsnr": self.logsnr.tolist(),
            "density": self.density.tolist(),
            "weight": self.weight.tolist(),
            "effective": self.effective.tolist(),
            "effective_normalized": self.normalized().tolist(),
        }


def _interp(c: Tensor, x: Tensor, at: float) -> float:
    """Piecewise-linear value of c at λ = ``at`` (clamped to the grid ends)."""
    if at <= float(x[0]):
        return 0.0
    if at >= float(x[-1]):
        return 1.0
    i = int(torch.searchsorted(x, torch.tensor([at], dtype=x.dtype))[0])
    x0, x1 = float(x[i - 1]), float(x[i])
    return float(c[i - 1]) + (at - x0) / (x1 - x0) * float(c[i] - c[i - 1])


@dataclasses.dataclass(frozen=True)
class Summary:
    """Where a configuration puts its effective weight (all over the analysis window)."""

    logsnr_range: tuple[float, float]
    mass: float
    density_mass: float
    median: float
    interval: tuple[float, float]  # 10 % and 90 % quantiles of the normalised W
    peak: float  # argmax of W
    bands: dict[str, float]
    monotone: bool  # W non-increasing in λ ⇒ a mixture of ELBOs (Kingma & Gao 2023, §4)
    density_median: float  # median λ of the training draws (exact, from the density's icdf)
    density_interval: tuple[float, float]  # 10 % and 90 % quantiles of the training draws

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        t = _flow_t
        lo, hi = self.interval
        dlo, dhi = self.density_interval
        return [
            f"training draws p(λ): median λ {self.density_median:+.2f} (flow t = "
            f"{t(self.density_median):.3f}), 10–90 % in λ ∈ [{dlo:+.2f}, {dhi:+.2f}] "
            f"(flow t ∈ [{t(dhi):.3f}, {t(dlo):.3f}])",
            f"median λ of W: {self.median:+.2f} (flow t = {t(self.median):.3f}, σ_ve = "
            f"{math.exp(-self.median / 2):.3g})",
            f"10–90 % of W in λ ∈ [{lo:+.2f}, {hi:+.2f}] (flow t ∈ [{t(hi):.3f}, {t(lo):.3f}])",
            f"peak of W at λ = {self.peak:+.2f}",
            "weight by band: "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in self.bands.items())
            + " (noisy λ < −4, clean λ > 4)",
            f"training draws inside λ ∈ [{self.logsnr_range[0]:g}, {self.logsnr_range[1]:g}]: "
            f"{100 * self.density_mass:.1f} %; ∫W dλ = {self.mass:.4g} (ε-MSE units)",
            "W is monotone non-increasing: the objective is a mixture of ELBOs"
            if self.monotone
            else "W is not monotone: not an ELBO mixture (Kingma & Gao 2023)",
        ]


# ----------------------------------------------------------------------------------------------
# the effective weighting
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EffectiveWeighting:
    """W(λ) = p(λ)·w(λ) in ε-MSE units per unit λ (Kingma & Gao 2023, eq. 7).

    ``W(logsnr)`` maps a tensor of λ (any shape) to W of the same shape (float64). Where p(λ) = 0 the
    value is 0 even if w(λ) is infinite.
    """

    density: Density
    weighting: Weighting

    def __post_init__(self) -> None:
        if not isinstance(self.density, Density):
            raise ValueError(f"density must be a noiselevels Density; got {type(self.density).__name__}")
        if not isinstance(self.weighting, Weighting):
            raise ValueError(
                f"weighting must be a noiselevels Weighting; got {type(self.weighting).__name__}"
            )

    def parts(self, logsnr: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(p(λ), w(λ), W(λ)) as float64 tensors shaped like ``logsnr``."""
        lam = to_tensor(logsnr).to(torch.float64)
        p = self.density.prob(lam).to(torch.float64)
        w = to_tensor(self.weighting(lam)).to(torch.float64)
        w = torch.broadcast_to(w, lam.shape)
        W = torch.where(p > 0, p * w, torch.zeros_like(p))
        return p, w, W

    def __call__(self, logsnr: Tensor) -> Tensor:
        return self.parts(logsnr)[2]

    def grid(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
        logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
        n: int = DEFAULT_POINTS,
    ) -> Curve:
        """p, w, W on a uniform grid of ``n`` points over [logsnr_min, logsnr_max]."""
        lam = logsnr_grid(logsnr_min, logsnr_max, n)
        p, w, W = self.parts(lam)
        bad = ~torch.isfinite(W)
        if bad.any():
            raise ValueError(
                f"the effective weighting is not finite at λ = {float(lam[bad][0])!r}; "
                "narrow the window (logsnr_min, logsnr_max)"
            )
        return Curve(logsnr=lam, density=p, weight=w, effective=W)

    def mass(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
        logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
        n: int = DEFAULT_POINTS,
    ) -> float:
        """∫ W dλ over the window."""
        return self.grid(logsnr_min, logsnr_max, n).mass

    def normalized(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
        logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
        n: int = DEFAULT_POINTS,
    ) -> Curve:
        """The grid curve with ``effective`` replaced by W/∫W (a probability density over the window)."""
        c = self.grid(logsnr_min, logsnr_max, n)
        return dataclasses.replace(c, effective=c.normalized())

    def summary(
        self,
        logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
        logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
        n: int = DEFAULT_POINTS,
        *,
        bands: dict[str, tuple[float, float]] | None = None,
    ) -> Summary:
        """Median, 10–90 % interval, peak, band fractions and monotonicity of W over the window."""
        c = self.grid(logsnr_min, logsnr_max, n)
        W = c.effective
        scale = float(W.abs().max())
        diffs = W[1:] - W[:-1]
        monotone = bool((diffs <= 1e-9 * scale).all())
        q = self.density.icdf(torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
        return Summary(
            logsnr_range=(float(c.logsnr[0]), float(c.logsnr[-1])),
            mass=c.mass,
            density_mass=c.density_mass,
            median=c.quantile(0.5),
            interval=(c.quantile(0.1), c.quantile(0.9)),
            peak=float(c.logsnr[int(torch.argmax(W))]),
            bands=c.band_fractions(bands),
            monotone=monotone,
            density_median=q[1],
            density_interval=(q[0], q[2]),
        )


def effective_weighting(density: Density, weighting: Weighting) -> EffectiveWeighting:
    """W(λ) = p(λ)·w(λ): the effective weighting of training with ``density`` and ``weighting``.

    Example: ε-prediction with uniform t under the cosine schedule and w = 1 gives
    W(λ) = sech(λ/2)/(2π); rectified flow with uniform t and the plain flow loss gives ½·e^(−λ/2)
    (Kingma & Gao 2023, table 1).
    """
    return EffectiveWeighting(density=density, weighting=weighting)


def _as_effective(x: Any, what: str) -> EffectiveWeighting:
    if isinstance(x, EffectiveWeighting):
        return x
    if hasattr(x, "effective_weighting") and callable(x.effective_weighting):
        return x.effective_weighting()
    if isinstance(x, tuple) and len(x) == 2:
        return EffectiveWeighting(*x)
    raise ValueError(
        f"{what} must be an EffectiveWeighting, a NoiseConfig or a (density, weighting) pair; "
        f"got {type(x).__name__}"
    )


# ----------------------------------------------------------------------------------------------
# comparing two configurations
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far apart two effective weightings are (A vs B), over one λ window.

    * ``tv``: total-variation distance ½∫|Ŵa − Ŵb| dλ of the normalised weightings (0 = same shape,
      1 = disjoint). Symmetric.
    * ``tv_density``: ½∫|pa − pb| dλ over the window: how differently the two draw training levels.
    * ``js``: Jensen–Shannon divergence in bits (0 … 1). Symmetric.
    * ``kl_ab``, ``kl_ba``: KL(Ŵa‖Ŵb), KL(Ŵb‖Ŵa) in nats (inf where one has weight the other lacks).
    * ``mass_ratio``: ∫Wb/∫Wa, the ratio of overall loss scales (acts like a learning-rate factor).
    * ``max_diff_logsnr``: the λ where |Ŵa − Ŵb| is largest; ``max_diff_favours`` says which is higher there.
    * ``median_shift``: median_b − median_a in λ; ``shift_factor`` = e^(−Δ/2), the SD3/Flux flow shift s
      that moves λ by the same amount (λ' = λ − 2·log s).
    """

    logsnr_range: tuple[float, float]
    tv: float
    tv_density: float
    js: float
    kl_ab: float
    kl_ba: float
    mass_a: float
    mass_b: float
    mass_ratio: float
    max_diff_logsnr: float
    max_diff_favours: str
    median_a: float
    median_b: float
    median_shift: float
    shift_factor: float
    bands_a: dict[str, float]
    bands_b: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def verdict(self) -> str:
        if self.tv < 0.02:
            return "the same effective weighting (for practical purposes identical)"
        if self.tv < 0.1:
            return "close: small differences in where the loss weight goes"
        if self.tv < 0.3:
            return "noticeably different: the same broad region, a different emphasis"
        if self.tv < 0.6:
            return "substantially different: they train on different noise levels"
        return "very different: most of one's weight is where the other has little"

    def lines(self, name_a: str = "A", name_b: str = "B") -> list[str]:
        t = _flow_t
        out = [
            f"verdict: {self.verdict()}",
            f"total-variation distance of the normalised weightings: {self.tv:.3f} "
            f"(0 = same, 1 = disjoint); Jensen–Shannon {self.js:.3f} bits",
            f"total-variation distance of the training-level densities p(λ): {self.tv_density:.3f}",
            f"{100 * self.tv:.1f} % of {name_b}'s loss weight would have to move to reproduce {name_a}",
            f"median noise level: {name_a} λ = {self.median_a:+.2f} (flow t {t(self.median_a):.3f}), "
            f"{name_b} λ = {self.median_b:+.2f} (flow t {t(self.median_b):.3f})",
        ]
        if abs(self.median_shift) > 0.05:
            direction = "noisier" if self.median_shift < 0 else "cleaner"
            out.append(
                f"{name_b} is centred {abs(self.median_shift):.2f} in λ {direction} than {name_a} — "
                f"like a flow shift of s = {self.shift_factor:.3g} applied to {name_a}"
            )
        out.append(
            f"largest difference at λ = {self.max_diff_logsnr:+.2f} (flow t "
            f"{t(self.max_diff_logsnr):.3f}), where {self.max_diff_favours} puts more weight"
        )
        out.append(
            "weight by band (noisy λ<−4 / mid / clean λ>4): "
            f"{name_a} "
            + " / ".join(f"{100 * v:.0f} %" for v in self.bands_a.values())
            + f"; {name_b} "
            + " / ".join(f"{100 * v:.0f} %" for v in self.bands_b.values())
        )
        out.append(
            f"overall loss scale ∫W: {name_b}/{name_a} = {self.mass_ratio:.3g} "
            "(a constant factor acts like a learning-rate change with SGD; Adam mostly ignores it)"
        )
        return out


def _kl(p: Tensor, q: Tensor, x: Tensor) -> float:
    mask = p > 0
    if bool((mask & (q <= 0)).any()):
        return math.inf
    integrand = torch.zeros_like(p)
    integrand[mask] = p[mask] * (torch.log(p[mask]) - torch.log(q[mask]))
    return max(float(_trapz_cum(integrand, x)[-1]), 0.0)


def compare(
    a: Any,
    b: Any,
    *,
    logsnr_min: float = DEFAULT_LOGSNR_RANGE[0],
    logsnr_max: float = DEFAULT_LOGSNR_RANGE[1],
    n: int = DEFAULT_POINTS,
) -> Comparison:
    """Distances between two configurations' effective weightings over one λ window.

    ``a`` and ``b`` are each an ``EffectiveWeighting``, a ``NoiseConfig`` (anything with an
    ``effective_weighting()`` method) or a ``(density, weighting)`` pair. See ``Comparison``.
    """
    ea, eb = _as_effective(a, "a"), _as_effective(b, "b")
    ca, cb = ea.grid(logsnr_min, logsnr_max, n), eb.grid(logsnr_min, logsnr_max, n)
    x = ca.logsnr
    pa, pb = ca.normalized(), cb.normalized()
    diff = pa - pb
    tv = 0.5 * float(_trapz_cum(diff.abs(), x)[-1])
    m = 0.5 * (pa + pb)
    js = 0.5 * (_kl(pa, m, x) + _kl(pb, m, x)) / math.log(2.0)
    i = int(torch.argmax(diff.abs()))
    med_a, med_b = ca.quantile(0.5), cb.quantile(0.5)
    shift = med_b - med_a
    return Comparison(
        logsnr_range=(float(x[0]), float(x[-1])),
        tv=min(max(tv, 0.0), 1.0),
        tv_density=min(max(0.5 * float(_trapz_cum((ca.density - cb.density).abs(), x)[-1]), 0.0), 1.0),
        js=min(max(js, 0.0), 1.0),
        kl_ab=_kl(pa, pb, x),
        kl_ba=_kl(pb, pa, x),
        mass_a=ca.mass,
        mass_b=cb.mass,
        mass_ratio=cb.mass / ca.mass,
        max_diff_logsnr=float(x[i]),
        max_diff_favours="A" if float(diff[i]) > 0 else "B",
        median_a=med_a,
        median_b=med_b,
        median_shift=shift,
        shift_factor=math.exp(-shift / 2.0),
        bands_a=ca.band_fractions(),
        bands_b=cb.band_fractions(),
    )


# ----------------------------------------------------------------------------------------------
# sampling vs training
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Alignment:
    """Where a sampler's levels fall relative to a training density.

    ``quantiles[i]`` = cdf(λ_i) of the training density at each finite sampler level (0 = noisiest
    training draw, 1 = cleanest); ``fraction_noisy_tail`` / ``fraction_clean_tail`` are the fractions of
    those levels where fewer than ``tail`` of the training draws are noisier / cleaner; ``relative_density``
    = p(λ_i)/max p (the max taken over the sampler's levels and a fine grid around them). ``support`` =
    (icdf(0), icdf(1)), the training range (±inf for densities on the whole line);
    ``fraction_unseen`` = the fraction of levels strictly outside it, where the model was never trained.
    """

    logsnr: Tensor
    quantiles: Tensor
    relative_density: Tensor
    tail: float
    fraction_noisy_tail: float
    fraction_clean_tail: float
    support: tuple[float, float] = (-math.inf, math.inf)
    fraction_unseen: float = 0.0

    @property
    def fraction_outside(self) -> float:
        return self.fraction_noisy_tail + self.fraction_clean_tail

    def lines(self) -> list[str]:
        n = len(self.logsnr)
        k_noisy = round(self.fraction_noisy_tail * n)
        k_clean = round(self.fraction_clean_tail * n)
        pct = f"{100 * self.tail:g} %"
        lines = [
            f"{k_noisy} of {n} sampler levels are noisier than all but {pct} of training draws",
            f"{k_clean} of {n} sampler levels are cleaner than all but {pct} of training draws",
        ]
        lo, hi = self.support
        if math.isfinite(lo) or math.isfinite(hi):
            k = round(self.fraction_unseen * n)
            lines.append(
                f"{k} of {n} sampler levels are outside the training range λ ∈ [{lo:.4g}, {hi:.4g}] "
                "(never trained)"
            )
        return lines


def alignment(
    density: Density,
    *,
    logsnrs: Tensor | None = None,
    sigmas: Tensor | None = None,
    tail: float = 0.01,
) -> Alignment:
    """Which of a sampler's noise levels fall where the training density ``density`` rarely looked.

    Give the levels at which the model is evaluated either as ``logsnrs`` (λ, shape (N,)) or as VE
    ``sigmas`` (σ_ve, shape (N,), as k-diffusion / ``spacing(...).sigmas`` returns them). Non-finite
    levels (σ = 0, the trailing clean level of a sampler grid, where no model call happens) are
    dropped. ``tail`` ∈ (0, 0.5) is the training mass that counts as "rarely".
    """
    if (logsnrs is None) == (sigmas is None):
        raise ValueError("give exactly one of logsnrs= or sigmas=")
    tail = float(tail)
    if not 0.0 < tail < 0.5:
        raise ValueError(f"tail must be in (0, 0.5); got {tail!r}")
    lam = to_tensor(logsnrs if logsnrs is not None else logsnr_from_sigma(sigma=to_tensor(sigmas)))
    lam = lam.to(torch.float64).flatten()
    lam = lam[torch.isfinite(lam)]
    if lam.numel() == 0:
        raise ValueError("no finite noise levels to check")
    q = density.cdf(lam).to(torch.float64)
    p = density.prob(lam).to(torch.float64)
    lo, hi = float(lam.min()) - 5.0, float(lam.max()) + 5.0
    ref = density.prob(torch.linspace(lo, hi, 2001, dtype=torch.float64)).max()
    pmax = torch.maximum(ref, p.max())
    rel = p / pmax if float(pmax) > 0 else torch.zeros_like(p)
    n = lam.numel()
    lo, hi = (float(v) for v in density.icdf(torch.tensor([0.0, 1.0], dtype=torch.float64)))
    eps = 1e-9 * (1.0 + lam.abs())  # a level on the boundary (e.g. the table's last entry) is inside
    unseen = (lam < lo - eps) | (lam > hi + eps)
    return Alignment(
        logsnr=lam,
        quantiles=q,
        relative_density=rel,
        tail=tail,
        fraction_noisy_tail=float((q < tail).sum()) / n,
        fraction_clean_tail=float((q > 1.0 - tail).sum()) / n,
        support=(lo, hi),
        fraction_unseen=float(unseen.sum()) / n,
    )
