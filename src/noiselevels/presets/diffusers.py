"""diffusers example-script presets: the SD3 / Flux DreamBooth scripts' ``--weighting_scheme`` and the
DDPM scripts' ``--snr_gamma``.

Options mapped: ``train_dreambooth_lora_sd3.py``'s ``--weighting_scheme`` (``logit_normal``, ``mode``,
``sigma_sqrt``, ``cosmap``; with ``--logit_mean``, ``--logit_std``, ``--mode_scale``), the scheduler
``shift`` and ``--precondition_outputs``; ``train_dreambooth_lora_flux.py``'s ``--weighting_scheme``
(also ``none``, its default) on the unshifted table; the SD 1.x / 2.x / XL scripts' ``--snr_gamma`` with
``prediction_type`` ``epsilon`` / ``v_prediction`` (``diffusers:ddpm`` without it). u indexes the
*descending* scheduler table, so σ = shift(1 − u).

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
    _in_units,
    _prediction_param,
    _sd3_like,
    _sd_schedule,
    _w,
)

__all__ = ["TABLE"]

TABLE = ToolPresets("diffusers")
_preset = TABLE.add
# train_dreambooth_lora_sd3.py l. 522–526: argparse choices (no "none"); the Flux script adds "none"
_SD3_SCRIPT_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap")
_FLUX_SCRIPT_SCHEMES = ("sigma_sqrt", "logit_normal", "mode", "cosmap", "none")


@_preset("diffusers:sd3", "SD3 script: one --weighting_scheme for both the density and the weight")
def _diffusers_sd3(
    weighting_scheme: str = "logit_normal",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    shift: float = 3.0,
    precondition_outputs: bool = True,
) -> NoiseConfig:
    """diffusers ``examples/dreambooth/train_dreambooth_lora_sd3.py`` (huggingface/diffusers 58eb52c0,
    l. 1784–1821): u = ``compute_density_for_timestep_sampling(weighting_scheme)`` (``training_utils.py``
    l. 366: logit_normal / mode, anything else uniform), σ = ``scheduler.sigmas[int(u·1000)]`` of the
    *descending* shifted table (``shift``, 3.0 in SD3's scheduler config), so σ = shift(1 − u):
    ``logit_mean`` m gives a logit-normal(−m + log shift, ``logit_std``) σ. Weight
    ``compute_loss_weighting_for_sd3(weighting_scheme)`` (l. 393: sigma_sqrt / cosmap, else 1). With
    ``precondition_outputs`` (the script's default, l. 540) the loss is the x₀-MSE of x̂₀ = z − σ·û, so
    the weight multiplies an x₀ loss; otherwise the flow loss. The script's ``--weighting_scheme``
    choices are sigma_sqrt, logit_normal, mode, cosmap (``none`` is the Flux script's: ``diffusers:flux``).
    The 1000-point σ grid is treated as continuous (KS ≤ 0.004 against the script's draws)."""
    if weighting_scheme not in _SD3_SCRIPT_SCHEMES:
        raise ValueError(
            f"weighting_scheme {weighting_scheme!r} is not accepted by train_dreambooth_lora_sd3.py "
            f"(argparse choices: {', '.join(_SD3_SCRIPT_SCHEMES)}); "
            "'none' is the Flux script's (diffusers:flux)"
        )
    return _sd3_like(
        weighting_scheme,
        logit_mean,
        logit_std,
        mode_scale,
        shift,
        units="x0" if precondition_outputs else "flow",
    )


@_preset("diffusers:flux", "Flux script: --weighting_scheme (default none) on the unshifted table, flow loss")
def _diffusers_flux(
    weighting_scheme: str = "none",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
) -> NoiseConfig:
    """diffusers ``examples/dreambooth/train_dreambooth_lora_flux.py`` (58eb52c0, l. 543–547, 1766–1820):
    the same u and weight as ``diffusers:sd3``, but Flux's scheduler config sets ``use_dynamic_shifting``,
    so its training table is *unshifted* (``scheduling_flow_match_euler_discrete.py`` l. 131–133) and the
    script never applies a resolution shift: σ = 1 − u. No ``precondition_outputs``: the weight multiplies
    the flow loss (target noise − x₀). ``--guidance_scale`` is a model input only (no effect on noise
    levels). The 1000-point σ grid is treated as continuous."""
    if weighting_scheme not in _FLUX_SCRIPT_SCHEMES:
        raise ValueError(
            f"unknown weighting_scheme {weighting_scheme!r}; train_dreambooth_lora_flux.py accepts "
            f"{', '.join(_FLUX_SCRIPT_SCHEMES)}"
        )
    return _sd3_like(weighting_scheme, logit_mean, logit_std, mode_scale, 1.0, units="flow")


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


@_preset("diffusers:none", "Flux script's default --weighting_scheme none: uniform σ, unshifted, flow loss")
def _diffusers_none() -> NoiseConfig:
    """``--weighting_scheme none`` exists only in ``train_dreambooth_lora_flux.py`` (its default; the SD3
    script refuses it): uniform u, σ = 1 − u on the unshifted table, weight 1 on the flow loss. It is
    ``diffusers:flux`` with its defaults."""
    return _diffusers_flux(weighting_scheme="none")


@_preset("diffusers:ddpm", "the SD scripts without --snr_gamma: uniform timesteps, plain target MSE")
def _diffusers_ddpm(prediction_type: str = "epsilon") -> NoiseConfig:
    """diffusers' SD 1.x / 2.x / XL example scripts without ``--snr_gamma``
    (``examples/text_to_image/train_text_to_image.py``, 58eb52c0, l. 1022–1026): uniform integer timesteps
    (``torch.randint(0, 1000)``) on the scaled_linear table and the plain MSE of the ``prediction_type``
    target (ε: w = 1; v: the v-MSE, w_ε = (SNR + 1)/SNR)."""
    param = _prediction_param(prediction_type)
    sched = _sd_schedule()
    return _ddpm_cfg(param, sched, _ddpm_density(sched), _in_units(_w("constant"), param, "vp"))


@_preset("diffusers:snr_gamma", "--snr_gamma γ: min(SNR, γ)/SNR (ε) or /(SNR + 1) (v) = min-SNR-γ")
def _diffusers_snr_gamma(snr_gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """diffusers example scripts' ``--snr_gamma`` (``examples/text_to_image/train_text_to_image.py``,
    58eb52c0, l. 1022–1038, with ``training_utils.compute_snr`` l. 82): min(SNR, γ)/SNR for ε,
    min(SNR, γ)/(SNR + 1) for v — min-SNR-γ in ε units for both — with uniform integer timesteps
    (``torch.randint(0, 1000)``) on the SD scaled_linear table, treated as continuous (KS ≤ 0.003)."""
    param = _prediction_param(prediction_type)
    check_positive("snr_gamma", snr_gamma)
    sched = _sd_schedule()
    return _ddpm_cfg(param, sched, _ddpm_density(sched), _w("min_snr", gamma=float(snr_gamma)))
