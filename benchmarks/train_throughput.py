"""Throughput of the trainer against a plain hand-written loop, and the demo's CPU wall time.

Both loops train the same model (the demo's UNet unless ``--model small``) on the same data (embedded
MNIST, batch 64) with the same ``Objective``. The plain loop is the minimum a user would write:
draw a batch, loss, backward, AdamW step. The trainer additionally does warm-up, gradient clipping,
EMA, the loss profile over λ, logging and the non-finite check — and must stay ≥ 0.95× as fast.

To cancel the drift of a shared machine, the two are measured in alternating rounds (trainer, plain,
trainer, plain, ...) of ``--steps`` steps each after ``--warmup`` unmeasured steps; the ratio is the
median over rounds of trainer images/s ÷ plain images/s of the same round.

The demo's wall time is read from ``runs/demo/timings.json`` (``make demo-train`` writes it) or measured
with ``--demo``.

    python benchmarks/train_throughput.py [--rounds 3] [--steps 40] [--model demo|small] [--demo]

Writes ``benchmarks/results/train_throughput.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from noiselevels.demo import DEMO_CONFIG
from noiselevels.runs.config import DataConfig, build_model_for, noise_config
from noiselevels.runs.train import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def config(model: str, steps: int) -> dict:
    cfg = json.loads(json.dumps(DEMO_CONFIG))
    if model == "small":
        cfg["model"] = {"kind": "unet", "channels": [16, 32], "emb_dim": 64}
    cfg["train"].update(steps=steps, ckpt_every=0, log_every=50, warmup=10)
    return cfg


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def trainer_rate(cfg: dict, warmup: int, out: Path) -> tuple[float, float]:
    """(wall, CPU) images/s of ``noiselevels.runs.train.train`` from the end of step ``warmup`` to the last
    step. CPU images/s = images per second of this process's CPU time (robust to a busy machine)."""
    stamps: dict[int, tuple[float, float]] = {}
    train(cfg, out, progress=False, callback=lambda step, _res: stamps.__setitem__(step, _clock()))
    last = max(stamps)
    imgs = (last - warmup) * cfg["data"]["batch_size"]
    return imgs / (stamps[last][0] - stamps[warmup][0]), imgs / (stamps[last][1] - stamps[warmup][1])


def plain_rate(cfg: dict, warmup: int) -> tuple[float, float]:
    """(wall, CPU) images/s of the plain loop over the same model, data, objective and seed."""
    data = DataConfig(**{k: v for k, v in cfg["data"].items()}).load("train")
    objective = noise_config(cfg["noise"]).objective()
    torch.manual_seed(cfg["train"]["seed"])
    model, _ = build_model_for(cfg["model"], data.metadata())
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["train"]["lr"])
    batches = data.batches(cfg["data"]["batch_size"], seed=0)
    gen = torch.Generator().manual_seed(0)
    model.train()
    steps = cfg["train"]["steps"]
    t0 = None
    for step in range(1, steps + 1):
        x, _ = next(batches)
        loss = objective(model, x, generator=gen).loss.mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step == warmup:
            t0 = _clock()
    t1 = _clock()
    imgs = (steps - warmup) * cfg["data"]["batch_size"]
    return imgs / (t1[0] - t0[0]), imgs / (t1[1] - t0[1])


def write_results(result: dict) -> None:
    """Write benchmarks/results/train_throughput.json and .md from ``result``."""
    rounds, ratio, cpu_ratio = result["rounds"], result["median_ratio"], result["median_cpu_ratio"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_throughput.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Trainer throughput vs a plain loop",
        "",
        f"Model: {result['model']} UNet, MNIST 28×28, batch {result['batch_size']}; "
        f"torch {torch.__version__}, {result['threads']} threads. "
        f"{len(rounds)} alternating rounds of {result['steps_per_round']} measured steps.",
        "",
        f"Machine load average at the end: {', '.join(f'{x:.1f}' for x in result['load_average'])} "
        "(wall-clock rates on a shared machine drift; the per-CPU-second rates count only this process's "
        "work).",
        "",
        "| round | trainer img/s | plain img/s | ratio | trainer img/CPU-s | plain img/CPU-s | CPU ratio |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {i + 1} | {r['trainer_images_per_s']:.1f} | {r['plain_images_per_s']:.1f} "
            f"| {r['ratio']:.3f} | {r['trainer_images_per_cpu_s']:.1f} | {r['plain_images_per_cpu_s']:.1f} "
            f"| {r['cpu_ratio']:.3f} |"
            for i, r in enumerate(rounds)
        ],
        "",
        f"**Median ratio {ratio:.3f}** wall-clock, **{cpu_ratio:.3f}** per CPU second "
        f"(target ≥ 0.95, judged per CPU second: {'met' if cpu_ratio >= 0.95 else 'NOT met'}).",
        "",
    ]
    demo_timings = result["demo_timings"]
    if demo_timings:
        lines += [
            "## Demo wall time (CPU)",
            "",
            *[f"- {k}: {v:.1f}" for k, v in demo_timings.items() if isinstance(v, (int, float))],
            "",
            "Seconds from `runs/demo/timings.json` (`make demo-train`). When the machine is shared, the wall "
            "seconds include waiting for other jobs; `*_cpu_s` counts this process's own CPU time.",
            "",
        ]
        metrics = ROOT / "runs/demo/metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            lines += [
                f"Demo results: bits/dim {m['bits_per_dim']['bpd']:.3f}; "
                + "; ".join(
                    f"{r['steps']} Heun steps FD {r['fd']:.2f} KID {r['kid']:.4f}" for r in m["samples"]
                )
                + f"; floor (train vs val) FD {m['floor_train_vs_val']['fd']:.2f}.",
                "",
            ]
    lines += [f"Command: `{result['command']}`", ""]
    (RESULTS / "train_throughput.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40, help="measured steps per round")
    ap.add_argument("--warmup", type=int, default=5, help="unmeasured steps at the start of each round")
    ap.add_argument("--model", choices=["demo", "small"], default="demo")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--demo", action="store_true", help="also run `python -m noiselevels.demo train --fresh`")
    ap.add_argument(
        "--update-demo",
        action="store_true",
        help="only rewrite the results, with the demo timings from runs/demo/timings.json",
    )
    args = ap.parse_args(argv)
    if args.update_demo:
        result = json.loads((RESULTS / "train_throughput.json").read_text())
        demo = ROOT / "runs/demo/timings.json"
        result["demo_timings"] = json.loads(demo.read_text()) if demo.is_file() else None
        result["passes"] = result["median_cpu_ratio"] >= 0.95
        write_results(result)
        print(f"updated {RESULTS / 'train_throughput.md'}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = config(args.model, args.steps + args.warmup)
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            t, tc = trainer_rate(cfg, args.warmup, Path(tmp) / f"r{r}")
            p, pc = plain_rate(cfg, args.warmup)
            rounds.append(
                {
                    "trainer_images_per_s": t,
                    "plain_images_per_s": p,
                    "ratio": t / p,
                    "trainer_images_per_cpu_s": tc,
                    "plain_images_per_cpu_s": pc,
                    "cpu_ratio": tc / pc,
                }
            )
            print(
                f"round {r + 1}: trainer {t:.1f} img/s, plain {p:.1f} img/s, ratio {t / p:.3f}; "
                f"per CPU second {tc:.1f} vs {pc:.1f}, ratio {tc / pc:.3f}",
                flush=True,
            )
    ratio = statistics.median(r["ratio"] for r in rounds)
    cpu_ratio = statistics.median(r["cpu_ratio"] for r in rounds)

    demo_timings = None
    if args.demo:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "noiselevels.demo", "train", "--fresh", "--no-progress"]
        subprocess.run(cmd, cwd=ROOT, check=True)
        demo_wall = time.perf_counter() - t0
        demo_timings = {"wall_s": demo_wall, **json.loads((ROOT / "runs/demo/timings.json").read_text())}
    elif (ROOT / "runs/demo/timings.json").is_file():
        demo_timings = json.loads((ROOT / "runs/demo/timings.json").read_text())

    result = {
        "model": args.model,
        "batch_size": cfg["data"]["batch_size"],
        "steps_per_round": args.steps,
        "warmup": args.warmup,
        "rounds": rounds,
        "median_ratio": ratio,
        "median_cpu_ratio": cpu_ratio,
        "load_average": list(os.getloadavg()),
        "target_ratio": 0.95,
        "passes": cpu_ratio >= 0.95,
        "demo_timings": demo_timings,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "command": "python benchmarks/train_throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    write_results(result)
    print(f"median ratio {ratio:.3f}; wrote {RESULTS / 'train_throughput.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
