"""``make demo`` / ``python -m noiselevels.demo [study|train]``: the two main jobs, on CPU, in minutes.

``study`` (the default, ``make demo``) — the timestep-type study: fine-tunes the shipped base model
``mnist-base`` (which never saw the digit 7) on 30 images of a 7 with LoRA adapters, once per "timestep
type" (linear, sigmoid, weighted, shift, sigmoid + loss importance sampling, sigmoid + prior
preservation), in parallel processes, and writes ``runs/demo/timestep-types/report.md``: the Fréchet
distance of the new digit, how much the other digits degraded, wall time. It is
``noiselevels sweep examples/sweeps/timestep-types-demo.toml``; a half-finished study resumes.

``train`` (``make demo-train``) — train, sample, evaluate and report:

1. trains a small UNet on the embedded MNIST training split (4,500 images) — VP process, v-prediction,
   uniform t under the cosine schedule, min-SNR-5 weighting (``examples/train/mnist_v_cosine.toml``);
2. samples 500 images at two step budgets (Heun on a Karras grid);
3. evaluates: bits/dim from the VDM bound on the 500 validation images, FD and KID of 500 samples per
   budget against the validation set on the project's MNIST classifier features (with the
   train-vs-validation distance as the floor a perfect model would reach);
4. writes ``runs/demo/report.md`` with the samples, the loss profile over λ, the effective weighting
   and the metrics, and prints where it is.

A finished run folder is reused (``--fresh`` retrains). Timings go to ``runs/demo/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from noiselevels.plots import plot_logsnr
from noiselevels.runs import sweep
from noiselevels.runs.checkpoint import latest_checkpoint
from noiselevels.runs.config import TrainConfig
from noiselevels.runs.data import balanced_indices
from noiselevels.runs.evaluate import bits_per_dim, sample_quality
from noiselevels.runs.images import make_grid, save_image
from noiselevels.runs.run import generate, load_run
from noiselevels.runs.train import train

DEMO_CONFIG = {
    "noise": {
        "process": "vp",
        "parameterization": "v",
        "schedule": {"name": "cosine"},
        "density": {"name": "uniform_t"},
        "weighting": {"name": "min_snr", "gamma": 5.0},
    },
    "data": {"name": "mnist", "batch_size": 64},
    "model": {"kind": "unet", "channels": [16, 32, 64]},
    "train": {
        "steps": 900,
        "lr": 2e-3,
        "warmup": 100,
        "ema_decay": 0.995,
        "grad_clip": 1.0,
        "seed": 0,
        "log_every": 50,
        "ckpt_every": 300,
    },
}
BUDGETS = (8, 24)  # Heun steps: 15 and 47 denoiser evaluations


def _evaluate(run, out: Path, args: argparse.Namespace, timings: dict[str, float]):
    """Samples at the two budgets with FD/KID, the train-vs-validation floor, bits/dim."""
    val = run.config.data.load("val")
    train_set = run.config.data.load("train")
    shape = tuple(run.data["shape"])

    # ---- 2./3. samples at two budgets + FD/KID
    rows = []
    for steps in BUDGETS:
        t0 = time.perf_counter()
        x = generate(
            run.model, run.noise, shape, num=args.num, steps=steps, spacing="karras", solver="heun", seed=0
        )
        dt = time.perf_counter() - t0
        save_image(make_grid(x[:64].clamp(-1, 1), nrow=8), out / f"samples_{steps}steps.png")
        q = sample_quality(x, val.data, seed=0)
        rows.append({"steps": steps, "nfe": 2 * steps - 1, "seconds": dt, **q})
        timings[f"sample_{steps}_s"] = dt
        nfe = 2 * steps - 1
        print(f"  {steps} Heun steps ({nfe} NFE): FD {q['fd']:.2f}, KID {q['kid']:.4f} [{dt:.0f} s]")
    # a class-balanced random subset of the training images (the split is stored class by class)
    floor = sample_quality(train_set.data[balanced_indices(train_set, len(val), seed=0)], val.data, seed=0)

    t0 = time.perf_counter()
    bpd = bits_per_dim(
        run.model,
        process=run.process,
        parameterization=run.parameterization,
        x=val.data[balanced_indices(val, min(args.bpd_images or len(val), len(val)), seed=0)],
        num_levels=4,
    )
    timings["bpd_s"] = time.perf_counter() - t0
    n_img = bpd["num_images"]
    print(f"  bits/dim (VDM bound, {n_img} validation images): {bpd['bpd']:.3f} ± {bpd['bpd_stderr']:.3f}")
    return rows, floor, bpd, val


def _fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m noiselevels.demo", description=__doc__.split("\n\n")[0])
    jobs = ap.add_subparsers(dest="job", metavar="{study,train}")
    st = jobs.add_parser("study", help="the timestep-type study (default)")
    st.add_argument("--out", default="runs/demo/timestep-types", help="sweep folder")
    st.add_argument("--workers", type=int, default=None, help="parallel runs (default: cores, at most 4)")
    tr = jobs.add_parser("train", help="train, sample, evaluate and report")
    tr.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    tr.add_argument("--steps", type=int, default=None, help="training steps (default 900)")
    tr.add_argument("--num", type=int, default=500, help="samples per budget for FD/KID (default 500)")
    tr.add_argument("--bpd-images", type=int, default=None, help="validation images for bits/dim (all)")
    tr.add_argument("--fresh", action="store_true", help="retrain even if a finished run exists")
    tr.add_argument("--no-progress", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["study", *argv]
    args = ap.parse_args(argv)
    if args.job == "study":
        return study(args.out, workers=args.workers)
    return train_report(args)


def study(out: str | Path = "runs/demo/timestep-types", *, workers: int | None = None) -> int:
    """Run the demo sweep (resuming), print its table and where the report is."""
    t0 = time.perf_counter()
    report = sweep.run_demo(out, workers=workers)
    text = report.read_text()
    keep = ("|", "Verdict on ", "One seed")
    table = [line for line in text.splitlines() if line.startswith(keep)]
    question = (
        "Which timestep type teaches `mnist-base` (which never saw a 7) the digit 7 best from 30 images "
        "(FD new), and which damages the other digits least (retention)? LoRA rank 8, 100 steps each."
    )
    print("\n".join(["", question, "", *table, ""]))
    print(f"study finished in {time.perf_counter() - t0:.0f} s; report: {report} (+ report.html, plots)")
    return 0


def train_report(args: argparse.Namespace) -> int:
    """The ``train`` job (module docstring): train (or reuse), sample and evaluate, plot, report."""
    out = Path(args.out)
    run_dir = out / "run"
    timings: dict[str, float] = {}
    t_all, cpu_all = time.perf_counter(), time.process_time()
    reused = _train(args, run_dir, timings)
    timings["train_cpu_s"] = time.process_time() - cpu_all
    run = load_run(run_dir)
    with torch.no_grad():
        rows, floor, bpd, val = _evaluate(run, out, args, timings)
    _plots(run, run_dir, out)
    timings["total_s"] = time.perf_counter() - t_all
    timings["total_cpu_s"] = time.process_time() - cpu_all
    timings["torch_threads"] = torch.get_num_threads()
    (out / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    metrics = {"bits_per_dim": bpd, "samples": rows, "floor_train_vs_val": floor, "step": run.step}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    lines = [
        *_report_head(run, rows),
        *_report_metrics(rows, floor, bpd, num=args.num, num_val=len(val)),
        *_report_figures(),
        *_report_log(log, timings, reused=reused, run_dir=run_dir),
    ]
    (out / "report.md").write_text("\n".join(lines))
    print(f"report: {out / 'report.md'}")
    return 0


def _train(args: argparse.Namespace, run_dir: Path, timings: dict[str, float]) -> bool:
    """1. Train ``DEMO_CONFIG`` into ``run_dir``, or reuse a finished run there (unless ``--fresh``);
    True when reused. Records the training wall time (and throughput) in ``timings``."""
    cfg = TrainConfig.from_dict(DEMO_CONFIG)
    if args.steps is not None:
        cfg = cfg.replace(train=type(cfg.train)(**{**cfg.train.__dict__, "steps": args.steps}))
    ck = latest_checkpoint(run_dir / "checkpoints") if run_dir.exists() else None
    done = ck is not None and int(ck.name.split("-")[1]) >= cfg.train.steps and not args.fresh
    t0 = time.perf_counter()
    if done:
        print(f"reusing the finished run in {run_dir} (--fresh retrains)")
    else:
        if args.fresh and run_dir.exists():
            shutil.rmtree(run_dir)
        print(f"training {cfg.train.steps} steps on embedded MNIST (CPU) into {run_dir} ...")
        res = train(cfg, run_dir, progress=not args.no_progress)
        timings["train_images_per_second"] = res.images_per_second
    timings["train_s"] = time.perf_counter() - t0
    return done


def _plots(run, run_dir: Path, out: Path) -> None:
    """4. The effective weighting of the demo's configuration and (a copy of) the run's loss profile."""
    plot_logsnr({"demo": run.noise}, out / "effective_weighting.png", title="what the demo's loss weights")
    if (run_dir / "loss_profile.png").exists():
        shutil.copyfile(run_dir / "loss_profile.png", out / "loss_profile.png")


def _report_head(run, rows: list[dict]) -> list[str]:
    """The report's title, the model and its noise configuration, and the samples of each budget."""
    return [
        "# noiselevels demo",
        "",
        f"A {sum(p.numel() for p in run.model.parameters()) / 1e6:.2f} M-parameter UNet trained for "
        f"{run.step} "
        f"steps (batch {run.config.data.batch_size}) on the embedded MNIST training split, on CPU.",
        "",
        "Noise configuration:",
        "",
        "```",
        run.noise.describe(),
        "```",
        "",
        "## Samples",
        "",
        *[
            f"**{r['steps']} Heun steps ({r['nfe']} denoiser evaluations, Karras ρ=7 grid)**\n\n"
            f"![{r['steps']} steps](samples_{r['steps']}steps.png)\n"
            for r in rows
        ],
    ]


def _report_metrics(rows: list[dict], floor: dict, bpd: dict, *, num: int, num_val: int) -> list[str]:
    """The metrics table (FD/KID per budget and the train-vs-validation floor) and bits/dim."""
    return [
        "## Metrics",
        "",
        "| sampler | NFE | FD ↓ | KID ↓ | seconds |",
        "|---|---|---|---|---|",
        *[
            f"| Heun, {r['steps']} steps | {r['nfe']} | {_fmt(r['fd'], '.2f')} | {_fmt(r['kid'], '.4f')} | "
            f"{r['seconds']:.0f} |"
            for r in rows
        ],
        f"| *floor: training images vs validation* | – | {_fmt(floor['fd'], '.2f')} | "
        f"{_fmt(floor['kid'], '.4f')} | – |",
        "",
        f"FD/KID: {num} samples (seed 0) vs the {num_val} validation images, on the 128-d features of "
        "the project's MNIST classifier (`noiselevels.runs.metrics`).",
        "",
        "**Bits per dimension** (continuous-time VDM bound, "
        f"λ ∈ [{bpd['logsnr_min']:g}, {bpd['logsnr_max']:g}], "
        f"{bpd['num_levels']} λ draws per image, {bpd['num_images']} validation images): "
        f"**{bpd['bpd']:.3f} ± {bpd['bpd_stderr']:.3f}** = prior {bpd['prior']:.4f} + diffusion "
        f"{bpd['diffusion']:.3f} + decoder {bpd['reconstruction']:.3f}.",
        "",
    ]


def _report_figures() -> list[str]:
    """The loss profile and effective weighting sections."""
    return [
        "## Loss profile over λ",
        "",
        "The unweighted ε-unit loss ‖ε̂ − ε‖²/D per λ bin, per log interval: where the model still has "
        "something to learn, and where the objective spends no effort.",
        "",
        "![loss profile](loss_profile.png)",
        "",
        "## Effective weighting",
        "",
        "p(λ), w(λ) and W(λ) = p(λ)·w(λ) of this configuration (ε-MSE units).",
        "",
        "![effective weighting](effective_weighting.png)",
        "",
    ]


def _report_log(log: list[dict], timings: dict[str, float], *, reused: bool, run_dir: Path) -> list[str]:
    """The training log section: final loss, training and total wall time, how to reproduce."""
    return [
        "## Training log",
        "",
        f"Final loss {log[-1]['loss']:.4f} at step {log[-1]['step']}; "
        f"training took {timings['train_s']:.0f} s "
        f"(this invocation){'; reused a finished run' if reused else ''}. Total demo wall time "
        f"{timings['total_s']:.0f} s.",
        "",
        "Reproduce: `make demo-train` (or `python -m noiselevels.demo train --fresh`); "
        f"run folder `{run_dir}`.",
        "",
    ]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
