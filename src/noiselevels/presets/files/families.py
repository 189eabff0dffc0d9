"""Model families: what a model family fixes about the noise (process, parameterisation, β table) and the
numbers a resolution-dependent shift needs (native resolution, latent downsampling × patch size).

``image_seq_len(family, width, height)`` is the transformer's image token count:
(W / (vae_factor·patch)) · (H / (vae_factor·patch)); Flux at 1024² → 64·64 = 4096.
"""

from __future__ import annotations

import dataclasses

__all__ = ["FAMILIES", "Family", "family", "image_seq_len"]


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family. ``process`` is ``flow`` or ``vp``; ``parameterization`` the model's default
    target (``flow``, ``eps``, ``v``); ``betas`` the DDPM table (``scaled_linear`` for SD) or None;
    ``native`` the training resolution (square); ``vae_factor`` × ``patch`` pixels per image token;
    ``shift`` the scheduler's static shift (1 when the scheduler shifts dynamically)."""

    name: str
    label: str
    process: str
    parameterization: str
    betas: str | None
    native: int
    vae_factor: int = 8
    patch: int = 2
    shift: float = 1.0
    dynamic_shift: bool = False


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("flux", "Flux", "flow", "flow", None, 1024, 8, 2, 1.0, True),
        # ai-toolkit extensions_built_in/diffusion_models/flux2/flux2_model.py 39-47 (dynamic, bucket 16)
        Family("flux2", "Flux 2", "flow", "flow", None, 1024, 8, 2, 1.0, True),
        # ai-toolkit extensions_built_in/diffusion_models/z_image/z_image.py 42-45, 82 (static shift 3, 8·2)
        Family("zimage", "Z-Image", "flow", "flow", None, 1024, 8, 2, 3.0),
        Family("sd3", "SD3", "flow", "flow", None, 1024, 8, 2, 3.0),
        Family("qwen_image", "Qwen-Image", "flow", "flow", None, 1328, 8, 2, 1.0, True),
        Family("lumina2", "Lumina 2", "flow", "flow", None, 1024, 8, 2, 6.0),
        Family("hidream", "HiDream", "flow", "flow", None, 1024, 8, 2, 3.0),
        Family("wan", "Wan", "flow", "flow", None, 832, 8, 2, 5.0),
        Family("sdxl", "SDXL", "vp", "eps", "scaled_linear", 1024, 8, 1),
        Family("sd15", "SD 1.5", "vp", "eps", "scaled_linear", 512, 8, 1),
        Family("sd2", "SD 2 (768-v)", "vp", "v", "scaled_linear", 768, 8, 1),
    )
}

# names the tools use for a family → our name
_ALIASES = {
    "flux2": "flux2", "flux2_klein": "flux2", "zimage": "zimage", "z_image": "zimage",
    "flux": "flux", "flux1": "flux", "flux_dev": "flux", "flux_schnell": "flux", "flux.1": "flux",
    "sd3": "sd3", "sd35": "sd3", "sd3.5": "sd3", "stable_diffusion_3": "sd3",
    "sdxl": "sdxl", "stable_diffusion_xl": "sdxl", "sd_xl": "sdxl", "pony": "sdxl", "illustrious": "sdxl",
    "sd15": "sd15", "sd1": "sd15", "sd1x": "sd15", "sd1.5": "sd15", "stable_diffusion_15": "sd15",
    "stable_diffusion_1": "sd15", "sd2": "sd2", "sd2x": "sd2", "stable_diffusion_20": "sd2",
    "stable_diffusion_21": "sd2", "qwen_image": "qwen_image", "qwen": "qwen_image", "qwenimage": "qwen_image",
    "lumina": "lumina2", "lumina2": "lumina2", "lumina_2": "lumina2", "hidream": "hidream",
    "hi_dream": "hidream", "wan": "wan", "wan21": "wan", "wan22": "wan", "wan2.1": "wan", "wan2.2": "wan",
}  # fmt: skip


def family(name: str) -> Family:
    """The family a tool's model name stands for (``FLUX_DEV_1``, ``flux``, ``sd3``, ``sdxl`` …)."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    for cand in (key, key.replace("_", ""), key.split("_")[0]):
        if cand in _ALIASES:
            return FAMILIES[_ALIASES[cand]]
    for alias, fam in sorted(_ALIASES.items(), key=lambda kv: -len(kv[0])):
        if key.startswith(alias):
            return FAMILIES[fam]
    raise ValueError(f"unknown model family {name!r}; known families: {', '.join(FAMILIES)}")


def image_seq_len(fam: Family, width: int, height: int) -> int:
    """The image token count of a ``width`` × ``height`` image in ``fam``'s transformer."""
    step = fam.vae_factor * fam.patch
    return (int(width) // step) * (int(height) // step)
