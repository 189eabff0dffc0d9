"""SimpleTuner's timestep sampling and loss weights re-implemented in numpy from its source
(bghira/SimpleTuner at bc8e6ab7738ce457a2ed8eb2d26cadd91c6442cb), for the preset reference tests.

* ``simpletuner/helpers/models/common.py`` ``sample_flow_sigmas`` lines 5057–5089 (flow σ draws);
* ``simpletuner/helpers/training/custom_schedule.py`` ``apply_flow_schedule_shift`` lines 443–478,
  ``generate_timestep_weights`` lines 61–98, ``segmented_timestep_selection`` lines 18–58;
* ``common.py`` lines 5981–5995 (DDPM timestep draws), 6378–6397 (min-SNR-γ loss weights);
* diffusers' Flux ``calculate_shift`` (``flux/pipeline.py`` lines 122–132).
"""

from __future__ import annotations

import math

import numpy as np

T = 1000


def flow_shift(flow_schedule_shift=3.0, flow_schedule_auto_shift=False, image_seq_len=None):
    """apply_flow_schedule_shift's factor (Flux.1-dev scheduler config: 256, 4096, 0.5, 1.15)."""
    if flow_schedule_shift is not None and flow_schedule_shift > 0:
        return flow_schedule_shift
    if flow_schedule_auto_shift:
        m = (1.15 - 0.5) / (4096 - 256)
        return math.exp(image_seq_len * m + 0.5 - m * 256)
    return None


def _shifted(sigmas, shift):
    return sigmas if shift is None else sigmas * shift / (1 + (shift - 1) * sigmas)


def draw_flow_sigmas(
    rng,
    n,
    sampler="sigmoid",
    flow_sigmoid_scale=1.0,
    timestep_sampling_offset=0.0,
    flow_beta_schedule_alpha=2.0,
    flow_beta_schedule_beta=2.0,
    **shift_kw,
):
    """n flow σ as sample_flow_sigmas draws them (default sampler, uniform, beta), then shifted."""
    if sampler == "sigmoid":
        normal = rng.standard_normal(n) + timestep_sampling_offset
        sigmas = 1.0 / (1.0 + np.exp(-flow_sigmoid_scale * normal))
    elif sampler == "uniform":
        sigmas = rng.random(n)
    else:
        sigmas = rng.beta(flow_beta_schedule_alpha, flow_beta_schedule_beta, n)
    return _shifted(sigmas, flow_shift(**shift_kw))


def draw_fast_sigmas(rng, n):
    """``flux_fast_schedule``: random.choices([1.0]·7 + [0.75, 0.5, 0.25]), not shifted (lines 5085–5089)."""
    return rng.choice(np.array([1.0] * 7 + [0.75, 0.5, 0.25]), n)


def flow_lambda(sigmas):
    """λ = 2·log((1 − σ)/σ)."""
    return 2 * np.log((1 - sigmas) / sigmas)


def timestep_weights(strategy="none", multiplier=1.0, begin=0, end=1000, portion=0.25):
    """generate_timestep_weights (float64)."""
    w = np.ones(T)
    n = int(portion * T)
    if strategy == "later":
        sl = slice(-n, None)
    elif strategy == "earlier":
        sl = slice(0, n)
    elif strategy == "range":
        sl = slice(begin, end)
    else:
        return w
    w[sl] *= multiplier
    return w / w.sum()


def draw_timesteps(rng, n, bsz=1, segmented=True, **bias):
    """n integer timesteps: one multinomial over the weights (bsz 1) or, batch position by batch position,
    segmented_timestep_selection (n/bsz batches; position i always draws from its own segment)."""
    w = timestep_weights(**bias)
    if bsz == 1 or not segmented:
        return rng.choice(T, size=n, p=w / w.sum())
    seg = max(T // bsz, 1)
    out = []
    for i in range(bsz):
        start = T - 1 - i * seg
        stop = max(start - seg, 0) if i != bsz - 1 else 0
        w[stop : start + 1] /= w[stop : start + 1].sum()  # in place, as the tool's view does
        p = w[stop : start + 1]
        out.append(stop + rng.choice(start + 1 - stop, size=n // bsz, p=p / p.sum()))
    return np.concatenate(out)


def sd_logsnr():
    """λ of each integer timestep of SD's scaled_linear table (0.00085 → 0.012)."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2
    ac = np.cumprod(1 - betas)
    return np.log(ac / (1 - ac))


def min_snr_eps_weight(lam, snr_gamma, prediction_type="epsilon"):
    """The tool's loss multiplier min(SNR, γ)/SNR (ε) or /(SNR + 1) (v), converted to ε units."""
    snr = np.exp(lam)
    if prediction_type == "v_prediction":
        return np.minimum(snr, snr_gamma) / (snr + 1) * (1 + np.exp(-lam))  # v loss = (1 + 1/SNR)·ε loss
    return np.minimum(snr, snr_gamma) / snr


def ks(samples, cdf):
    """Two-sided KS distance between the samples' empirical cdf and ``cdf`` (a numpy function)."""
    x = np.sort(samples)
    f = cdf(x)
    n = len(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - f), np.max(f - (i - 1) / n)))
