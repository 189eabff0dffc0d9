"""SimpleTuner presets: its flow-matching timestep options and ``--snr_gamma`` for DDPM models.

Options mapped: ``flow_sigmoid_scale`` with a logit offset (its default sigmoid sampling),
``flow_use_uniform_schedule``, ``flow_use_beta_schedule`` (``flow_beta_schedule_alpha``,
``flow_beta_schedule_beta``), ``flow_schedule_shift``; ``--snr_gamma`` with ``prediction_type``
``epsilon`` / ``v_prediction`` (the diffusers formula, min-SNR-γ in ε units).

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); SNR = e^λ;
weights in ε-MSE units; flow models use the plain flow-velocity loss.
"""

from __future__ import annotations

import math

from noiselevels.components import check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _beta,
    _ddpm_cfg,
    _ddpm_density,
    _flow_cfg,
    _logit_normal,
    _prediction_param,
    _sd_schedule,
    _uniform_flow,
    _w,
)

__all__ = ["TABLE"]

TABLE = ToolPresets("simpletuner")
_preset = TABLE.add


@_preset("simpletuner:sigmoid", "σ = sigmoid(k·n + offset), optionally shifted (SimpleTuner's flow default)")
def _st_sigmoid(
    flow_sigmoid_scale: float = 1.0, offset: float = 0.0, flow_schedule_shift: float = 1.0
) -> NoiseConfig:
    """SimpleTuner flow models (default): σ = sigmoid(k·n + offset), k = ``flow_sigmoid_scale``, then
    ``flow_schedule_shift`` s (σ' = sσ/(1 + (s − 1)σ)): logit-normal(offset + log s, k). Flow loss."""
    check_positive("flow_sigmoid_scale", flow_sigmoid_scale)
    check_positive("flow_schedule_shift", flow_schedule_shift)
    return _flow_cfg(_logit_normal(offset + math.log(flow_schedule_shift), flow_sigmoid_scale))


@_preset("simpletuner:uniform", "flow_use_uniform_schedule: σ uniform (optionally shifted)")
def _st_uniform(flow_schedule_shift: float = 1.0) -> NoiseConfig:
    """SimpleTuner ``flow_use_uniform_schedule``: σ ~ U(0, 1), then the shift s. Flow loss."""
    check_positive("flow_schedule_shift", flow_schedule_shift)
    return _flow_cfg(_uniform_flow(flow_schedule_shift))


@_preset("simpletuner:beta", "flow_use_beta_schedule: σ ~ Beta(α, β)")
def _st_beta(flow_beta_schedule_alpha: float = 2.0, flow_beta_schedule_beta: float = 2.0) -> NoiseConfig:
    """SimpleTuner ``flow_use_beta_schedule``: σ ~ Beta(α, β) (defaults 2, 2). Flow loss."""
    return _flow_cfg(_beta(flow_beta_schedule_alpha, flow_beta_schedule_beta))


@_preset("simpletuner:snr_gamma", "DDPM models: --snr_gamma as in diffusers (min-SNR-γ)")
def _st_snr_gamma(snr_gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """SimpleTuner ``--snr_gamma`` on DDPM models: the diffusers formula (min-SNR-γ in ε units): uniform
    timesteps on the SD scaled_linear table, min(SNR, γ)/SNR on ε, min(SNR, γ)/(SNR + 1) on v."""
    param = _prediction_param(prediction_type)
    check_positive("snr_gamma", snr_gamma)
    sched = _sd_schedule()
    return _ddpm_cfg(param, sched, _ddpm_density(sched), _w("min_snr", gamma=float(snr_gamma)))
