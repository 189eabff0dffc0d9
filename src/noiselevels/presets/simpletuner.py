"""SimpleTuner presets: its flow-matching timestep options and, for DDPM models, ``--snr_gamma`` and
``--timestep_bias_strategy``.

Options mapped: ``flow_sigmoid_scale`` with the dataset's ``timestep_sampling_offset``,
``flow_use_uniform_schedule``, ``flow_use_beta_schedule`` (``flow_beta_schedule_alpha`` / ``_beta``),
``flow_schedule_shift``, ``flow_schedule_auto_shift`` (``image_seq_len``), ``snr_gamma``, ``prediction_type``,
``timestep_bias_strategy`` (``_multiplier``, ``_begin``, ``_end``, ``_portion``), ``train_batch_size`` and
``disable_segmented_timestep_sampling``, ``flux_fast_schedule`` (``simpletuner:fast``: 70 % of draws at σ = 1,
pure noise, as the density ``flow_time_atoms``). Not mapped: ``flow_cubic_schedule_weights``,
``flow_custom_timesteps``.

Read from bghira/SimpleTuner at commit bc8e6ab7738ce457a2ed8eb2d26cadd91c6442cb:

* ``simpletuner/helpers/models/common.py`` ``sample_flow_sigmas`` (lines 5057–5089): σ = sigmoid(k·(n + o)),
  n ~ N(0, 1), k = ``flow_sigmoid_scale``, o = the dataset's ``timestep_sampling_offset`` (lines 4915–4918);
  ``flow_use_uniform_schedule`` σ ~ U(0, 1); ``flow_use_beta_schedule`` σ ~ Beta(α, β); each then shifted;
  ``flux_fast_schedule`` draws σ from [1.0]·7 + [0.75, 0.5, 0.25] (no shift).
* ``simpletuner/helpers/training/custom_schedule.py`` ``apply_flow_schedule_shift`` (lines 443–478): a static
  ``flow_schedule_shift`` s > 0 (default 3.0, field registry ``sections/advanced.py`` line 515) wins; else
  ``flow_schedule_auto_shift`` s = exp(μ), μ = diffusers' Flux ``calculate_shift(image_seq_len, …)``;
  σ' = sσ/(1 + (s − 1)σ).
* DDPM models (``common.py`` lines 5981–5995): integer timesteps drawn with ``generate_timestep_weights``
  (``custom_schedule.py`` lines 61–98) through ``segmented_timestep_selection`` (lines 18–58) when the batch
  has more than one sample; min-SNR-γ loss weights (``common.py`` lines 6378–6397).

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); SNR = e^λ;
weights in ε-MSE units; flow models use the plain flow-velocity loss. An integer timestep i of the SD table
is the cell t ∈ (i/T, (i + 1)/T] of the schedule's continuous view.
"""

from __future__ import annotations

import math

import numpy as np

from noiselevels.components import check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _beta,
    _check_param,
    _d,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _in_units,
    _logit_normal,
    _prediction_param,
    _sd_schedule,
    _shift_density,
    _uniform_flow,
    _w,
)
from noiselevels.training.densities import mixture

__all__ = ["TABLE", "flow_shift", "timestep_pmf"]

TABLE = ToolPresets("simpletuner")
_preset = TABLE.add

_BIAS = ("none", "earlier", "later", "range")


def flow_shift(
    flow_schedule_shift: float | None = 3.0,
    flow_schedule_auto_shift: bool = False,
    image_seq_len: int | None = None,
    base_image_seq_len: int = 256,
    max_image_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    """The shift factor SimpleTuner applies (``apply_flow_schedule_shift``): ``flow_schedule_shift`` when it
    is > 0; else, with ``flow_schedule_auto_shift``, exp(μ) with μ linear in ``image_seq_len`` (frames ·
    (H/p)·(W/p) of the latent, patch p = 2) through (base_image_seq_len, base_shift) and (max_image_seq_len,
    max_shift) (Flux.1-dev's scheduler config values by default); else 1 (no shift)."""
    if flow_schedule_shift is not None and not (
        isinstance(flow_schedule_shift, (int, float))
        and math.isfinite(flow_schedule_shift)
        and flow_schedule_shift >= 0
    ):
        raise ValueError(
            f"flow_schedule_shift must be a number >= 0 (0 or None turns the static shift off); "
            f"got {flow_schedule_shift!r}"
        )
    if flow_schedule_shift is not None and flow_schedule_shift > 0:
        return float(flow_schedule_shift)
    if not flow_schedule_auto_shift:
        return 1.0
    if not isinstance(image_seq_len, int) or isinstance(image_seq_len, bool) or image_seq_len <= 0:
        raise ValueError(
            "flow_schedule_auto_shift needs image_seq_len, the latent's token count "
            f"(frames·(H/2)·(W/2)), a positive integer; got {image_seq_len!r}"
        )
    if max_image_seq_len == base_image_seq_len:
        raise ValueError(
            f"max_image_seq_len must differ from base_image_seq_len; both are {base_image_seq_len!r}"
        )
    m = (max_shift - base_shift) / (max_image_seq_len - base_image_seq_len)
    mu = image_seq_len * m + (base_shift - m * base_image_seq_len)
    return math.exp(mu)


@_preset("simpletuner:sigmoid", "σ = sigmoid(k·(n + offset)), then the shift (SimpleTuner's flow default)")
def _st_sigmoid(
    flow_sigmoid_scale: float = 1.0,
    timestep_sampling_offset: float = 0.0,
    flow_schedule_shift: float | None = 3.0,
    flow_schedule_auto_shift: bool = False,
    image_seq_len: int | None = None,
) -> NoiseConfig:
    """SimpleTuner flow models (default sampler): σ = sigmoid(k·(n + o)), n ~ N(0, 1), k =
    ``flow_sigmoid_scale``, o = the dataset option ``timestep_sampling_offset``, then the shift s
    (:func:`flow_shift`): logit σ ~ N(k·o + log s, k²), i.e. logit-normal(k·o + log s, k). Flow loss."""
    check_positive("flow_sigmoid_scale", flow_sigmoid_scale)
    s = flow_shift(flow_schedule_shift, flow_schedule_auto_shift, image_seq_len)
    mean = flow_sigmoid_scale * float(timestep_sampling_offset) + math.log(s)
    return _flow_cfg(_logit_normal(mean, flow_sigmoid_scale))


@_preset("simpletuner:uniform", "flow_use_uniform_schedule: σ uniform, then the shift")
def _st_uniform(
    flow_schedule_shift: float | None = 3.0,
    flow_schedule_auto_shift: bool = False,
    image_seq_len: int | None = None,
) -> NoiseConfig:
    """SimpleTuner ``flow_use_uniform_schedule``: σ ~ U(0, 1), then the shift s (:func:`flow_shift`)."""
    return _flow_cfg(_uniform_flow(flow_shift(flow_schedule_shift, flow_schedule_auto_shift, image_seq_len)))


@_preset("simpletuner:beta", "flow_use_beta_schedule: σ ~ Beta(α, β), then the shift")
def _st_beta(
    flow_beta_schedule_alpha: float = 2.0,
    flow_beta_schedule_beta: float = 2.0,
    flow_schedule_shift: float | None = 3.0,
    flow_schedule_auto_shift: bool = False,
    image_seq_len: int | None = None,
) -> NoiseConfig:
    """SimpleTuner ``flow_use_beta_schedule``: σ ~ Beta(α, β) (defaults 2, 2), then the shift s
    (:func:`flow_shift`). Flow loss."""
    d = _beta(flow_beta_schedule_alpha, flow_beta_schedule_beta)
    s = flow_shift(flow_schedule_shift, flow_schedule_auto_shift, image_seq_len)
    return _flow_cfg(d if s == 1.0 else _shift_density(d, s))


@_preset("simpletuner:fast", "flux_fast_schedule: σ ∈ {1 (70 %), 0.75, 0.5, 0.25}, no shift (Flux Schnell)")
def _st_fast() -> NoiseConfig:
    """SimpleTuner ``flux_fast_schedule`` (``common.py`` lines 5085–5089 at bc8e6ab7: taken when neither
    ``flow_use_uniform_schedule`` nor ``flow_use_beta_schedule`` is set): σ = ``random.choices([1.0]·7 +
    [0.75, 0.5, 0.25])``, not shifted, timestep σ·1000. Each σ is an atom of ``flow_time_atoms`` spread over
    the cell (σ − 0.005, σ]: each cell's mass is exact; 0.005 is wide enough for the 0.01-step λ grids of
    ``inspect`` / ``compare`` to see every atom (≥ 4 points), and puts the 70 % at pure noise at
    λ < −10.6, outside the default window, as λ = −∞ is. Flow loss."""
    atoms = _d("flow_time_atoms", times=(1.0, 0.75, 0.5, 0.25), weights=(7.0, 1.0, 1.0, 1.0), cell=0.005)
    return _flow_cfg(atoms)


def _bias_weights(strategy, multiplier, begin, end, portion, T) -> np.ndarray:
    """``generate_timestep_weights``: ones, the biased slice × ``timestep_bias_multiplier``, normalised."""
    _check_param(strategy, _BIAS, "timestep_bias_strategy")
    if not 0.0 <= portion <= 1.0:
        raise ValueError(f"timestep_bias_portion must be between 0.0 and 1.0; got {portion!r}")
    w = np.ones(T)
    n = int(portion * T)
    if strategy == "none":
        return w / w.sum()
    if strategy == "range":
        if not (isinstance(begin, int) and begin >= 0):
            raise ValueError(
                f"timestep_bias_begin must be an integer >= 0 for the range strategy; got {begin!r}"
            )
        if not (isinstance(end, int) and end <= T):
            raise ValueError(
                f"timestep_bias_end must be an integer <= {T} for the range strategy; got {end!r}"
            )
        sl = slice(begin, end)
    else:
        sl = slice(-n, None) if strategy == "later" else slice(0, n)
    if not multiplier > 0:
        raise ValueError(
            f"timestep_bias_multiplier must be > 0 (use timestep_bias_strategy='none' to disable the bias); "
            f"got {multiplier!r}"
        )
    w[sl] *= multiplier
    return w / w.sum()


def timestep_pmf(
    timestep_bias_strategy: str = "none",
    timestep_bias_multiplier: float = 1.0,
    timestep_bias_begin: int = 0,
    timestep_bias_end: int = 1000,
    timestep_bias_portion: float = 0.25,
    train_batch_size: int = 1,
    disable_segmented_timestep_sampling: bool = False,
    num_train_timesteps: int = 1000,
) -> np.ndarray:
    """The probability of each integer timestep 0 … T−1 for one sample of the batch (pooled over the batch
    positions). ``train_batch_size`` 1 (or ``disable_segmented_timestep_sampling``): the bias weights. Else
    ``segmented_timestep_selection``: batch position i draws from timesteps [end_i, start_i]
    (start_i = T−1−i·S, S = T // bsz, end_i = max(start_i − S, 0), the last down to 0; neighbouring
    segments share their boundary timestep) with the weights normalised in place, so a shared timestep's
    weight is already divided by the first segment's sum when the next segment reads it."""
    T = num_train_timesteps
    w = _bias_weights(
        timestep_bias_strategy,
        timestep_bias_multiplier,
        timestep_bias_begin,
        timestep_bias_end,
        timestep_bias_portion,
        T,
    )
    bsz = train_batch_size
    if not (isinstance(bsz, int) and not isinstance(bsz, bool) and 1 <= bsz <= T):
        raise ValueError(f"train_batch_size must be an integer in [1, {T}]; got {bsz!r}")
    if bsz == 1 or disable_segmented_timestep_sampling:
        return w
    S = max(T // bsz, 1)
    pmf = np.zeros(T)
    for i in range(bsz):
        start = T - 1 - i * S
        end = max(start - S, 0) if i != bsz - 1 else 0
        w[end : start + 1] /= w[end : start + 1].sum()
        pmf[end : start + 1] += w[end : start + 1]
    return pmf / bsz


def _pmf_density(sched, pmf: np.ndarray):
    """The pmf over integer timesteps as an exact density: runs of equal probability are uniform cells."""
    nz = np.flatnonzero(pmf > 0)
    runs, probs = [], []
    i = int(nz[0])
    last = int(nz[-1])
    while i <= last:
        j = i + 1
        while j <= last and pmf[j] == pmf[i]:
            j += 1
        if pmf[i] > 0:
            runs.append((i, j))
            probs.append(float(pmf[i:j].sum()))
        i = j
    if len(runs) == 1:
        return _ddpm_density(sched, *runs[0])
    return mixture([_ddpm_density(sched, a, b) for a, b in runs], probs)


@_preset("simpletuner:ddpm", "DDPM models: timestep_bias_strategy timesteps, optional --snr_gamma")
def _st_ddpm(
    snr_gamma: float | None = None,
    prediction_type: str = "epsilon",
    timestep_bias_strategy: str = "none",
    timestep_bias_multiplier: float = 1.0,
    timestep_bias_begin: int = 0,
    timestep_bias_end: int = 1000,
    timestep_bias_portion: float = 0.25,
    train_batch_size: int = 1,
    disable_segmented_timestep_sampling: bool = False,
) -> NoiseConfig:
    """SimpleTuner on DDPM models (SD table, scaled_linear 0.00085 → 0.012, T = 1000): integer timesteps with
    the exact pmf of :func:`timestep_pmf` (``timestep_bias_*``, the batch's segmented selection); loss weight
    min(SNR, γ)/SNR on ε, min(SNR, γ)/(SNR + 1) on v (both min(SNR, γ)/SNR in ε units) when ``snr_gamma`` > 0,
    else the plain loss."""
    param = _prediction_param(prediction_type)
    sched = _sd_schedule()
    pmf = timestep_pmf(
        timestep_bias_strategy,
        timestep_bias_multiplier,
        timestep_bias_begin,
        timestep_bias_end,
        timestep_bias_portion,
        train_batch_size,
        disable_segmented_timestep_sampling,
        sched.num_train_timesteps,
    )
    if snr_gamma is None or snr_gamma == 0:
        w = _in_units(_w("constant"), param, "vp")
    else:
        check_positive("snr_gamma", snr_gamma)
        w = _w("min_snr", gamma=float(snr_gamma))
    return _ddpm_cfg(param, sched, _pmf_density(sched, pmf), w)


@_preset("simpletuner:snr_gamma", "DDPM models: --snr_gamma (min-SNR-γ), uniform timesteps")
def _st_snr_gamma(snr_gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """SimpleTuner ``--snr_gamma`` on DDPM models without a timestep bias (``simpletuner:ddpm`` with only
    ``snr_gamma`` set): uniform timesteps on the SD table, min(SNR, γ)/SNR in ε units."""
    check_positive("snr_gamma", snr_gamma)
    return _st_ddpm(snr_gamma=snr_gamma, prediction_type=prediction_type)
