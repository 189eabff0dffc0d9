"""Evaluating a trained run: bits per dimension, Fréchet distance / KID, error against a toy distribution.

**Bits per dimension** (Kingma et al. 2021, "Variational Diffusion Models", eqs. 11–17, written in λ):
for 8-bit data x (values v_k = 2k/255 − 1, k = 0..255, in D dimensions) the negative ELBO is

    −log p(x) ≤ KL(q(z_λmin | x) ‖ N(0, I))                     prior, at λ_min (VP scale)
              + ½ ∫_{λmin}^{λmax} E_ε ‖ε − ε̂(z_λ; λ)‖² dλ        diffusion loss (continuous time)
              − E log p(x | z_λmax)                                discretised 8-bit decoder at λ_max

The continuous-time diffusion term is the VDM loss ½·E_t[γ'(t)‖ε − ε̂‖²] with γ = −λ after the change
of variable t → λ; it depends only on the denoiser as a function of λ, so it is the same for every
process (vp, ve and flow latents at one λ differ only by a scale the model's input absorbs), and any
parameterisation's prediction is converted to ε̂ with ``to_x0_eps``. It is estimated by importance
sampling λ from a fixed proposal q(λ) — uniform on [λ_min, λ_max], stratified over the batch — with a
fixed seed: ½·E_{λ∼q}[‖ε − ε̂‖²/q(λ)]. The prior KL is exact:
Σ_i ½(α²x_i² + σ² − 1 − log σ²) with α² = sigmoid(λ_min), σ² = sigmoid(−λ_min). The decoder is VDM's:
p(x_i = v_k | z) ∝ exp(−½·e^{λ_max}·(z_i/α − v_k)²), independent of the model; z/α = x + e^{−λmax/2}·ε.
bits/dim = nats / (D·ln 2).

**Sample quality**: Fréchet distance and KID between features of generated samples and of the
validation split, computed with ``noiselevels.runs.metrics`` (the project's small MNIST classifier, or a
user-provided feature extractor), on a fixed number of samples drawn with a fixed seed.

**Toy problems** (2-D data sets): the sliced 2-Wasserstein distance between generated samples and the
validation set (a fresh draw from the true distribution), with the same distance between the training
set and the validation set as the floor a perfect sampler would reach.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from noiselevels.levels import alpha_sigma, broadcast, check_process, log_sigmoid
from noiselevels.runs import metrics
from noiselevels.runs.data import balanced_indices
from noiselevels.runs.lora import load_model
from noiselevels.runs.run import Run, generate

__all__ = [
    "bits_per_dim",
    "evaluate_run",
    "quantize_8bit",
    "sample_quality",
    "sliced_wasserstein",
]


def quantize_8bit(x: Tensor) -> tuple[Tensor, Tensor]:
    """Round data in [−1, 1] to the 256 levels v_k = 2k/255 − 1; returns (values, integer k)."""
    k = torch.round((x.to(torch.float64) + 1.0) * 127.5).clamp(0, 255)
    return k / 127.5 - 1.0, k.long()


def _prior_kl(x: Tensor, logsnr_min: float) -> Tensor:
    """KL(N(αx, σ²I) ‖ N(0, I)) per sample (nats), VP α² = sigmoid(λ), σ² = sigmoid(−λ). Shape (B,)."""
    lam = torch.tensor(logsnr_min, dtype=torch.float64)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    log_s2 = log_sigmoid(-lam)
    kl = 0.5 * (a2 * x * x + s2 - 1.0 - log_s2)
    return kl.flatten(1).sum(1)


def _decoder_nll(x: Tensor, k: Tensor, logsnr_max: float, generator: torch.Generator) -> Tensor:
    """−log p(x | z_λmax) per sample (nats) for VDM's discretised decoder. Shape (B,)."""
    scale = math.exp(-0.5 * logsnr_max)  # σ/α at λ_max
    y = x + scale * torch.randn(x.shape, generator=generator, dtype=torch.float64)
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1.0
    logits = -0.5 * math.exp(logsnr_max) * (y.unsqueeze(-1) - levels) ** 2
    logp = torch.log_softmax(logits, dim=-1).gather(-1, k.unsqueeze(-1)).squeeze(-1)
    return -logp.flatten(1).sum(1)


@torch.no_grad()
def bits_per_dim(
    model,
    *,
    process: str,
    parameterization,
    x: Tensor,
    labels: Tensor | None = None,
    logsnr_min: float = -10.0,
    logsnr_max: float = 12.0,
    num_levels: int = 4,
    batch_size: int = 250,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The VDM variational bound in bits/dim on images ``x`` (N, C, H, W) in [−1, 1].

    ``num_levels`` λ draws per image (stratified over each batch); ``model(model_input, logsnr,
    labels=...)`` returns the ``parameterization``'s target under ``process``. Returns a dict with
    ``bpd`` (the bound), its parts ``prior``, ``diffusion``, ``reconstruction`` (bits/dim each),
    ``bpd_stderr`` (Monte-Carlo standard error of the bound) and the settings used.
    """
    check_process(process)
    if not (math.isfinite(logsnr_min) and math.isfinite(logsnr_max) and logsnr_min < logsnr_max):
        raise ValueError(
            f"need finite logsnr_min < logsnr_max for the bound; got [{logsnr_min}, {logsnr_max}]"
        )
    if isinstance(num_levels, bool) or not isinstance(num_levels, int) or num_levels < 1:
        raise ValueError(f"num_levels must be an integer >= 1; got {num_levels!r}")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x must be a batch of data of shape (N, ...); got {tuple(x.shape)}")
    g = torch.Generator().manual_seed(seed)
    xq, k = quantize_8bit(x)
    dims = xq[0].numel()
    width = logsnr_max - logsnr_min
    dtype = next(model.parameters()).dtype if any(True for _ in model.parameters()) else torch.float32
    parts = {"prior": [], "diffusion": [], "reconstruction": []}
    for start in range(0, xq.shape[0], batch_size):
        xb, kb = xq[start : start + batch_size], k[start : start + batch_size]
        b = xb.shape[0]
        cond = {} if labels is None else {"labels": labels[start : start + b].to(device)}
        parts["prior"].append(_prior_kl(xb, logsnr_min))
        parts["reconstruction"].append(_decoder_nll(xb, kb, logsnr_max, g))
        diff = torch.zeros(b, dtype=torch.float64)
        for _ in range(num_levels):
            strata = torch.randperm(b, generator=g).to(torch.float64)
            u = (strata + torch.rand(b, generator=g, dtype=torch.float64)) / b
            lam = logsnr_min + width * u  # q(λ) = 1/width
            eps = torch.randn(xb.shape, generator=g, dtype=torch.float64)
            a, s = alpha_sigma(logsnr=lam, process=process)
            a, s = broadcast(a, xb), broadcast(s, xb)
            z = a * xb + s * eps
            zi = parameterization.model_input(z, alpha=a, sigma=s)
            pred = model(zi.to(device, dtype), lam.to(device, dtype), **cond).to("cpu", torch.float64)
            _, eps_hat = parameterization.to_x0_eps(pred, z=z, alpha=a, sigma=s)
            diff += 0.5 * width * (eps - eps_hat).flatten(1).pow(2).sum(1)
        parts["diffusion"].append(diff / num_levels)
    to_bits = 1.0 / (dims * math.log(2.0))
    cat = {key: torch.cat(v) * to_bits for key, v in parts.items()}
    total = cat["prior"] + cat["diffusion"] + cat["reconstruction"]
    n = total.numel()
    return {
        "bpd": float(total.mean()),
        "bpd_stderr": float(total.std(unbiased=True) / math.sqrt(n)) if n > 1 else float("nan"),
        "prior": float(cat["prior"].mean()),
        "diffusion": float(cat["diffusion"].mean()),
        "reconstruction": float(cat["reconstruction"].mean()),
        "num_images": n,
        "num_levels": num_levels,
        "logsnr_min": logsnr_min,
        "logsnr_max": logsnr_max,
        "seed": seed,
    }


def sliced_wasserstein(a: Tensor, b: Tensor, *, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between two point sets (N, d) and (M, d) (float64).

    Each random unit direction gives a 1-D W2 between the projected empirical distributions
    (quantiles matched on a common grid of min(N, M) levels); the result is sqrt of their mean.
    """
    a, b = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"point sets must have the same dimension; got {a.shape[1]} and {b.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(a.shape[1], projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    m = min(a.shape[0], b.shape[0])
    q = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    pa = torch.quantile((a @ dirs), q, dim=0)
    pb = torch.quantile((b @ dirs), q, dim=0)
    return float(((pa - pb) ** 2).mean().sqrt())


def sample_quality(
    samples: Tensor,
    reference: Tensor,
    *,
    features: str | Callable[[Tensor], Tensor] = "mnist",
    kid_subsets: int = 10,
    kid_subset_size: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Fréchet distance and KID between ``samples`` and ``reference`` (both (N, C, H, W) in [−1, 1]) on
    the features of ``features`` (``"mnist"``: the project's classifier; or any callable mapping a batch
    of images to (N, F) features, e.g. a user-provided Inception network)."""
    extract = metrics.feature_extractor(features) if isinstance(features, str) else features
    with torch.no_grad():
        fa = extract(samples.float().clamp(-1, 1))
        fb = extract(reference.float())
    size = kid_subset_size or min(100, fa.shape[0], fb.shape[0])
    kid = metrics.kid(fa, fb, subsets=kid_subsets, subset_size=size, seed=seed)
    kid_mean = kid[0] if isinstance(kid, tuple) else kid
    fd = float(metrics.frechet_distance(fa, fb))
    return {"fd": fd, "kid": float(kid_mean), "num_samples": samples.shape[0]}


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    num: int = 500,
    steps: int = 20,
    spacing: str = "karras",
    spacing_params: Mapping[str, Any] | None = None,
    solver: str = "heun",
    sigmas: Tensor | None = None,
    bpd_images: int | None = 500,
    bpd_levels: int = 4,
    logsnr_min: float = -10.0,
    logsnr_max: float = 12.0,
    features: str | Callable[[Tensor], Tensor] = "mnist",
    seed: int = 0,
    ema: bool = True,
    adapter: str | os.PathLike | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """All metrics of a run folder, as a JSON-able dict.

    ``run_dir`` may also be a base model (``mnist-base``, an exported safetensors) and ``adapter`` a
    LoRA fine-tune folder to attach (``noiselevels.runs.finetune.load_model``).

    Image data: ``bpd`` (on up to ``bpd_images`` validation images; None = all) and, when the feature
    extractor applies (``"mnist"`` needs 1-channel images and resizes them to 28×28), ``fd``/``kid``
    of ``num`` samples drawn with ``steps`` solver steps against ``num`` validation images. A subset of
    the validation split is class-balanced and drawn from ``seed``
    (:func:`noiselevels.runs.data.balanced_indices`; the embedded splits are stored class by class). A
    class-conditional model samples the classes of that subset, in its proportions: with ``adapter``
    the metrics are those of the fine-tuned model on its base's classes (retention); the new concept
    is scored by ``noiselevels finetune --evaluate``. 2-D toy
    data: ``swd`` (sliced W2 of ``num`` samples vs the validation set) and ``swd_floor`` (training set
    vs validation set). Sample i depends only on (``seed``, i), not on ``batch_size``
    (``noiselevels.runs.run.generate``)."""
    if isinstance(num, bool) or not isinstance(num, int) or num < 2:
        raise ValueError(f"num must be an integer >= 2; got {num!r}")
    run = load_model(run_dir, adapter, ema=ema)  # = noiselevels.runs.run.load_run for a run folder
    val = run.config.data.load("val")
    out: dict[str, Any] = {
        "run": str(Path(run_dir)),
        "step": run.step,
        "data": run.config.data.name,
        "noise": run.noise.describe().replace("\n", "; "),
        "sampler": {"steps": steps, "spacing": spacing, "solver": solver, "seed": seed},
    }
    is_image = len(run.data["shape"]) == 3
    if is_image:
        out.update(_run_bits_per_dim(run, val, bpd_images=bpd_images, bpd_levels=bpd_levels,
                                     logsnr_min=logsnr_min, logsnr_max=logsnr_max, seed=seed))  # fmt: skip
    ref_idx, labels = _reference(run, val, num, seed)
    samples = generate(
        run.model,
        run.noise,
        tuple(run.data["shape"]),
        num=num,
        steps=steps,
        spacing=spacing,
        spacing_params=spacing_params,
        solver=solver,
        sigmas=sigmas,
        labels=labels,
        spectral=run.spectral,
        seed=seed,
        batch_size=batch_size,
    )
    out["nfe_note"] = "heun uses 2N-1 denoiser evaluations" if solver == "heun" else ""
    if is_image:
        out.update(_image_quality(samples, val.data[ref_idx], tuple(run.data["shape"]), features, seed))
    else:
        out.update(_toy_quality(samples, val.data, run.config.data.load("train"), seed))
        out["num_samples"] = num
    return out


def _run_bits_per_dim(
    run: Run, val, *, bpd_images, bpd_levels, logsnr_min, logsnr_max, seed
) -> dict[str, Any]:
    """``bits_per_dim`` of a run on a class-balanced subset of ``bpd_images`` validation images (all
    when None); a per-instance (spectral) run has none (the bound would need each image's own
    (λ_min, λ_max) conditioning, which ``bits_per_dim`` does not pass)."""
    if run.spectral is not None:
        return {"bpd": None, "bpd_note": "not computed for per-instance (spectral) runs"}
    labels_val = val.labels if run.conditional else None
    n_b = len(val) if bpd_images is None else min(bpd_images, len(val))
    pick = balanced_indices(val, n_b, seed=seed)
    res = bits_per_dim(
        run.model,
        process=run.process,
        parameterization=run.parameterization,
        x=val.data[pick],
        labels=None if labels_val is None else labels_val[pick],
        logsnr_min=logsnr_min,
        logsnr_max=logsnr_max,
        num_levels=bpd_levels,
        seed=seed,
    )
    return {"bits_per_dim": res, "bpd": res["bpd"]}


def _reference(run: Run, val, num: int, seed: int) -> tuple[Tensor, Tensor | None]:
    """The reference set, a seeded class-balanced subset of the validation split (indices), and the
    labels a conditional model samples: the subset's classes in its proportions (e.g. a fine-tune
    evaluated against its base's data never samples the base's missing classes); None unconditional."""
    ref_idx = balanced_indices(val, min(num, len(val)), seed=seed)
    num_classes = run.config.model.get("num_classes")
    if num_classes is None:
        return ref_idx, None
    pool = val.labels[ref_idx] if val.labels is not None else torch.arange(int(num_classes))
    return ref_idx, pool.repeat(-(-num // len(pool)))[:num]


def _image_quality(samples: Tensor, reference: Tensor, shape: tuple[int, ...], features, seed: int):
    """FD / KID of the samples against the reference images, where the feature extractor applies."""
    if callable(features) or shape[0] == 1:
        return sample_quality(samples, reference, features=features, seed=seed)
    return {"fd": None, "kid": None,
            "fd_note": f"the MNIST feature extractor needs 1-channel images; got shape {shape}"}  # fmt: skip


def _toy_quality(samples: Tensor, ref: Tensor, train_set, seed: int) -> dict[str, float]:
    """Sliced W2 of the samples against the validation set, and of the training set (the floor)."""
    pick = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(seed))[: len(ref)]
    return {
        "swd": sliced_wasserstein(samples, ref, seed=seed),
        "swd_floor": sliced_wasserstein(train_set.data[pick], ref, seed=seed),
    }
