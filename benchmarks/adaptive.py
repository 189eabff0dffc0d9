"""Benchmark: adaptive noise levels on embedded MNIST (CPU, a few minutes).

Target configuration (every run is measured against it): vp process, v-prediction, training density
logit-normal(0, 1) (λ ~ N(0, 2²)), weighting min-SNR-5 in ε units; effective weighting
W(λ) = p(λ)·w(λ). Data: the embedded MNIST (4,500 train / 500 val digits) resized to 14×14; model: an
MLP denoiser (196 → 3×512 → 196, λ Fourier-embedded), AdamW, batch 128, the same initial weights,
data order and noise seeds for every run.

1. **Importance sampling vs the fixed density, same W.** On frozen models (the baseline at 1/4 of
   training and at the end) and 64 fresh batches each: the variance of the per-batch loss estimate
   (the quantity the optimiser sees), the variance of the gradient norm and the total gradient
   variance tr Cov(∇θ), for (a) λ ~ p with weight w, (b) :class:`LossImportanceSampler` (proposal
   ∝ W·EMA(loss), weight W/q; warmed on 50 batches of the frozen model), with the paper's per-bin mean
   and with the per-bin RMS statistic.
2. **Validation loss vs step** for the baseline and an importance-sampled run: the loss with the target
   W on the 500 validation digits, 2 levels each drawn from p (stratified, fixed seed) and fixed noise,
   so every run is scored by the same estimator. "steps to the baseline's final value" = the first
   evaluation at which a run's validation loss is ≤ the baseline's final one.
3. **Uncertainty weighting (EDM2), time warping (CDCD), learned schedule (VDM)** at equal steps:
   validation loss (target W), VDM bits/dim on the validation digits (noiselevels.runs.evaluate, 8 levels
   per image, λ ∈ [−10, 12]) and the Fréchet distance of 500 samples (Heun, 18 Karras steps) to the
   validation digits on the shipped MNIST classifier's features.

Writes ``benchmarks/results/adaptive.json`` and ``benchmarks/results/adaptive.md``.

Run (one thread; about 6 minutes on a quiet CPU core):

    .venv/bin/python benchmarks/adaptive.py             # 1000 steps per run
    .venv/bin/python benchmarks/adaptive.py --quick     # 300 steps per run (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from noiselevels.parameterizations import parameterization
from noiselevels.runs.data import load_dataset
from noiselevels.runs.evaluate import bits_per_dim, sample_quality
from noiselevels.runs.models import build_model
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.solvers import solve
from noiselevels.sampling.spacings import spacing
from noiselevels.training.adaptive import (
    LearnedSchedule,
    LearnedScheduleSampler,
    LossImportanceSampler,
    TimeWarp,
    UncertaintySampler,
)
from noiselevels.training.densities import density
from noiselevels.training.objective import Objective
from noiselevels.training.weightings import weighting

OUT = Path(__file__).parent / "results"
PROCESS, PARAM = "vp", "v"
P = density("logit_normal", mean=0.0, std=1.0)
W = weighting("min_snr", gamma=5.0)
SIZE, BATCH, LR = 14, 128, 1e-3
LAM_RANGE = (-15.0, 15.0)


class Flat(nn.Module):
    """An MLP denoiser on images: flattens (B, 1, H, W) for ``noiselevels.runs.models.MLP`` and back."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = build_model({"kind": "mlp", "dim": dim, "hidden": 512, "depth": 3, "emb_dim": 64})

    def forward(self, x, logsnr, **cond):
        return self.net(x.flatten(1), logsnr, **cond).view_as(x)


def make_sampler(kind: str):
    if kind == "baseline":
        return None
    if kind == "importance":
        return LossImportanceSampler(
            P, W, bins=100, logsnr_min=LAM_RANGE[0], logsnr_max=LAM_RANGE[1], decay=0.9
        )
    if kind == "importance_rms":
        return LossImportanceSampler(P, W, logsnr_min=LAM_RANGE[0], logsnr_max=LAM_RANGE[1], statistic="rms")
    if kind == "uncertainty":
        return UncertaintySampler(P, W, lr=1e-2)
    if kind == "timewarp":
        return TimeWarp(bins=100, logsnr_min=-10.0, logsnr_max=12.0)
    if kind == "learned_schedule":
        return LearnedScheduleSampler(LearnedSchedule(-10.0, 12.0, hidden=32), P, W, lr=1e-2)
    raise ValueError(kind)


def objective(sampler=None) -> Objective:
    return Objective(process=PROCESS, parameterization=PARAM, density=P, weighting=W, sampler=sampler)


class ValLoss:
    """The target-W loss on the validation digits with fixed levels (from p, stratified) and noise."""

    def __init__(self, x: torch.Tensor, reps: int = 2, seed: int = 123):
        g = torch.Generator().manual_seed(seed)
        self.x = x.repeat(reps, 1, 1, 1)
        self.lam = P.sample(self.x.shape[0], generator=g, stratified=True)
        self.noise = torch.randn(self.x.shape, generator=g)
        self.obj = objective()

    @torch.no_grad()
    def __call__(self, model) -> float:
        tot = 0.0
        for i in range(0, self.x.shape[0], 1000):
            s = slice(i, i + 1000)
            out = self.obj(model, self.x[s], logsnr=self.lam[s], noise=self.noise[s])
            tot += float(out.loss.double().sum())
        return tot / self.x.shape[0]


def train_run(kind, x_train, val, steps, eval_every, seed=0, snapshot_at=None):
    torch.manual_seed(seed)
    model = Flat(x_train[0].numel())
    sampler = make_sampler(kind)
    obj = objective(sampler)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    g_data = torch.Generator().manual_seed(seed + 1)
    g_noise = torch.Generator().manual_seed(seed + 2)
    curve, snapshot = [], None
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        for grp in opt.param_groups:
            grp["lr"] = LR * min(1.0, step / 100)
        idx = torch.randint(x_train.shape[0], (BATCH,), generator=g_data)
        out = obj(model, x_train[idx], generator=g_noise)
        out.loss.mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if sampler is not None:
            sampler.update(out.logsnr.detach(), out.eps_mse.detach())
        if step % eval_every == 0 or step == steps:
            curve.append({"step": step, "val_loss": val(model)})
        if snapshot_at is not None and step == snapshot_at:
            snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    return {
        "model": model,
        "sampler": sampler,
        "curve": curve,
        "seconds": time.perf_counter() - t0,
        "snapshot": snapshot,
    }


def estimator_stats(model, x_train, sampler_kind, batches=64, warm=50, seed=7):
    """Variance over fresh batches of the per-batch loss, the gradient norm, and tr Cov(gradient)."""
    params = [p for p in model.parameters()]
    sampler = make_sampler(sampler_kind)
    obj = objective(sampler)
    g = torch.Generator().manual_seed(seed)
    if sampler is not None:
        with torch.no_grad():
            for _ in range(warm):
                out = obj(model, x_train[torch.randint(x_train.shape[0], (BATCH,), generator=g)], generator=g)
                sampler.update(out.logsnr, out.eps_mse)
    g = torch.Generator().manual_seed(seed + 1)
    losses, norms = [], []
    g_sum = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    g_sq = 0.0
    for _ in range(batches):
        out = obj(model, x_train[torch.randint(x_train.shape[0], (BATCH,), generator=g)], generator=g)
        loss = out.loss.mean()
        grads = torch.autograd.grad(loss, params)
        flat_sq = sum(float(gr.double().pow(2).sum()) for gr in grads)
        for s, gr in zip(g_sum, grads):
            s.add_(gr.double())
        g_sq += flat_sq
        losses.append(float(loss.detach()))
        norms.append(math.sqrt(flat_sq))
    lt, nt = torch.tensor(losses, dtype=torch.float64), torch.tensor(norms, dtype=torch.float64)
    mean_sq = sum(float((s / batches).pow(2).sum()) for s in g_sum)
    return {
        "loss_mean": float(lt.mean()),
        "loss_var": float(lt.var()),
        "grad_norm_mean": float(nt.mean()),
        "grad_norm_var": float(nt.var()),
        "grad_total_var": (g_sq / batches - mean_sq) * batches / (batches - 1),
    }


@torch.no_grad()
def sample_images(model, n, seed=0, steps=18):
    sig = spacing("karras", rho=7.0).sigmas(steps, sigma_min=0.002, sigma_max=80.0)
    g = torch.Generator().manual_seed(seed)
    den = as_denoiser(model, process=PROCESS, parameterization=PARAM)
    x = torch.randn((n, 1, SIZE, SIZE), generator=g) * float(sig[0])
    return solve(den, x, sigmas=sig, solver="heun", generator=g).clamp(-1, 1)


def first_reaching(curve, target):
    for rec in curve:
        if rec["val_loss"] <= target:
            return rec["step"]
    return None


def train_all(train, val, steps, eval_every):
    """The five runs (baseline and the four adaptive kinds), each for ``steps`` steps."""
    runs = {}
    for kind in ("baseline", "importance", "uncertainty", "timewarp", "learned_schedule"):
        runs[kind] = train_run(
            kind, train, val, steps, eval_every, snapshot_at=steps // 4 if kind == "baseline" else None
        )
        print(
            f"{kind:17s} val {runs[kind]['curve'][-1]['val_loss']:.5f}  {runs[kind]['seconds']:.0f}s",
            flush=True,
        )
    return runs


def variance_study(runs, train, steps):
    """1. The estimator variance on the frozen baseline models at a quarter of the steps and at the end."""
    variance = {}
    early = Flat(train[0].numel())
    early.load_state_dict(runs["baseline"]["snapshot"])
    for label, model in ((f"step_{steps // 4}", early), (f"step_{steps}", runs["baseline"]["model"])):
        variance[label] = {
            k: estimator_stats(model, train, k) for k in ("baseline", "importance", "importance_rms")
        }
        print(label, {k: round(v["loss_var"], 8) for k, v in variance[label].items()}, flush=True)
    return variance


def quality_study(runs, val_x):
    """3. Quality at equal steps: validation loss, bits/dim, FD and KID of 500 samples per run."""
    quality = {}
    for kind, r in runs.items():
        model = r["model"].eval()
        bpd = bits_per_dim(
            model,
            process=PROCESS,
            parameterization=parameterization(PARAM),
            x=val_x,
            num_levels=8,
            logsnr_min=-10.0,
            logsnr_max=12.0,
            seed=0,
        )
        samples = sample_images(model, 500)
        fd = sample_quality(samples, val_x, kid_subsets=10)
        quality[kind] = {
            "val_loss": r["curve"][-1]["val_loss"],
            "bpd": bpd["bpd"],
            "bpd_stderr": bpd["bpd_stderr"],
            "fd": fd["fd"],
            "kid": fd["kid"],
            "train_seconds": r["seconds"],
        }
        print(kind, quality[kind], flush=True)
    return quality


def settings(steps, eval_every):
    """The benchmark's configuration, as written into the results."""
    return {
        "process": PROCESS,
        "parameterization": PARAM,
        "density": P.to_dict(),
        "weighting": W.to_dict(),
        "data": f"mnist {SIZE}x{SIZE}, 4500 train / 500 val",
        "model": "MLP 196-3x512-196",
        "batch": BATCH,
        "lr": LR,
        "steps": steps,
        "eval_every": eval_every,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 steps per run (a smoke test)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps = args.steps or (300 if args.quick else 1000)
    eval_every = max(10, steps // 40)
    t_start = time.perf_counter()

    train = load_dataset("mnist", split="train", size=SIZE).data
    val_x = load_dataset("mnist", split="val", size=SIZE).data
    runs = train_all(train, ValLoss(val_x), steps, eval_every)
    variance = variance_study(runs, train, steps)
    # 2. validation loss vs step, steps to the baseline's final value
    base_final = runs["baseline"]["curve"][-1]["val_loss"]
    reach = {k: first_reaching(r["curve"], base_final) for k, r in runs.items()}
    quality = quality_study(runs, val_x)

    result = {
        "config": settings(steps, eval_every),
        "variance": variance,
        "curves": {k: r["curve"] for k, r in runs.items()},
        "steps_to_baseline_final": reach,
        "baseline_final_val_loss": base_final,
        "quality": quality,
        "seconds": time.perf_counter() - t_start,
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "adaptive.json").write_text(json.dumps(result, indent=1))
    (args.out / "adaptive.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r) -> str:
    c = r["config"]
    lines = [
        "# Adaptive noise levels on MNIST (benchmarks/adaptive.py)",
        "",
        f"Target: {c['process']}, {c['parameterization']}-prediction, p = logit-normal(0, 1), "
        "w = min-SNR-5 (ε units); "
        f"{c['data']}; {c['model']}; batch {c['batch']}, AdamW lr {c['lr']}, {c['steps']} steps per run; "
        f"{r['seconds'] / 60:.1f} min in all on {r['machine']['threads']} CPU thread(s).",
        "",
        "## 1. Estimator variance at the same effective weighting (64 fresh batches, frozen baseline model)",
        "",
        "| model | sampler | per-batch loss var | ratio | grad-norm var | ratio | tr Cov(grad) | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, d in r["variance"].items():
        b = d["baseline"]
        for k, v in d.items():
            lines.append(
                f"| {label} | {k} | {v['loss_var']:.3e} | {v['loss_var'] / b['loss_var']:.2f} | "
                f"{v['grad_norm_var']:.3e} | {v['grad_norm_var'] / b['grad_norm_var']:.2f} | "
                f"{v['grad_total_var']:.3e} | {v['grad_total_var'] / b['grad_total_var']:.2f} |"
            )
    lines += [
        "",
        "Target: ratio ≤ 0.5 for the importance sampler's per-batch loss variance.",
        "",
        "## 2. Validation loss (target W) against step",
        "",
        f"Baseline's final validation loss: {r['baseline_final_val_loss']:.5f}.",
        "",
        "| run | final val loss | first step ≤ baseline final | ratio to baseline steps |",
        "|---|---|---|---|",
    ]
    steps = c["steps"]
    for k, s in r["steps_to_baseline_final"].items():
        final = r["curves"][k][-1]["val_loss"]
        lines.append(
            f"| {k} | {final:.5f} | {s if s is not None else 'not reached'} | "
            f"{(s / steps) if s is not None else float('nan'):.2f} |"
        )
    lines += [
        "",
        "Target: ≤ 0.7× the steps for the importance sampler.",
        "",
        "Validation loss every few steps (baseline / importance):",
        "",
        "| step | " + " | ".join(r["curves"]) + " |",
        "|---|" + "---|" * len(r["curves"]),
    ]
    n = len(r["curves"]["baseline"])
    for i in range(0, n, max(1, n // 10)):
        row = [f"{r['curves'][k][i]['val_loss']:.5f}" for k in r["curves"]]
        lines.append(f"| {r['curves']['baseline'][i]['step']} | " + " | ".join(row) + " |")
    lines += [
        "",
        "## 3. Quality at equal steps",
        "",
        "| run | val loss (target W) | bits/dim | Fréchet distance (MNIST classifier) | KID | train s |",
        "|---|---|---|---|---|---|",
    ]
    for k, q in r["quality"].items():
        lines.append(
            f"| {k} | {q['val_loss']:.5f} | {q['bpd']:.3f} ± {q['bpd_stderr']:.3f} | {q['fd']:.2f} | "
            f"{q['kid']:.4f} | {q['train_seconds']:.0f} |"
        )
    lines += ["", "Command: `.venv/bin/python benchmarks/adaptive.py`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
