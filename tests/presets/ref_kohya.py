"""numpy re-implementation of kohya sd-scripts' flow timestep draw, written from
library/flux_train_utils.py at commit 48d368fa557731ad0488c07304dfeba8c07910eb:
``get_noisy_model_input_and_timesteps`` (l. 471-529), ``compute_density_for_timestep_sampling`` (l. 433-451),
``compute_loss_weighting_for_sd3`` (l. 454-468); the ``sigma`` branch indexes the descending
FlowMatchEulerDiscreteScheduler table (diffusers ``scheduling_flow_match_euler_discrete.py`` ``__init__``)."""

from __future__ import annotations

import math

import numpy as np

T = 1000


def _shift(s: np.ndarray, shift: float) -> np.ndarray:
    return shift * s / (1 + (shift - 1) * s)


def flux_mu(seq_len: int) -> float:
    """``get_lin_function(y1=0.5, y2=1.15)`` from (256, 0.5) to (4096, 1.15)."""
    m = (1.15 - 0.5) / (4096 - 256)
    return m * seq_len + (0.5 - m * 256)


def _u_sigma(rng, n, weighting_scheme, logit_mean, logit_std, mode_scale):
    if weighting_scheme == "logit_normal":
        return 1 / (1 + np.exp(-rng.normal(logit_mean, logit_std, n)))
    u = rng.random(n)
    if weighting_scheme == "mode":
        return 1 - u - mode_scale * (np.cos(math.pi * u / 2) ** 2 - 1 + u)
    return u


def draw(
    n: int,
    seed: int,
    timestep_sampling: str,
    sigmoid_scale: float = 1.0,
    discrete_flow_shift: float = 3.0,
    image_seq_len: int = 4096,
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
) -> np.ndarray:
    """σ drawn as kohya draws it (float64)."""
    rng = np.random.default_rng(seed)
    if timestep_sampling == "uniform":
        return rng.random(n)
    if timestep_sampling in ("sigmoid", "shift", "flux_shift"):
        s = 1 / (1 + np.exp(-sigmoid_scale * rng.standard_normal(n)))
        if timestep_sampling == "shift":
            return _shift(s, discrete_flow_shift)
        if timestep_sampling == "flux_shift":
            e = math.exp(flux_mu(image_seq_len))
            return e / (e + (1 / s - 1))
        return s
    # "sigma": scheduler table sigmas[i] = shift((T - i)/T), i = int(u·T)
    u = _u_sigma(rng, n, weighting_scheme, logit_mean, logit_std, mode_scale)
    idx = np.clip((u * T).astype(np.int64), 0, T - 1)
    table = _shift(np.arange(T, 0, -1, dtype=np.float64) / T, discrete_flow_shift)
    return table[idx]


def loss_weight(weighting_scheme: str, sigma: np.ndarray) -> np.ndarray:
    """``compute_loss_weighting_for_sd3`` on the flow loss."""
    if weighting_scheme == "sigma_sqrt":
        return sigma**-2.0
    if weighting_scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigma + 2 * sigma**2))
    return np.ones_like(sigma)


def logsnr(sigma: np.ndarray) -> np.ndarray:
    """λ = 2·log((1 − σ)/σ) of flow σ (σ = 1 → −inf)."""
    with np.errstate(divide="ignore"):
        return 2 * (np.log1p(-sigma) - np.log(sigma))


def ks(samples: np.ndarray, cdf) -> float:
    """Two-sided KS distance between the samples (λ) and an exact cdf."""
    x = np.sort(samples)
    f = np.asarray(cdf(x), dtype=np.float64)
    n = x.size
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))


# -- DDPM trainers: library/train_util.py l. 6064, 6089-6090 (torch.randint(min_timestep, max_timestep)),
# library/custom_train_functions.py l. 68-108 (the loss multipliers, applied in train_network.py's order)
def sd_alphas_cumprod() -> np.ndarray:
    """SD 1.x/2.x/XL DDPM table: scaled_linear β from 0.00085 to 0.012."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    return np.cumprod(1 - betas)


def ddpm_draw(n: int, seed: int, min_timestep: int = 0, max_timestep: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(min_timestep, max_timestep, n)


def ddpm_lambda(timesteps: np.ndarray) -> np.ndarray:
    a = sd_alphas_cumprod()[timesteps]
    return np.log(a / (1 - a))


def ddpm_weight_eps_units(
    timesteps: np.ndarray,
    min_snr_gamma: float = 0.0,
    debiased_estimation_loss: bool = False,
    scale_v_pred_loss_like_noise_pred: bool = False,
    v_pred_like_loss: float = 0.0,
    v_parameterization: bool = False,
) -> np.ndarray:
    """kohya's multiplier chain on the prediction's own loss, times that loss's ε-unit factor
    ((SNR + 1)/SNR for v, 1 for ε)."""
    a = sd_alphas_cumprod()[timesteps]
    snr = a / (1 - a)
    snr_c = np.minimum(snr, 1000.0)
    w = np.ones_like(snr)
    if min_snr_gamma:
        w = w * np.minimum(snr, min_snr_gamma) / (snr + 1 if v_parameterization else snr)
    if scale_v_pred_loss_like_noise_pred:
        w = w * snr_c / (snr_c + 1)
    if v_pred_like_loss:
        w = w * (1 + v_pred_like_loss * (snr_c + 1) / snr_c)
    if debiased_estimation_loss:
        w = w * (1 / (snr_c + 1) if v_parameterization else 1 / np.sqrt(snr_c))
    return w * ((snr + 1) / snr if v_parameterization else 1.0)


def sd3_draw(n, seed, weighting_scheme="uniform", logit_mean=0.0, logit_std=1.0, mode_scale=1.29,
             training_shift=1.0, min_timestep=0, max_timestep=T):
    """library/sd3_train_utils.py ``get_noisy_model_input_and_timesteps`` (l. 918-949 at 48d368fa)."""
    rng = np.random.default_rng(seed)
    u = _u_sigma(rng, n, weighting_scheme, logit_mean, logit_std, mode_scale)
    u = _shift(u, training_shift)
    return (u * (max_timestep - min_timestep) + min_timestep).astype(np.int64) / T


def flux_loss(out, latents, noise, sigma, model_prediction_type="sigma_scaled", weighting_scheme="uniform"):
    """Per-sample loss of flux_train_network.py (l. 396-399) with ``apply_model_prediction_type``
    (flux_train_utils.py l. 532-547): out, latents, noise (B, D); sigma (B,)."""
    s = sigma[:, None]
    z = s * noise + (1 - s) * latents
    weighting = None
    if model_prediction_type == "additive":
        out = out + z
    elif model_prediction_type == "sigma_scaled":
        out = out * (-s) + z
        weighting = loss_weight(weighting_scheme, sigma)
    loss = ((out - (noise - latents)) ** 2).mean(axis=1)
    return loss if weighting is None else loss * weighting
