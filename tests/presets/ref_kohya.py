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
