"""OneTrainer config / preset JSON (the keys of ``modules/util/config/TrainConfig.py``):
``timestep_distribution``, ``noising_weight``, ``noising_bias``, ``timestep_shift``,
``dynamic_timestep_shifting``, ``min_noising_strength``, ``max_noising_strength``, ``loss_weight_fn``,
``loss_weight_strength``; ``model_type`` (``FLUX_DEV_1``, ``STABLE_DIFFUSION_XL_10_BASE`` …) sets the
family; ``resolution`` (``"1024"`` or ``"1024x768"``, a comma list for several)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from noiselevels.presets.files._parsed import Parsed, parse_resolution
from noiselevels.presets.files._table import ToolTable, map_params
from noiselevels.presets.files.families import FAMILIES, family

__all__ = ["TABLE", "choose", "read_json"]

_DISTS = ("UNIFORM", "LOGIT_NORMAL", "HEAVY_TAIL", "BETA", "COS_MAP", "SIGMOID", "INVERTED_PARABOLA")
_PARAMS = (
    "noising_weight", "noising_bias", "timestep_shift", "dynamic_timestep_shifting", "min_noising_strength",
    "max_noising_strength", "loss_weight_fn", "loss_weight_strength",
)  # fmt: skip
TABLE = ToolTable(
    tool="onetrainer",
    selector="timestep_distribution",
    default="UNIFORM",
    presets={d: f"onetrainer:{d.lower()}" for d in _DISTS},
    params={p: p for p in _PARAMS},
    unmodelled={
        "offset_noise_weight": "adds a per-channel constant to the noise",
        "generalized_offset_noise": "offset noise scaled per timestep",
        "perturbation_noise_weight": "input perturbation noise",
        "rescale_noise_scheduler_to_zero_terminal_snr": "rescales the β table to zero terminal SNR",
        "mae_strength": "an L1 term changes the per-level weight",
        "log_cosh_strength": "a log-cosh term changes the per-level weight",
        "huber_strength": "a Huber term changes the per-level weight",
        "vb_loss_strength": "a variational-bound term",
        "masked_training": "masks the loss spatially",
    },
)  # fmt: skip


def read_json(path: Path, doc: dict[str, Any]) -> Parsed:
    mt = doc.get("model_type")
    fam = family(str(mt).replace("STABLE_DIFFUSION", "SD")) if mt else FAMILIES["sd15"]
    opts = {k: v for k, v in doc.items() if k in TABLE.params or k in TABLE.unmodelled or k == TABLE.selector}
    for k in ("mae_strength", "log_cosh_strength", "huber_strength", "vb_loss_strength"):
        if not opts.get(k):
            opts.pop(k, None)  # 0 = off
    for k in ("offset_noise_weight", "perturbation_noise_weight"):
        if not opts.get(k):
            opts.pop(k, None)
    for k in ("generalized_offset_noise", "rescale_noise_scheduler_to_zero_terminal_snr", "masked_training"):
        if opts.get(k) is False:
            opts.pop(k)
    p = Parsed("onetrainer", "config JSON", fam, opts)
    if doc.get("force_v_prediction"):
        p.options["_model"] = "v"
    elif doc.get("force_epsilon_prediction"):
        p.options["_model"] = "eps"
    if doc.get("resolution"):
        first = str(doc["resolution"]).split(",")[0]
        p.resolution, p.resolution_source = parse_resolution(first), "resolution"
    return p


def choose(p: Parsed) -> tuple[str, dict[str, Any], list[str]]:
    opts = dict(p.options)
    model = opts.pop("_model", p.family.parameterization)
    dist = str(opts.get("timestep_distribution", TABLE.default)).upper()
    if dist not in TABLE.presets:
        raise ValueError(f"timestep_distribution {dist!r}; valid: {', '.join(TABLE.presets)}")
    name = TABLE.presets[dist]
    params, missing = map_params(TABLE, name, opts)
    params["model"] = model
    return name, params, missing
