"""diffusers example training scripts' command lines: ``train_dreambooth[_lora]_sd3.py`` /
``_flux.py`` (``--weighting_scheme``, ``--logit_mean``, ``--logit_std``, ``--mode_scale``,
``--precondition_outputs``) and the SD 1.x / 2.x / XL scripts (``--snr_gamma``, ``--prediction_type``).
The family comes from the script name, else from ``--pretrained_model_name_or_path``."""

from __future__ import annotations

from typing import Any

from noiselevels.presets import PRESETS
from noiselevels.presets.files._parsed import Parsed, parse_command_line, parse_resolution
from noiselevels.presets.files._table import ToolTable, map_params
from noiselevels.presets.files.families import FAMILIES

__all__ = ["TABLE", "choose", "is_diffusers_script", "read_command_line"]

TABLE = ToolTable(
    tool="diffusers",
    selector=None,
    default=None,
    presets={"flow": "diffusers:sd3", "flux": "diffusers:flux", "ddpm": "diffusers:snr_gamma"},
    params={p: p for p in ("weighting_scheme", "logit_mean", "logit_std", "mode_scale",
                           "precondition_outputs", "snr_gamma", "prediction_type")},
    unmodelled={
        "noise_offset": "adds a per-channel constant to the noise",
        "input_perturbation": "input perturbation noise",
        "dream_training": "DREAM: the model's own prediction mixed into the target",
        "loss_type": "a non-MSE loss changes the per-level weight",
        "timestep_bias_strategy": "biases the timestep draw",
    },
)  # fmt: skip


def is_diffusers_script(script: str) -> bool:
    return script.startswith(("train_dreambooth", "train_text_to_image", "train_instruct_pix2pix"))


def _family(script: str, opts: dict[str, Any]):
    for key, name in (("sd3", "sd3"), ("flux", "flux"), ("sdxl", "sdxl"), ("sana", "sd3")):
        if key in script:
            return FAMILIES[name]
    path = str(opts.get("pretrained_model_name_or_path", "")).lower()
    if "xl" in path:
        return FAMILIES["sdxl"]
    if "2-1" in path or "2-0" in path or "stable-diffusion-2" in path:
        return FAMILIES["sd2"]
    return FAMILIES["sd15"]


def read_command_line(text: str) -> Parsed:
    script, opts = parse_command_line(text)
    p = Parsed("diffusers", script, _family(script, opts), opts)
    if "resolution" in opts:
        p.resolution, p.resolution_source = parse_resolution(opts["resolution"]), "--resolution"
    return p


def choose(p: Parsed) -> tuple[str, dict[str, Any], list[str]]:
    opts = dict(p.options)
    if p.family.name == "flux" and "diffusers:flux" in PRESETS:
        name = "diffusers:flux"
        return (name, *map_params(TABLE, name, opts, skip=("snr_gamma", "prediction_type")))
    if p.family.process == "flow":
        name = "diffusers:sd3"
        params, missing = map_params(TABLE, name, opts, skip=("snr_gamma", "prediction_type"))
        params["shift"] = p.family.shift
        if "flux" in p.format:
            params["precondition_outputs"] = False  # the Flux scripts regress the flow target
        elif "precondition_outputs" in opts:
            params["precondition_outputs"] = bool(opts["precondition_outputs"])
        return name, params, missing
    pred = str(opts.get("prediction_type", "v_prediction" if p.family.parameterization == "v" else "epsilon"))
    if opts.get("snr_gamma"):
        name = "diffusers:snr_gamma"
        params, missing = map_params(
            TABLE,
            name,
            opts,
            skip=("weighting_scheme", "logit_mean", "logit_std", "mode_scale", "precondition_outputs"),
        )
        params["prediction_type"] = pred
        return name, params, missing
    _, missing = map_params(TABLE, "diffusers:snr_gamma", opts, skip=("prediction_type",))
    return "diffusers:ddpm", {"prediction_type": pred}, missing
