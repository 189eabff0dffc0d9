"""Sampling spacings: where the N steps of a sampler fall on the noise-level axis.

A spacing turns a step budget N into a grid of noise levels. Two views of the same grid:

* ``spacing.sigmas(n, sigma_min=, sigma_max=)`` → float64 tensor of shape (n + 1,): VE noise levels
  σ_ve = σ/α = e^(−λ/2), strictly decreasing from (about) ``sigma_max``, with a trailing 0 (clean data).
  This is k-diffusion's convention and what ``diffusers``' ``set_timesteps(sigmas=...)`` and ComfyUI's
  SIGMAS take.
* ``spacing.logsnrs(n, logsnr_min=, logsnr_max=)`` → float64 tensor of shape (n + 1,): the same grid in
  λ = −2·log σ_ve, increasing, ending at +inf. ``logsnr_min`` ↔ ``sigma_max`` = e^(−λ_min/2) and
  ``logsnr_max`` ↔ ``sigma_min`` = e^(−λ_max/2).

Omitted range arguments take the spacing's own default range, ``spacing.sigma_range()``: EDM's
σ ∈ [0.002, 80] for the formula-based grids, the table's ends for the published AYS tables and custom
grids, the σ table of a discrete (``ddpm``-style) schedule for the diffusers index rules and ComfyUI's
table schedulers (default: Stable Diffusion's table, :func:`sd_schedule`).

Registered spacings (``spacing(name, **kw)``; ``SPACINGS.names()``):

==================  ====================================================================================
``karras``          σ^(1/ρ) linear in the step index (Karras et al. 2022, EDM, eq. 5), ρ = 7.
``exponential``     log σ linear = λ uniform (DPM-Solver's "logSNR" spacing; k-diffusion).
``polyexponential`` log σ = log σ_min + (1 − i/(N−1))^ρ·(log σ_max − log σ_min) (k-diffusion).
``vp``              the continuous VP SDE's σ(t) = √(e^(β_d t²/2 + β_min t) − 1), t uniform (Song et al.).
``beta``            Beta(α, β) quantiles ("Beta sampling is all you need", Lee et al. 2024): diffusers'
                    ``use_beta_sigmas`` (continuous) or ComfyUI's ``beta`` scheduler (discrete schedule).
``kl_optimal``      arctan σ linear in the step index (Sabour et al. 2024, "Align your steps" appendix;
                    ComfyUI ``kl_optimal``).
``linear_quadratic`` Mochi's linear-then-quadratic grid (ComfyUI ``linear_quadratic``).
``laplace``         log σ at Laplace(μ, β) quantiles, clipped to the range (Hang & Gu 2024; ComfyUI's
                    ``get_sigmas_laplace``).
``uniform_t``       t uniform under a schedule; diffusers' ``leading`` / ``linspace`` / ``trailing`` index
                    rules for discrete schedules (Lin et al. 2024, table 2).
``simple``          every (T/N)-th entry of a model's σ table from the top (ComfyUI ``simple``).
``normal``          the model's timestep uniform from the top of its σ table to the bottom, log σ
                    interpolated between entries (ComfyUI ``normal``).
``sgm_uniform``     ``normal`` with N + 1 timesteps and the last dropped (ComfyUI ``sgm_uniform``).
``ddim_uniform``    DDIM's uniform timesteps 1 + j·⌊T/N⌋ of a model's σ table (ComfyUI ``ddim_uniform``).
``ays``             the published Align-Your-Steps tables (SD1.5, SDXL, SVD) and their log-linear
                    interpolation to any N (Sabour et al. 2024).
``from_density``    the icdf of a training density at evenly spaced probabilities: sampling aligned with
                    training.
``custom``          a user-given grid (e.g. the output of the spacing optimiser).
==================  ====================================================================================
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels._numerics import beta_ppf
from noiselevels.components import SPACINGS, Component, check_finite, check_positive, check_range

__all__ = [
    "AYS_TABLES",
    "COMFY_ZERO_TOL",
    "DEFAULT_SIGMA_MAX",
    "DEFAULT_SIGMA_MIN",
    "SPACINGS",
    "Spacing",
    "beta_ppf",
    "custom",
    "sd_schedule",
    "spacing",
    "spacing_summaries",
]

DEFAULT_SIGMA_MIN = 0.002
"""EDM's default smallest nonzero VE noise level (Karras et al. 2022, table 1)."""
DEFAULT_SIGMA_MAX = 80.0
"""EDM's default largest VE noise level (Karras et al. 2022, table 1)."""

AYS_TABLES: dict[str, tuple[float, ...]] = {
    # Sabour, Fidler, Kreis 2024, "Align Your Steps", the published 10-step σ_ve tables (11 values each).
    "sd15": (
        14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
        0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582,
    ),
    "sdxl": (
        14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
        0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582,
    ),
    "svd": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip

DISCRETE_RULES = ("leading", "linspace", "trailing")
UNIFORM_T_RULES = ("continuous", *DISCRETE_RULES)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _check_steps(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of steps n must be an integer >= 1; got {n!r}")
    return int(n)


def _check_sigma(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item()
    return check_positive(name, value)


def _append_zero(s: Tensor) -> Tensor:
    return torch.cat([s, s.new_zeros(1)])


def _discrete_logsnr_table(schedule: Any, who: str) -> Tensor:
    """λ table of a discrete schedule, indexed like diffusers' timesteps (index 0 = least noise)."""
    table_fn = getattr(schedule, "logsnr_table", None)
    if table_fn is None:
        raise ValueError(
            f"{who} needs a discrete schedule with a logsnr_table() (e.g. schedule('ddpm')); "
            f"got {type(schedule).__name__}"
        )
    table = torch.as_tensor(table_fn(), dtype=torch.float64).flatten()
    if table.numel() < 2:
        raise ValueError(f"{who}: the schedule's logsnr_table() must have at least 2 entries")
    return table


def _sigma_of_logsnr(lam: Tensor) -> Tensor:
    return torch.exp(-0.5 * lam)


# ----------------------------------------------------------------------------------------------
# the base class
# ----------------------------------------------------------------------------------------------
class Spacing(Component):
    """A grid of N noise levels for a sampler (base class of the registered spacings).

    Subclasses implement ``_sigmas(n, sigma_min, sigma_max)`` → float64 (n,), the decreasing positive
    σ_ve grid without its trailing 0, and may override ``sigma_range()`` (their default range) and
    ``fixed_range`` (True when the grid is taken from a table that a range cannot change).
    """

    kind: ClassVar[str] = "spacing"
    fixed_range: ClassVar[bool] = False

    def sigma_range(self) -> tuple[float, float]:
        """(σ_min, σ_max) used when ``sigmas`` is called without a range: EDM's (0.002, 80)."""
        return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)

    def _sigmas(self, n: int, sigma_min: float, sigma_max: float) -> Tensor:
        raise NotImplementedError

    def _resolve_range(self, sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
        lo, hi = self.sigma_range()
        if sigma_min is None and sigma_max is None:
            return lo, hi
        if self.fixed_range:
            raise ValueError(
                f"spacing {self.describe()} takes its σ range ({lo:.6g}, {hi:.6g}) from its table; "
                "do not pass sigma_min/sigma_max (logsnr_min/logsnr_max)"
            )
        if sigma_min is not None:
            lo = _check_sigma("sigma_min", sigma_min)
        if sigma_max is not None:
            hi = _check_sigma("sigma_max", sigma_max)
        if not lo < hi:
            raise ValueError(f"sigma_min must be < sigma_max; got sigma_min={lo!r}, sigma_max={hi!r}")
        return lo, hi

    def sigmas(self, n: int, *, sigma_min: float | None = None, sigma_max: float | None = None) -> Tensor:
        """The grid as VE noise levels: float64 (n + 1,), decreasing, ``sigmas[-1] == 0``.

        Args:
            n: number of steps (≥ 1).
            sigma_min, sigma_max: the range of the nonzero levels, 0 < σ_min < σ_max; omitted → the
                spacing's ``sigma_range()``. Most grids start at σ_max and end at σ_min before the 0.
        """
        n = _check_steps(n)
        lo, hi = self._resolve_range(sigma_min, sigma_max)
        s = self._sigmas(n, lo, hi).to(torch.float64)
        if s.shape != (n,):
            raise RuntimeError(f"{self.describe()} produced shape {tuple(s.shape)} for n={n}")
        return _append_zero(s)

    def logsnrs(self, n: int, *, logsnr_min: float | None = None, logsnr_max: float | None = None) -> Tensor:
        """The same grid in λ = −2·log σ_ve: float64 (n + 1,), increasing, ``logsnrs[-1] == +inf``.

        ``logsnr_min`` ↔ σ_max = e^(−λ_min/2), ``logsnr_max`` ↔ σ_min = e^(−λ_max/2); omitted → the
        spacing's default range.
        """
        sigma_max = None
        sigma_min = None
        if logsnr_min is not None:
            sigma_max = math.exp(-0.5 * _finite("logsnr_min", logsnr_min))
        if logsnr_max is not None:
            sigma_min = math.exp(-0.5 * _finite("logsnr_max", logsnr_max))
        if logsnr_min is not None and logsnr_max is not None and not logsnr_min < logsnr_max:
            raise ValueError(
                f"logsnr_min must be < logsnr_max; got logsnr_min={logsnr_min!r}, logsnr_max={logsnr_max!r}"
            )
        s = self.sigmas(n, sigma_min=sigma_min, sigma_max=sigma_max)
        return -2.0 * torch.log(s)


def _finite(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def spacing(name: str, **kw: Any) -> Spacing:
    """Build a registered spacing by name, e.g. ``spacing("karras", rho=7.0)``.

    Unknown names and parameters raise ``ValueError`` listing the valid ones.
    """
    return SPACINGS.create(name, **kw)


def spacing_summaries() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered spacing, sorted by name."""
    out = []
    for name in SPACINGS.names():
        doc = (SPACINGS.get(name).__doc__ or "").strip()
        out.append((name, doc.splitlines()[0] if doc else ""))
    return out


def _ramp(n: int) -> Tensor:
    """i/(n − 1) for i = 0..n−1 (a single 0 when n = 1), float64."""
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# formula-based grids
# ----------------------------------------------------------------------------------------------
@SPACINGS.register("karras")
@dataclasses.dataclass(frozen=True)
class Karras(Spacing):
    """Karras et al. (EDM): σ^(1/ρ) linear in the step index; ρ = 7 (ρ = 1: linear σ; ρ → ∞: exponential).

    σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, i = 0..N−1, then 0
    (Karras et al. 2022, eq. 5; k-diffusion ``get_sigmas_karras``).
    """

    rho: float = 7.0

    def __post_init__(self):
        check_positive("rho", self.rho)

    def _sigmas(self, n, sigma_min, sigma_max):
        inv = 1.0 / self.rho
        lo, hi = sigma_min**inv, sigma_max**inv
        return (hi + _ramp(n) * (lo - hi)) ** self.rho


@SPACINGS.register("exponential")
@dataclasses.dataclass(frozen=True)
class Exponential(Spacing):
    """Uniform in log σ, i.e. uniform in λ (DPM-Solver's logSNR spacing; k-diffusion).

    log σ_i = log σ_max + i/(N−1)·(log σ_min − log σ_max), then 0.
    """

    def _sigmas(self, n, sigma_min, sigma_max):
        lo, hi = math.log(sigma_min), math.log(sigma_max)
        return torch.exp(hi + _ramp(n) * (lo - hi))


@SPACINGS.register("polyexponential")
@dataclasses.dataclass(frozen=True)
class PolyExponential(Spacing):
    """Polynomial in log σ: log σ_i = log σ_min + (1 − i/(N−1))^ρ·(log σ_max − log σ_min) (k-diffusion).

    ρ = 1 is ``exponential``; ρ > 1 spends more steps at low noise.
    """

    rho: float = 1.0

    def __post_init__(self):
        check_positive("rho", self.rho)

    def _sigmas(self, n, sigma_min, sigma_max):
        ramp = torch.linspace(1.0, 0.0, n, dtype=torch.float64) ** self.rho
        lo, hi = math.log(sigma_min), math.log(sigma_max)
        return torch.exp(ramp * (hi - lo) + lo)


@SPACINGS.register("vp")
@dataclasses.dataclass(frozen=True)
class VP(Spacing):
    """The continuous VP SDE's levels at uniform time (Song et al. 2021; k-diffusion ``get_sigmas_vp``).

    σ(t) = √(exp(β_d·t²/2 + β_min·t) − 1), t uniform from t(σ_max) to t(σ_min). The default range is
    (σ(ε_s), σ(1)) so that t runs from 1 to ε_s exactly as in k-diffusion; a given range is mapped to
    t by the exact inverse t(σ) = (−β_min + √(β_min² + 2β_d·log(1 + σ²)))/β_d.
    """

    beta_d: float = 19.9
    beta_min: float = 0.1
    eps_s: float = 1e-3

    def __post_init__(self):
        check_positive("beta_d", self.beta_d)
        check_positive("beta_min", self.beta_min, allow_zero=True)
        check_range("eps_s", self.eps_s, 0.0, 1.0, closed=False)

    def _sigma_of_t(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(self.beta_d * t**2 / 2 + self.beta_min * t))

    def _t_of_sigma(self, sigma: float) -> float:
        return (
            -self.beta_min + math.sqrt(self.beta_min**2 + 2 * self.beta_d * math.log1p(sigma**2))
        ) / self.beta_d

    def sigma_range(self):
        ends = self._sigma_of_t(torch.tensor([self.eps_s, 1.0], dtype=torch.float64))
        return (float(ends[0]), float(ends[1]))

    def _sigmas(self, n, sigma_min, sigma_max):
        t_hi, t_lo = self._t_of_sigma(sigma_max), self._t_of_sigma(sigma_min)
        t = torch.linspace(t_hi, t_lo, n, dtype=torch.float64)
        return self._sigma_of_t(t)


@SPACINGS.register("kl_optimal")
@dataclasses.dataclass(frozen=True)
class KLOptimal(Spacing):
    """arctan σ linear in the step index (Sabour et al. 2024; ComfyUI / A1111 ``kl_optimal``).

    σ_i = tan((1 − i/(N−1))·atan σ_max + i/(N−1)·atan σ_min), then 0.
    """

    def _sigmas(self, n, sigma_min, sigma_max):
        r = _ramp(n)
        return torch.tan(r * math.atan(sigma_min) + (1 - r) * math.atan(sigma_max))


@SPACINGS.register("linear_quadratic")
@dataclasses.dataclass(frozen=True)
class LinearQuadratic(Spacing):
    """Mochi's linear-then-quadratic grid (ComfyUI ``linear_quadratic``): σ_i = σ_max·(1 − s_i).

    s rises linearly from 0 to ``threshold_noise`` over the first ``linear_steps`` (default N // 2)
    steps, then quadratically to 1 at step N (continuous value and slope at the joint). The last
    nonzero level is set by the profile, so this spacing takes no ``sigma_min``; N = 1 gives [σ_max, 0].
    """

    threshold_noise: float = 0.025
    linear_steps: int | None = None

    def __post_init__(self):
        check_range("threshold_noise", self.threshold_noise, 0.0, 1.0, closed=False)
        if self.linear_steps is not None and (
            isinstance(self.linear_steps, bool)
            or not isinstance(self.linear_steps, numbers.Integral)
            or self.linear_steps < 1
        ):
            raise ValueError(f"linear_steps must be an integer >= 1 or None; got {self.linear_steps!r}")

    def sigma_range(self):
        return (0.0, DEFAULT_SIGMA_MAX)

    def _resolve_range(self, sigma_min, sigma_max):
        if sigma_min is not None:
            raise ValueError(
                "linear_quadratic takes no sigma_min (logsnr_max): its last nonzero level is "
                f"sigma_max·threshold_noise·(...) by construction; got sigma_min={sigma_min!r}"
            )
        hi = DEFAULT_SIGMA_MAX if sigma_max is None else _check_sigma("sigma_max", sigma_max)
        return 0.0, hi

    def profile(self, n: int) -> Tensor:
        """The fractions s_0..s_N (s_0 = 0, s_N = 1), float64 (N + 1,)."""
        n = _check_steps(n)
        if n == 1:
            return torch.tensor([0.0, 1.0], dtype=torch.float64)
        m = n // 2 if self.linear_steps is None else int(self.linear_steps)
        if m >= n:
            raise ValueError(f"linear_steps must be < the number of steps n={n}; got {m}")
        thr = self.threshold_noise
        i = torch.arange(n, dtype=torch.float64)
        diff = m - thr * n
        q = n - m
        quad_coef = diff / (m * q**2)
        lin_coef = thr / m - 2 * diff / q**2
        const = quad_coef * m**2
        s = torch.where(i < m, i * thr / m, quad_coef * i**2 + lin_coef * i + const)
        return torch.cat([s, torch.ones(1, dtype=torch.float64)])

    def _sigmas(self, n, sigma_min, sigma_max):
        return sigma_max * (1.0 - self.profile(n)[:-1])


@SPACINGS.register("laplace")
@dataclasses.dataclass(frozen=True)
class LaplaceSpacing(Spacing):
    """log σ at Laplace(μ, β) quantiles of the step index (Hang & Gu 2024; ComfyUI's ``get_sigmas_laplace``).

    u_i = i/(N−1), i = 0..N−1 (u = 0 when N = 1), and
    log σ_i = μ − β·sgn(½ − u_i)·log(1 − 2|½ − u_i| + ε), ε = 1e−5, σ_i clipped to [σ_min, σ_max], then 0
    (k-diffusion's sampling.py as ComfyUI ships it, ``get_sigmas_laplace``; its ``LaplaceScheduler``
    node). Without ε and the clip this is the Laplace(μ, β) quantile of log σ at probability 1 − u_i;
    in λ = −2 log σ it is the Laplace(−2μ, 2β) quantile at u_i, i.e. ``schedule("laplace", mu=−2μ,
    b=2β)`` at uniform t = 1 − u_i. ε caps the ends at log σ = μ ± β·log(1/ε) (σ ∈ [0.00316, 316] for
    the defaults μ = 0, β = 0.5), so the grid ends at σ_max (clipped) and at max(σ_min, e^μ·ε^β) — not
    at σ_min unless the clip reaches it. ComfyUI returns the N levels without a trailing 0 (its node
    stops at the last one); here the 0 is appended like every grid. A clip that makes two levels equal
    (too many steps for the range) raises instead of returning a repeated level.
    """

    mu: float = 0.0
    beta: float = 0.5
    eps: ClassVar[float] = 1e-5

    def __post_init__(self):
        check_finite("mu", self.mu)
        check_positive("beta", self.beta)

    def _sigmas(self, n, sigma_min, sigma_max):
        d = 0.5 - _ramp(n)
        log_sigma = self.mu - self.beta * torch.sign(d) * torch.log(1.0 - 2.0 * d.abs() + self.eps)
        out = torch.exp(log_sigma).clamp(sigma_min, sigma_max)
        for end, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
            if int((out == value).sum()) > 1:
                raise ValueError(
                    f"laplace(mu={self.mu!r}, beta={self.beta!r}) with n={n} clips more than one level "
                    f"to {end}={value:.6g}, which would repeat it; use fewer steps, a wider σ range or "
                    "a smaller beta"
                )
        return out


# ----------------------------------------------------------------------------------------------
# beta quantiles
# ----------------------------------------------------------------------------------------------
@SPACINGS.register("beta")
@dataclasses.dataclass(frozen=True)
class BetaSpacing(Spacing):
    """Beta(α, β) quantiles of the step index (Lee et al. 2024); α = β = 0.6 puts steps at both ends.

    Without a schedule (diffusers' ``use_beta_sigmas``): σ_i = σ_min + F⁻¹(1 − i/(N−1))·(σ_max − σ_min),
    F the Beta(α, β) cdf, i = 0..N−1. With a discrete ``schedule`` (ComfyUI's ``beta`` scheduler): the
    indices k_i = round(F⁻¹(1 − i/N)·(T − 1)) into the schedule's σ table (T entries), i = 0..N−1;
    repeated indices (N too large for the table) raise instead of shortening the grid.
    """

    alpha: float = 0.6
    beta: float = 0.6
    schedule: Any = None

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        check_positive("beta", self.beta)
        if self.schedule is not None:
            _discrete_logsnr_table(self.schedule, "beta spacing")

    @property
    def fixed_range(self) -> bool:  # type: ignore[override]
        return self.schedule is not None

    def sigma_range(self):
        if self.schedule is None:
            return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)
        s = _sigma_of_logsnr(_discrete_logsnr_table(self.schedule, "beta spacing"))
        return (float(s[0]), float(s[-1]))

    def _sigmas(self, n, sigma_min, sigma_max):
        if self.schedule is None:
            u = 1.0 - _ramp(n)
            ppf = torch.tensor([beta_ppf(float(x), self.alpha, self.beta) for x in u], dtype=torch.float64)
            return sigma_min + ppf * (sigma_max - sigma_min)
        table = _sigma_of_logsnr(_discrete_logsnr_table(self.schedule, "beta spacing"))
        t_last = table.numel() - 1
        u = 1.0 - np.linspace(0.0, 1.0, n, endpoint=False)
        idx = np.rint(np.array([beta_ppf(float(x), self.alpha, self.beta) for x in u]) * t_last).astype(
            np.int64
        )
        if len(np.unique(idx)) != n:
            raise ValueError(
                f"beta spacing: {n} steps repeat indices of the schedule's {t_last + 1}-entry table; "
                "use fewer steps (ComfyUI would silently return a shorter grid)"
            )
        return table[torch.from_numpy(idx)]


# ----------------------------------------------------------------------------------------------
# uniform in a schedule's time, with diffusers' index rules
# ----------------------------------------------------------------------------------------------
@SPACINGS.register("uniform_t")
@dataclasses.dataclass(frozen=True)
class UniformT(Spacing):
    """t uniform under a schedule; diffusers' leading / linspace / trailing rules for discrete ones.

    ``rule="continuous"``: t runs uniformly from t(σ_max) to t(σ_min) (``schedule.t_of``, clamped to
    the schedule's range) and σ_i = e^(−λ(t_i)/2). The discrete rules pick diffusers timesteps
    (Lin et al. 2024, table 2; ``EulerDiscreteScheduler.set_timesteps``) into the schedule's table of
    T levels (``schedule.logsnr_table()``, index = diffusers timestep):

    * ``leading``:  k_i = (N − 1 − i)·⌊T/N⌋ + steps_offset
    * ``linspace``: k_i = (T − 1)·(1 − i/(N − 1)) (fractional; σ linearly interpolated in the σ table,
      as EulerDiscreteScheduler does — DDIMScheduler rounds these to integers)
    * ``trailing``: k_i = round(T − i·T/N) − 1

    The discrete rules take their σ range from the table (no sigma_min/sigma_max). With a zero-terminal-SNR
    table (``rescale_betas_zero_snr``) the grid starts at σ = inf (λ = −inf), exactly; a sampler on
    VE-scaled x cannot start there (diffusers' Euler replaces ᾱ_T = 0 by 2⁻²⁴, σ ≈ 4096), one that
    works in λ with a v / x₀ / flow prediction can.
    """

    schedule: Any = None
    rule: str = "continuous"
    steps_offset: int = 0

    def __post_init__(self):
        if self.schedule is None:
            raise ValueError(
                "uniform_t needs a schedule, e.g. spacing('uniform_t', schedule=schedule('cosine'))"
            )
        if self.rule not in UNIFORM_T_RULES:
            raise ValueError(
                f"unknown uniform_t rule {self.rule!r}; valid rules: {', '.join(UNIFORM_T_RULES)}"
            )
        if (
            isinstance(self.steps_offset, bool)
            or not isinstance(self.steps_offset, numbers.Integral)
            or self.steps_offset < 0
        ):
            raise ValueError(f"steps_offset must be an integer >= 0; got {self.steps_offset!r}")
        if self.steps_offset and self.rule != "leading":
            raise ValueError(
                f"steps_offset applies to rule='leading' only (as in diffusers); got steps_offset="
                f"{self.steps_offset!r} with rule={self.rule!r}"
            )
        if self.rule in DISCRETE_RULES:
            _discrete_logsnr_table(self.schedule, f"uniform_t rule={self.rule!r}")
        elif not hasattr(self.schedule, "t_of") or not hasattr(self.schedule, "logsnr"):
            raise ValueError(f"uniform_t needs a Schedule (with logsnr and t_of); got {self.schedule!r}")

    @property
    def fixed_range(self) -> bool:  # type: ignore[override]
        return self.rule in DISCRETE_RULES

    def _table(self) -> Tensor:
        return _discrete_logsnr_table(self.schedule, f"uniform_t rule={self.rule!r}")

    def sigma_range(self):
        if self.rule in DISCRETE_RULES:
            s = _sigma_of_logsnr(self._table())
            return (float(s[0]), float(s[-1]))
        return (DEFAULT_SIGMA_MIN, DEFAULT_SIGMA_MAX)

    def timesteps(self, n: int) -> Tensor:
        """The diffusers timesteps of a discrete rule: float64 (n,), decreasing (fractional for linspace)."""
        n = _check_steps(n)
        if self.rule not in DISCRETE_RULES:
            raise ValueError(
                f"timesteps() needs a discrete rule ({', '.join(DISCRETE_RULES)}); got {self.rule!r}"
            )
        T = self._table().numel()
        if self.rule == "linspace":
            ts = np.linspace(0, T - 1, n, dtype=np.float64)[::-1].copy()
        elif self.rule == "leading":
            ratio = T // n
            if ratio < 1:
                raise ValueError(f"rule='leading' needs n <= T = {T} steps; got n={n}")
            ts = (np.arange(0, n) * ratio)[::-1].astype(np.float64) + self.steps_offset
        else:  # trailing
            ts = np.round(np.arange(T, 0, -T / n)).astype(np.float64) - 1
            if len(ts) != n:
                raise ValueError(f"rule='trailing' needs n <= T = {T} steps; got n={n}")
        if ts.max() > T - 1 or ts.min() < 0:
            raise ValueError(
                f"rule={self.rule!r} with n={n}, steps_offset={self.steps_offset} gives timesteps outside "
                f"[0, {T - 1}]"
            )
        if len(np.unique(ts)) != n:
            raise ValueError(
                f"rule={self.rule!r} with n={n} repeats timesteps of the {T}-entry table; use fewer steps"
            )
        return torch.from_numpy(ts)

    def _sigmas(self, n, sigma_min, sigma_max):
        if self.rule in DISCRETE_RULES:
            table = _sigma_of_logsnr(self._table()).numpy()
            ts = self.timesteps(n).numpy()
            return torch.from_numpy(np.interp(ts, np.arange(len(table)), table))
        lam_ends = torch.tensor([-2.0 * math.log(sigma_max), -2.0 * math.log(sigma_min)], dtype=torch.float64)
        t_hi, t_lo = (float(x) for x in self.schedule.t_of(lam_ends))
        t = torch.linspace(t_hi, t_lo, n, dtype=torch.float64)
        return _sigma_of_logsnr(self.schedule.logsnr(t).to(torch.float64))


# ----------------------------------------------------------------------------------------------
# ComfyUI's schedulers over a model's discrete σ table
# ----------------------------------------------------------------------------------------------
COMFY_ZERO_TOL = 1e-5
"""ComfyUI treats a table σ ≤ this (``math.isclose(σ, 0, abs_tol=1e-5)``) as the final 0 of a grid."""


def sd_schedule() -> Any:
    """The DDPM table of Stable Diffusion 1.x/2.x and SDXL: scaled_linear β from 0.00085 to 0.012, T = 1000.

    ComfyUI's default ``ModelSamplingDiscrete`` (its ``linear`` beta schedule is diffusers'
    ``scaled_linear``); σ runs from 0.0291672 (index 0) to 14.6146 (index 999).
    """
    from noiselevels.schedules import schedule

    return schedule("ddpm", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def _table_at(table: Tensor, ts: Tensor) -> Tensor:
    """σ at (fractional) indices ``ts`` of an increasing σ table: the entry itself at an integer index,
    log σ linear in the index between entries (ComfyUI's ``ModelSamplingDiscrete.sigma``)."""
    lo = ts.floor().long()
    w = ts - lo.to(ts.dtype)
    hi = (lo + 1).clamp(max=table.numel() - 1)
    log_table = torch.log(table)
    between = torch.exp((1.0 - w) * log_table[lo] + w * log_table[hi])
    return torch.where(w == 0, table[lo], between)


@dataclasses.dataclass(frozen=True)
class _ModelTable(Spacing):
    """Base of ComfyUI's table schedulers: levels read from a model's σ table (``schedule``).

    ``schedule`` is a discrete schedule with a ``logsnr_table()`` (default :func:`sd_schedule`); its
    σ table σ_k = e^(−λ_k/2), k = 0..T−1, increases with k like ComfyUI's ``model_sampling.sigmas``
    (k = the diffusers timestep). The range comes from the table (no sigma_min/sigma_max).
    Subclasses implement ``timesteps(n)``: the (possibly fractional) table indices of the n nonzero
    levels, decreasing. ComfyUI stores the table in float32; here it is float64, so values agree to
    float32 precision.
    """

    schedule: Any = dataclasses.field(default_factory=sd_schedule)
    fixed_range: ClassVar[bool] = True

    def __post_init__(self):
        self.table()

    def table(self) -> Tensor:
        """The model's σ table, float64 (T,), increasing (index 0 = least noise)."""
        lam = _discrete_logsnr_table(self.schedule, f"{self.name} spacing")
        if not torch.isfinite(lam).all():
            raise ValueError(
                f"{self.name} spacing needs a finite σ table; the schedule's has λ = ±inf (e.g. "
                "rescale_betas_zero_snr, σ = inf at the last timestep)"
            )
        if not (lam.diff() < 0).all():
            raise ValueError(f"{self.name} spacing needs a σ table that increases with the index")
        return _sigma_of_logsnr(lam)

    def sigma_range(self):
        s = self.table()
        return (float(s[0]), float(s[-1]))

    def timesteps(self, n: int) -> Tensor:
        raise NotImplementedError

    def _sigmas(self, n, sigma_min, sigma_max):
        return _table_at(self.table(), self.timesteps(n))


@SPACINGS.register("simple")
@dataclasses.dataclass(frozen=True)
class Simple(_ModelTable):
    """Every (T/N)-th entry of a model's σ table from the top (ComfyUI ``simple``).

    k_i = T − 1 − ⌊i·(T/N)⌋, i = 0..N−1, σ_i = table[k_i], then 0. The grid starts at the table's
    largest σ; its last nonzero level is table[T − 1 − ⌊(N−1)·T/N⌋], not the table's smallest
    (unless N = T). When N divides T this is diffusers' ``trailing`` rule. ComfyUI's quirk, kept:
    i·(T/N) is a float64 product truncated to an integer, so where it should be an integer it can
    land one below (T = 1000, N = 38, i = 19: 499.99999999999994 → k = 500, not 499). N > T would
    repeat entries and raises.
    """

    def timesteps(self, n: int) -> Tensor:
        """k_i = T − 1 − ⌊i·(T/N)⌋ (float64 (n,), decreasing integers)."""
        n = _check_steps(n)
        T = self.table().numel()
        if n > T:
            raise ValueError(
                f"simple: at most T = {T} steps on the model's {T}-entry σ table (more would repeat "
                f"entries); got n={n}"
            )
        stride = T / n
        return torch.tensor([T - 1 - math.floor(i * stride) for i in range(n)], dtype=torch.float64)


def _ddim_stride(T: int, steps: int) -> int:
    return max(T // steps, 1)


def _ddim_step_count(T: int, n: int, drop_first: bool) -> int:
    """Steps ComfyUI's ddim_uniform runs when asked for n on a T-entry table."""
    m = n + 1 if drop_first else n
    return len(range(1, T, _ddim_stride(T, m))) - int(drop_first)


@SPACINGS.register("ddim_uniform")
@dataclasses.dataclass(frozen=True)
class DDIMUniform(_ModelTable):
    """DDIM's uniform timesteps 1, 1 + ⌊T/N⌋, 1 + 2⌊T/N⌋, … of a model's σ table (ComfyUI ``ddim_uniform``).

    k_j = 1 + j·⌊T/N⌋ for every k_j < T, taken from the top, σ = table[k], then 0. Index 0 (the table's
    smallest σ) is never used and the grid starts below the table's top (SD, N = 10: indices
    901, 801, …, 1). This is diffusers' ``leading`` rule with ``steps_offset=1``. ComfyUI quirks:
    (a) the rule gives ⌈(T − 1)/⌊T/N⌋⌉ steps, which is N only for some N (T = 1000: N = 6 gives 7,
    N = 7 gives 8); ComfyUI runs the extra steps, here such N raise and the message names the nearest
    N that keep the count (N ≤ 5, 8, 9, 10, 20, 25, 27, 37, 40, 50, 100, … for T = 1000); N ≥ T raises.
    (b) When table[1] ≤ 1e-5 (:data:`COMFY_ZERO_TOL`) ComfyUI asks the rule for N + 1 steps and uses
    table[1] as the final level instead of appending 0; here that level becomes the exact 0.
    """

    def _drops_first(self, table: Tensor) -> bool:
        return bool(table[1] <= COMFY_ZERO_TOL)

    def timesteps(self, n: int) -> Tensor:
        """The k_j, decreasing (float64 (n,), integers)."""
        n = _check_steps(n)
        table = self.table()
        T, drop = table.numel(), self._drops_first(table)
        got = _ddim_step_count(T, n, drop)
        if got != n:
            ok = [m for m in range(1, T) if _ddim_step_count(T, m, drop) == m]
            below = [m for m in ok if m < n]
            above = [m for m in ok if m > n]
            near = " or ".join(f"n={m}" for m in (below[-1:] + above[:1]))
            raise ValueError(
                f"ddim_uniform: on the model's {T}-entry σ table ComfyUI's rule for {n} steps (indices "
                f"from 1 in strides of {_ddim_stride(T, n + int(drop))}) gives {got} steps, not {n}; "
                f"grids here have exactly n steps: use {near}"
            )
        k = np.arange(1, T, _ddim_stride(T, n + int(drop)), dtype=np.float64)[::-1]
        return torch.from_numpy(k[:n].copy())


@SPACINGS.register("normal")
@dataclasses.dataclass(frozen=True)
class Normal(_ModelTable):
    """Uniform in the model's timestep from the top of its σ table to the bottom (ComfyUI ``normal``).

    t_i = (T − 1)·(1 − i/(N − 1)), i = 0..N−1 (t = T − 1 when N = 1), σ_i = σ(t_i) with log σ linear
    in t between table entries (ComfyUI's ``ModelSamplingDiscrete.sigma``), then 0: the grid runs from
    the table's largest σ to its smallest. Same timesteps as diffusers' ``linspace`` rule, which
    interpolates σ itself instead of log σ (they agree where t_i is an integer). ComfyUI quirk, kept:
    when table[0] ≤ 1e-5 (:data:`COMFY_ZERO_TOL`) it takes N + 1 timesteps and table[0] as the final
    level; here that level becomes the exact 0 (the ``sgm_uniform`` timesteps).
    """

    def _drops_last_timestep(self, table: Tensor) -> bool:
        return bool(table[0] <= COMFY_ZERO_TOL)

    def timesteps(self, n: int) -> Tensor:
        """The t_i, decreasing (float64 (n,), fractional)."""
        n = _check_steps(n)
        table = self.table()
        T = table.numel()
        m = n + 1 if self._drops_last_timestep(table) else n
        return torch.from_numpy(np.linspace(T - 1, 0, m)[:n].copy())


@SPACINGS.register("sgm_uniform")
@dataclasses.dataclass(frozen=True)
class SGMUniform(Normal):
    """``normal`` with N + 1 timesteps and the last (t = 0) dropped (ComfyUI ``sgm_uniform``).

    t_i = (T − 1)·(1 − i/N), i = 0..N−1, σ_i = σ(t_i) (log σ linear between table entries), then 0:
    the step to 0 starts at t = (T − 1)/N instead of at the table's smallest σ (the SGM / SDXL
    "uniform" discretisation).
    """

    def _drops_last_timestep(self, table: Tensor) -> bool:
        return True


# ----------------------------------------------------------------------------------------------
# tables: AYS and custom grids
# ----------------------------------------------------------------------------------------------
def _loglinear_interp(table: Tensor, m: int) -> Tensor:
    """m points of a decreasing positive table, log σ linear in an evenly spaced [0, 1] index."""
    if m == table.numel():
        return table.clone()
    xs = np.linspace(0.0, 1.0, table.numel())
    ys = np.log(table.numpy()[::-1])
    new = np.exp(np.interp(np.linspace(0.0, 1.0, m), xs, ys))[::-1].copy()
    return torch.from_numpy(new)


def _rescale_log(table: Tensor, sigma_min: float, sigma_max: float) -> Tensor:
    """Map log σ of a table affinely so that its ends become (sigma_min, sigma_max)."""
    lo, hi = math.log(float(table[-1])), math.log(float(table[0]))
    if hi == lo:
        raise ValueError("a one-level table cannot be rescaled to a σ range")
    a = (math.log(sigma_max) - math.log(sigma_min)) / (hi - lo)
    return torch.exp(math.log(sigma_min) + (torch.log(table) - lo) * a)


@SPACINGS.register("ays")
@dataclasses.dataclass(frozen=True)
class AYS(Spacing):
    """Align Your Steps (Sabour et al. 2024): the published 10-step tables for sd15, sdxl, svd.

    For N steps the 11-value table is interpolated log-linearly over an evenly spaced index to N + 1
    points and the last one (the table's σ_min) is replaced by 0 — so N = 10 gives the table with
    its last value → 0 (ComfyUI's AYS node, diffusers' ``AysSchedules``). Default range: the table's
    ends; a given range maps log σ of the table affinely onto it (same shape, new ends).
    """

    model: str = "sd15"

    def __post_init__(self):
        if self.model not in AYS_TABLES:
            raise ValueError(f"unknown AYS table {self.model!r}; valid tables: {', '.join(AYS_TABLES)}")

    def table(self) -> Tensor:
        return torch.tensor(AYS_TABLES[self.model], dtype=torch.float64)

    def sigma_range(self):
        t = AYS_TABLES[self.model]
        return (t[-1], t[0])

    def _sigmas(self, n, sigma_min, sigma_max):
        table = self.table()
        if (sigma_min, sigma_max) != self.sigma_range():
            table = _rescale_log(table, sigma_min, sigma_max)
        return _loglinear_interp(table, n + 1)[:-1]


@dataclasses.dataclass(frozen=True)
class Custom(Spacing):
    """A given grid of σ_ve values (decreasing, positive, optionally ending with 0), e.g. an optimised one.

    Built with ``spacing("custom", sigmas=[...])``. With m nonzero values, N = m steps returns them
    (and the 0) exactly; another N interpolates log σ linearly over an evenly spaced index to N nonzero
    points. A given range maps log σ affinely onto it. ``grid`` holds the values with the trailing 0.
    """

    name: ClassVar[str] = "custom"
    grid: tuple[float, ...] = ()

    def __post_init__(self):
        g = self.grid
        vals = g.tolist() if isinstance(g, (Tensor, np.ndarray)) else list(g)
        try:
            vals = [float(v) for v in vals]
        except (TypeError, ValueError) as e:
            raise ValueError(f"custom sigmas must be numbers; got {g!r}") from e
        if vals and vals[-1] == 0.0:
            vals = vals[:-1]
        if not vals:
            raise ValueError(
                "custom spacing needs at least one positive sigma (e.g. sigmas=[80.0, 1.0, 0.0])"
            )
        for v in vals:
            if not math.isfinite(v) or v <= 0:
                raise ValueError(f"custom sigmas must be finite and > 0 (except a trailing 0); got {v!r}")
        for a, b in itertools.pairwise(vals):
            if not a > b:
                raise ValueError(f"custom sigmas must be strictly decreasing; got {a!r} then {b!r}")
        object.__setattr__(self, "grid", (*vals, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "sigmas": list(self.grid)}

    def describe(self) -> str:
        return f"custom(sigmas={list(self.grid)!r})"

    def table(self) -> Tensor:
        """The nonzero values, float64 (m,)."""
        return torch.tensor(self.grid[:-1], dtype=torch.float64)

    def sigma_range(self):
        return (self.grid[-2], self.grid[0])

    def _resolve_range(self, sigma_min, sigma_max):
        if (sigma_min is not None or sigma_max is not None) and len(self.grid) == 2:
            raise ValueError(
                "a one-level custom grid cannot be mapped to a σ range; omit sigma_min/sigma_max"
            )
        return super()._resolve_range(sigma_min, sigma_max)

    def _sigmas(self, n, sigma_min, sigma_max):
        table = self.table()
        if (sigma_min, sigma_max) != self.sigma_range():
            table = _rescale_log(table, sigma_min, sigma_max)
        if n != table.numel() and table.numel() == 1:
            raise ValueError(f"a one-level custom grid has 1 step; got n={n}")
        return _loglinear_interp(table, n)


@SPACINGS.register("custom")
def custom(**kw: Any) -> Custom:
    """A given grid of σ_ve values (decreasing, optionally ending with 0): ``custom(sigmas=[...])``."""
    bad = [k for k in kw if k != "sigmas"]
    if bad:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, bad))} for spacing 'custom'; valid parameters: sigmas"
        )
    if "sigmas" not in kw:
        raise ValueError(
            "spacing 'custom' needs sigmas=[...] (decreasing σ_ve values, optionally ending with 0)"
        )
    return Custom(grid=kw["sigmas"])


# ----------------------------------------------------------------------------------------------
# aligned with a training density
# ----------------------------------------------------------------------------------------------
@SPACINGS.register("from_density")
@dataclasses.dataclass(frozen=True)
class FromDensity(Spacing):
    """Quantiles of a training density p(λ): steps are placed where training put its samples.

    Restrict p to [λ_min, λ_max] = [−2 log σ_max, −2 log σ_min], take the quantiles at N evenly spaced
    probabilities from 0 to 1 (both ends included, so the grid spans the range exactly like ``karras``):
    λ_i = F⁻¹(F(λ_min) + i/(N−1)·(F(λ_max) − F(λ_min))), σ_i = e^(−λ_i/2), clipped to the range.
    With CDCD-style time warping this is the "reuse F⁻¹ as the sampling schedule" rule.
    """

    density: Any = None

    def __post_init__(self):
        if self.density is None or not (hasattr(self.density, "cdf") and hasattr(self.density, "icdf")):
            raise ValueError(
                "from_density needs a density with cdf and icdf (e.g. density('logit_normal')); "
                f"got {self.density!r}"
            )

    def _sigmas(self, n, sigma_min, sigma_max):
        lam_lo, lam_hi = -2.0 * math.log(sigma_max), -2.0 * math.log(sigma_min)
        ends = torch.tensor([lam_lo, lam_hi], dtype=torch.float64)
        u_lo, u_hi = (float(x) for x in self.density.cdf(ends).to(torch.float64))
        if not u_hi - u_lo > 1e-12:
            raise ValueError(
                f"the density {self.density.describe()} has no mass in λ ∈ [{lam_lo:.4g}, {lam_hi:.4g}] "
                f"(σ ∈ [{sigma_min:.4g}, {sigma_max:.4g}])"
            )
        u = u_lo + _ramp(n) * (u_hi - u_lo)
        lam = self.density.icdf(u).to(torch.float64).clamp(lam_lo, lam_hi)
        out = _sigma_of_logsnr(lam)
        out[0] = sigma_max  # the ends exactly (not through exp(−½·(−2 log σ)))
        if n > 1:
            out[-1] = sigma_min
        return out
