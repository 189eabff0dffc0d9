"""diffusers example-script presets: the SD3 / Flux DreamBooth scripts' ``--weighting_scheme`` and the
DDPM scripts' ``--snr_gamma``.

Options mapped: ``train_dreambooth_sd3.py``'s ``--weighting_scheme`` (``logit_normal``, ``mode``,
``sigma_sqrt``, ``cosmap``, ``none``; with ``--logit_mean``, ``--logit_std``, ``--mode_scale``), the
scheduler ``shift`` and ``--precondition_outputs``; the SD 1.x / 2.x / XL scripts' ``--snr_gamma`` with
``prediction_type`` ``epsilon`` / ``v_prediction``.

The SD3 script passes its one ``--weighting_scheme`` to both ``compute_density_for_timestep_sampling``
(the density) and ``compute_loss_weighting_for_sd3`` (the weight); each silently falls back (to uniform
/ to 1) for the names it does not know. With ``--precondition_outputs 1`` (its default) the loss is the
x₀-MSE of x̂₀ = z − σ·û, so the weight multiplies an x₀ loss (σ² times the flow loss).

Conventions: λ = log(α²/σ²) (large = clean); flow σ = t = sigmoid(−λ/2) (t = 0 clean); SNR = e^λ;
weights in ε-MSE units.
"""

from __future__ import annotations

from noiselevels.components import check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    Builder,
    ToolPresets,
    _ddpm_cfg,
    _ddpm_density,
    _prediction_param,
    _sd3_like,
    _sd_schedule,
    _w,
)

__all__ = ["TABLE"]

TABLE = ToolPresets("diffusers")
_preset = TABLE.add
_SD3_SCRIPT_SCHEMES = ("logit_normal", "mode", "sigma_sqrt", "cosmap", "none")


@_preset("diffusers:sd3", "SD3 script: one --weighting_scheme for both the density and the weight")
def _diffusers_sd3(
    weighting_scheme: str = "logit_normal",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    shift: float = 3.0,
    precondition_outputs: bool = True,
) -> NoiseConfig:
    """diffusers ``train_dreambooth_sd3.py``: u = ``compute_density_for_timestep_sampling(weighting_scheme)``
    (logit_normal / mode, anything else silently uniform), σ read from the scheduler's shifted table
    (``shift``, 3.0 for SD3), weight ``compute_loss_weighting_for_sd3(weighting_scheme)`` (sigma_sqrt /
    cosmap, anything else silently 1). With ``precondition_outputs`` (the script's default) the loss is
    the x₀-MSE of x̂₀ = z − σ·û, so the weight multiplies an x₀ loss; otherwise the flow loss."""
    return _sd3_like(
        weighting_scheme,
        logit_mean,
        logit_std,
        mode_scale,
        shift,
        units="x0" if precondition_outputs else "flow",
    )


def _sd3_scheme(scheme: str) -> Builder:
    """The ``diffusers:<scheme>`` preset: ``diffusers:sd3`` with ``weighting_scheme`` fixed."""

    def build(shift: float = 3.0, precondition_outputs: bool = True) -> NoiseConfig:
        return _diffusers_sd3(weighting_scheme=scheme, shift=shift, precondition_outputs=precondition_outputs)

    build.__doc__ = (
        f"diffusers SD3 script with ``--weighting_scheme {scheme}``: the name goes to both the timestep "
        "density and the loss weight (see ``diffusers:sd3``)."
    )
    return build


for _scheme in _SD3_SCRIPT_SCHEMES:
    _summary = f"SD3 --weighting_scheme {_scheme} (density and weight)"
    _preset(f"diffusers:{_scheme}", _summary)(_sd3_scheme(_scheme))


@_preset("diffusers:snr_gamma", "--snr_gamma γ: min(SNR, γ)/SNR (ε) or /(SNR + 1) (v) = min-SNR-γ")
def _diffusers_snr_gamma(snr_gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """diffusers example scripts' ``--snr_gamma``: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v —
    min-SNR-γ in ε units for both — with uniform timesteps on the SD scaled_linear table."""
    param = _prediction_param(prediction_type)
    check_positive("snr_gamma", snr_gamma)
    sched = _sd_schedule()
    return _ddpm_cfg(param, sched, _ddpm_density(sched), _w("min_snr", gamma=float(snr_gamma)))
