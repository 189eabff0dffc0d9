"""The training tools' own loss weights that are not a standard weighting: registered components.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean);
SNR = e^λ; every ``__call__`` returns w(λ) in ε-MSE units (Kingma & Gao 2023) unless its docstring
says it multiplies another loss (then wrap it with ``in_units``).

Registered as weightings (``weighting("ai_toolkit_weighted")``, ``weighting("kohya", ...)``) so that a
configuration using them is written to and read back from TOML like any other component; the tool
presets (``noiselevels.presets``) only compose them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from noiselevels.components import WEIGHTINGS, Weighting, check_positive
from noiselevels.levels import flow_t, to_tensor
from noiselevels.training.weightings import weighting

__all__ = ["AiToolkitWeighted", "KohyaWeighting"]

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


@WEIGHTINGS.register("kohya")
@dataclasses.dataclass(frozen=True)
class KohyaWeighting(Weighting):
    """kohya sd-scripts' chain of loss multipliers for DDPM models, in ε units.

    (``library/custom_train_functions.py``.)

    kohya multiplies the loss of the model's target (ε, or v with ``v_prediction``) by, in this order,
    ``min_snr_gamma`` γ (min(SNR, γ)/SNR on ε, min(SNR, γ)/(SNR + 1) on v),
    ``scale_v_pred_loss_like_noise_pred`` (SNR_c/(SNR_c + 1)), ``v_pred_like_loss`` c
    (1 + c·(SNR_c + 1)/SNR_c) and ``debiased_estimation_loss`` (1/√SNR_c on ε, 1/(SNR_c + 1) on v),
    SNR_c = min(SNR, 1000); 0 / False switch a term off. Each term is the registered weighting of the
    same name (``min_snr``, ``scale_v_pred_loss_like_noise_pred``, ``v_pred_like_loss``, ``debiased`` /
    ``debiased_v_kohya``); their product is taken in the target's units and converted to ε units once:
    w_ε = f(λ)·Π_i (term_i/f(λ)), f = 1 (ε) or 1 + e^(−λ) (v).
    """

    min_snr_gamma: float = 0.0
    debiased_estimation_loss: bool = False
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float = 0.0
    v_prediction: bool = False

    def __post_init__(self):
        check_positive("min_snr_gamma", self.min_snr_gamma, allow_zero=True)
        check_positive("v_pred_like_loss", self.v_pred_like_loss, allow_zero=True)
        for k in ("debiased_estimation_loss", "scale_v_pred_loss_like_noise_pred", "v_prediction"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k} must be true or false; got {getattr(self, k)!r}")

    def terms(self) -> list[tuple[Weighting, bool]]:
        """(weighting in ε units, whether it already includes the v conversion) for each active flag."""
        out: list[tuple[Weighting, bool]] = []
        if self.min_snr_gamma > 0:
            out.append((weighting("min_snr", gamma=float(self.min_snr_gamma)), True))
        if self.scale_v_pred_loss_like_noise_pred:
            out.append((weighting("scale_v_pred_loss_like_noise_pred", snr_max=1000.0), True))
        if self.v_pred_like_loss > 0:
            out.append((weighting("v_pred_like_loss", c=float(self.v_pred_like_loss), snr_max=1000.0), False))
        if self.debiased_estimation_loss:
            if self.v_prediction:
                out.append((weighting("debiased_v_kohya", snr_max=1000.0), True))
            else:
                out.append((weighting("debiased", snr_max=1000.0), False))
        return out

    def __call__(self, logsnr: Tensor) -> Tensor:
        lam = to_tensor(logsnr).to(_F64)
        f = (1.0 + torch.exp(-lam)) if self.v_prediction else torch.ones_like(lam)
        w = torch.ones_like(lam)
        for term, converted in self.terms():
            t = to_tensor(term(lam)).to(_F64)
            w = w * (t / f if (converted and self.v_prediction) else t)
        return w * f
