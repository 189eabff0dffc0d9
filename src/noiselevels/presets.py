"""The noise-level options of the tools fine-tuners use, mapped onto (process, parameterisation, p(λ), w(λ)).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow t = σ = sigmoid(−λ/2) with t = 0 clean
(the flow σ of SD3 / Flux trainers); weights in ε-MSE units (Kingma & Gao 2023). SNR = e^λ.

Every preset is named ``tool:name`` and returns a :class:`noiselevels.config.NoiseConfig`::

    >>> preset("kohya:sigmoid", sigmoid_scale=1.0).density      # logit-normal(0, 1) over flow t
    >>> preset("ai-toolkit:weighted").weighting                  # a bell over σ, in ε units
    >>> list_presets("onetrainer")

A tool's loss weight multiplies the tool's own loss (ε-, v-, x₀- or flow-target MSE); here it is
converted to ε units with the parameterisation's loss factor f(λ) (‖pred − target‖² = f·‖ε̂ − ε‖²) by
``noiselevels.training.weightings.in_units``, so "no weighting" in a flow trainer is
w_ε(λ) = (1 + e^(−λ/2))², and the
effective weighting W(λ) = p(λ)·w(λ) of two presets from two tools can be compared directly.

The tools disagree with each other (research notes §9); each disagreement is kept, not smoothed over:

* "sigmoid" timesteps are logit-normal in kohya, ai-toolkit, SimpleTuner and diffusers; OneTrainer's
  ``SIGMOID`` is a sigmoid-shaped density ∝ sigmoid(w(t − b − ½)) over t (density ``sigmoid_t``).
* Debiased estimation for v-prediction: kohya weights the v-loss by 1/(SNR + 1) (w_ε = 1/SNR),
  OneTrainer by 1/√(SNR + 1) (w_ε = √(SNR + 1)/SNR).
* ai-toolkit's ``snr_gamma`` is an unclamped γ/SNR and its ``min_snr_gamma`` is min(γ/SNR, 1), both
  applied to whatever loss the model has (no v-prediction variant); kohya and diffusers use
  min(SNR, γ)/SNR for ε and min(SNR, γ)/(SNR + 1) for v, which is min-SNR-γ in ε units for both.
* Flux dynamic shift: ai-toolkit's μ uses max_shift 1.16, everyone else 1.15.
* diffusers' SD3 script passes one ``--weighting_scheme`` to both the density and the weight
  function; each silently falls back (to uniform / to 1) for the names it does not know, so
  ``cosmap`` is a weight there but a density in OneTrainer.
* The diffusers SD3 script (with its default ``--precondition_outputs 1``) regresses x̂₀ = z − σ·û on
  x₀, so its weights multiply an x₀-MSE, σ² times the flow-MSE; ``sigma_sqrt`` (σ⁻²) then gives back the
  plain flow loss.

Approximations (documented in each builder): ai-toolkit ``weighted`` (a smooth bell fitted to the
table's shape), ``lognorm_blend`` (the batch maximum replaced by its expected value), ai-toolkit's
random 1000-point timestep grids and every tool's integer timestep indexing (treated as continuous).
See docs/presets.md.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from noiselevels.components import (
    WEIGHTINGS,
    Density,
    Weighting,
    check_positive,
)
from noiselevels.config import NoiseConfig
from noiselevels.levels import flow_t, to_tensor

__all__ = [
    "PRESETS",
    "AiToolkitWeighted",
    "KohyaWeighting",
    "PresetInfo",
    "describe_preset",
    "list_presets",
    "preset",
    "qualified_name",
]

_F64 = torch.float64


# ==============================================================================================
# the two weightings only these presets need
# ==============================================================================================
@WEIGHTINGS.register("ai_toolkit_weighted")
@dataclasses.dataclass(frozen=True)
class AiToolkitWeighted(Weighting):
    """An approximation of ai-toolkit's ``weighted`` timestep weight, as a function of the flow σ.

    ai-toolkit multiplies the flow loss by a fixed 1000-entry table. Its shape (research notes §3):
    ≈0.45 as σ → 0, a plateau ≈0.72 for σ ≈ 0.15–0.3, 1.0 near σ ≈ 0.55, a peak ≈1.5 near σ ≈ 0.88 and
    ≈0.9 at σ = 1. This is a smooth parametric curve with that shape, not the table:

        w(σ) = 0.45 + 0.27·(1 − e^(−σ/0.05)) + 0.78·exp(−(σ − 0.88)²/(2s²)),
        s = 0.23 for σ < 0.88, s = 0.07 for σ ≥ 0.88

    (values 0.45, 0.71, 1.00, 1.50, 0.90 at σ = 0, 0.15, 0.55, 0.88, 1). The weight multiplies the
    flow loss: in ε units wrap it as ``in_units(AiToolkitWeighted(), "flow", process="flow")``.
    """

    def __call__(self, logsnr: Tensor) -> Tensor:
        s = flow_t(logsnr=to_tensor(logsnr).to(_F64))
        width = torch.where(s < 0.88, torch.full_like(s, 0.23), torch.full_like(s, 0.07))
        return 0.45 + 0.27 * (-torch.expm1(-s / 0.05)) + 0.78 * torch.exp(-((s - 0.88) ** 2) / (2 * width**2))


@WEIGHTINGS.register("kohya")
@dataclasses.dataclass(frozen=True)
class KohyaWeighting(Weighting):
    """kohya sd-scripts' chain of loss multipliers for DDPM models, in ε units.

    (``library/custom_train_functions.py``.)

    kohya multiplies the loss of the model's target (ε, or v with ``v_prediction``) by, in this order,
    ``min_snr_gamma`` γ (min(SNR, γ)/SNR on ε, min(SNR, γ)/(SNR + 1) on v),
    ``scale_v_pred_loss_like_noise_pred`` (SNR_c/(SNR_c + 1)), ``v_pred_like_loss`` c
    (1 + c·(SNR_c + 1)/SNR_c) and ``debiased_estimation_loss`` (1/√SNR_c on ε, 1/(SNR_c + 1) on v),
    SNR_c = min(SNR, 1000); 0 / False switch a term off. Each term is the registered weighting of the
    same name (``min_snr``, ``scale_v_pred_loss_like_noise_pred``, ``v_pred_like_loss``, ``debiased`` /
    ``debiased_v_kohya``); their product is taken in the target's units and converted to ε units once:
    w_ε = f(λ)·Π_i (term_i/f(λ)), f = 1 (ε) or 1 + e^(−λ) (v).
    """

    min_snr_gamma: float = 0.0
    debiased_estimation_loss: bool = False
    scale_v_pred_loss_like_noise_pred: bool = False
    v_pred_like_loss: float = 0.0
    v_prediction: bool = False

    def __post_init__(self):
        check_positive("min_snr_gamma", self.min_snr_gamma, allow_zero=True)
        check_positive("v_pred_like_loss", self.v_pred_like_loss, allow_zero=True)
        for k in ("debiased_estimation_loss", "scale_v_pred_loss_like_noise_pred", "v_prediction"):
            if not isinstance(getattr(self, k), bool):
                raise ValueError(f"{k} must be true or false; got {getattr(self, k)!r}")

    def terms(self) -> list[tuple[Weighting, bool]]:
        """(weighting in ε units, whether it already includes the v conversion) for each active flag."""
        out: list[tuple[Weighting, bool]] = []
        if self.min_snr_gamma > 0:
            out.append((_w("min_snr", gamma=float(self.min_snr_gamma)), True))
        if self.scale_v_pred_loss_like_noise_pred:
            out.append((_w("scale_v_pred_loss_like_noise_pred", snr_max=1000.0), True))
        if self.v_pred_like_loss > 0:
            out.append((_w("v_pred_like_loss", c=float(self.v_pred_like_loss), snr_max=1000.0), False))
        if self.debiased_estimation_loss:
            if self.v_prediction:
                out.append((_w("debiased_v_kohya", snr_max=1000.0), True))
            else:
                out.append((_w("debiased", snr_max=1000.0), False))
        return out

    def __call__(self, logsnr: Tensor) -> Tensor:
        lam = to_tensor(logsnr).to(_F64)
        f = (1.0 + torch.exp(-lam)) if self.v_prediction else torch.ones_like(lam)
        w = torch.ones_like(lam)
        for term, converted in self.terms():
            t = to_tensor(term(lam)).to(_F64)
            w = w * (t / f if (converted and self.v_prediction) else t)
        return w * f


# ==============================================================================================
# presets
# ==============================================================================================
@dataclasses.dataclass(frozen=True)
class PresetInfo:
    """A named preset: its tool, a one-line summary, its parameters (with defaults) and its builder."""

    name: str
    tool: str
    summary: str
    build: Callable[..., NoiseConfig]

    @property
    def params(self) -> dict[str, Any]:
        sig = inspect.signature(self.build)
        return {k: p.default for k, p in sig.parameters.items()}

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.build) or self.summary


PRESETS: dict[str, PresetInfo] = {}
TOOLS = ("ai-toolkit", "kohya", "diffusers", "onetrainer", "simpletuner")
DEFAULT_TOOL = "ai-toolkit"


def qualified_name(name: str) -> str:
    """A preset name with its tool: a bare timestep type is ai-toolkit's (``"sigmoid"`` →
    ``"ai-toolkit:sigmoid"``); ``"tool:name"`` is returned as it is."""
    return name if ":" in name else f"{DEFAULT_TOOL}:{name}"


def _preset(name: str, summary: str):
    def deco(fn: Callable[..., NoiseConfig]):
        tool = name.split(":", 1)[0]
        assert tool in TOOLS, name  # programming error, not a user error
        PRESETS[name] = PresetInfo(name=name, tool=tool, summary=summary, build=fn)
        return fn

    return deco


def preset(name: str, **params: Any) -> NoiseConfig:
    """The ``NoiseConfig`` of a tool's setting ``tool:name`` with the tool's own parameter names.

    Unknown names and parameters raise ``ValueError`` listing the valid ones (``list_presets()``).
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    info = PRESETS[name]
    valid = info.params
    bad = [k for k in params if k not in valid]
    if bad:
        raise ValueError(
            f"unknown parameter(s) {', '.join(map(repr, bad))} for preset {name!r}; "
            f"valid parameters: {', '.join(valid) or '(none)'}"
        )
    cfg = info.build(**params)
    return dataclasses.replace(cfg, preset=name, description=info.doc)


def list_presets(tool: str | None = None) -> list[str]:
    """Names of all presets (of one tool if given)."""
    if tool is not None and tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; valid tools: {', '.join(TOOLS)}")
    return sorted(n for n, p in PRESETS.items() if tool is None or p.tool == tool)


def describe_preset(name: str) -> str:
    """The preset's summary, parameters and documentation."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    info = PRESETS[name]
    params = ", ".join(f"{k}={v!r}" for k, v in info.params.items()) or "(no parameters)"
    return f"{name}: {info.summary}\n  parameters: {params}\n\n{info.doc}"


# -- building blocks ----------------------------------------------------------------------------
def _d(name: str, **kw) -> Density:
    from noiselevels.training.densities import density

    return density(name, **kw)


def _w(name: str, **kw) -> Weighting:
    from noiselevels.training.weightings import weighting

    return weighting(name, **kw)


def _flow_sched(shift: float = 1.0):
    from noiselevels.schedules import schedule
    from noiselevels.schedules import shift as _shift

    s = schedule("flow")
    return _shift(s, shift) if shift != 1.0 else s


def _uniform_flow(shift: float = 1.0) -> Density:
    return _d("uniform_t", schedule=_flow_sched(shift))


def _logit_normal(mean: float, std: float) -> Density:
    """logit-normal(mean, std) over flow t = σ: λ ~ N(−2·mean, (2·std)²)."""
    return _d("logit_normal", mean=float(mean), std=float(std))


def _flow_loss(weight: Weighting | None = None) -> Weighting:
    """A weight on the flow-velocity loss (None: the plain flow loss), in ε units."""
    return _in_units(weight if weight is not None else _w("constant"), "flow", "flow")


def _flow_cfg(density: Density, weighting: Weighting | None = None) -> NoiseConfig:
    """Rectified flow, velocity prediction; ``weighting`` in ε units (None: the plain flow loss)."""
    return NoiseConfig(
        process="flow",
        parameterization="flow",
        density=density,
        weighting=weighting if weighting is not None else _flow_loss(),
        schedule=_flow_sched(),
    )


def _sd_schedule(zero_terminal_snr: bool = False):
    """Stable Diffusion 1.x/2.x/XL's DDPM table (scaled_linear, 0.00085 → 0.012, T = 1000)."""
    from noiselevels.schedules import schedule

    return schedule(
        "ddpm",
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        num_train_timesteps=1000,
        rescale_betas_zero_snr=bool(zero_terminal_snr),
    )


def _ddpm_density(sched, min_timestep: int = 0, max_timestep: int = 1000) -> Density:
    """Uniform integer timesteps in [min_timestep, max_timestep) of a T = 1000 table, as uniform t
    truncated to the λ range of those timesteps (t_i = (i + 1)/T)."""
    T = sched.num_train_timesteps
    if not (
        isinstance(min_timestep, int)
        and isinstance(max_timestep, int)
        and 0 <= min_timestep < max_timestep <= T
    ):
        raise ValueError(
            f"need integers 0 <= min_timestep < max_timestep <= {T}; got min_timestep={min_timestep!r}, "
            f"max_timestep={max_timestep!r}"
        )
    d = _d("uniform_t", schedule=sched)
    if min_timestep == 0 and max_timestep == T:
        return d
    # timesteps min … max−1 cover t ∈ (min/T, max/T] in the continuous view of the table
    t_lo = torch.tensor(min_timestep / T, dtype=_F64)
    t_hi = torch.tensor(max_timestep / T, dtype=_F64)
    lam_hi = float(sched.logsnr(t_lo))
    lam_lo = float(sched.logsnr(t_hi))
    return d.truncate(lam_lo, lam_hi)


def _check_param(p: str, allowed: tuple[str, ...], what: str) -> str:
    if p not in allowed:
        raise ValueError(f"unknown {what} {p!r}; valid: {', '.join(allowed)}")
    return p


# -- ai-toolkit ----------------------------------------------------------------------------------
@_preset("ai-toolkit:linear", "uniform flow σ, plain flow loss")
def _ait_linear() -> NoiseConfig:
    """ai-toolkit ``timestep_type: linear``: σ uniform on [0, 1] (a fixed 1000-point grid, index drawn
    uniformly), rectified flow, flow-target MSE with weight 1. W(λ) = ½·e^(−λ/2)."""
    return _flow_cfg(_uniform_flow())


@_preset("ai-toolkit:sigmoid", "σ = sigmoid(n): logit-normal(0, 1) over flow σ (ai-toolkit's default)")
def _ait_sigmoid() -> NoiseConfig:
    """ai-toolkit ``timestep_type: sigmoid`` (its default): σ = sigmoid(n), n ~ N(0, 1), i.e.
    logit-normal(0, 1) over flow σ and λ ~ N(0, 2²). ai-toolkit draws a fresh 1000-point grid from this
    distribution and then picks grid indices uniformly, which has the same distribution."""
    return _flow_cfg(_logit_normal(0.0, 1.0))


@_preset("ai-toolkit:weighted", "uniform flow σ with a bell-shaped loss weight over σ (approximation)")
def _ait_weighted() -> NoiseConfig:
    """ai-toolkit ``timestep_type: weighted``: σ uniform, and the flow loss multiplied by a fixed
    bell-shaped table over σ (peak ≈1.5 near σ ≈ 0.88). The table is approximated by the smooth curve
    :class:`AiToolkitWeighted` (same shape, within ≈0.05 at the documented points)."""
    return _flow_cfg(_uniform_flow(), _flow_loss(AiToolkitWeighted()))


@_preset("ai-toolkit:shift", "uniform flow σ through the scheduler's shift (static s or Flux dynamic μ)")
def _ait_shift(shift: float = 3.0, image_seq_len: int | None = None) -> NoiseConfig:
    """ai-toolkit ``timestep_type: shift`` / ``flux_shift`` / ``lumina2_shift`` (one code path): an evenly
    spaced σ grid passed through the scheduler's shift: static σ' = sσ/(1 + (s − 1)σ) (λ − 2·log s), or,
    when the scheduler uses dynamic shifting, s = e^μ with μ linear in ``image_seq_len`` from (256, 0.5)
    to (4096, 1.16) — ai-toolkit's max_shift is 1.16 where diffusers, kohya and Flux use 1.15."""
    from noiselevels.schedules import flux_mu

    if image_seq_len is not None:
        shift = math.exp(flux_mu(image_seq_len, max_shift=1.16))
    check_positive("shift", shift)
    return _flow_cfg(_uniform_flow(shift))


@_preset("ai-toolkit:lognorm_blend", "75 % log-normal-derived σ + 25 % uniform σ (approximation)")
def _ait_lognorm_blend(alpha: float = 0.75, std: float = 0.333) -> NoiseConfig:
    """ai-toolkit ``timestep_type: lognorm_blend``: 750 of the 1000 grid points are σ = 1 − x/max(x) with
    x ~ LogNormal(0, 0.333), 250 are evenly spaced. The batch maximum is replaced by its median
    (``noiselevels.training.densities.lognorm_blend``), so this is a fixed mixture
    0.75·lognormal_alpha + 0.25·uniform σ."""
    from noiselevels.training.densities import lognorm_blend

    return _flow_cfg(lognorm_blend(weight=float(alpha), std=float(std)))


@_preset("ai-toolkit:content", "index = u³·T: σ = 1 − u³, concentrated at high noise")
def _ait_content() -> NoiseConfig:
    """ai-toolkit ``content_or_style: content``: grid index u³·T on a grid sorted from noisy to clean,
    so σ = 1 − u³ ~ Beta(1, 1/3) over flow σ (mass near σ = 1: composition / content)."""
    return _flow_cfg(_beta(1.0, 1.0 / 3.0))


@_preset("ai-toolkit:style", "index = (1 − u³)·T: σ = u³, concentrated at low noise")
def _ait_style() -> NoiseConfig:
    """ai-toolkit ``content_or_style: style``: index (1 − u³)·T, so σ = u³ ~ Beta(1/3, 1) over flow σ
    (mass near σ = 0: detail / style)."""
    return _flow_cfg(_beta(1.0 / 3.0, 1.0))


@_preset("ai-toolkit:snr_gamma", "unclamped γ/SNR on the model's own loss (SD-style DDPM models)")
def _ait_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``snr_gamma``: the loss of the model's target multiplied by γ/SNR, *not* clamped
    (kohya's and diffusers' min-SNR clamp at 1) and with no v-prediction variant, on a DDPM model (the
    Stable Diffusion scaled_linear table, uniform timesteps)."""
    param = {"epsilon": "eps", "v_prediction": "v"}[
        _check_param(prediction_type, ("epsilon", "v_prediction"), "prediction_type")
    ]
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("snr_gamma", gamma=float(gamma)), param, "vp")
    return NoiseConfig(
        process="vp", parameterization=param, density=_ddpm_density(sched), weighting=w, schedule=sched
    )


@_preset("ai-toolkit:min_snr_gamma", "min(γ/SNR, 1) on the model's own loss (no v variant)")
def _ait_min_snr_gamma(gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """ai-toolkit ``min_snr_gamma``: the target loss multiplied by min(γ/SNR, 1) = min(SNR, γ)/SNR for
    every prediction type. For ε this is min-SNR-γ; for v it is w_ε = min(SNR, γ)·(SNR + 1)/SNR², which
    up-weights noisy levels relative to kohya's / diffusers' v formula min(SNR, γ)/(SNR + 1)."""
    param = {"epsilon": "eps", "v_prediction": "v"}[
        _check_param(prediction_type, ("epsilon", "v_prediction"), "prediction_type")
    ]
    check_positive("gamma", gamma)
    sched = _sd_schedule()
    w = _in_units(_w("min_snr", gamma=float(gamma)), param, "vp")
    return NoiseConfig(
        process="vp", parameterization=param, density=_ddpm_density(sched), weighting=w, schedule=sched
    )


# -- kohya sd-scripts: flow models (SD3, Flux) --------------------------------------------------
_KOHYA_WEIGHT_SCHEMES = ("none", "uniform", "logit_normal", "mode", "sigma_sqrt", "cosmap")


def _sd3_weight(scheme: str, units: str = "flow") -> Weighting:
    """diffusers' ``compute_loss_weighting_for_sd3(scheme)`` on the ``units`` loss, in ε units: ``sigma_sqrt``
    σ⁻², ``cosmap`` 2/(π(1 − 2σ + 2σ²)), anything else 1 (diffusers' silent fallback)."""
    _check_param(scheme, _KOHYA_WEIGHT_SCHEMES, "weighting_scheme")
    if scheme in ("sigma_sqrt", "cosmap"):
        return _w(scheme, units=units)
    return _in_units(_w("constant"), units, "flow")


def _kohya_weight(weighting_scheme: str) -> Weighting:
    return _sd3_weight(weighting_scheme, "flow")


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
    from noiselevels.schedules import flux_mu

    check_positive("sigmoid_scale", sigmoid_scale)
    mu = flux_mu(image_seq_len)
    return _flow_cfg(_logit_normal(mu, sigmoid_scale), _kohya_weight(weighting_scheme))


@_preset("kohya:sigma", "--timestep_sampling sigma: --weighting_scheme is both the density and the weight")
def _kohya_sigma(
    weighting_scheme: str = "logit_normal",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    discrete_flow_shift: float = 3.0,
) -> NoiseConfig:
    """kohya ``--timestep_sampling sigma`` (the SD3 / diffusers path): u from ``--weighting_scheme``
    (``logit_normal`` (``--logit_mean``, ``--logit_std``), ``mode`` (``--mode_scale``), anything else
    uniform), σ read from the shifted scheduler (``--discrete_flow_shift``), and the same name used
    again as the loss weight (``sigma_sqrt`` σ⁻², ``cosmap``, else 1). Flow loss."""
    return _sd3_like(weighting_scheme, logit_mean, logit_std, mode_scale, discrete_flow_shift, units="flow")


def _sd3_like(
    scheme: str, logit_mean: float, logit_std: float, mode_scale: float, shift: float, units: str
) -> NoiseConfig:
    _check_param(scheme, _KOHYA_WEIGHT_SCHEMES, "weighting_scheme")
    check_positive("shift", shift)
    if scheme == "logit_normal":
        check_positive("logit_std", logit_std)
        dens = _logit_normal(logit_mean + math.log(shift), logit_std)
    elif scheme == "mode":
        dens = _d("mode", scale=float(mode_scale))
        if shift != 1.0:
            dens = _shift_density(dens, shift)
    else:
        dens = _uniform_flow(shift)
    return NoiseConfig(
        process="flow",
        parameterization="flow",
        density=dens,
        weighting=_sd3_weight(scheme, units),
        schedule=_flow_sched(),
    )


# -- kohya sd-scripts: DDPM models (SD 1.x / 2.x / XL) --------------------------------------------
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
    return NoiseConfig(
        process="vp",
        parameterization="v" if v_parameterization else "eps",
        density=_ddpm_density(sched, min_timestep, max_timestep),
        weighting=w,
        schedule=sched,
    )


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


# -- diffusers ---------------------------------------------------------------------------------
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


for _scheme in ("logit_normal", "mode", "sigma_sqrt", "cosmap", "none"):

    def _make(scheme: str):
        def build(shift: float = 3.0, precondition_outputs: bool = True) -> NoiseConfig:
            return _diffusers_sd3(
                weighting_scheme=scheme, shift=shift, precondition_outputs=precondition_outputs
            )

        build.__doc__ = (
            f"diffusers SD3 script with ``--weighting_scheme {scheme}``: the name goes to both the timestep "
            "density and the loss weight (see ``diffusers:sd3``)."
        )
        return build

    _preset(f"diffusers:{_scheme}", f"SD3 --weighting_scheme {_scheme} (density and weight)")(_make(_scheme))


@_preset("diffusers:snr_gamma", "--snr_gamma γ: min(SNR, γ)/SNR (ε) or /(SNR + 1) (v) = min-SNR-γ")
def _diffusers_snr_gamma(snr_gamma: float = 5.0, prediction_type: str = "epsilon") -> NoiseConfig:
    """diffusers example scripts' ``--snr_gamma``: min(SNR, γ)/SNR for ε, min(SNR, γ)/(SNR + 1) for v —
    min-SNR-γ in ε units for both — with uniform timesteps on the SD scaled_linear table."""
    param = {"epsilon": "eps", "v_prediction": "v"}[
        _check_param(prediction_type, ("epsilon", "v_prediction"), "prediction_type")
    ]
    check_positive("snr_gamma", snr_gamma)
    sched = _sd_schedule()
    return NoiseConfig(
        process="vp",
        parameterization=param,
        density=_ddpm_density(sched),
        weighting=_w("min_snr", gamma=float(snr_gamma)),
        schedule=sched,
    )


# -- OneTrainer ----------------------------------------------------------------------------------
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
):
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
    _preset(f"onetrainer:{dist.lower()}", summary)(build)


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


# -- SimpleTuner ---------------------------------------------------------------------------------
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
    """SimpleTuner ``--snr_gamma`` on DDPM models: the diffusers formula (min-SNR-γ in ε units)."""
    return _diffusers_snr_gamma(snr_gamma=snr_gamma, prediction_type=prediction_type)


# ==============================================================================================
# adapters to the density module (mixture, beta, shift)
# ==============================================================================================
def _beta(a: float, b: float) -> Density:
    check_positive("beta a", a)
    check_positive("beta b", b)
    return _d("beta", a=float(a), b=float(b))


def _shift_density(d: Density, factor: float) -> Density:
    """λ → λ − 2·log(factor): the flow shift t' = s·t/(1 + (s − 1)·t) applied to draws from ``d``."""
    return _d("shifted", base=d, factor=float(factor))


def _in_units(w: Weighting, units: str, process: str) -> Weighting:
    """A weight on the ``units`` parameterisation's own loss, in ε units (ε units: unchanged)."""
    from noiselevels.training.weightings import in_units

    return w if units == "eps" else in_units(w, units, process=process)
