"""The family adapters against the diffusers pipelines themselves (tiny random pipelines, float32)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from noiselevels.runs.families import FAMILIES, is_pipeline, load_pipeline, solve_latents
from noiselevels.runs.families.flow import image_ids, pack_latents, unpack_latents

FAMILY_NAMES = ["sd", "sdxl", "sd3", "flux"]


def test_families_registry():
    assert sorted(FAMILIES) == sorted(FAMILY_NAMES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_euler_on_scheduler_grid_equals_pipeline(latent_model, family):
    """Euler along the scheduler's own grid, from the same initial latents, with the adapter's denoiser
    (classifier-free / embedded guidance at the pipeline's default scale) = the pipeline's latents."""
    model = latent_model(family)
    pipe, steps = model.pipe, 3
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    start = pack_latents(noise) if family == "flux" else noise  # FluxPipeline takes packed latents
    g = model.default_guidance
    ref = pipe("a red cat", latents=start.clone(), num_inference_steps=steps, height=32, width=32,
               guidance_scale=g, output_type="latent").images
    grid = model.scheduler_grid(steps, height=32, width=32)
    assert grid.sigmas.shape == (steps + 1,) and grid.sigmas[-1] == 0
    den = model.denoiser(model.encode_prompts(["a red cat"]), guidance_scale=g)
    out = solve_latents(den, noise, grid.sigmas, solver="euler", init_noise_sigma=grid.init_noise_sigma)
    if family == "flux":
        out = pack_latents(out)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_sd_timestep_inverts_the_scheduler_table(latent_model):
    """At λ_i = log(ᾱ_i/(1 − ᾱ_i)) of the scheduler's own (float32) table the timestep is i; between
    two entries it is linear in λ."""
    model = latent_model("sd")
    abar = model.pipe.scheduler.alphas_cumprod.to(torch.float64)
    lam = torch.log(abar) - torch.log1p(-abar)
    i = torch.arange(len(abar), dtype=torch.float64)
    torch.testing.assert_close(model.timestep(lam), i, rtol=0, atol=2e-3)
    mid = 0.25 * lam[400] + 0.75 * lam[401]
    torch.testing.assert_close(model.timestep(mid.reshape(1)), torch.tensor([400.75], dtype=torch.float64),
                               rtol=0, atol=2e-3)


@pytest.mark.parametrize(("family", "scale"), [("sd3", 1000.0), ("flux", 1.0)])
def test_flow_timestep_is_scaled_sigma(latent_model, family, scale):
    sigma = torch.tensor([0.02, 0.3, 0.5, 0.97, 1.0], dtype=torch.float64)
    lam = 2 * torch.log((1 - sigma) / sigma)
    torch.testing.assert_close(latent_model(family).timestep(lam), scale * sigma)


def test_flux_packing_matches_diffusers_and_round_trips():
    from diffusers import FluxPipeline

    z = torch.randn(2, 4, 6, 10)
    packed = pack_latents(z)
    torch.testing.assert_close(packed, FluxPipeline._pack_latents(z, 2, 4, 6, 10), rtol=0, atol=0)
    torch.testing.assert_close(unpack_latents(packed, 6, 10), z, rtol=0, atol=0)
    ref_ids = FluxPipeline._prepare_latent_image_ids(2, 3, 5, "cpu", torch.float32)
    torch.testing.assert_close(image_ids(6, 10), ref_ids, rtol=0, atol=0)
    with pytest.raises(ValueError, match="even height and width"):
        pack_latents(torch.zeros(1, 4, 5, 4))


def test_sdxl_default_time_ids_are_the_pipelines(latent_model):
    model = latent_model("sdxl")
    pipe = model.pipe
    ref = pipe._get_add_time_ids((32, 48), (0, 0), (32, 48), torch.float32, text_encoder_projection_dim=32)
    torch.testing.assert_close(model.time_ids(torch.zeros(3, 4, 16, 24)), ref.expand(3, 6))


@pytest.mark.parametrize("family", ["sd", "flux"])
def test_vae_latents_are_scaled_shifted_posterior_means(latent_model, family):
    model = latent_model(family)
    vae = model.pipe.vae
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        mean = vae.encode(x).latent_dist.mean
        shift = vae.config.shift_factor or 0.0
        want = (mean - shift) * vae.config.scaling_factor
        latents = model.encode_images(x)
        torch.testing.assert_close(latents, want)
        torch.testing.assert_close(model.decode_latents(latents), vae.decode(mean).sample)


def test_noise_configs_follow_the_schedulers(latent_model):
    sd = latent_model("sd").noise
    assert (sd.process, sd.parameterization) == ("vp", "eps")
    abar = latent_model("sd").pipe.scheduler.alphas_cumprod.to(torch.float64)
    torch.testing.assert_close(sd.schedule.alphas_cumprod(), abar, rtol=0, atol=1e-6)
    flux = latent_model("flux").noise
    assert (flux.process, flux.parameterization) == ("flow", "flow")


def test_image_seq_len(latent_model):
    assert latent_model("flux").image_seq_len(1024, 768) == (1024 // 4) * (768 // 4)  # f = 2, packed 2×2
    assert latent_model("sd3").image_seq_len(64, 32) == 32 * 16
    assert latent_model("sd").native_resolution == 32


def test_forward_refuses_unknown_conditioning(latent_model):
    model = latent_model("sd")
    with pytest.raises(TypeError, match="unknown conditioning \\['prompt_embeds'\\]"):
        model(torch.zeros(1, 4, 8, 8), torch.zeros(1), prompt_embeds=torch.zeros(1, 77, 32))


def test_bad_specs_raise_one_line(tmp_path, tiny_pipeline):
    with pytest.raises(ValueError, match=r"no model_index\.json"):
        load_pipeline(tmp_path)
    with pytest.raises(ValueError, match="not in the local Hugging Face cache \\(offline"):
        load_pipeline("nobody-here/no-such-model-xyz")
    with pytest.raises(ValueError, match="neither a folder nor"):
        load_pipeline("not a path")
    index = json.loads((tiny_pipeline("sd") / "model_index.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match="'KandinskyPipeline' is not supported; supported: StableDiffusion"):
        load_pipeline(other)
    assert is_pipeline(tiny_pipeline("sd")) and not is_pipeline(tmp_path) and not is_pipeline("mnist-base")


def test_flow_grid_starts_at_pure_noise(latent_model):
    grid = latent_model("sd3").scheduler_grid(4, height=32, width=32)
    assert math.isinf(grid.sigmas[0]) and grid.sigmas[-1] == 0
    with pytest.raises(ValueError, match="negative prompt needs guidance_scale"):
        latent_model("sd").denoiser(latent_model("sd").encode_prompts(["x"]), negative={})


def test_v_prediction_sd_matches_pipeline(tiny_pipeline):
    """SD 2.x-style v-prediction with trailing spacing: the NoiseConfig says v and Euler on the
    scheduler's grid still equals the pipeline."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from noiselevels.runs.families.sd import StableDiffusion

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline("sd"), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(
        pipe.scheduler.config, prediction_type="v_prediction", timestep_spacing="trailing"
    )
    model = StableDiffusion(pipe)
    assert model.noise.parameterization == "v"
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    ref = pipe("a cat", latents=noise.clone(), num_inference_steps=3, height=32, width=32,
               guidance_scale=1.0, output_type="latent").images
    grid = model.scheduler_grid(3, height=32, width=32)
    out = solve_latents(model.denoiser(model.encode_prompts(["a cat"])), noise, grid.sigmas,
                        init_noise_sigma=grid.init_noise_sigma)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_hub_id_is_read_from_the_local_cache(tiny_pipeline, tmp_path, monkeypatch):
    """owner/name resolves to the cached snapshot (refs/main → snapshots/<commit>) without the network."""
    import shutil

    import huggingface_hub.constants

    from noiselevels.runs.families import resolve_pipeline

    repo = tmp_path / "models--someone--tiny-sd"
    shutil.copytree(tiny_pipeline("sd"), repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert resolve_pipeline("someone/tiny-sd") == repo / "snapshots" / "abc123"
    assert is_pipeline("someone/tiny-sd")
    assert load_pipeline("someone/tiny-sd").family == "sd"


def test_project_spacing_given_to_the_pipeline_is_our_sampler(latent_model):
    """A project grid handed to the pipeline as ``pipe(sigmas=…)`` (what ``spacing show --format diffusers``
    prints) samples what Euler on that grid with the adapter samples: EulerDiscreteScheduler maps σ to
    fractional timesteps linearly in log σ (``_sigma_to_t``), i.e. linearly in λ like the adapter."""
    from noiselevels.runs.families.generate import pipeline_sigmas

    model = latent_model("sd")
    sigmas, _ = pipeline_sigmas(model, steps=5, height=32, width=32, spacing="karras")
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    pipe = model.pipe
    ref = pipe("a red cat", latents=noise.clone(), sigmas=sigmas.tolist(), height=32, width=32,
               guidance_scale=7.5, output_type="latent").images
    torch.testing.assert_close(model.timestep(-2 * torch.log(sigmas[:-1])),
                               pipe.scheduler.timesteps.to(torch.float64), rtol=0, atol=1e-3)
    den = model.denoiser(model.encode_prompts(["a red cat"]), guidance_scale=7.5)
    out = solve_latents(den, noise, sigmas, init_noise_sigma=float(pipe.scheduler.init_noise_sigma))
    torch.testing.assert_close(out, ref, rtol=0, atol=5e-6 * float(ref.abs().max()))


def test_zero_terminal_snr_sd_matches_pipeline(tiny_pipeline):
    """SD 2.1-style zero terminal SNR (rescale_betas_zero_snr, trailing, v): the scheduler's σ_T = 4096
    stand-in and λ = −∞ both map to timestep T − 1, and Euler on the grid equals the pipeline."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from noiselevels.runs.families.sd import StableDiffusion

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline("sd"), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(
        pipe.scheduler.config, prediction_type="v_prediction", timestep_spacing="trailing",
        rescale_betas_zero_snr=True,
    )
    model = StableDiffusion(pipe)
    lam = torch.tensor([-math.inf, -2 * math.log(4096.0), math.inf], dtype=torch.float64)
    torch.testing.assert_close(model.timestep(lam), torch.tensor([999.0, 999.0, 0.0], dtype=torch.float64),
                               rtol=0, atol=1e-6)
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(3))
    ref = pipe("a cat", latents=noise.clone(), num_inference_steps=3, height=32, width=32,
               guidance_scale=1.0, output_type="latent").images
    grid = model.scheduler_grid(3, height=32, width=32)
    out = solve_latents(model.denoiser(model.encode_prompts(["a cat"])), noise, grid.sigmas,
                        init_noise_sigma=grid.init_noise_sigma)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4 * max(1.0, float(ref.abs().max())))


def test_sd3_without_t5_matches_pipeline(tiny_pipeline):
    """SD3 loaded without its T5 encoder (text_encoder_3=None, as diffusers allows): zeros stand in for
    the T5 states, and the adapter still equals the pipeline."""
    from diffusers import StableDiffusion3Pipeline

    from noiselevels.runs.families.flow import StableDiffusion3

    pipe = StableDiffusion3Pipeline.from_pretrained(
        tiny_pipeline("sd3"), text_encoder_3=None, tokenizer_3=None, use_safetensors=True
    )
    pipe.set_progress_bar_config(disable=True)
    model = StableDiffusion3(pipe)
    cond = model.encode_prompts(["a cat"])
    assert cond["encoder_hidden_states"].shape == (1, 77 + model.max_sequence_length, 64)
    assert not cond["encoder_hidden_states"][:, 77:].any()
    noise = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    ref = pipe("a cat", latents=noise.clone(), num_inference_steps=2, height=32, width=32,
               output_type="latent").images
    grid = model.scheduler_grid(2, height=32, width=32)
    out = solve_latents(model.denoiser(cond, guidance_scale=model.default_guidance), noise, grid.sigmas)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-4)


def test_half_precision_network_takes_float32_latents(tiny_pipeline):
    """A float16 pipeline: the network runs in float16, float32 latents and prediction; SDXL-style
    force_upcast keeps the VAE in float32 (its pipeline upcasts it around decoding)."""
    model = load_pipeline(tiny_pipeline("sd"), dtype=torch.float16)
    assert model.dtype == torch.float16 and model.pipe.vae.dtype == torch.float32
    z = model.encode_images(torch.zeros(2, 3, 32, 32))
    cond = model.encode_prompts(["a", "b"])
    pred = model(z, torch.tensor([0.0, 3.0]), **cond)
    assert z.dtype == pred.dtype == torch.float32 and pred.isfinite().all()
    with torch.no_grad():
        t = model.timestep(torch.tensor([0.0, 3.0])).to(torch.float32)
        ref = model.network(z.half(), t, encoder_hidden_states=cond["encoder_hidden_states"]).sample
    torch.testing.assert_close(pred, ref.float())
