"""What a fine-tune of a diffusers pipeline trains on, read from the pipeline's config files alone.

``pipeline_noise(spec, timestep_type, resolution)`` is the ``NoiseConfig`` that
``noiselevels finetune --base PIPELINE --timestep-type T --resolution R`` trains one bucket of that size
with (``noiselevels.runs.finetune_latent.bucket_noise``): the timestep type's density and ε-unit weighting
on the pipeline's process and parameterisation, with the bucket's image token count passed to a
resolution-dependent preset (Flux / SD3 dynamic shift, ai-toolkit ``flux_shift``, OneTrainer dynamic
shifting, SimpleTuner auto shift). It reads ``model_index.json``, the scheduler, VAE and network configs
only — no weights are loaded, so inspecting a 24 GB Flux folder takes milliseconds — and gives the same
numbers as the loaded ``LatentModel`` (tested on the tiny pipelines of every family).

Image tokens: (H/f)·(W/f) latent positions for a UNet (f = 2^(VAE stages − 1)); SD3 divides by its patch
size; Flux by 2 (its 2×2 packing), so Flux at 1024² has 64·64 = 4096 tokens. The native resolution is
the network's ``sample_size`` × f (Flux: the pipeline's default_sample_size 128 × f).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from noiselevels.noise import NoiseConfig
from noiselevels.runs.families import family_of, resolve_pipeline
from noiselevels.runs.families.flow import _flow_noise
from noiselevels.runs.families.sd import _ddpm_noise
from noiselevels.runs.finetune_latent import bucket_noise

__all__ = ["PipelineNoise", "pipeline_noise"]

_NETWORK = {"sd": "unet", "sdxl": "unet", "sd3": "transformer", "flux": "transformer"}
_FLUX_DEFAULT_SAMPLE_SIZE = 128  # pipeline_flux.py: FluxPipeline.default_sample_size


@dataclasses.dataclass(frozen=True)
class PipelineNoise:
    """``noise``: what one bucket of ``width`` × ``height`` trains on; ``image_seq_len`` its tokens;
    ``family`` and ``folder`` of the pipeline; ``dynamic_shifting`` the scheduler's flag;
    ``resolution_source``: where the resolution came from (``--resolution`` or the native size)."""

    noise: NoiseConfig
    family: str
    folder: Path
    width: int
    height: int
    image_seq_len: int
    dynamic_shifting: bool
    resolution_source: str

    def read_as(self, label: str) -> str:
        return (
            f"read as: {self.family} pipeline {self.folder} → {label} at {self.width}×{self.height} "
            f"({self.image_seq_len} image tokens, {self.resolution_source}; the scheduler shifts "
            f"{'dynamically' if self.dynamic_shifting else 'statically'})"
        )


def _config(folder: Path, sub: str, name: str) -> dict[str, Any]:
    path = folder / sub / name
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the pipeline's {sub} config ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return doc


def pipeline_noise(
    spec: str | Path, timestep_type: Any = None, resolution: tuple[int, int] | None = None
) -> PipelineNoise:
    """The noise of one bucket of a fine-tune of pipeline ``spec`` (module docstring). ``timestep_type``:
    a preset name, a ``[noise]`` table or None (the pipeline's own: uniform levels, plain MSE);
    ``resolution``: (width, height) in pixels, default the native size."""
    folder = resolve_pipeline(spec)
    family = family_of(folder)
    sched = _config(folder, "scheduler", "scheduler_config.json")
    vae = _config(folder, "vae", "config.json")
    net = _config(folder, _NETWORK[family], "config.json")
    f = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
    base = _ddpm_noise(sched) if family in ("sd", "sdxl") else _flow_noise()
    if resolution is None:
        size = _FLUX_DEFAULT_SAMPLE_SIZE if family == "flux" else int(net.get("sample_size", 64))
        width = height = size * f
        source = "the model's native resolution; pass --resolution"
    else:
        width, height = (int(v) for v in resolution)
        source = "--resolution"
    per_token = f * {"flux": 2, "sd3": int(net.get("patch_size", 1))}.get(family, 1)
    tokens = (height // per_token) * (width // per_token)
    dyn = bool(sched.get("use_dynamic_shifting", False))
    noise = base if timestep_type is None else bucket_noise(timestep_type, base, tokens, dynamic_shifting=dyn)
    return PipelineNoise(noise, family, folder, width, height, tokens, dyn, source)
