"""Benchmark: spectrally-guided per-instance noise schedules vs a global schedule on embedded MNIST.

Claim under test (Esteves & Makadia 2026): per-instance "tight" schedules derived from each image's
power spectrum improve pixel-diffusion sample quality at low step counts (≈15 % better FID at 32
steps on ImageNet) and lose slightly at high step counts. Targets of issue 6 at our scale: ≥ 10 %
lower Fréchet distance at 8 and 16 NFE, no more than 5 % worse at 64 NFE.

Two runs, same data (MNIST train, 4,500 images), architecture (the project's CPU UNet), objective
(vp process, v-parameterisation, sigmoid weighting b = 2 in ε units), optimizer, steps, batch and seed:

* ``global``: λ = λ_g(t), t ~ U(0, 1), where λ_g is the training set's global tight schedule
  (``noiselevels.spectral.global_tight_schedule``, mixed), i.e. one tight range for every image;
* ``instance``: the ``[spectral]`` trainer option: each example's λ = λ_i(t) under its own tight
  range (same normalised shape), the UNet conditioned on (λ, λ_min,i, λ_max,i); at sampling time
  (λ_min, λ_max) come from a Gaussian mixture fitted to the training bounds.

Sampling: DPM-Solver++(2M) with N = NFE steps (NFE ∈ {8, 16, 32, 64}); for each run and NFE the best
of the spacings ``schedule`` (the run's own schedule at even t), ``karras`` (ρ = 7) and ``exponential``
over the run's σ range (the global run: the global range; the instance run: each instance's range).
Fréchet distance on the project's MNIST classifier features (``noiselevels.runs.metrics``), ``--num``
samples against the 500 validation images, one fixed seed.

Run (CPU; about 30–40 minutes on 2 busy cores with the defaults):

    .venv/bin/python benchmarks/spectral.py
    .venv/bin/python benchmarks/spectral.py --steps 200 --num 200 --quick   # smoke test

Writes ``benchmarks/results/spectral.json`` and ``benchmarks/results/spectral.md``; the runs go to
``runs/bench_spectral/{global,instance}`` and are reused when they already hold ``--steps`` steps.
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

from noiselevels import spectral as sp
from noiselevels.runs.checkpoint import latest_checkpoint
from noiselevels.runs.config import TrainConfig
from noiselevels.runs.data import load_dataset
from noiselevels.runs.evaluate import sample_quality
from noiselevels.runs.run import generate, load_run
from noiselevels.runs.train import train
from noiselevels.sampling.spacings import spacing

SPACINGS = ("schedule", "karras", "exponential")
SPACING_PARAMS = {"schedule": {}, "karras": {"rho": 7.0}, "exponential": {}}


def config(args, *, global_schedule: sp.TightSchedule | None) -> TrainConfig:
    noise = {
        "process": "vp",
        "parameterization": "v",
        "weighting": {"name": "sigmoid", "bias": 2.0},
        "density": {"name": "uniform_t", "schedule": global_schedule.to_dict()}
        if global_schedule
        else {"name": "uniform_t", "schedule": {"name": "cosine"}},  # unused: λ comes from [spectral]
    }
    d = {
        "noise": noise,
        "data": {"name": "mnist", "batch_size": args.batch},
        "model": {"kind": "unet"},
        "train": {
            "steps": args.steps,
            "lr": 1e-3,
            "warmup": 100,
            "log_every": 50,
            "ckpt_every": 500,
            "seed": 0,
            "ema_decay": 0.999,
        },
    }
    if global_schedule is None:
        d["spectral"] = {"kind": "mixed", "shape": "tight", "components": 4}
    return TrainConfig.from_dict(d)


def ensure_run(cfg: TrainConfig, out: Path, steps: int) -> dict:
    ck = latest_checkpoint(out / "checkpoints") if (out / "config.json").is_file() else None
    t0 = time.perf_counter()
    if ck is None:
        res = train(cfg, out, progress=False)
    else:
        stored = load_run(out).step
        res = train(None, out, resume=True, steps=steps, progress=False) if stored < steps else None
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "ips": None if res is None else res.images_per_second}


def global_sigmas(sched: sp.TightSchedule, steps: int, name: str) -> torch.Tensor:
    lo, hi = sched.logsnr_min, sched.logsnr_max
    if name == "schedule":
        t = torch.linspace(1.0, 0.0, steps, dtype=torch.float64)
        sig = torch.exp(-0.5 * sched.logsnr(t))
        return torch.cat([sig, torch.zeros(1, dtype=torch.float64)])
    return torch.as_tensor(
        spacing(name, **SPACING_PARAMS[name]).sigmas(
            steps, sigma_min=math.exp(-0.5 * hi), sigma_max=math.exp(-0.5 * lo)
        ),
        dtype=torch.float64,
    )


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--num", type=int, default=500)
    ap.add_argument("--nfe", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--runs", default="runs/bench_spectral")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--quick", action="store_true", help="spacings schedule + karras only")
    return ap.parse_args(argv)


def sample(run, name: str, g: sp.TightSchedule, nfe: int, spc: str, num: int) -> torch.Tensor:
    """``num`` dpmpp_2m samples of one run: the global run on the global range, the instance run on
    each instance's own range (``spectral=run.spectral``)."""
    common = {"num": num, "solver": "dpmpp_2m", "seed": 0, "batch_size": 250}
    if name == "global":
        return generate(run.model, run.noise, (1, 28, 28), sigmas=global_sigmas(g, nfe, spc), **common)
    return generate(
        run.model,
        run.noise,
        (1, 28, 28),
        steps=nfe,
        spacing=spc,
        spacing_params=SPACING_PARAMS[spc],
        spectral=run.spectral,
        **common,
    )


def evaluate_all(args, runs: Path, g: sp.TightSchedule, spacings, ref: torch.Tensor) -> list[dict]:
    """FD and KID of every run × NFE × spacing."""
    results: list[dict] = []
    for name in ("global", "instance"):
        run = load_run(runs / name)
        for nfe in args.nfe:
            for spc in spacings:
                t1 = time.perf_counter()
                x = sample(run, name, g, nfe, spc, args.num)
                q = sample_quality(x, ref, seed=0)
                rec = {
                    "run": name,
                    "nfe": nfe,
                    "spacing": spc,
                    "fd": q["fd"],
                    "kid": q["kid"],
                    "seconds": time.perf_counter() - t1,
                }
                results.append(rec)
                print(f"  {name:8s} NFE {nfe:3d} {spc:12s} FD {q['fd']:8.3f}  KID {q['kid']:.4f}", flush=True)
    return results


def best_per_nfe(results: list[dict], nfes) -> tuple[dict, dict]:
    """The best spacing (lowest FD) per run and NFE, and instance's FD change against global per NFE."""
    best = {}
    for name in ("global", "instance"):
        for nfe in nfes:
            rs = [r for r in results if r["run"] == name and r["nfe"] == nfe]
            b = min(rs, key=lambda r: r["fd"])
            best[f"{name}/{nfe}"] = {"spacing": b["spacing"], "fd": b["fd"]}
    rel = {nfe: best[f"instance/{nfe}"]["fd"] / best[f"global/{nfe}"]["fd"] - 1.0 for nfe in nfes}
    return best, rel


def markdown(args, out: dict, best: dict, rel: dict, results: list[dict]) -> list[str]:
    lines = [
        "# Per-instance (spectral) vs global tight schedule on MNIST",
        "",
        f"Command: `{out['command']}`  ",
        f"Training: {args.steps} steps × batch {args.batch}, same UNet/objective/seed; sampling: dpmpp_2m, "
        f"{args.num} samples, Fréchet distance on the project's MNIST classifier features vs 500 val images.",
        "",
        "| NFE | global: best spacing | global FD | instance: best spacing | instance FD | change |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for nfe in args.nfe:
        bg, bi = best[f"global/{nfe}"], best[f"instance/{nfe}"]
        lines.append(
            f"| {nfe} | {bg['spacing']} | {bg['fd']:.3f} | {bi['spacing']} | {bi['fd']:.3f} | "
            f"{100 * rel[nfe]:+.1f} % |"
        )
    lines += ["", "All runs:", "", "| run | NFE | spacing | FD | KID |", "|---|---:|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r['run']} | {r['nfe']} | {r['spacing']} | {r['fd']:.3f} | {r['kid']:.4f} |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spacings = SPACINGS[:2] if args.quick else SPACINGS

    train_set = load_dataset("mnist", split="train")
    val = load_dataset("mnist", split="val")
    t0 = time.perf_counter()
    g = sp.global_tight_schedule(train_set.data, kind="mixed")
    lo, hi = sp.bounds(train_set.data)
    summary = sp.summarize(lo, hi)
    print(f"global tight schedule: {g.describe()} ({time.perf_counter() - t0:.1f} s)", flush=True)

    runs = Path(args.runs)
    timing = {}
    for name, sched in (("global", g), ("instance", None)):
        print(f"training {name} ({args.steps} steps, batch {args.batch})", flush=True)
        timing[name] = ensure_run(config(args, global_schedule=sched), runs / name, args.steps)
        print(f"  {name}: {timing[name]}", flush=True)

    results = evaluate_all(args, runs, g, spacings, val.data)
    best, rel = best_per_nfe(results, args.nfe)
    out = {
        "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "settings": {
            "steps": args.steps,
            "batch": args.batch,
            "num_samples": args.num,
            "nfe": args.nfe,
            "spacings": list(spacings),
            "solver": "dpmpp_2m",
        },
        "global_schedule": g.to_dict(),
        "train_bounds_summary": summary["all"],
        "timing": timing,
        "results": results,
        "best": best,
        "relative_fd_change_instance_vs_global": {str(k): v for k, v in rel.items()},
    }
    od = Path(args.out)
    od.mkdir(parents=True, exist_ok=True)
    (od / "spectral.json").write_text(json.dumps(out, indent=1))
    lines = markdown(args, out, best, rel, results)
    (od / "spectral.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
