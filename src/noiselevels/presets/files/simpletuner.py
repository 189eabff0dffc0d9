"""SimpleTuner ``config.json`` / ``config.toml`` (keys with or without the leading ``--``):
``model_family`` sets the family; flow models ``flow_use_uniform_schedule`` / ``flow_use_beta_schedule``
(else the sigmoid default) with ``flow_sigmoid_scale``, ``flow_schedule_shift``,
``flow_schedule_auto_shift``, ``flux_fast_schedule``, ``flow_beta_schedule_alpha`` / ``_beta``; DDPM models
``snr_gamma``, ``prediction_type``, ``timestep_bias_strategy``; ``resolution`` with ``resolution_type``
(``pixel`` or ``area`` in megapixels)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from noiselevels.presets import PRESETS
from noiselevels.presets.files._parsed import Parsed, parse_resolution
from noiselevels.presets.files._table import ToolTable, map_params
from noiselevels.presets.files.families import family

__all__ = ["TABLE", "choose", "read_doc"]

_PARAMS = (
    "flow_sigmoid_scale", "flow_schedule_shift", "flow_schedule_auto_shift", "flux_fast_schedule",
    "flow_beta_schedule_alpha", "flow_beta_schedule_beta", "snr_gamma", "prediction_type",
    "timestep_bias_strategy", "timestep_bias_multiplier", "timestep_bias_begin", "timestep_bias_end",
    "timestep_bias_portion", "timestep_sampling_offset", "train_batch_size",
    "disable_segmented_timestep_sampling",
)  # fmt: skip
TABLE = ToolTable(
    tool="simpletuner",
    selector=None,
    default="sigmoid",
    presets={"sigmoid": "simpletuner:sigmoid", "uniform": "simpletuner:uniform", "beta": "simpletuner:beta",
             "fast": "simpletuner:fast", "ddpm": "simpletuner:snr_gamma"},
    params={p: p for p in _PARAMS},
    unmodelled={
        "noise_offset": "adds a per-channel constant to the noise",
        "input_perturbation": "input perturbation noise",
        "loss_type": "a non-MSE loss changes the per-level weight",
        "use_soft_min_snr": "soft min-SNR weighting",
        "rescale_betas_zero_snr": "rescales the β table to zero terminal SNR",
        "training_scheduler_timestep_spacing": "the DDPM timestep spacing",
    },
)  # fmt: skip
_SWITCHES = ("flow_use_uniform_schedule", "flow_use_beta_schedule")


def read_doc(path: Path, doc: dict[str, Any], fmt: str) -> Parsed:
    opts = {str(k).lstrip("-").replace("-", "_"): v for k, v in doc.items()}
    if "model_family" not in opts:
        raise ValueError(f"{path}: no model_family: not a SimpleTuner config")
    p = Parsed("simpletuner", fmt, family(str(opts["model_family"])), opts)
    if opts.get("resolution"):
        res = float(opts["resolution"])
        if str(opts.get("resolution_type", "pixel")) == "area":
            side = int(round(math.sqrt(res * 1e6) / 64) * 64) if res < 100 else int(math.sqrt(res))
            p.resolution, p.resolution_source = (side, side), f"resolution {res:g} (area) as a square"
        else:
            p.resolution, p.resolution_source = parse_resolution(int(res)), "resolution"
    for k in ("noise_offset", "input_perturbation"):
        if not opts.get(k):
            opts.pop(k, None)
    for k in ("use_soft_min_snr", "rescale_betas_zero_snr"):
        if opts.get(k) is False:
            opts.pop(k)
    return p


def choose(p: Parsed) -> tuple[str, dict[str, Any], list[str]]:
    opts = p.options
    skip: tuple[str, ...] = _SWITCHES
    if p.family.process != "flow":
        if "simpletuner:ddpm" in PRESETS:
            name = "simpletuner:ddpm"
            params, missing = map_params(TABLE, name, opts, skip=skip)
            params.setdefault(
                "prediction_type", "v_prediction" if p.family.parameterization == "v" else "epsilon"
            )
            return name, params, missing
        if opts.get("snr_gamma"):
            name = "simpletuner:snr_gamma"
        else:
            name = "kohya:ddpm"  # no plain DDPM SimpleTuner preset: uniform timesteps, weight 1
            v = str(opts.get("prediction_type", p.family.parameterization)).startswith("v")
            skip = ("snr_gamma", "prediction_type")
            _, missing = map_params(TABLE, "simpletuner:snr_gamma", opts, skip=skip)
            return name, {"v_parameterization": True} if v else {}, missing
    elif opts.get("flow_use_uniform_schedule"):
        name = "simpletuner:uniform"
    elif opts.get("flow_use_beta_schedule"):
        name = "simpletuner:beta"
    elif opts.get("flux_fast_schedule"):
        name = "simpletuner:fast"
        skip = (*skip, "flux_fast_schedule", "flow_sigmoid_scale", "flow_schedule_shift",
                "flow_schedule_auto_shift", "timestep_sampling_offset")
    else:
        name = "simpletuner:sigmoid"
    if p.family.process == "flow":
        skip = (*skip, "snr_gamma", "prediction_type", "flux_fast_schedule")  # fast: the preset itself
    params, missing = map_params(TABLE, name, opts, skip=skip)
    return name, params, missing
