"""OneTrainer presets: ``timestep_distribution`` with ``noising_weight`` / ``noising_bias`` and
``timestep_shift``, and ``loss_weight_fn`` / ``loss_weight_strength``.

Options mapped: ``timestep_distribution`` = ``UNIFORM``, ``LOGIT_NORMAL``, ``HEAVY_TAIL``, ``BETA``,
``COS_MAP``, ``SIGMOID``, ``INVERTED_PARABOLA`` (presets ``onetrainer:<name in lower case>``);
``noising_weight`` (w), ``noising_bias`` (b), ``timestep_shift``; ``loss_weight_fn`` = ``CONSTANT``,
``MIN_SNR_GAMMA``, ``DEBIASED_ESTIMATION``, ``P2`` with ``loss_weight_strength``; ``model`` = flow
(rectified flow) | eps | v (DDPM on the SD table).

OneTrainer's ``SIGMOID`` is a sigmoid-shaped density ∝ sigmoid(w(t − b − ½)) over t (density
``sigmoid_t``), not the logit-normal the other tools call "sigmoid"; its ``COS_MAP`` is a density where
diffusers and kohya use cosmap as a weight; its debiased estimation for v is 1/√(SNR + 1) (kohya:
1/(SNR + 1)).

Conventions: λ = log(α²/σ²) (large = clean); OneTrainer's t is the flow σ (or the DDPM t), t = 1 noisy,
t = sigmoid(−λ/2) for flow; SNR = e^λ; weights in ε-MSE units.
"""

from __future__ import annotations

from collections.abc import Callable

from noiselevels.components import Density, Weighting, check_positive
from noiselevels.noise import NoiseConfig
from noiselevels.presets._common import (
    ToolPresets,
    _beta,
    _check_param,
    _d,
    _flow_sched,
    _in_units,
    _logit_normal,
    _sd_schedule,
    _shift_density,
    _uniform_flow,
    _w,
)

__all__ = ["TABLE"]

TABLE = ToolPresets("onetrainer")
_OT_LOSS_WEIGHTS = ("CONSTANT", "MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "P2")


def _ot_weight(loss_weight_fn: str, loss_weight_strength: float, param: str, process: str) -> Weighting:
    _check_param(loss_weight_fn, _OT_LOSS_WEIGHTS, "loss_weight_fn")
    g = float(loss_weight_strength)
    if loss_weight_fn == "CONSTANT":
        return _in_units(_w("constant"), param, process)
    if loss_weight_fn == "MIN_SNR_GAMMA":
        check_positive("loss_weight_strength", g)
        return _w("min_snr", gamma=g)  # min(SNR, γ)/SNR (ε) or /(SNR + 1) (v): min-SNR-γ in ε units
    if loss_weight_fn == "DEBIASED_ESTIMATION":
        # 1/√SNR on ε, 1/√(SNR + 1) on v (kohya: 1/(SNR + 1)); SNR clamped at 1000 like kohya
        return _w("debiased_v_onetrainer", snr_max=1000.0) if param == "v" else _w("debiased", snr_max=1000.0)
    check_positive("loss_weight_strength", g)
    return _in_units(_w("p2", k=1.0, gamma=g), param, process)  # P2 with k = 1


def _onetrainer(
    dens: Density, timestep_shift: float, loss_weight_fn: str, loss_weight_strength: float, model: str
) -> NoiseConfig:
    check_positive("timestep_shift", timestep_shift)
    if timestep_shift != 1.0:
        dens = _shift_density(dens, timestep_shift)
    model = _check_param(model, ("flow", "eps", "v"), "model")
    process = "flow" if model == "flow" else "vp"
    sched = _flow_sched() if model == "flow" else _sd_schedule()
    return NoiseConfig(
        process=process,
        parameterization=model,
        density=dens,
        weighting=_ot_weight(loss_weight_fn, loss_weight_strength, model, process),
        schedule=sched,
    )


def _ot_preset(
    dist: str, summary: str, make: Callable[[float, float], Density], doc: str, w0: float, b0: float
) -> None:
    def build(
        noising_weight: float = w0,
        noising_bias: float = b0,
        timestep_shift: float = 1.0,
        loss_weight_fn: str = "CONSTANT",
        loss_weight_strength: float = 5.0,
        model: str = "flow",
    ) -> NoiseConfig:
        return _onetrainer(
            make(noising_weight, noising_bias), timestep_shift, loss_weight_fn, loss_weight_strength, model
        )

    build.__doc__ = (
        f"OneTrainer ``timestep_distribution: {dist}``: {doc} Over OneTrainer's t (= flow σ, or the DDPM "
        "t for ε/v models; t = 1 noisy). ``timestep_shift`` s applies t' = s·t/((s − 1)t + 1) (λ − 2·log s). "
        "Loss weights (``loss_weight_fn``) on the model's own loss: CONSTANT; MIN_SNR_GAMMA (min-SNR-γ); "
        "DEBIASED_ESTIMATION (1/√SNR, for v 1/√(SNR + 1) — kohya uses 1/(SNR + 1)); P2 ((1 + SNR)^(−γ)). "
        "``model``: flow (rectified flow), eps or v (DDPM, SD table)."
    )
    TABLE.add(f"onetrainer:{dist.lower()}", summary)(build)


def _ot_uniform(w, b):
    return _uniform_flow()


_ot_preset("UNIFORM", "t uniform", _ot_uniform, "t ~ U(0, 1).", 0.0, 0.0)
_ot_preset(
    "LOGIT_NORMAL",
    "t = sigmoid(N(b, w + 1))",
    lambda w, b: _logit_normal(b, w + 1.0),
    "t = sigmoid(N(noising_bias, noising_weight + 1)): logit-normal(b, w + 1).",
    0.0,
    0.0,
)
_ot_preset(
    "HEAVY_TAIL",
    "SD3 'mode' density with scale w",
    lambda w, b: _d("mode", scale=float(w)),
    "the SD3 mode density with scale noising_weight (HEAVY_TAIL = SD3 'mode').",
    0.0,
    0.0,
)
_ot_preset(
    "BETA",
    "t ~ Beta(w, b)",
    lambda w, b: _beta(w, b),
    "t ~ Beta(noising_weight, noising_bias) (both must be > 0; mapping from the research notes, "
    "not checked against OneTrainer's source).",
    1.0,
    1.0,
)
_ot_preset(
    "COS_MAP",
    "density ∝ 2/(π(1 − 2t + 2t²)) (diffusers' cosmap weight, used as a density)",
    lambda w, b: _d("cosmap"),
    "the cosmap density q(t) = 2/(π(1 − 2t + 2t²)) — a weight in diffusers/kohya, a density here.",
    0.0,
    0.0,
)
_ot_preset(
    "SIGMOID",
    "density ∝ sigmoid(w(t − b − ½)): NOT the others' logit-normal 'sigmoid'",
    lambda w, b: _d("sigmoid_t", weight=float(w), bias=float(b)),
    "q(t) ∝ sigmoid(w·(t − b − ½)) — a sigmoid-shaped density, not the logit-normal that kohya, "
    "ai-toolkit and SimpleTuner call 'sigmoid'.",
    1.0,
    0.0,
)
_ot_preset(
    "INVERTED_PARABOLA",
    "density ∝ max(0, 2 − w(t − b − ½)²)",
    lambda w, b: _d("inverted_parabola", weight=float(w), bias=float(b)),
    "q(t) ∝ max(0, 2 − w·(t − b − ½)²).",
    1.0,
    0.0,
)
