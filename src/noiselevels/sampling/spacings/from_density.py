"""Sampling aligned with training: ``from_density`` places the steps at quantiles of a training density."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from noiselevels.components import SPACINGS
from noiselevels.sampling.spacings.base import Spacing, _ramp, _sigma_of_logsnr

__all__ = ["FromDensity"]


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
