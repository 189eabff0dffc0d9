"""A numpy re-implementation of OneTrainer's timestep sampling and loss weights, written from its source
(Nerogar/OneTrainer @ 23df3832e8f2):

* ``modules/modelSetup/mixin/ModelSetupNoiseMixin.py`` lines 122–253 (``_get_timestep_discrete``),
* ``ModelSetupFlowMatchingMixin.py`` lines 14–36 (flow σ_i = (i + 1)/T), ``ModelSetupDiffusionMixin.py`` 15–37
  (DDPM ᾱ[i] from the β table),
* ``ModelSetupDiffusionLossMixin.py`` lines 199–341 (loss weights),
* ``modules/model/FluxModel.py`` lines 366–377 (the dynamic shift).

Arithmetic in float32 where the tool's tensors are float32. Plain functions; no noiselevels imports.
"""

from __future__ import annotations

import math

import numpy as np

T = 1000
_f32 = np.float32


def draw_timesteps(
    rng, n, dist, w=0.0, b=0.0, shift=1.0, min_noising_strength=0.0, max_noising_strength=1.0, T=T
):
    """n integer timesteps as ``_get_timestep_discrete`` draws them (not deterministic)."""
    lo, hi = int(T * min_noising_strength), int(T * max_noising_strength)
    num = hi - lo
    if dist in ("UNIFORM", "LOGIT_NORMAL", "HEAVY_TAIL", "BETA"):
        if dist == "UNIFORM":
            ts = lo + (hi - lo) * rng.random(n, dtype=_f32)
        elif dist == "LOGIT_NORMAL":
            normal = rng.normal(b, w + 1.0, n).astype(_f32)
            ts = (1.0 / (1.0 + np.exp(-normal))).astype(_f32) * num + lo
        elif dist == "HEAVY_TAIL":
            u = rng.random(n, dtype=_f32)
            u = 1.0 - u - _f32(w) * (np.cos(_f32(math.pi / 2.0) * u) ** 2 - 1.0 + u)
            ts = u * num + lo
        else:
            a, bb = max(1e-4, w), max(1e-4, b)
            if abs(bb - 1.0) < 1e-5:
                u = rng.random(n, dtype=_f32) ** _f32(1.0 / a)
            elif abs(a - 1.0) < 1e-5:
                u = 1.0 - rng.random(n, dtype=_f32) ** _f32(1.0 / bb)
            else:
                # torch's Beta sample is clamped below 1 (never 1.0 in float32)
                u = np.minimum(rng.beta(a, bb, n).astype(_f32), np.nextafter(_f32(1), _f32(0)))
            ts = u * num + lo
        ts = ts.astype(_f32)
        ts = _f32(T * shift) * ts / (_f32(shift - 1) * ts + _f32(T))
        i = ts.astype(np.int64)  # .int(): truncation toward zero
        if (i >= T).any():  # float32 rounding put a draw on T: the tool's table lookup raises IndexError
            raise IndexError(f"timestep {int(i.max())} is out of bounds for a table of {T}")
        return i
    weights = multinomial_weights(dist, w, b, shift, num).astype(np.float64)
    return rng.choice(num, size=n, p=weights / weights.sum()) + lo


def multinomial_weights(dist, w, b, shift, num):
    """The weights of lines 221–249 (float32, as the tool computes them)."""
    s = _f32(shift)
    lin = np.linspace(0.0, 1.0, num, dtype=_f32)
    inv = lin / (s - s * lin + lin)
    deriv = s / (s + lin - lin * s) ** 2
    if dist == "COS_MAP":
        q = 2.0 / (_f32(math.pi) - 2.0 * _f32(math.pi) * inv + 2.0 * _f32(math.pi) * inv**2)
    elif dist == "SIGMOID":
        x = inv / (s - s * inv + inv)  # line 238: the inverse shift once more
        q = 1.0 / (1.0 + np.exp(-_f32(w) * (x - _f32(b + 0.5))))
    elif dist == "INVERTED_PARABOLA":
        q = np.clip(-_f32(w) * (inv - _f32(b + 0.5)) ** 2 + 2.0, 0.0, None)
    else:
        raise ValueError(dist)
    return (q * deriv).astype(_f32)


def flux_dynamic_shift(image_seq_len, base_seq=256, max_seq=4096, base_shift=0.5, max_shift=1.15):
    m = (max_shift - base_shift) / (max_seq - base_seq)
    return math.exp(image_seq_len * m + base_shift - m * base_seq)


def sd_alphas_cumprod(T=T):
    betas = np.linspace(0.00085**0.5, 0.012**0.5, T, dtype=np.float64) ** 2  # scaled_linear
    return np.cumprod(1.0 - betas)


def logsnr_of_timestep(i, model):
    """λ of integer timesteps: flow σ = (i + 1)/T; eps/v the SD table's ᾱ[i]."""
    i = np.asarray(i)
    if model == "flow":
        sigma = (i + 1.0) / T
        with np.errstate(divide="ignore"):
            return 2.0 * np.log((1.0 - sigma) / sigma)
    abar = sd_alphas_cumprod()[i]
    return np.log(abar / (1.0 - abar))


def loss_weight(i, loss_weight_fn, strength, model):
    """The tool's weight on its own loss (flow velocity, ε or v) at integer timesteps i."""
    i = np.asarray(i)
    if model == "flow":
        if loss_weight_fn == "CONSTANT":
            return np.ones(i.shape)
        if loss_weight_fn == "SIGMA":
            return (i + 1.0) / T
        raise NotImplementedError(loss_weight_fn)
    abar = sd_alphas_cumprod()[i]
    snr = abar / (1.0 - abar)
    v = model == "v"
    if loss_weight_fn == "CONSTANT":
        return np.ones(i.shape)
    if loss_weight_fn == "MIN_SNR_GAMMA":
        return np.minimum(snr, strength) / (snr + 1.0 if v else snr)
    if loss_weight_fn == "DEBIASED_ESTIMATION":
        return 1.0 / np.sqrt(np.minimum(snr, 1000.0) + (1.0 if v else 0.0))
    if loss_weight_fn == "P2":
        return (1.0 + snr + (1.0 if v else 0.0)) ** -strength
    raise NotImplementedError(loss_weight_fn)


def to_eps_units(weight, lam, model):
    """A weight on the model's own loss in ε-MSE units: ×1 (ε), ×(1 + e^−λ) (v), ×(1 + e^−λ/2)² (flow)."""
    if model == "eps":
        return weight
    if model == "v":
        return weight * (1.0 + np.exp(-lam))
    return weight * (1.0 + np.exp(-lam / 2.0)) ** 2
