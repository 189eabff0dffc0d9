"""Tiny random-initialised diffusers pipelines of every supported family, written to a folder.

``build_tiny_pipeline(family, folder, seed=0)`` builds the pipeline the way diffusers' own tests build
their dummy components (small ``UNet2DConditionModel`` / ``SD3Transformer2DModel`` /
``FluxTransformer2DModel``, a two-block ``AutoencoderKL``, CLIP and T5 text encoders from small configs)
and writes it with ``save_pretrained`` (safetensors), so that ``load_pipeline(folder)`` reads it like a
real model. Nothing is downloaded: the tokenizers are built here from a tiny vocabulary — a CLIP
byte-level BPE over single characters (no merges) and a T5 Unigram over single characters — with the
``tokenizers``-backed ``CLIPTokenizer`` / ``T5Tokenizer`` classes of transformers ≥ 5, which write a
``tokenizer.json`` that loads offline. Each pipeline builds and saves in about a second on a CPU.

Sizes: the VAE has two blocks (``vae_scale_factor`` 2) and 4 latent channels, so a 32×32 image is a
4×16×16 latent (Flux packs that into 64 tokens of 16 channels). The schedulers are those of the real
models: SD 1.5's β table (scaled_linear 0.00085 → 0.012) with ``EulerDiscreteScheduler`` and SD 1.5 /
SDXL's ``timestep_spacing="leading"``, ``steps_offset=1`` (integer timesteps); SD3's
``FlowMatchEulerDiscreteScheduler(shift=3)``; Flux-dev's flow scheduler with dynamic shifting
(base/max_image_seq_len 256/4096, base/max_shift 0.5/1.15) and a guidance embedding.

These are test fixtures and a way to try the commands without weights; the images they make are noise.
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

__all__ = ["TINY_FAMILIES", "build_tiny_pipeline"]

TINY_FAMILIES = ("sd", "sdxl", "sd3", "flux")
_CHARS = string.ascii_lowercase + string.digits
_CLIP = dict(
    bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
    layer_norm_eps=1e-5, num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
)


def _clip_tokenizer():
    """A CLIP BPE tokenizer over single characters: ``<|startoftext|>`` 0, ``<|endoftext|>`` 1
    (also pad and unk), then each character alone and at a word's end (``c</w>``)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in _CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _t5_tokenizer():
    """A T5 Unigram tokenizer over single characters (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``▁``)."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in _CHARS] + [("▁" + c, -3.5) for c in _CHARS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def _clip_encoder(projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab_size = 2 + 2 * len(_CHARS)
    config = CLIPTextConfig(vocab_size=vocab_size, projection_dim=32, **_CLIP)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _t5_encoder(d_model: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=4 + 2 * len(_CHARS), d_model=d_model, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _vae(*, flow: bool):
    """A two-block AutoencoderKL, 4 latent channels. The flow families' VAE has no quant convs and a
    shift factor, like SD3's and Flux's (their scaling/shift factors: 1.5305/0.0609, 0.3611/0.1159)."""
    from diffusers import AutoencoderKL

    kw = dict(
        block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        sample_size=32,
    )
    if flow:
        kw.update(use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159)
    else:
        kw.update(scaling_factor=0.18215)
    return AutoencoderKL(**kw)


def _sd_scheduler():
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", timestep_spacing="leading", steps_offset=1,
    )


def _build_sd():
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=4,
        attention_head_dim=4,
    )
    return StableDiffusionPipeline(
        vae=_vae(flow=False), text_encoder=_clip_encoder(False), tokenizer=_clip_tokenizer(), unet=unet,
        scheduler=_sd_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def _build_sdxl():
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64, norm_num_groups=4,
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids × 8 + text_encoder_2's projection
    )
    return StableDiffusionXLPipeline(
        vae=_vae(flow=False), text_encoder=_clip_encoder(False), text_encoder_2=_clip_encoder(True),
        tokenizer=_clip_tokenizer(), tokenizer_2=_clip_tokenizer(), unet=unet, scheduler=_sd_scheduler(),
    )


def _build_sd3():
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64,
        pooled_projection_dim=64, out_channels=4,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(flow=True),
        text_encoder=_clip_encoder(True), tokenizer=_clip_tokenizer(),
        text_encoder_2=_clip_encoder(True), tokenizer_2=_clip_tokenizer(),
        text_encoder_3=_t5_encoder(64), tokenizer_3=_t5_tokenizer(),
    )


def _build_flux():
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
        guidance_embeds=True,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096,
        base_shift=0.5, max_shift=1.15,
    )
    return FluxPipeline(
        scheduler=scheduler, vae=_vae(flow=True), text_encoder=_clip_encoder(False),
        tokenizer=_clip_tokenizer(), text_encoder_2=_t5_encoder(32), tokenizer_2=_t5_tokenizer(),
        transformer=transformer,
    )


_BUILDERS = {"sd": _build_sd, "sdxl": _build_sdxl, "sd3": _build_sd3, "flux": _build_flux}


def build_tiny_pipeline(family: str, folder: str | Path, *, seed: int = 0) -> Path:
    """Write a tiny random-initialised pipeline of ``family`` (sd, sdxl, sd3, flux) to ``folder``.

    The weights depend only on ``seed`` (the global torch RNG is seeded, then restored). Returns the
    folder (it holds ``model_index.json``). Unknown families raise ValueError naming the valid ones.
    """
    if family not in _BUILDERS:
        raise ValueError(f"unknown tiny pipeline family {family!r}; valid: {', '.join(TINY_FAMILIES)}")
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        pipe = _BUILDERS[family]()
    finally:
        torch.random.set_rng_state(state)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
