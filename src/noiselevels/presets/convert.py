"""``convert``: the setting of another tool whose effective weighting W(λ) = p(λ)·w(λ) comes closest to a
given configuration's, written as that tool writes it.

The search: every preset of the target tool, and for each its numeric (float) parameters; the distance is
the total-variation distance ½∫|Ŵa − Ŵb| dλ of the normalised W's on a λ grid (``noiselevels.analysis``).
Per preset, a coordinate search: a coarse grid over each parameter (geometric around a positive default,
linear around zero), then a golden-section refinement between the grid neighbours of the best point;
two passes when a preset has several parameters. A source that is itself a preset of the target tool
starts from its own parameters (so A → A is exact).

The emitters reuse the per-tool option tables of ``noiselevels.presets.files`` (``TABLES``: selector value →
preset, option → parameter) in the reverse direction; what those tables cannot express (presets picked by a
switch rather than a selector value) is in ``_EXTRA`` below, the one place convert keeps option names.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import torch

from noiselevels.analysis import logsnr_grid
from noiselevels.noise import NoiseConfig
from noiselevels.presets import PRESETS, TOOLS, list_presets, preset
from noiselevels.presets.files import TABLES

__all__ = ["CLOSE_TV", "Conversion", "convert", "emit", "tv_distance"]

CLOSE_TV = 0.05  # below this the target "expresses" the source
_GRID = (-10.0, 10.0, 401)
_COARSE = 13
_REFINE = 18
# Parameters that clip the support (step counts, strengths) are not searched: they are ranges, not shapes.
_NOT_SEARCHED = {"min_noising_strength", "max_noising_strength", "timestep_bias_portion",
                 "timestep_bias_multiplier", "min_timestep", "max_timestep"}  # fmt: skip

# ---- the one place convert keeps option names the files' tables do not have ---------------------------
# preset → options that select it (besides the TABLE selector), and parameter → option renames.
_EXTRA: dict[str, dict[str, Any]] = {
    "ai-toolkit:content": {"timestep_type": "sigmoid", "content_or_style": "content"},
    "ai-toolkit:style": {"timestep_type": "sigmoid", "content_or_style": "style"},
    "ai-toolkit:min_snr_gamma": {}, "ai-toolkit:snr_gamma": {},
    "kohya:ddpm": {}, "kohya:min_snr_gamma": {},
    "kohya:debiased_estimation_loss": {"debiased_estimation_loss": True},
    "kohya:scale_v_pred_loss_like_noise_pred": {"scale_v_pred_loss_like_noise_pred": True},
    "kohya:v_pred_like_loss": {},
    "simpletuner:sigmoid": {}, "simpletuner:uniform": {"flow_use_uniform_schedule": True},
    "simpletuner:beta": {"flow_use_beta_schedule": True},
    "diffusers:sd3": {}, "diffusers:flux": {}, "diffusers:none": {"weighting_scheme": "none"},
    "diffusers:cosmap": {"weighting_scheme": "cosmap"},
    "diffusers:logit_normal": {"weighting_scheme": "logit_normal"},
    "diffusers:mode": {"weighting_scheme": "mode"},
    "diffusers:sigma_sqrt": {"weighting_scheme": "sigma_sqrt"},
}  # fmt: skip
# string options searched by screening each value at the default numbers (invalid ones are skipped)
_CHOICES: dict[str, tuple[str, ...]] = {
    "loss_weight_fn": ("CONSTANT", "SIGMA", "MIN_SNR_GAMMA", "DEBIASED_ESTIMATION", "P2"),
    "weighting_scheme": ("none", "logit_normal", "mode", "cosmap", "sigma_sqrt"),
    "model_prediction_type": ("sigma_scaled", "raw"),  # additive weights the levels exactly as raw
}
_RENAME: dict[str, dict[str, str]] = {
    "ai-toolkit:min_snr_gamma": {"gamma": "min_snr_gamma"},
    "ai-toolkit:snr_gamma": {"gamma": "snr_gamma"},
    "kohya:min_snr_gamma": {"gamma": "min_snr_gamma"},
}
# --------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Conversion:
    """The closest setting found: ``preset`` and ``params`` (the searched ones), ``tv`` left, the target
    ``tool`` and the option text (``text``) in the tool's own format."""

    tool: str
    preset: str
    params: dict[str, Any]
    tv: float
    text: str

    @property
    def close(self) -> bool:
        return self.tv <= CLOSE_TV

    def lines(self, source: str = "the source") -> list[str]:
        q = "&".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        out = [f"closest {self.tool} setting: {self.preset}{'?' + q if q else ''}",
               f"total-variation distance left: {self.tv:.4f} (0 = same effective weighting W)"]  # fmt: skip
        if not self.close:
            out.append(f"nothing in {self.tool} comes within {CLOSE_TV} (TV) of {source}: "
                       f"{self.tool} cannot express it; this is only the nearest")  # fmt: skip
        return [*out, "", *self.text.splitlines()]


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _normalised(cfg: NoiseConfig, lam: torch.Tensor) -> torch.Tensor | None:
    try:
        W = cfg.effective_weighting()(lam)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    if not bool(torch.isfinite(W).all()):
        return None
    dx = float(lam[1] - lam[0])
    mass = float(torch.trapezoid(W, dx=dx))
    return W / mass if mass > 0 and math.isfinite(mass) else None


def _tv(a: torch.Tensor, b: torch.Tensor, dx: float) -> float:
    return min(max(0.5 * float(torch.trapezoid((a - b).abs(), dx=dx)), 0.0), 1.0)


def tv_distance(a: NoiseConfig, b: NoiseConfig) -> float:
    """TV distance of two configurations' normalised W on the search grid (1.0 when one is undefined)."""
    lam = logsnr_grid(*_GRID)
    wa, wb = _normalised(a, lam), _normalised(b, lam)
    return 1.0 if wa is None or wb is None else _tv(wa, wb, float(lam[1] - lam[0]))


def _searched(name: str) -> list[str]:
    return [k for k, v in PRESETS[name].params.items()
            if isinstance(v, float) and not isinstance(v, bool) and k not in _NOT_SEARCHED]  # fmt: skip


def _coarse(default: float) -> list[float]:
    if default > 0:
        return [default * 2.0 ** (6.0 * i / (_COARSE - 1) - 3.0) for i in range(_COARSE)]
    return [default + 6.0 * i / (_COARSE - 1) - 3.0 for i in range(_COARSE)]


class _Objective:
    def __init__(self, name: str, target: torch.Tensor, lam: torch.Tensor):
        self.name, self.target, self.lam = name, target, lam
        self.dx = float(lam[1] - lam[0])

    def __call__(self, params: dict[str, Any]) -> float:
        try:
            cfg = preset(self.name, **params)
        except (ValueError, ZeroDivisionError, OverflowError):
            return math.inf
        w = _normalised(cfg, self.lam)
        return math.inf if w is None else _tv(w, self.target, self.dx)


def _refine(f: _Objective, params: dict[str, Any], key: str, lo: float, hi: float) -> tuple[float, float]:
    """Golden-section search of ``key`` on [lo, hi] (in log space when both are positive)."""
    log = lo > 0 and hi > 0
    a, b = (math.log(lo), math.log(hi)) if log else (lo, hi)
    g = (math.sqrt(5.0) - 1.0) / 2.0

    def at(x: float) -> float:
        return f({**params, key: math.exp(x) if log else x})

    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = at(c), at(d)
    for _ in range(_REFINE):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = at(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = at(d)
    x, fx = (c, fc) if fc <= fd else (d, fd)
    return (math.exp(x) if log else x), fx


def _search_preset(
    name: str, target: torch.Tensor, lam: torch.Tensor, start: dict[str, Any]
) -> tuple[dict, float]:
    f = _Objective(name, target, lam)
    keys = _searched(name)
    defaults = PRESETS[name].params
    params = {k: float(start.get(k, defaults[k])) for k in keys}
    best = f({**start, **params})
    if best < 1e-9:
        return params, best
    if len(keys) > 1:  # the parameter that alone gets closest goes first (coordinate search is greedy)
        alone = {k: min(f({**params, k: x}) for x in _coarse(float(defaults[k]))) for k in keys}
        keys.sort(key=alone.__getitem__)
    for _ in range(4 if len(keys) > 1 else 1):
        before = best
        for key in keys:
            current = params.get(key, defaults[key])
            grid = sorted({*_coarse(float(defaults[key])), float(current)})
            vals = [f({**params, key: x}) for x in grid]
            i = min(range(len(grid)), key=vals.__getitem__)
            if not math.isfinite(vals[i]):
                continue
            lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
            x, fx = _refine(f, params, key, lo, hi) if hi > lo else (grid[i], vals[i])
            if fx <= vals[i] and fx <= best:
                params, best = {**params, key: x}, fx
            elif vals[i] <= best:
                params, best = {**params, key: grid[i]}, vals[i]
        if before - best < 1e-4:
            break
    return params, best


def convert(source: NoiseConfig, tool: str, *, source_preset: str | None = None,
            source_params: dict[str, Any] | None = None) -> Conversion:  # fmt: skip
    """The ``tool`` setting whose normalised W is closest (in TV) to ``source``'s."""
    if tool not in TOOLS:
        raise ValueError(f"unknown tool {tool!r}; valid tools: {', '.join(TOOLS)}")
    lam = logsnr_grid(*_GRID)
    target = _normalised(source, lam)
    if target is None:
        raise ValueError("the source's effective weighting is not finite on λ ∈ [−10, 10]")
    best: tuple[float, str, dict[str, Any]] = (math.inf, "", {})
    starts = _starts(source, tool, target, lam)
    for name, start in starts:
        if name == source_preset:
            start = {**start, **(source_params or {})}
        params, tv = _search_preset(name, target, lam, start)
        params = {**{k: v for k, v in start.items() if k not in params}, **params}
        if tv < best[0]:
            best = (tv, name, params)
        if tv < 1e-9:
            break
    tv, name, params = best
    if not name:
        raise ValueError(f"no {tool} preset has a finite effective weighting to compare")
    f = _Objective(name, target, lam)
    params = {k: round(v, 4) if isinstance(v, float) else v for k, v in params.items()}
    tv = f(params)
    for k, default in PRESETS[name].params.items():  # a parameter that does not matter goes back
        if (isinstance(default, float) and k in params and params[k] != default
                and f({**params, k: default}) <= tv + 1e-4):  # fmt: skip
            params[k] = default
            tv = f(params)
    defaults = PRESETS[name].params
    params = {k: v for k, v in params.items() if isinstance(v, float) or v != defaults[k]}
    return Conversion(tool, name, params, tv, emit(name, params))


def _kind(name: str, source: NoiseConfig) -> dict[str, Any]:
    """The model-kind parameters of preset ``name`` for the source's model (flow / ε / v)."""
    v = source.parameterization == "v"
    kind = {"model": "flow" if source.process == "flow" else ("v" if v else "eps"),
            "prediction_type": "v_prediction" if v else "epsilon", "v_parameterization": v}  # fmt: skip
    return {k: x for k, x in kind.items() if k in PRESETS[name].params}


def _starts(source: NoiseConfig, tool: str, target: torch.Tensor, lam: torch.Tensor) -> list:
    """Per preset of ``tool`` for the source's kind of model: the fixed model-kind parameters and the best
    value of each string option (screened at the default numbers)."""
    same, other = [], []
    for name in list_presets(tool):
        start = _kind(name, source)
        try:
            cfg = preset(name, **start)
        except ValueError:
            start = {}
            try:
                cfg = preset(name)
            except ValueError:
                continue
        f = _Objective(name, target, lam)
        for key, values in _CHOICES.items():
            if key in PRESETS[name].params:
                start[key] = min(values, key=lambda x, k=key: f({**start, k: x}))
        (same if cfg.process == source.process else other).append((name, start))
    return same or other


def _options(name: str, params: dict[str, Any]) -> dict[str, Any]:
    tool = PRESETS[name].tool
    table = TABLES.get(tool)
    opts: dict[str, Any] = {}
    if table is not None and table.selector is not None:
        rev = {p: v for v, p in table.presets.items()}
        if name in rev:
            opts[table.selector] = rev[name]
    opts.update(_EXTRA.get(name, {}))
    rev_params = {p: o for o, p in (table.params.items() if table else ())}
    rev_params.update(_RENAME.get(name, {}))
    for k, v in params.items():
        if k != "model":  # OneTrainer's model kind comes from its model_type, not an option
            opts[rev_params.get(k, k)] = v
    return opts


def emit(name: str, params: dict[str, Any]) -> str:
    """Preset ``name`` with ``params`` written as its tool writes its options."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(sorted(PRESETS))}")
    tool, opts = PRESETS[name].tool, _options(name, params)
    if tool == "ai-toolkit":
        body = "\n".join(f"  {k}: {_yaml(v)}" for k, v in opts.items())
        return "# ai-toolkit job YAML, config.process[0]:\ntrain:\n" + body
    if tool in ("kohya", "diffusers"):
        flags = []
        for k, v in opts.items():
            if v is True:
                flags.append(f"--{k}")
            elif v is not False:
                flags.append(f"--{k} {_fmt(v) if isinstance(v, float) else v}")
        return f"# {tool} command-line flags:\n" + (" ".join(flags) or "(none: the script's defaults)")
    label = "OneTrainer config JSON" if tool == "onetrainer" else "SimpleTuner config.json"
    return f"# {label} keys:\n" + json.dumps(opts, indent=2)


def _yaml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return _fmt(v) if isinstance(v, float) else str(v)
