"""ai-toolkit's ``content_or_style`` index sampling as an exact density over λ.

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
import math

import torch
from torch import Tensor

from noiselevels.components import DENSITIES, Density
from noiselevels.training.densities.base import ExactDensity, _check_density, _require

__all__ = ["CONTENT_OR_STYLE", "AiToolkitContentOrStyle", "AiToolkitRandomGrid"]

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
