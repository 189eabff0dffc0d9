"""kohya sd-scripts: a command line (``accelerate launch flux_train_network.py --…``, in a .sh / .bat /
.txt or pasted on stdin), a ``--config_file`` TOML (flat keys, the command line's option names) and its
``--dataset_config`` TOML (``[general]`` / ``[[datasets]]`` ``resolution``).

The script names the model family (``flux_train_network.py`` → Flux, ``sd3_train_network.py`` → SD3,
``sdxl_train_network.py`` → SDXL, ``train_network.py`` → SD 1.5, with ``--v2 --v_parameterization`` SD 2);
a TOML without a script is read by its keys (``t5xxl`` + ``ae`` → Flux, ``clip_g`` + ``t5xxl`` → SD3,
``sdxl`` keys → SDXL).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from noiselevels.presets import PRESETS
from noiselevels.presets.files._parsed import Parsed, parse_command_line, parse_resolution
from noiselevels.presets.files._table import ToolTable, map_params
from noiselevels.presets.files.families import FAMILIES

__all__ = ["SCRIPTS", "TABLE", "choose", "read_command_line", "read_config_toml"]

_SAMPLING = ("uniform", "sigmoid", "shift", "flux_shift", "sigma")
_PARAMS = (
    "sigmoid_scale", "discrete_flow_shift", "weighting_scheme", "logit_mean", "logit_std", "mode_scale",
    "model_prediction_type", "training_shift", "min_timestep", "max_timestep", "min_snr_gamma",
    "debiased_estimation_loss", "scale_v_pred_loss_like_noise_pred", "v_pred_like_loss",
    "v_parameterization", "zero_terminal_snr",
)  # fmt: skip
TABLE = ToolTable(
    tool="kohya",
    selector="timestep_sampling",
    default="sigma",
    presets={s: f"kohya:{s}" for s in _SAMPLING},
    params={p: p for p in _PARAMS},
    unmodelled={
        "noise_offset": "adds a per-channel constant to the noise (changes the noise, not its level)",
        "noise_offset_random_strength": "randomises --noise_offset",
        "adaptive_noise_scale": "scales --noise_offset by the latent mean",
        "multires_noise_iterations": "adds multi-resolution (pyramid) noise",
        "multires_noise_discount": "pyramid noise discount",
        "ip_noise_gamma": "input perturbation noise: the model sees a different noise than its target",
        "ip_noise_gamma_random_strength": "randomises --ip_noise_gamma",
        "loss_type": "a non-MSE loss (huber / smooth_l1 / l1) changes the effective per-level weight",
        "huber_schedule": "the Huber δ schedule over timesteps",
        "huber_c": "the Huber δ", "huber_scale": "the Huber δ scale",
        "masked_loss": "masks the loss spatially",
        "immiscible_noise": "re-pairs noise with images in the batch",
    },
)  # fmt: skip

# script → family (SD 1.x scripts become SD 2 with --v2 --v_parameterization)
SCRIPTS = {
    "flux_train_network.py": "flux", "flux_train.py": "flux", "flux_train_control_net.py": "flux",
    "sd3_train_network.py": "sd3", "sd3_train.py": "sd3",
    "sdxl_train_network.py": "sdxl", "sdxl_train.py": "sdxl", "sdxl_train_control_net.py": "sdxl",
    "sdxl_train_textual_inversion.py": "sdxl",
    "train_network.py": "sd15", "train_db.py": "sd15", "fine_tune.py": "sd15",
    "train_textual_inversion.py": "sd15", "lumina_train_network.py": "lumina2",
    "lumina_train.py": "lumina2", "hidream_train_network.py": "hidream",
}  # fmt: skip


def _family(script: str | None, opts: dict[str, Any]):
    if script is not None:
        if script not in SCRIPTS:
            raise ValueError(f"unknown kohya script {script!r}; known scripts: {', '.join(sorted(SCRIPTS))}")
        name = SCRIPTS[script]
    elif "t5xxl" in opts and "clip_g" in opts:
        name = "sd3"
    elif "ae" in opts or "t5xxl" in opts:
        name = "flux"
    elif "gemma2" in opts:
        name = "lumina2"
    else:
        path = str(opts.get("pretrained_model_name_or_path", "")).lower()
        name = next((f for f in ("flux", "sd3", "sdxl", "xl") if f in path), "sd15")
        name = "sdxl" if name == "xl" else name
    if name == "sd15" and opts.get("v2") and opts.get("v_parameterization"):
        name = "sd2"
    return FAMILIES[name]


def _dataset_resolution(path: Path) -> tuple[int, int] | None:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"--dataset_config {path}: {e}") from None
    for table in (*doc.get("datasets", []), doc.get("general", {})):
        if isinstance(table, dict) and "resolution" in table:
            return parse_resolution(table["resolution"])
    return None


def _resolution(p: Parsed, base: Path | None) -> None:
    if "resolution" in p.options:
        p.resolution, p.resolution_source = parse_resolution(p.options["resolution"]), "--resolution"
        return
    dc = p.options.get("dataset_config")
    if isinstance(dc, str):
        path = Path(dc)
        if not path.is_absolute() and base is not None and not path.exists():
            path = base / path
        if not path.exists():
            p.notes.append(f"--dataset_config {dc} not found: its resolution was not read")
            return
        res = _dataset_resolution(path)
        if res is not None:
            p.resolution, p.resolution_source = res, f"{path.name}"


def read_command_line(text: str, base: Path | None = None) -> Parsed:
    """A kohya command line (a file's text or stdin)."""
    script, opts = parse_command_line(text)
    cfg_file = opts.pop("config_file", None)
    if isinstance(cfg_file, str):
        path = Path(cfg_file) if base is None or Path(cfg_file).is_absolute() else base / cfg_file
        if path.exists():
            opts = {**_flat_toml(path), **opts}
        else:
            raise ValueError(f"--config_file {cfg_file} not found")
    p = Parsed("kohya", script, _family(script, opts), opts)
    _resolution(p, base)
    return p


def _flat_toml(path: Path) -> dict[str, Any]:
    doc = tomllib.loads(path.read_text())
    flat: dict[str, Any] = {}
    for k, v in doc.items():  # kohya flattens one level of sections
        if isinstance(v, dict):
            flat.update(v)
        else:
            flat[k] = v
    return flat


def read_config_toml(path: Path, doc: dict[str, Any]) -> Parsed:
    """A kohya ``--config_file`` TOML (flat keys; sections are flattened as kohya does)."""
    if "noise" in doc:
        raise ValueError(f"{path}: a noiselevels config ([noise] table), not a kohya --config_file")
    if set(doc) <= {"general", "datasets"}:
        raise ValueError(
            f"{path}: a kohya dataset config (--dataset_config) holds no noise options; pass the training "
            "command line or --config_file TOML (it reads this file for the resolution)"
        )
    opts = _flat_toml(path)
    p = Parsed("kohya", "--config_file TOML", _family(None, opts), opts)
    _resolution(p, path.parent)
    return p


def choose(p: Parsed) -> tuple[str, dict[str, Any], list[str]]:
    """kohya's preset for ``p``: flow families by ``--timestep_sampling``, DDPM ones ``kohya:ddpm``."""
    opts = p.options
    if p.family.process != "flow":
        name = "kohya:ddpm"
    else:
        sampling = str(opts.get("timestep_sampling", TABLE.default))
        if sampling not in TABLE.presets:
            raise ValueError(f"--timestep_sampling {sampling!r}; valid: {', '.join(TABLE.presets)}")
        name = TABLE.presets[sampling]
        if p.family.name == "sd3" and "kohya:sd3" in PRESETS:
            name = "kohya:sd3"
    params, missing = map_params(TABLE, name, opts)
    return name, params, missing
