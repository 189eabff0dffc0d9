"""ai-toolkit's ``content_or_style`` index sampling as an exact density over λ, and its ``lognorm_blend``
grid as the exact law of a table entry (``lognorm_blend_table``).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean).

Source: ostris/ai-toolkit at commit 27a03a91f23eb1b757d5ec2e80ee3e129cfcc350,
``jobs/process/BaseSDTrainProcess.py`` lines 1273–1299: with ``content_or_style: content`` the grid index is
u³·T, with ``style`` (1 − u³)·T (u ~ U(0, 1), T = 1000), into the scheduler's grid of the timestep type,
sorted from noisy (index 0) to clean. Index fraction q into a grid whose levels follow the base density
with cdf F (in λ, from noisy to clean) is the level F⁻¹(q), so ``content`` draws λ = F⁻¹(u³)
(cdf F^(1/3)) and ``style`` draws λ = F⁻¹(1 − u³) (cdf 1 − (1 − F)^(1/3)).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, Density
from noiselevels.training.densities.atoms import FlowTimeAtoms
from noiselevels.training.densities.base import ExactDensity, _check_density, _require

__all__ = ["CONTENT_OR_STYLE", "AiToolkitContentOrStyle", "AiToolkitRandomGrid", "lognorm_blend_table"]

CONTENT_OR_STYLE = ("balanced", "content", "style")
_F64 = torch.float64


@DENSITIES.register("ai_toolkit_content_or_style")
@dataclasses.dataclass(frozen=True)
class AiToolkitContentOrStyle(ExactDensity):
    """``base`` read through ai-toolkit's cubic index: ``content`` cdf F^(1/3) (mass to the noisy end),
    ``style`` cdf 1 − (1 − F)^(1/3) (mass to the clean end); F is ``base``'s cdf over λ.

    p(λ) = ⅓·F^(−2/3)·f (content) or ⅓·(1 − F)^(−2/3)·f (style); icdf(u) = F⁻¹(u³) or F⁻¹(1 − (1 − u)³).
    With a uniform-σ base these are σ ~ Beta(1, ⅓) (content) and Beta(⅓, 1) (style).
    """

    base: Density | None = None
    content_or_style: str = "content"

    def __post_init__(self) -> None:
        _check_density("base", _require("ai_toolkit_content_or_style", "base", self.base))
        if self.content_or_style not in ("content", "style"):
            raise ValueError(
                f"content_or_style {self.content_or_style!r} is not a cubic index; valid: content, style"
            )

    @property
    def support(self) -> tuple[float, float]:
        return self.base.support

    def _log_prob(self, lam: Tensor) -> Tensor:
        f = self.base.log_prob(lam).to(_F64)
        F = self.base.cdf(lam).to(_F64)
        tail = F if self.content_or_style == "content" else 1.0 - F
        return math.log(1.0 / 3.0) + f - (2.0 / 3.0) * torch.log(tail)

    def _cdf(self, lam: Tensor) -> Tensor:
        F = self.base.cdf(lam).to(_F64)
        if self.content_or_style == "content":
            return F ** (1.0 / 3.0)
        return 1.0 - (1.0 - F) ** (1.0 / 3.0)

    def _icdf(self, u: Tensor) -> Tensor:
        q = u**3 if self.content_or_style == "content" else 1.0 - (1.0 - u) ** 3
        return self.base.icdf(q).to(_F64)


@DENSITIES.register("ai_toolkit_random_grid")
@dataclasses.dataclass(frozen=True)
class AiToolkitRandomGrid(ExactDensity):
    """The level ai-toolkit reads from a grid redrawn every step (``sigmoid``): ``grid_size`` iid levels
    from ``base``, sorted from noisy to clean, read at the drawn index K — exact.

    The level at index k is the (k + 1)-th smallest λ, so with B ~ Binomial(n, F(λ)) levels below λ,
    P(Λ ≤ λ) = E[P(K < B)] = Σ_j C(j)·Bin(j; n, F) (a Bernstein polynomial of C(j) = P(K < j)), and
    p(λ) = f(λ)·n·Σ_j (C(j + 1) − C(j))·Bin(j; n − 1, F). K (BaseSDTrainProcess.py 1273–1318): ``balanced``
    uniform on [lo, hi − 1]; ``content`` ⌊lo + u³·n·(hi − lo)/(n − 1)⌋, ``style`` with 1 − u³, clamped
    to [lo, hi] (lo, hi = ``min_denoising_steps``, ``max_denoising_steps``).
    """

    base: Density | None = None
    content_or_style: str = "balanced"
    min_denoising_steps: int = 0
    max_denoising_steps: int = 999
    grid_size: int = 1000

    def __post_init__(self) -> None:
        _check_density("base", _require("ai_toolkit_random_grid", "base", self.base))
        if self.content_or_style not in CONTENT_OR_STYLE:
            raise ValueError(
                f"content_or_style {self.content_or_style!r}; valid: {', '.join(CONTENT_OR_STYLE)}"
            )
        lo, hi, n = self.min_denoising_steps, self.max_denoising_steps, self.grid_size
        if not (isinstance(n, int) and n >= 2 and isinstance(lo, int) and isinstance(hi, int)
                and 0 <= lo < hi <= n - 1):
            raise ValueError(
                f"need integers 0 <= min_denoising_steps < max_denoising_steps <= grid_size - 1; got "
                f"{lo!r}, {hi!r}, grid_size={n!r}"
            )

    @property
    def support(self) -> tuple[float, float]:
        return self.base.support

    def _c(self) -> Tensor:
        """C(j) = P(K < j) for j = 0 … n."""
        n, lo, hi = self.grid_size, self.min_denoising_steps, self.max_denoising_steps
        j = torch.arange(n + 1, dtype=_F64)
        if self.content_or_style == "balanced":
            return ((j - lo) / (hi - lo)).clamp(0.0, 1.0)
        r = ((j - lo) * (n - 1) / (n * (hi - lo))).clamp(0.0, 1.0)
        c = r ** (1.0 / 3.0) if self.content_or_style == "content" else 1.0 - (1.0 - r) ** (1.0 / 3.0)
        return torch.where(j > hi, 1.0, c)

    @staticmethod
    def _binom(n: int, p: Tensor) -> Tensor:
        """Bin(j; n, p) for j = 0 … n, shape (..., n + 1)."""
        j = torch.arange(n + 1, dtype=_F64)
        logc = math.lgamma(n + 1) - torch.lgamma(j + 1) - torch.lgamma(n - j + 1)
        p = p.unsqueeze(-1).clamp(1e-300, 1.0 - 1e-16)
        return torch.exp(logc + j * torch.log(p) + (n - j) * torch.log1p(-p))

    def _cdf(self, lam: Tensor) -> Tensor:
        F = self.base.cdf(lam).to(_F64)
        return (self._binom(self.grid_size, F) * self._c()).sum(-1)

    def _log_prob(self, lam: Tensor) -> Tensor:
        F = self.base.cdf(lam).to(_F64)
        dc = torch.diff(self._c())
        slope = self.grid_size * (self._binom(self.grid_size - 1, F) * dc).sum(-1)
        return self.base.log_prob(lam).to(_F64) + torch.log(slope)


@functools.lru_cache(maxsize=8)
def lognorm_blend_table(num_timesteps: int = 1000, alpha: float = 0.75, std: float = 0.333) -> FlowTimeAtoms:
    """The law of one entry of ai-toolkit's ``lognorm_blend`` grid, redrawn every step, exactly.

    custom_flowmatch_sampler.py 195–217: n = int(T·α) draws x ~ LogNormal(0, std), t₁ = (1 − x/max x)·T,
    plus linspace(T, 1, int(T·(1 − α))), truncated to integers i (σ = i/T). One of the n draws is the
    maximum (i = 0, σ = 0); any other is R = x/M below it. Given M = m the others are iid x ≤ m, so
    with M = e^(std·z), z the largest of n standard normals (density n·φ(z)·Φ(z)^(n−1)):

        G(r) = P(R ≤ r) = ∫ n·φ(z)·Φ(z)^(n−2)·Φ(z + ln r / std) dz,

    and P(i = k) = G(1 − k/T) − G(1 − (k + 1)/T) (quadrature over z ∈ [−2, 8], 10001 points; the pooled
    frequencies of simulated tables agree to 0.002 in cdf). The atoms are σ = i/T, i = 1 … T, each spread
    over (σ − 1/T, σ] (``FlowTimeAtoms``); the maximum's entry and the non-maximum draws that truncate to
    i = 0 (probability 1.3e-5 each at the defaults) are put on i = 1, the cleanest cell — so that the
    balanced draw ``randint(0, T − 1)``, which never reads the last (cleanest) of the sorted entries,
    removes exactly that cell's extra mass when the preset cuts the top 1/T quantile.
    """
    n, n_lin = int(num_timesteps * alpha), int(num_timesteps * (1 - alpha))
    T = num_timesteps
    z = torch.linspace(-2.0, 8.0, 10001, dtype=_F64)
    log_phi = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    wz = torch.exp(math.log(n) + log_phi + (n - 2) * torch.special.log_ndtr(z))
    r = 1.0 - torch.arange(T + 1, dtype=_F64) / T  # r_k = 1 − k/T, k = 0 … T
    G = torch.stack([
        torch.trapezoid(wz * torch.special.ndtr(z + math.log(float(rk)) / std), z)
        if rk > 0 else z.new_zeros(())
        for rk in r
    ])
    G[0] = 1.0
    pk = (G[:-1] - G[1:]).clamp(min=0.0)  # k = 0 … T − 1
    counts = (n - 1) * pk / pk.sum()
    lin = torch.linspace(float(T), 1.0, n_lin, dtype=torch.float32).to(torch.int64)
    counts = counts + torch.bincount(lin, minlength=T + 1)[:T].to(_F64)
    counts = torch.cat([counts, torch.bincount(lin, minlength=T + 1)[T:].to(_F64)])  # i = T (σ = 1)
    counts[1] += counts[0] + 1.0  # the maximum (i = 0) and the i = 0 non-maxima onto the cleanest cell
    i = torch.nonzero(counts[1:] > 0).flatten() + 1
    times = tuple((i.to(_F64) / T).tolist())
    return FlowTimeAtoms(times=times, weights=tuple(counts[i].tolist()), cell=1.0 / T)
