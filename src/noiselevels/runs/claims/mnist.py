"""Claims tested by training small MLP denoisers on the embedded MNIST (14×14): min-SNR-γ, importance
sampling, EDM2's uncertainty weighting and flow matching's logit-normal t. See ``lean`` for the model
and the training step; every configuration of a claim shares seed s's initial weights, data order and
noise (paired comparisons over seeds)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch

from noiselevels.config import noise_config
from noiselevels.runs.claims.lean import QUICK, Budget, evaluate_fd, objective_of, train
from noiselevels.runs.claims.registry import finding, register
from noiselevels.runs.claims.stats import ratio_interval, verdict
from noiselevels.runs.data import load_dataset
from noiselevels.training.adaptive import LossImportanceSampler, UncertaintySampler

__all__ = ["equivalence", "mnist_images", "steps_to_reach"]

SIZE = 14
TARGET = {"process": "vp", "parameterization": "v",
          "density": {"name": "logit_normal", "mean": 0.0, "std": 1.0},
          "weighting": {"name": "min_snr", "gamma": 5.0}}  # fmt: skip
EQUIVALENT = (0.85, 1 / 0.85)  # "≈": a ratio within ±15 % (on the log scale)


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    train_x = load_dataset("mnist", split="train", size=SIZE).data
    return train_x, load_dataset("mnist", split="val", size=SIZE).data


def mnist_images(quick: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, validation) MNIST digits at 14×14 in [−1, 1]; 500 validation digits (64 when quick)."""
    train_x, val = _mnist()
    return train_x, val[:64] if quick else val


def equivalence(ci: dict[str, Any], band: tuple[float, float] = EQUIVALENT) -> str:
    """``reproduced`` when the ratio's interval lies inside ``band``, ``not reproduced`` when it lies
    wholly outside it, else ``depends``."""
    if band[0] <= ci["lo"] and ci["hi"] <= band[1]:
        return "reproduced"
    if ci["hi"] < band[0] or ci["lo"] > band[1]:
        return "not reproduced"
    return "depends"


def steps_to_reach(curve: list[dict[str, float]], key: str, target: float) -> float:
    """The first step at which ``curve[key]`` ≤ ``target``, interpolated linearly between evaluations;
    when never reached, the last step scaled by (final value / target), a crude lower bound."""
    prev_step, prev = 0.0, math.inf
    for rec in curve:
        if rec[key] <= target:
            if not math.isfinite(prev):
                return float(rec["step"])
            frac = (prev - target) / (prev - rec[key])
            return prev_step + frac * (rec["step"] - prev_step)
        prev_step, prev = float(rec["step"]), rec[key]
    return float(curve[-1]["step"]) * curve[-1][key] / target


@register(
    "min_snr",
    claim="min-SNR-γ = 5 converges faster than the uniform ε-loss (≈ 3.4× fewer steps)",
    source="Hang et al. 2023, 'Efficient Diffusion Training via Min-SNR Weighting Strategy', §4",
    setup="ε-prediction, vp, uniform t under cosine (λ ∈ [−15, 15]); weight 1 vs min(SNR, 5)/SNR; MLP on "
    "MNIST 14×14, 600 steps; FD (200 samples, Heun 18 Karras steps) and bits/dim at 3 points of training",
)
def min_snr(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    base = {"process": "vp", "parameterization": "eps", "schedule": {"name": "cosine"},
            "density": {"name": "uniform_t", "truncate": [-15.0, 15.0]}}  # fmt: skip
    cfgs = {"uniform": noise_config({**base, "weighting": {"name": "constant"}}),
            "min_snr_5": noise_config({**base, "weighting": {"name": "min_snr", "gamma": 5.0}})}  # fmt: skip
    budget = QUICK if quick else Budget(steps=600, evals=3, num_samples=200)
    x, val = mnist_images(quick)
    curves: dict[str, list] = {k: [] for k in cfgs}
    for seed in seeds:
        for name, cfg in cfgs.items():
            def ev(step, model, cfg=cfg, seed=seed):
                return evaluate_fd(model, cfg, val, budget, seed=seed, bpd=True)
            curves[name].append(train(cfg, x, budget, seed=seed, on_eval=ev)[1])
    findings = []
    for key, what in (("fd", "FD"), ("bpd", "bits/dim")):
        reach_u, reach_m = [], []
        for cu, cm in zip(curves["uniform"], curves["min_snr_5"]):
            target = cu[-1][key]  # what the uniform loss reaches at the end
            reach_u.append(steps_to_reach(cu, key, target))
            reach_m.append(steps_to_reach(cm, key, target))
        ci = ratio_interval(reach_u, reach_m)
        findings.append(finding(
            f"steps to the uniform loss's final {what}", "speed-up (uniform steps / min-SNR steps), ×",
            ci, verdict(ci, better_if="above", threshold=1.0),
            "reproduced if the interval is above 1×"))  # fmt: skip
    return {"findings": findings, "details": {"curves": curves, "budget": vars(budget)}}


def _estimator(model, x, cfg, sampler, *, batches: int, seed: int) -> dict[str, float]:
    """Mean and variance over ``batches`` fresh batches of the per-batch loss (the quantity the optimiser
    sees) and tr Cov of its gradient; an importance ``sampler`` is first warmed on 50 batches."""
    obj = objective_of(cfg, sampler)
    g = torch.Generator().manual_seed(seed * 31 + 7)
    if sampler is not None:
        with torch.no_grad():
            for _ in range(50):
                out = obj(model, x[torch.randint(x.shape[0], (128,), generator=g)], generator=g)
                sampler.update(out.logsnr, out.eps_mse)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    losses, sq, total = [], 0.0, [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for _ in range(batches):
        loss = obj(model, x[torch.randint(x.shape[0], (128,), generator=g)], generator=g).loss.mean()
        grads = torch.autograd.grad(loss, params)
        sq += sum(float(gr.double().pow(2).sum()) for gr in grads)
        for t, gr in zip(total, grads):
            t.add_(gr.double())
        losses.append(float(loss.detach()))
    lt = torch.tensor(losses, dtype=torch.float64)
    mean_sq = sum(float((t / batches).pow(2).sum()) for t in total)
    return {"loss_mean": float(lt.mean()), "loss_var": float(lt.var()),
            "grad_var": (sq / batches - mean_sq) * batches / (batches - 1)}  # fmt: skip


@register(
    "importance_sampling",
    claim="importance sampling of λ keeps the effective weighting W and lowers the variance of the loss",
    source="Kingma & Gao 2023, 'Understanding Diffusion Objectives as the ELBO with Simple Data "
    "Augmentation', App. F",
    setup="v-prediction, vp, logit-normal(0, 1), min-SNR-5 (W = p·w); MLP trained 500 steps per seed, then "
    "frozen: 48 fresh batches with λ ~ p vs λ ~ q ∝ W·EMA(loss) weighted W/q (LossImportanceSampler)",
)
def importance_sampling(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    cfg = noise_config(TARGET)
    budget = QUICK if quick else Budget(steps=500)
    batches = 4 if quick else 48
    x, _ = mnist_images(quick)
    stats: dict[str, list] = {"fixed": [], "importance": []}
    for seed in seeds:
        model, _ = train(cfg, x, budget, seed=seed)
        stats["fixed"].append(_estimator(model, x, cfg, None, batches=batches, seed=seed))
        sampler = LossImportanceSampler(cfg.density, cfg.weighting, bins=100, decay=0.9)
        stats["importance"].append(_estimator(model, x, cfg, sampler, batches=batches, seed=seed))
    col = {k: {s: [r[s] for r in v] for s in ("loss_mean", "loss_var", "grad_var")} for k, v in stats.items()}
    mean = ratio_interval(col["importance"]["loss_mean"], col["fixed"]["loss_mean"])
    var = ratio_interval(col["importance"]["loss_var"], col["fixed"]["loss_var"])
    grad = ratio_interval(col["importance"]["grad_var"], col["fixed"]["grad_var"])
    band = "reproduced if the interval lies within 0.85–1.18×"
    below = "reproduced if the interval is below 1×"
    return {"findings": [
        finding("keeps W: mean loss estimate", "importance / fixed, ×", mean, equivalence(mean), band),
        finding("variance of the per-batch loss", "importance / fixed, ×", var,
                verdict(var, better_if="below", threshold=1.0), below),
        finding("gradient variance tr Cov(∇θ)", "importance / fixed, ×", grad,
                verdict(grad, better_if="below", threshold=1.0), below),
    ], "details": {"stats": stats, "budget": vars(budget), "batches": batches}}  # fmt: skip


@register(
    "edm2_uncertainty",
    claim="EDM2's learned uncertainty weighting does about as well as a good hand-tuned weighting",
    source="Karras et al. 2024, 'Analyzing and Improving the Training Dynamics of Diffusion Models' "
    "(EDM2), §5 / eq. 21",
    setup="v-prediction, vp, logit-normal(0, 1); min-SNR-5 (hand-tuned) vs the same W with the learned "
    "per-λ uncertainty u(λ) (UncertaintySampler, weight e^(−u)); MLP on MNIST 14×14, equal steps; FD of "
    "200 samples (600 steps)",
)
def edm2_uncertainty(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    cfg = noise_config(TARGET)
    budget = QUICK if quick else Budget(steps=600, num_samples=200)
    x, val = mnist_images(quick)
    fds: dict[str, list[float]] = {"min_snr_5": [], "uncertainty": []}
    for seed in seeds:
        for name in fds:
            unc = name == "uncertainty"
            sampler = UncertaintySampler(cfg.density, cfg.weighting, lr=1e-2) if unc else None
            model, _ = train(cfg, x, budget, seed=seed, sampler=sampler)
            fds[name].append(evaluate_fd(model, cfg, val, budget, seed=seed)["fd"])
    ci = ratio_interval(fds["uncertainty"], fds["min_snr_5"])
    return {"findings": [finding("FD at equal steps", "uncertainty / min-SNR-5, ×", ci, equivalence(ci),
                                 "reproduced if the interval lies within 0.85–1.18×")],
            "details": {"fd": fds, "budget": vars(budget)}}  # fmt: skip


@register(
    "flow_logit_normal",
    claim="rectified flow trains better with logit-normal(0, 1) t than with uniform t (at equal compute)",
    source="Esser et al. 2024, 'Scaling Rectified Flow Transformers' (SD3), §5.1, Table 1",
    setup="flow process, velocity prediction, unweighted velocity loss; t ~ logit-normal(0, 1) vs "
    "t ~ U(0, 1); MLP on MNIST 14×14, 600 steps each; FD of 200 samples (Heun, 18 Karras steps)",
)
def flow_logit_normal(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    base = {"process": "flow", "parameterization": "flow", "weighting": {"name": "constant", "units": "flow"}}
    cfgs = {"uniform": noise_config({**base, "schedule": {"name": "flow"}, "density": {"name": "uniform_t"}}),
            "logit_normal": noise_config({**base, "density": {"name": "logit_normal", "mean": 0.0,
                                                              "std": 1.0}})}  # fmt: skip
    budget = QUICK if quick else Budget(steps=600, num_samples=200)
    x, val = mnist_images(quick)
    fds: dict[str, list[float]] = {k: [] for k in cfgs}
    for seed in seeds:
        for name, cfg in cfgs.items():
            model, _ = train(cfg, x, budget, seed=seed)
            fds[name].append(evaluate_fd(model, cfg, val, budget, seed=seed)["fd"])
    ci = ratio_interval(fds["logit_normal"], fds["uniform"])
    return {"findings": [finding("FD at equal steps", "logit-normal / uniform, ×", ci,
                                 verdict(ci, better_if="below", threshold=1.0),
                                 "reproduced if the interval is below 1×")],
            "details": {"fd": fds, "budget": vars(budget)}}  # fmt: skip
