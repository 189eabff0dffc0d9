"""ai-toolkit's own loss weight (``timestep_type = "weighted"``), a registered weighting.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from noiselevels.components import WEIGHTINGS, Weighting
from noiselevels.levels import flow_t, to_tensor

__all__ = ["AiToolkitWeighted"]

_F64 = torch.float64


@WEIGHTINGS.register("ai_toolkit_weighted")
@dataclasses.dataclass(frozen=True)
class AiToolkitWeighted(Weighting):
    """An approximation of ai-toolkit's ``weighted`` timestep weight, as a function of the flow σ.

    ai-toolkit multiplies the flow loss by a fixed 1000-entry table. Its shape (research notes §3):
    ≈0.45 as σ → 0, a plateau ≈0.72 for σ ≈ 0.15–0.3, 1.0 near σ ≈ 0.55, a peak ≈1.5 near σ ≈ 0.88 and
    ≈0.9 at σ = 1. This is a smooth parametric curve with that shape, not the table:

        w(σ) = 0.45 + 0.27·(1 − e^(−σ/0.05)) + 0.78·exp(−(σ − 0.88)²/(2s²)),
        s = 0.23 for σ < 0.88, s = 0.07 for σ ≥ 0.88

    (values 0.45, 0.71, 1.00, 1.50, 0.90 at σ = 0, 0.15, 0.55, 0.88, 1). The weight multiplies the
    flow loss: in ε units wrap it as ``in_units(AiToolkitWeighted(), "flow", process="flow")``.
    """

    def __call__(self, logsnr: Tensor) -> Tensor:
        s = flow_t(logsnr=to_tensor(logsnr).to(_F64))
        width = torch.where(s < 0.88, torch.full_like(s, 0.23), torch.full_like(s, 0.07))
        return 0.45 + 0.27 * (-torch.expm1(-s / 0.05)) + 0.78 * torch.exp(-((s - 0.88) ** 2) / (2 * width**2))
