"""kohya sd-scripts presets: ``--timestep_sampling`` and ``--weighting_scheme`` for flow models (SD3,
Flux), and the DDPM trainers' loss-weight flags (SD 1.x / 2.x / XL).

Options mapped: ``--timestep_sampling`` = ``uniform``, ``sigmoid`` (``--sigmoid_scale``), ``shift``
(``--discrete_flow_shift``), ``flux_shift`` (the image token count), ``sigma`` (``--weighting_scheme``,
``--logit_mean``, ``--logit_std``, ``--mode_scale``); ``--weighting_scheme`` as a loss weight; and for
DDPM models ``--min_snr_gamma``, ``--debiased_estimation_loss``, ``--scale_v_pred_loss_like_noise_pred``,
``--v_pred_like_loss``, ``--v_parameterization``, ``--min_timestep`` / ``--max_timestep`` and
``--zero_terminal_snr`` (``noiselevels.training.tool_weightings.KohyaWeighting`` chains the weights).

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); SNR = e^λ;
weights in ε-MSE units. Integer timesteps are treated as continuous t = (i + 1)/T.
"""

from __future__ import annotations

import dataclasses
import math

from noiselevels.components import Weighting, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    _SD3_SCHEMES,
    ToolPresets,
    _check_param,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _logit_normal,
    _sd3_density,
    _sd3_like,
    _sd3_weight,
    _sd_schedule,
    _uniform_flow,
)
from noiselevels.schedules import flux_mu
from noiselevels.training.densities.combinators import RescaledT
from noiselevels.training.tool_weightings import KohyaWeighting

__all__ = ["TABLE"]

TABLE = ToolPresets("kohya")
_preset = TABLE.add


_PREDICTION_TYPES = ("raw", "additive", "sigma_scaled")


def _kohya_weight(weighting_scheme: str, model_prediction_type: str) -> Weighting:
    """``--weighting_scheme`` as a weight on the flow loss, in ε units — applied only with
    ``--model_prediction_type sigma_scaled`` (kohya's default).

    library/flux_train_utils.py ``apply_model_prediction_type`` (l. 532-547 at 48d368fa) returns the
    output o as P = o (``raw``), P = o + z_σ (``additive``) or P = z_σ − σ·o (``sigma_scaled``, with
    ``weighting = compute_loss_weighting_for_sd3(weighting_scheme)``: σ⁻², cosmap, else 1), and
    flux_train_network.py (l. 396-399) compares P with the velocity target ε − x₀ in every case. Since
    ε = z_σ + (1 − σ)·v, the loss ‖P − v‖² = ‖ε̂ − ε‖²/(1 − σ)² with ε̂ = z_σ + (1 − σ)·P whatever P is,
    so the three types weight the noise levels identically (the flow loss in ε units) except for the
    scheme's weight, which only ``sigma_scaled`` applies. What they change is the function the network
    learns: under ``sigma_scaled`` o is trained towards (z_σ − v)/σ and under ``additive`` towards v − z_σ,
    so kohya's sampler, which reads o as the velocity, must use the same type as training."""
    _check_param(weighting_scheme, _SD3_SCHEMES, "weighting_scheme")
    _check_param(model_prediction_type, _PREDICTION_TYPES, "model_prediction_type")
    return _sd3_weight(weighting_scheme if model_prediction_type == "sigma_scaled" else "none", "flow")


# -- flow models (SD3, Flux) --------------------------------------------------------------------
@_preset("kohya:uniform", "--timestep_sampling uniform: σ = u")
def _kohya_uniform(
    weighting_scheme: str = "uniform", model_prediction_type: str = "sigma_scaled"
) -> NoiseConfig:
    """kohya ``--timestep_sampling uniform``: σ = u, flow loss; ``--weighting_scheme`` acts only as a loss
    weight here (``sigma_sqrt`` σ⁻², ``cosmap``; the density names give weight 1), and only under
    ``--model_prediction_type sigma_scaled`` (kohya's default; see ``_kohya_weight``)."""
    return _flow_cfg(_uniform_flow(), _kohya_weight(weighting_scheme, model_prediction_type))


@_preset("kohya:sigmoid", "--timestep_sampling sigmoid: σ = sigmoid(k·n), logit-normal(0, k)")
def _kohya_sigmoid(
    sigmoid_scale: float = 1.0, weighting_scheme: str = "uniform", model_prediction_type: str = "sigma_scaled"
) -> NoiseConfig:
    """kohya ``--timestep_sampling sigmoid``: σ = sigmoid(k·n), k = ``--sigmoid_scale``: logit-normal(0, k)
    over flow σ, λ ~ N(0, (2k)²). Flow loss; ``--weighting_scheme`` only as a weight (σ⁻² / cosmap)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    weight = _kohya_weight(weighting_scheme, model_prediction_type)
    return _flow_cfg(_logit_normal(0.0, sigmoid_scale), weight)


@_preset("kohya:shift", "--timestep_sampling shift: S(sigmoid(k·n); s), logit-normal(log s, k)")
def _kohya_shift(
    sigmoid_scale: float = 1.0,
    discrete_flow_shift: float = 3.0,
    weighting_scheme: str = "uniform",
    model_prediction_type: str = "sigma_scaled",
) -> NoiseConfig:
    """kohya ``--timestep_sampling shift``: σ = S(sigmoid(k·n); s), s = ``--discrete_flow_shift`` (default
    3). Since logit S(σ; s) = logit σ + log s this is exactly logit-normal(log s, k):
    λ ~ N(−2·log s, (2k)²)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    check_positive("discrete_flow_shift", discrete_flow_shift)
    return _flow_cfg(
        _logit_normal(math.log(discrete_flow_shift), sigmoid_scale),
        _kohya_weight(weighting_scheme, model_prediction_type),
    )


@_preset("kohya:flux_shift", "--timestep_sampling flux_shift: TS(sigmoid(k·n); μ(seq len))")
def _kohya_flux_shift(
    sigmoid_scale: float = 1.0,
    image_seq_len: int = 4096,
    weighting_scheme: str = "uniform",
    model_prediction_type: str = "sigma_scaled",
) -> NoiseConfig:
    """kohya ``--timestep_sampling flux_shift``: σ = e^μ/(e^μ + 1/σ₀ − 1), σ₀ = sigmoid(k·n), μ linear in the
    image token count (h·w/4 of the latent; 4096 for 1024²) from (256, 0.5) to (4096, 1.15). Exactly
    logit-normal(μ, k): λ ~ N(−2μ, (2k)²)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    mu = flux_mu(image_seq_len)
    return _flow_cfg(_logit_normal(mu, sigmoid_scale), _kohya_weight(weighting_scheme, model_prediction_type))


@_preset("kohya:sigma", "--timestep_sampling sigma: --weighting_scheme is both the density and the weight")
def _kohya_sigma(
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    discrete_flow_shift: float = 3.0,
    model_prediction_type: str = "sigma_scaled",
) -> NoiseConfig:
    """kohya ``--timestep_sampling sigma`` (the SD3 / diffusers path): u from ``--weighting_scheme``
    (``logit_normal`` (``--logit_mean``, ``--logit_std``), ``mode`` (``--mode_scale``), anything else
    uniform), σ read from the shifted scheduler (``--discrete_flow_shift``), and the same name used
    again as the loss weight (``sigma_sqrt`` σ⁻², ``cosmap``, else 1) under ``--model_prediction_type
    sigma_scaled`` (kohya's default; ``raw`` and ``additive`` apply no weight, see ``_kohya_weight``).
    Flow loss.

    ``--weighting_scheme`` defaults to ``uniform`` as in kohya (library/train_util.py l. 4278-4280 at
    48d368fa). u indexes the descending scheduler table (library/flux_train_utils.py l. 500-512):
    ``timesteps[int(u·1000)]``, σ = shift(1 − u), so ``--logit_mean`` enters with its sign flipped
    (``_sd3_like``). The 1000-point σ grid is treated as continuous: KS ≤ 0.006 against
    tests/presets/ref_kohya.py (100k draws; logit_mean 0.5 was KS 0.38 with the old sign)."""
    cfg = _sd3_like(weighting_scheme, logit_mean, logit_std, mode_scale, discrete_flow_shift, units="flow")
    return dataclasses.replace(cfg, weighting=_kohya_weight(weighting_scheme, model_prediction_type))


@_preset("kohya:sd3", "sd3_train_network.py: σ = S(u; training_shift), x0 loss × the SD3 weight")
def _kohya_sd3(
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    training_shift: float = 1.0,
    min_timestep: int = 0,
    max_timestep: int = 1000,
) -> NoiseConfig:
    """kohya's SD3 trainer (library/sd3_train_utils.py l. 918-949, sd3_train_network.py l. 332-367 at
    48d368fa): u from ``--weighting_scheme`` as in ``kohya:sigma`` but *not* flipped, u' = S(u; s) with
    s = ``--training_shift`` (default 1.0), σ = int(u'·(max − min) + min)/1000 with ``--min_timestep`` /
    ``--max_timestep`` (default 0 / 1000: an affine map of u' onto [min, max)/1000, ``RescaledT``); the
    output becomes −σ·out + x_t with target x₀, i.e. the x₀ loss (ε units: × e^−λ) times the scheme's
    weight (σ⁻², cosmap, else 1). The 1000-point grid is treated as continuous (KS ≤ 0.006)."""
    check_positive("training_shift", training_shift)
    dens = _sd3_density(weighting_scheme, logit_mean, logit_std, mode_scale, training_shift)
    lo, hi = _timestep_range(min_timestep, max_timestep)
    if (lo, hi) != (0, 1000):
        dens = RescaledT(base=dens, t_min=lo / 1000, t_max=hi / 1000)
    return _flow_cfg(dens, _sd3_weight(weighting_scheme, "x0"))


def _timestep_range(min_timestep, max_timestep) -> tuple[int, int]:
    for name, v in (("min_timestep", min_timestep), ("max_timestep", max_timestep)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{name} must be an integer in [0, 1000]; got {v!r}")
    if not 0 <= min_timestep < max_timestep <= 1000:
        raise ValueError(f"need 0 <= min_timestep < max_timestep <= 1000; got min_timestep={min_timestep!r}, "
                         f"max_timestep={max_timestep!r}")
    return min_timestep, max_timestep


# -- DDPM models (SD 1.x / 2.x / XL) ------------------------------------------------------------
@_preset("kohya:ddpm", "SD/SDXL training: uniform timesteps with kohya's loss-weight flags")
def _kohya_ddpm(
    min_snr_gamma: float = 0.0,
    debiased_estimation_loss: bool = False,
    scale_v_pred_loss_like_noise_pred: bool = False,
    v_pred_like_loss: float = 0.0,
    v_parameterization: bool = False,
    min_timestep: int = 0,
    max_timestep: int = 1000,
    zero_terminal_snr: bool = False,
) -> NoiseConfig:
    """kohya's SD/SDXL trainers: integer timesteps uniform in [``--min_timestep``, ``--max_timestep``) of
    the scaled_linear table (optionally ``--zero_terminal_snr``), ε- or (``--v_parameterization``)
    v-prediction, and the loss multipliers of :class:`KohyaWeighting` (``--min_snr_gamma``,
    ``--debiased_estimation_loss``, ``--scale_v_pred_loss_like_noise_pred``, ``--v_pred_like_loss``)."""
    sched = _sd_schedule(zero_terminal_snr)
    w = KohyaWeighting(
        min_snr_gamma=float(min_snr_gamma),
        debiased_estimation_loss=debiased_estimation_loss,
        scale_v_pred_loss_like_noise_pred=scale_v_pred_loss_like_noise_pred,
        v_pred_like_loss=float(v_pred_like_loss),
        v_prediction=v_parameterization,
    )
    param = "v" if v_parameterization else "eps"
    return _ddpm_cfg(param, sched, _ddpm_density(sched, min_timestep, max_timestep), w)


@_preset("kohya:min_snr_gamma", "--min_snr_gamma γ: min(SNR, γ)/SNR (ε) or /(SNR + 1) (v) = min-SNR-γ")
def _kohya_min_snr(gamma: float = 5.0, v_parameterization: bool = False) -> NoiseConfig:
    """kohya ``--min_snr_gamma``: min(SNR, γ)/SNR on the ε loss, min(SNR, γ)/(SNR + 1) on the v loss;
    both are min-SNR-γ in ε units."""
    check_positive("gamma", gamma)
    return _kohya_ddpm(min_snr_gamma=gamma, v_parameterization=v_parameterization)


@_preset("kohya:debiased_estimation_loss", "--debiased_estimation_loss: 1/√SNR (ε) or 1/(SNR + 1) on v")
def _kohya_debiased(v_parameterization: bool = False) -> NoiseConfig:
    """kohya ``--debiased_estimation_loss``: 1/√SNR on the ε loss (w_ε = 1/√SNR); 1/(SNR + 1) on the v loss
    (w_ε = 1/SNR — OneTrainer uses 1/√(SNR + 1) for v instead); SNR clamped at 1000."""
    return _kohya_ddpm(debiased_estimation_loss=True, v_parameterization=v_parameterization)


@_preset("kohya:scale_v_pred_loss_like_noise_pred", "× SNR/(SNR + 1) on the v loss: the ε-MSE")
def _kohya_scale_v() -> NoiseConfig:
    """kohya ``--scale_v_pred_loss_like_noise_pred`` (with ``--v_parameterization``): the v loss ×
    SNR/(SNR + 1),
    which is exactly the ε-MSE (w_ε = 1 for SNR ≤ 1000)."""
    return _kohya_ddpm(scale_v_pred_loss_like_noise_pred=True, v_parameterization=True)


@_preset("kohya:v_pred_like_loss", "ε loss × (1 + c·(SNR + 1)/SNR): adds c × a v-like loss")
def _kohya_v_like(v_pred_like_loss: float = 0.1) -> NoiseConfig:
    """kohya ``--v_pred_like_loss c``: the ε loss plus c times the ε loss rescaled to v units,
    w_ε = 1 + c·(SNR + 1)/SNR (SNR clamped at 1000)."""
    check_positive("v_pred_like_loss", v_pred_like_loss)
    return _kohya_ddpm(v_pred_like_loss=v_pred_like_loss)
