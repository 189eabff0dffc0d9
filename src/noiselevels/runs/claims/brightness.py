"""Claims about the brightness limit of diffusion models, tested on the ``brightness`` set (1×32×32
shapes on flat backgrounds whose mean brightness is uniform in [−0.85, 0.85]): zero terminal SNR with
v-prediction and trailing steps (Lin et al. 2024) and the noise offset (Guttenberg 2023).

Every configuration is Stable Diffusion's recipe at toy scale: vp, v-prediction, its DDPM table
(scaled_linear, β 0.00085–0.012, 1000 steps: ᾱ_T = 0.0047, λ_T = −5.4), t uniform over the table,
the unweighted v-loss; sampled with DDIM (``euler``) in 25 steps, diffusers' ``leading`` rule with
steps_offset 1 (SD's default) from the table's top σ — or, with zero terminal SNR, the ``trailing``
rule from σ = inf (pure noise). The measure is W₁ between the per-image mean brightness of 500
samples and of the 500 validation images.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from noiselevels.config import noise_config
from noiselevels.runs.claims.lean import QUICK, Budget, objective_of, sample, train
from noiselevels.runs.claims.registry import finding, register
from noiselevels.runs.claims.stats import paired_difference, ratio_interval, verdict, wasserstein_1d
from noiselevels.runs.data import load_dataset
from noiselevels.runs.run import spacing_for_run

__all__ = ["CONFIGS", "brightness_stats"]

SD = {"name": "ddpm", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
_BASE = {"process": "vp", "parameterization": "v", "density": {"name": "uniform_t"},
         "weighting": {"name": "constant", "units": "v"}}  # fmt: skip
CONFIGS = {
    "sd": ({**_BASE, "schedule": SD}, {"rule": "leading", "steps_offset": 1}),
    "ztsnr": ({**_BASE, "schedule": {**SD, "zero_terminal_snr": True}}, {"rule": "trailing"}),
    "offset": ({**_BASE, "schedule": SD, "noise_offset": 0.1}, {"rule": "leading", "steps_offset": 1}),
}
TAIL = 0.6  # "very dark / very bright": |mean brightness| > 0.6 (24 % of the real images)


@functools.lru_cache(maxsize=1)
def _data() -> tuple[torch.Tensor, torch.Tensor]:
    return load_dataset("brightness", split="train").data, load_dataset("brightness", split="val").data


@functools.lru_cache(maxsize=32)
def _trained(name: str, seed: int, quick: bool) -> tuple[Any, dict[str, float]]:
    """Train configuration ``name`` with ``seed`` (cached: the claims share the SD baseline)."""
    table, rule = CONFIGS[name]
    cfg = noise_config(table)
    x, val = _data()
    budget = QUICK if quick else Budget(steps=1000, num_samples=300)
    model, _ = train(cfg, x, budget, seed=seed)
    sigmas = spacing_for_run(cfg, "uniform_t", rule).sigmas(4 if quick else 25)
    gen = sample(model, cfg, tuple(x.shape[1:]), budget.num_samples, seed=seed, sigmas=sigmas, solver="euler")
    return model, brightness_stats(gen, val[:64] if quick else val) | {"sigma_start": float(sigmas[0])}


def brightness_stats(gen: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
    """W₁ of the per-image mean brightness (samples clamped to [−1, 1]) against ``real``, and the share of
    very dark / bright images (|mean| > ``TAIL``) among samples and real images."""
    b_gen = gen.clamp(-1, 1).mean(dim=(1, 2, 3))
    b_real = real.mean(dim=(1, 2, 3))
    return {"w1": wasserstein_1d(b_gen, b_real), "tail_gen": float((b_gen.abs() > TAIL).double().mean()),
            "tail_real": float((b_real.abs() > TAIL).double().mean()),
            "brightness_sd_gen": float(b_gen.std()), "brightness_sd_real": float(b_real.std())}  # fmt: skip


@torch.no_grad()
def _val_eps_mse(model, name: str, val: torch.Tensor, seed: int) -> float:
    """ε-MSE on the validation images under the standard forward process (no offset), 8 levels per image
    stratified over λ ∈ [−5, 5], fixed noise: how well the model denoises ordinary images."""
    cfg = noise_config({**CONFIGS[name][0], "noise_offset": 0.0})
    g = torch.Generator().manual_seed(seed + 99)
    x = val.repeat(8, 1, 1, 1)
    lam = torch.linspace(-5.0, 5.0, x.shape[0], dtype=torch.float64)[torch.randperm(x.shape[0], generator=g)]
    out = objective_of(cfg)(model, x, logsnr=lam, noise=torch.randn(x.shape, generator=g))
    return float(out.eps_mse.double().mean())


@register(
    "ztsnr_brightness",
    claim="zero terminal SNR + v-prediction + trailing timesteps fix the brightness limit",
    source="Lin et al. 2024, 'Common Diffusion Noise Schedules and Sample Steps are Flawed', §3, Fig. 1",
    setup="brightness set (1×32×32); SD's table vs its zero-SNR rescale, v-prediction, MLP 1000 steps; "
    "DDIM 25 steps: leading from the table's top σ vs trailing from σ = inf; W₁ of mean brightness "
    "(300 samples)",
)
def ztsnr_brightness(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    res = {n: [_trained(n, s, quick)[1] for s in seeds] for n in ("sd", "ztsnr")}
    w1 = ratio_interval([r["w1"] for r in res["ztsnr"]], [r["w1"] for r in res["sd"]])
    tail = paired_difference([r["tail_gen"] for r in res["ztsnr"]], [r["tail_gen"] for r in res["sd"]])
    return {"findings": [
        finding("W₁ of mean brightness to the real images", "ZTSNR / SD schedule, ×", w1,
                verdict(w1, better_if="below", threshold=1.0), "reproduced if the interval is below 1×"),
        finding(f"share of very dark/bright samples (|mean| > {TAIL})", "ZTSNR − SD, points", tail,
                verdict(tail, better_if="above", threshold=0.0), "reproduced if the interval is above 0"),
    ], "details": res}  # fmt: skip


@register(
    "noise_offset",
    claim="noise offset (0.1) lets a model make very dark and very bright images — at a cost elsewhere",
    source="Guttenberg 2023, 'Diffusion with Offset Noise' (crosslabs.org blog)",
    setup="brightness set (1×32×32); SD's table, v-prediction, MLP 1000 steps, noise offset 0 vs 0.1 "
    "(ε += 0.1·n per image and channel); DDIM 25 leading steps; the cost: ε-MSE on validation images "
    "under the ordinary forward process (λ ∈ [−5, 5])",
)
def noise_offset(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    res = {n: [_trained(n, s, quick)[1] for s in seeds] for n in ("sd", "offset")}
    _, val = _data()
    val = val[:64] if quick else val
    for n in res:
        for s, r in zip(seeds, res[n]):
            r["val_eps_mse"] = _val_eps_mse(_trained(n, s, quick)[0], n, val, s)
    tail = paired_difference([r["tail_gen"] for r in res["offset"]], [r["tail_gen"] for r in res["sd"]])
    w1 = ratio_interval([r["w1"] for r in res["offset"]], [r["w1"] for r in res["sd"]])
    cost = ratio_interval([r["val_eps_mse"] for r in res["offset"]], [r["val_eps_mse"] for r in res["sd"]])
    return {"findings": [
        finding(f"share of very dark/bright samples (|mean| > {TAIL})", "offset − none, points", tail,
                verdict(tail, better_if="above", threshold=0.0), "reproduced if the interval is above 0"),
        finding("W₁ of mean brightness to the real images", "offset / none, ×", w1,
                verdict(w1, better_if="below", threshold=1.0), "reproduced if the interval is below 1×"),
        finding("cost: validation ε-MSE (ordinary noise)", "offset / none, ×", cost,
                verdict(cost, better_if="above", threshold=1.0), "a cost is reproduced if above 1×"),
    ], "details": res}  # fmt: skip
