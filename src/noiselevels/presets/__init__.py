"""The noise-level options of the tools fine-tuners use, mapped onto (process, parameterisation, p(λ), w(λ)).

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); flow t = σ = sigmoid(−λ/2) with t = 0 clean
(the flow σ of SD3 / Flux trainers); weights in ε-MSE units (Kingma & Gao 2023). SNR = e^λ.

Every preset is named ``tool:name`` and returns a :class:`noiselevels.noise.NoiseConfig`::

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
* Flux dynamic shift: every tool's μ uses max_shift 1.15 (ai-toolkit's 1.16 is only a fallback).
* diffusers' SD3 script passes one ``--weighting_scheme`` to both the density and the weight
  function; each silently falls back (to uniform / to 1) for the names it does not know, so
  ``cosmap`` is a weight there but a density in OneTrainer.
* The diffusers SD3 script (with its default ``--precondition_outputs 1``) regresses x̂₀ = z − σ·û on
  x₀, so its weights multiply an x₀-MSE, σ² times the flow-MSE; ``sigma_sqrt`` (σ⁻²) then gives back the
  plain flow loss.

Approximations (documented in each builder, with the measured KS against a re-implementation of the
tool): ai-toolkit ``lognorm_blend`` (the batch maximum replaced by its median, KS 0.019) and
``content_or_style`` on its fixed grids (a point mass at σ = 1 or 0.001 that a density over finite λ
cannot hold), SimpleTuner's ``flux_fast_schedule`` (not modelled: a point mass at σ = 1), the diffusers
scripts' 1000 fixed σ values (treated as continuous, KS ≈ 0.003). OneTrainer's and ai-toolkit's
integer timesteps are exact (tabulated densities). See docs/presets.md.

Layout: one module per tool (``ai_toolkit``, ``kohya``, ``diffusers``, ``onetrainer``, ``simpletuner``),
each self-contained for that tool's options and collecting its presets in a ``TABLE``; ``_common`` holds
the builders several tools share. This module merges the tables into ``PRESETS``. The tools' own
registered weightings (``AiToolkitWeighted``, ``KohyaWeighting``) live in
``noiselevels.training.tool_weightings`` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from noiselevels.noise import NoiseConfig
from noiselevels.presets import ai_toolkit, diffusers, kohya, onetrainer, simpletuner
from noiselevels.presets._common import Builder
from noiselevels.training.tool_weightings import AiToolkitWeighted, KohyaWeighting

__all__ = [
    "DEFAULT_TOOL",
    "PRESETS",
    "TOOLS",
    "AiToolkitWeighted",
    "KohyaWeighting",
    "PresetInfo",
    "describe_preset",
    "list_presets",
    "preset",
    "qualified_name",
]

TOOLS = ("ai-toolkit", "kohya", "diffusers", "onetrainer", "simpletuner")
DEFAULT_TOOL = "ai-toolkit"


@dataclasses.dataclass(frozen=True)
class PresetInfo:
    """A named preset: its tool, a one-line summary, its parameters (with defaults) and its builder."""

    name: str
    tool: str
    summary: str
    build: Builder

    @property
    def params(self) -> dict[str, Any]:
        sig = inspect.signature(self.build)
        return {k: p.default for k, p in sig.parameters.items()}

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.build) or self.summary


def _collect() -> dict[str, PresetInfo]:
    """Every tool module's ``TABLE`` as one registry ``tool:name -> PresetInfo``."""
    out: dict[str, PresetInfo] = {}
    for module in (ai_toolkit, kohya, diffusers, onetrainer, simpletuner):
        table = module.TABLE
        if table.tool not in TOOLS:
            raise ValueError(
                f"{module.__name__}: unknown tool {table.tool!r}; valid tools: {', '.join(TOOLS)}"
            )
        for name, (summary, build) in table.entries.items():
            out[name] = PresetInfo(name=name, tool=table.tool, summary=summary, build=build)
    return out


PRESETS: dict[str, PresetInfo] = _collect()


def qualified_name(name: str) -> str:
    """A preset name with its tool: a bare timestep type is ai-toolkit's (``"sigmoid"`` →
    ``"ai-toolkit:sigmoid"``); ``"tool:name"`` is returned as it is."""
    return name if ":" in name else f"{DEFAULT_TOOL}:{name}"


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
    try:
        cfg = info.build(**params)
    except (ValueError, TypeError, OverflowError, ZeroDivisionError) as e:
        if params and any(k in str(e) for k in params) and isinstance(e, (ValueError, TypeError)):
            raise
        given = ", ".join(f"{k}={v!r}"[:80] for k, v in params.items()) or "its defaults"
        kind = TypeError if isinstance(e, TypeError) else ValueError  # name the tool's own parameter
        raise kind(f"preset {name!r} with {given}: {e}") from None
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
