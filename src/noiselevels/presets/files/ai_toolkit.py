"""ai-toolkit job YAML: ``config.process[]`` with ``train`` (``timestep_type``, ``content_or_style``,
``snr_gamma`` …), ``model`` (``arch`` or ``is_flux`` / ``is_v3`` / ``is_xl`` / ``is_v2`` /
``is_v_pred``) and ``datasets[].resolution`` (a list: the largest bucket resolution is used)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noiselevels.presets import PRESETS
from noiselevels.presets.files._parsed import Parsed, parse_resolution
from noiselevels.presets.files._table import ToolTable, map_params
from noiselevels.presets.files.families import FAMILIES, family

__all__ = ["TABLE", "choose", "read_yaml"]

_TYPES = ("linear", "sigmoid", "weighted", "shift", "flux_shift", "lumina2_shift", "lognorm_blend")
TABLE = ToolTable(
    tool="ai-toolkit",
    selector="timestep_type",
    default="sigmoid",
    presets={t: f"ai-toolkit:{t}" for t in _TYPES},
    params={
        "content_or_style": "content_or_style", "linear_timesteps": "linear_timesteps",
        "linear_timesteps2": "linear_timesteps2", "min_denoising_steps": "min_denoising_steps",
        "max_denoising_steps": "max_denoising_steps", "snr_gamma": "gamma", "min_snr_gamma": "gamma",
        "shift": "shift",
    },
    unmodelled={
        "noise_offset": "adds a per-channel constant to the noise",
        "loss_type": "a non-MSE loss changes the effective per-level weight",
        "target_noise_multiplier": "scales the target's noise",
        "noise_multiplier": "scales the noise", "random_noise_multiplier": "randomises the noise scale",
        "random_noise_shift": "randomises a noise offset", "do_prior_divergence": "adds a prior loss",
        "correct_pred_norm": "rescales the prediction's norm", "inverted_mask_prior": "masks a prior loss",
        "diff_output_preservation": "adds a preservation loss",
    },
)  # fmt: skip


def _family(model: dict[str, Any]):
    if model.get("arch"):
        return family(str(model["arch"]).split(":")[0])
    for key, name in (("is_flux", "flux"), ("is_v3", "sd3"), ("is_xl", "sdxl"), ("is_lumina2", "lumina2")):
        if model.get(key):
            return FAMILIES[name]
    if model.get("is_v2") or model.get("is_v_pred"):
        return FAMILIES["sd2"] if model.get("is_v_pred") else FAMILIES["sd15"]
    return FAMILIES["sd15"]


def read_yaml(path: Path, text: str) -> Parsed:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    procs = (doc or {}).get("config", {}).get("process") if isinstance(doc, dict) else None
    if not isinstance(procs, list) or not procs or not isinstance(procs[0], dict):
        raise ValueError(f"{path}: not an ai-toolkit job (no config.process[] list)")
    proc = procs[0]
    train, model = dict(proc.get("train") or {}), dict(proc.get("model") or {})
    p = Parsed("ai-toolkit", "job YAML", _family(model), train)
    if model.get("is_v_pred"):
        p.options["_v_pred"] = True
    sizes = [r for d in proc.get("datasets") or [] for r in (d.get("resolution") or [])]
    if sizes:
        side = max(parse_resolution(r)[0] for r in (sizes if isinstance(sizes, list) else [sizes]))
        p.resolution, p.resolution_source = (side, side), "datasets[].resolution (largest bucket)"
        if len(set(sizes)) > 1:
            p.notes.append(f"multi-resolution buckets {sorted(set(sizes))}: the largest is used")
    return p


def choose(p: Parsed) -> tuple[str, dict[str, Any], list[str]]:
    opts = dict(p.options)
    v_pred = opts.pop("_v_pred", False)
    if p.family.process != "flow":
        skip: tuple[str, ...] = ("timestep_type", "content_or_style")
        if opts.get("min_snr_gamma"):
            name, skip = "ai-toolkit:min_snr_gamma", (*skip, "snr_gamma")
        elif opts.get("snr_gamma"):
            name = "ai-toolkit:snr_gamma"
        else:
            name = "kohya:ddpm"  # ai-toolkit has no plain DDPM preset: uniform timesteps, weight 1
            params, missing = map_params(TABLE, "kohya:ddpm", {}, skip=())
            return name, {"v_parameterization": True} if v_pred else {}, missing
        params, missing = map_params(TABLE, name, opts, skip=skip)
        if v_pred:
            params["prediction_type"] = "v_prediction"
        return name, params, missing
    ttype = str(opts.get("timestep_type", TABLE.default))
    if ttype not in TABLE.presets:
        raise ValueError(f"timestep_type {ttype!r}; valid: {', '.join(TABLE.presets)}")
    name = TABLE.presets[ttype]
    if name not in PRESETS:
        name = "ai-toolkit:shift"
    cos = opts.get("content_or_style", "balanced")
    skip = ("snr_gamma", "min_snr_gamma")
    if cos in ("content", "style") and "content_or_style" not in PRESETS[name].params:
        if ttype != "sigmoid":
            raise ValueError(f"content_or_style {cos!r} with timestep_type {ttype!r} is not modelled yet")
        name = f"ai-toolkit:{cos}"
    if cos == "balanced" or "content_or_style" not in PRESETS[name].params:
        skip = (*skip, "content_or_style")
    params, missing = map_params(TABLE, name, opts, skip=skip)
    return name, params, missing
