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

import math

from noiselevels.components import Weighting, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    _SD3_SCHEMES,
    ToolPresets,
    _check_param,
    _d,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _logit_normal,
    _sd3_like,
    _sd3_weight,
    _sd_schedule,
    _shift_density,
    _uniform_flow,
)
from noiselevels.schedules import flux_mu
from noiselevels.training.tool_weightings import KohyaWeighting

__all__ = ["TABLE"]

TABLE = ToolPresets("kohya")
_preset = TABLE.add


def _kohya_weight(weighting_scheme: str) -> Weighting:
    """``--weighting_scheme`` as a weight on the flow loss only (σ⁻², cosmap, else 1), in ε units."""
    return _sd3_weight(weighting_scheme, "flow")


# -- flow models (SD3, Flux) --------------------------------------------------------------------
@_preset("kohya:uniform", "--timestep_sampling uniform: σ = u")
def _kohya_uniform(weighting_scheme: str = "none") -> NoiseConfig:
    """kohya ``--timestep_sampling uniform``: σ = u, flow loss; ``--weighting_scheme`` acts only as a loss
    weight here (``sigma_sqrt`` σ⁻², ``cosmap``; the density names give weight 1)."""
    return _flow_cfg(_uniform_flow(), _kohya_weight(weighting_scheme))


@_preset("kohya:sigmoid", "--timestep_sampling sigmoid: σ = sigmoid(k·n), logit-normal(0, k)")
def _kohya_sigmoid(sigmoid_scale: float = 1.0, weighting_scheme: str = "none") -> NoiseConfig:
    """kohya ``--timestep_sampling sigmoid``: σ = sigmoid(k·n), k = ``--sigmoid_scale``: logit-normal(0, k)
    over flow σ, λ ~ N(0, (2k)²). Flow loss; ``--weighting_scheme`` only as a weight (σ⁻² / cosmap)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    return _flow_cfg(_logit_normal(0.0, sigmoid_scale), _kohya_weight(weighting_scheme))


@_preset("kohya:shift", "--timestep_sampling shift: S(sigmoid(k·n); s), logit-normal(log s, k)")
def _kohya_shift(
    sigmoid_scale: float = 1.0, discrete_flow_shift: float = 3.0, weighting_scheme: str = "none"
) -> NoiseConfig:
    """kohya ``--timestep_sampling shift``: σ = S(sigmoid(k·n); s), s = ``--discrete_flow_shift`` (default
    3). Since logit S(σ; s) = logit σ + log s this is exactly logit-normal(log s, k):
    λ ~ N(−2·log s, (2k)²)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    check_positive("discrete_flow_shift", discrete_flow_shift)
    return _flow_cfg(
        _logit_normal(math.log(discrete_flow_shift), sigmoid_scale), _kohya_weight(weighting_scheme)
    )


@_preset("kohya:flux_shift", "--timestep_sampling flux_shift: TS(sigmoid(k·n); μ(seq len))")
def _kohya_flux_shift(
    sigmoid_scale: float = 1.0, image_seq_len: int = 4096, weighting_scheme: str = "none"
) -> NoiseConfig:
    """kohya ``--timestep_sampling flux_shift``: σ = e^μ/(e^μ + 1/σ₀ − 1), σ₀ = sigmoid(k·n), μ linear in the
    image token count (h·w/4 of the latent; 4096 for 1024²) from (256, 0.5) to (4096, 1.15). Exactly
    logit-normal(μ, k): λ ~ N(−2μ, (2k)²)."""
    check_positive("sigmoid_scale", sigmoid_scale)
    mu = flux_mu(image_seq_len)
    return _flow_cfg(_logit_normal(mu, sigmoid_scale), _kohya_weight(weighting_scheme))


@_preset("kohya:sigma", "--timestep_sampling sigma: --weighting_scheme is both the density and the weight")
def _kohya_sigma(
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    discrete_flow_shift: float = 3.0,
) -> NoiseConfig:
    """kohya ``--timestep_sampling sigma`` (the SD3 / diffusers path): u from ``--weighting_scheme``
    (``logit_normal`` (``--logit_mean``, ``--logit_std``), ``mode`` (``--mode_scale``), anything else
    uniform), σ read from the shifted scheduler (``--discrete_flow_shift``), and the same name used
    again as the loss weight (``sigma_sqrt`` σ⁻², ``cosmap``, else 1). Flow loss.

    ``--weighting_scheme`` defaults to ``uniform`` as in kohya (library/train_util.py l. 4278-4280 at
    48d368fa). u indexes the descending scheduler table (library/flux_train_utils.py l. 500-512):
    ``timesteps[int(u·1000)]``, σ = shift(1 − u), so ``--logit_mean`` enters with its sign flipped
    (``_sd3_like``). The 1000-point σ grid is treated as continuous: KS ≤ 0.006 against
    tests/presets/ref_kohya.py (100k draws; logit_mean 0.5 was KS 0.38 with the old sign).
    Not modelled yet: ``--model_prediction_type`` (its default ``sigma_scaled`` is the only mode where
    kohya applies this weight; see docs/presets.md)."""
    return _sd3_like(weighting_scheme, logit_mean, logit_std, mode_scale, discrete_flow_shift, units="flow")


@_preset("kohya:sd3", "sd3_train_network.py: σ = S(u; training_shift), x0 loss × the SD3 weight")
def _kohya_sd3(
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    training_shift: float = 1.0,
) -> NoiseConfig:
    """kohya's SD3 trainer (library/sd3_train_utils.py l. 918-949, sd3_train_network.py l. 332-367 at
    48d368fa): u from ``--weighting_scheme`` as in ``kohya:sigma`` but *not* flipped, u' = S(u; s) with
    s = ``--training_shift`` (default 1.0), σ = int(u'·1000)/1000; the output becomes −σ·out + x_t with
    target x₀, i.e. the x₀ loss (ε units: × e^−λ) times the scheme's weight (σ⁻², cosmap, else 1).
    The 1000-point grid is treated as continuous (KS ≤ 0.006). ``--min_timestep`` / ``--max_timestep``
    (an affine map of u' onto [min, max)/1000) are not modelled yet."""
    _check_param(weighting_scheme, _SD3_SCHEMES, "weighting_scheme")
    check_positive("training_shift", training_shift)
    if weighting_scheme == "logit_normal":
        check_positive("logit_std", logit_std)
        dens = _logit_normal(logit_mean + math.log(training_shift), logit_std)
    elif weighting_scheme == "mode":
        dens = _d("mode", scale=float(mode_scale))
        if training_shift != 1.0:
            dens = _shift_density(dens, training_shift)
    else:
        dens = _uniform_flow(training_shift)
    return _flow_cfg(dens, _sd3_weight(weighting_scheme, "x0"))


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
