"""A numpy re-implementation of how diffusers' example training scripts draw noise levels and weight
the loss, written from huggingface/diffusers 58eb52c0 (and the installed diffusers 0.42.1):

* ``examples/dreambooth/train_dreambooth_lora_sd3.py`` l. 1784–1821 and ``train_dreambooth_lora_flux.py``
  l. 1766–1820: u = ``compute_density_for_timestep_sampling`` (``diffusers/training_utils.py`` l. 366),
  ``indices = (u * 1000).long()``, σ = ``scheduler.sigmas[indices]`` of the descending table
  σ_i = shift((1000 − i)/1000) (``scheduling_flow_match_euler_discrete.py`` l. 127–135; the Flux
  scheduler has ``use_dynamic_shifting`` so its table is unshifted); weight
  ``compute_loss_weighting_for_sd3`` (l. 393).
* ``examples/text_to_image/train_text_to_image.py`` l. 1022–1038: uniform integer timesteps,
  ``compute_snr`` (l. 82), min(SNR, γ)/SNR (ε) or /(SNR + 1) (v).
"""

from __future__ import annotations

import math

import numpy as np

T = 1000


def sd3_u(rng, n: int, weighting_scheme: str, logit_mean=0.0, logit_std=1.0, mode_scale=1.29):
    """``compute_density_for_timestep_sampling``: logit_normal, mode, else uniform u ∈ [0, 1)."""
    if weighting_scheme == "logit_normal":
        return 1.0 / (1.0 + np.exp(-rng.normal(logit_mean, logit_std, n)))
    u = rng.random(n)
    if weighting_scheme == "mode":
        return 1 - u - mode_scale * (np.cos(math.pi * u / 2) ** 2 - 1 + u)
    return u


def flow_table(shift: float = 1.0) -> np.ndarray:
    """``FlowMatchEulerDiscreteScheduler.sigmas`` (training table): descending shift(k/1000), k = 1000 … 1."""
    s = np.linspace(1, T, T)[::-1] / T
    return shift * s / (1 + (shift - 1) * s)


def flow_sigmas(u: np.ndarray, shift: float = 1.0) -> np.ndarray:
    """σ = table[int(u·1000)], as the scripts index ``scheduler.timesteps`` and then ``sigmas``."""
    idx = (u.astype(np.float32) * np.float32(T)).astype(np.int64)
    return flow_table(shift)[idx]


def sd3_weight(weighting_scheme: str, sigmas: np.ndarray) -> np.ndarray:
    """``compute_loss_weighting_for_sd3``: σ⁻² (sigma_sqrt), 2/(π(1 − 2σ + 2σ²)) (cosmap), else 1."""
    if weighting_scheme == "sigma_sqrt":
        return sigmas**-2.0
    if weighting_scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas**2))
    return np.ones_like(sigmas)


def flow_lambda(sigmas: np.ndarray) -> np.ndarray:
    return 2 * np.log((1 - sigmas) / sigmas)


def sd_alphas_cumprod() -> np.ndarray:
    """SD 1.x/2.x/XL DDPM table: scaled_linear β from 0.00085 to 0.012."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    return np.cumprod(1 - betas)


def snr_gamma_weight(timesteps: np.ndarray, snr_gamma: float, prediction_type: str) -> np.ndarray:
    """``train_text_to_image.py``'s min(SNR, γ)/SNR (epsilon) or min(SNR, γ)/(SNR + 1) (v_prediction),
    on that prediction's own loss."""
    a = sd_alphas_cumprod()[timesteps]
    snr = a / (1 - a)
    w = np.minimum(snr, snr_gamma)
    return w / snr if prediction_type == "epsilon" else w / (snr + 1)


def ddpm_lambda(timesteps: np.ndarray) -> np.ndarray:
    a = sd_alphas_cumprod()[timesteps]
    return np.log(a / (1 - a))


def ks(samples: np.ndarray, cdf) -> float:
    """Kolmogorov–Smirnov distance between the samples' empirical cdf and ``cdf`` (handles ties)."""
    x = np.sort(samples)
    f = cdf(x)
    n = len(x)
    hi = np.searchsorted(x, x, side="right") / n
    lo = np.searchsorted(x, x, side="left") / n
    return float(max(np.max(np.abs(hi - f)), np.max(np.abs(f - lo))))
