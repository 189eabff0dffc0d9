"""kohya sd-scripts' chain of loss multipliers for DDPM models, a registered weighting.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); SNR = e^λ; w(λ) in ε-MSE units.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from noiselevels.components import WEIGHTINGS, Weighting, check_positive
from noiselevels.levels import to_tensor
from noiselevels.training.weightings import weighting

__all__ = ["KohyaWeighting"]

_F64 = torch.float64


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
