"""OneTrainer presets: ``timestep_distribution`` with ``noising_weight`` / ``noising_bias``,
``timestep_shift`` / ``dynamic_timestep_shifting``, ``min_noising_strength`` / ``max_noising_strength``,
and ``loss_weight_fn`` / ``loss_weight_strength`` — exactly as
OneTrainer draws its integer timesteps and weights its loss.

Options mapped: ``timestep_distribution`` = ``UNIFORM``, ``LOGIT_NORMAL``, ``HEAVY_TAIL``, ``BETA``,
``COS_MAP``, ``SIGMOID``, ``INVERTED_PARABOLA`` (presets ``onetrainer:<name in lower case>``);
``noising_weight`` (w), ``noising_bias`` (b), ``timestep_shift``, ``dynamic_timestep_shifting`` with
``image_seq_len``, ``min_noising_strength``, ``max_noising_strength``; ``loss_weight_fn`` = ``CONSTANT``,
``SIGMA`` (flow models), ``MIN_SNR_GAMMA``, ``DEBIASED_ESTIMATION``, ``P2`` (ε/v models) with
``loss_weight_strength``; ``model`` = flow (rectified flow, σ = (i + 1)/1000) | eps | v (DDPM: the SD
scaled_linear β table, ᾱ of the integer timestep).

Source read: Nerogar/OneTrainer @ 23df3832e8f2 (2026-08-19).
``modules/modelSetup/mixin/ModelSetupNoiseMixin.py`` lines 122–253 (the sampler; density
``onetrainer_timesteps`` reproduces it exactly, see ``noiselevels.training.tool_densities.onetrainer``),
``ModelSetupDiffusionLossMixin.py`` lines 199–341 (the loss weights), ``ModelSetupFlowMatchingMixin.py``
lines 14–36 and ``ModelSetupDiffusionMixin.py`` lines 15–37 (how a timestep becomes a noise level),
``modules/util/config/TrainConfig.py`` lines 1087–1107 (defaults: noising_weight = noising_bias = 0,
loss_weight_strength = 5, shift 1), ``modules/model/FluxModel.py`` lines 366–377 (the dynamic shift).

Quirks reproduced: ``SIGMOID`` evaluates its sigmoid at the inverse shift applied twice (line 238) while its
bucket widths use the single shift; ``BETA`` floors both parameters at 1e-4, so the defaults (0, 0) are
Beta(1e-4, 1e-4) — almost all mass on the first and last timestep; ``COS_MAP`` is a density where diffusers
and kohya use cosmap as a weight; ``SIGMOID`` is a sigmoid-shaped density, not the logit-normal the other
tools call "sigmoid"; debiased estimation for v is 1/√(SNR + 1) (kohya: 1/(SNR + 1)); P2 for v is
(2 + SNR)^(−γ) on the v loss (the tool adds 1 to the SNR first).

Conventions: λ = log(α²/σ²) (large = clean); OneTrainer's timestep i is noisy at i = 999; flow σ = (i + 1)/T,
λ = 2·log((1 − σ)/σ); DDPM λ = log(ᾱ_i/(1 − ᾱ_i)); SNR = e^λ; weights in ε-MSE units.
"""

from __future__ import annotations

import math

from noiselevels.components import Weighting, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _check_param,
    _d,
    _flow_sched,
    _in_units,
    _sd_schedule,
    _w,
)

__all__ = ["TABLE", "dynamic_shift"]

TABLE = ToolPresets("onetrainer")
_FLOW_WEIGHTS = ("CONSTANT", "SIGMA")
_DDPM_WEIGHTS = ("CONSTANT", "MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "P2")
_ALL_WEIGHTS = ("CONSTANT", "SIGMA", "MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "P2")
# Flux's FlowMatchEulerDiscreteScheduler config, read by FluxModel.calculate_timestep_shift
_BASE_SEQ, _MAX_SEQ, _BASE_SHIFT, _MAX_SHIFT = 256, 4096, 0.5, 1.15


def dynamic_shift(image_seq_len: int) -> float:
    """``FluxModel.calculate_timestep_shift``: e^μ, μ linear in image_seq_len through (256, 0.5),
    (4096, 1.15)."""
    if not (isinstance(image_seq_len, int) and image_seq_len > 0):
        raise ValueError(f"image_seq_len must be a positive integer; got {image_seq_len!r}")
    m = (_MAX_SHIFT - _BASE_SHIFT) / (_MAX_SEQ - _BASE_SEQ)
    return math.exp(image_seq_len * m + (_BASE_SHIFT - m * _BASE_SEQ))


def _ot_weight(loss_weight_fn: str, g: float, model: str) -> Weighting:
    """The loss weight (``ModelSetupDiffusionLossMixin``), in ε units; combinations the tool refuses raise."""
    _check_param(loss_weight_fn, _ALL_WEIGHTS, "loss_weight_fn")
    if model == "flow":
        if loss_weight_fn not in _FLOW_WEIGHTS:
            raise ValueError(
                f"Loss weight function {loss_weight_fn} not implemented for flow matching models "
                f"(OneTrainer raises NotImplementedError; valid with model='flow': "
                f"{', '.join(_FLOW_WEIGHTS)})"
            )
        return (
            _w("onetrainer_sigma") if loss_weight_fn == "SIGMA" else _in_units(_w("constant"), "flow", "flow")
        )
    if loss_weight_fn not in _DDPM_WEIGHTS:
        raise ValueError(
            f"Loss weight function {loss_weight_fn} not implemented for diffusion models (OneTrainer raises "
            f"NotImplementedError; valid with model={model!r}: {', '.join(_DDPM_WEIGHTS)})"
        )
    if loss_weight_fn == "CONSTANT":
        return _in_units(_w("constant"), model, "vp")
    if loss_weight_fn == "DEBIASED_ESTIMATION":  # 1/√min(SNR, 1000), for v 1/√(min(SNR, 1000) + 1)
        return _w("debiased_v_onetrainer", snr_max=1000.0) if model == "v" else _w("debiased", snr_max=1000.0)
    check_positive("loss_weight_strength", g)
    if loss_weight_fn == "MIN_SNR_GAMMA":  # min(SNR, γ)/SNR; on v min(SNR, γ)/(SNR + 1): same in ε units
        return _w("min_snr", gamma=g)
    # P2: (1 + SNR)^(−γ) on ε; for v the SNR is first increased by 1: (2 + SNR)^(−γ) on the v loss
    return _in_units(_w("p2", k=2.0 if model == "v" else 1.0, gamma=g), model, "vp")


def _ot_preset(dist: str, summary: str, doc: str) -> None:
    def build(
        noising_weight: float = 0.0,
        noising_bias: float = 0.0,
        timestep_shift: float = 1.0,
        dynamic_timestep_shifting: bool = False,
        image_seq_len: int = 4096,
        min_noising_strength: float = 0.0,
        max_noising_strength: float = 1.0,
        loss_weight_fn: str = "CONSTANT",
        loss_weight_strength: float = 5.0,
        model: str = "flow",
    ) -> NoiseConfig:
        model = _check_param(model, ("flow", "eps", "v"), "model")
        check_positive("timestep_shift", timestep_shift)
        if dynamic_timestep_shifting not in (True, False):
            raise ValueError(
                f"dynamic_timestep_shifting must be true or false; got {dynamic_timestep_shifting!r}"
            )
        if dynamic_timestep_shifting and model != "flow":
            raise ValueError("dynamic_timestep_shifting applies to flow models only (model='flow')")
        shift = dynamic_shift(image_seq_len) if dynamic_timestep_shifting else float(timestep_shift)
        sched = _flow_sched() if model == "flow" else _sd_schedule()
        dens = _d(
            "onetrainer_timesteps",
            schedule=sched,
            timestep_distribution=dist,
            noising_weight=float(noising_weight),
            noising_bias=float(noising_bias),
            timestep_shift=shift,
            min_noising_strength=float(min_noising_strength),
            max_noising_strength=float(max_noising_strength),
        )
        return NoiseConfig(
            process="flow" if model == "flow" else "vp",
            parameterization=model,
            density=dens,
            weighting=_ot_weight(loss_weight_fn, float(loss_weight_strength), model),
            schedule=sched,
        )

    build.__doc__ = (
        f"OneTrainer ``timestep_distribution: {dist}``: {doc} Integer timesteps "
        "i ∈ [int(1000·min_noising_strength), "
        "int(1000·max_noising_strength)) drawn exactly as ``ModelSetupNoiseMixin._get_timestep_discrete`` "
        "(OneTrainer @ 23df3832e8f2, lines 122–253) draws them; flow models use σ = (i + 1)/1000, "
        "eps/v models "
        "the SD table's ᾱ[i]. Shift s = ``timestep_shift``, or with ``dynamic_timestep_shifting`` Flux's "
        "e^μ(image_seq_len) (FluxModel.py 366–377). Loss weights (ModelSetupDiffusionLossMixin.py 199–341): "
        "flow CONSTANT | SIGMA (× σ); eps/v CONSTANT | MIN_SNR_GAMMA | DEBIASED_ESTIMATION | P2 "
        "((1 + SNR)^−γ, "
        "v: (2 + SNR)^−γ); other combinations are refused as the tool refuses them."
    )
    TABLE.add(f"onetrainer:{dist.lower()}", summary)(build)


_ot_preset("UNIFORM", "i uniform", "u ~ U(0, 1), then shifted and truncated.")
_ot_preset(
    "LOGIT_NORMAL",
    "u = sigmoid(N(b, w + 1))",
    "u = sigmoid(N(noising_bias, noising_weight + 1)) (lines 156–162).",
)
_ot_preset(
    "HEAVY_TAIL", "SD3 'mode' map with scale w", "SD3's mode map with scale noising_weight (lines 163–172)."
)
_ot_preset(
    "BETA",
    "u ~ Beta(max(1e-4, w), max(1e-4, b))",
    "u ~ Beta(max(1e-4, noising_weight), max(1e-4, noising_bias)) (lines 173–211); the defaults (0, 0) give "
    "Beta(1e-4, 1e-4): half the mass on each end timestep.",
)
_ot_preset(
    "COS_MAP",
    "multinomial ∝ 2/(π(1 − 2t + 2t²)) (diffusers' cosmap weight, used as a density)",
    "multinomial weights 2/(π(1 − 2L + 2L²)) at the inverse-shifted L, times the "
    "shift's bucket width (228–232).",
)
_ot_preset(
    "SIGMOID",
    "multinomial ∝ sigmoid(w(t − b − ½)): NOT the others' logit-normal 'sigmoid'",
    "multinomial weights sigmoid(w·(L₂ − b − ½)) with L₂ the inverse shift applied TWICE (line 238, a quirk "
    "reproduced), times the single shift's bucket width — not the logit-normal that kohya, ai-toolkit and "
    "SimpleTuner call 'sigmoid'.",
)
_ot_preset(
    "INVERTED_PARABOLA",
    "multinomial ∝ max(0, 2 − w(t − b − ½)²)",
    "multinomial weights max(0, 2 − w·(L − b − ½)²) at the inverse-shifted L, times the "
    "bucket width (242–249).",
)
