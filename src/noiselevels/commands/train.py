"""``noiselevels train [CONFIG.toml] --out DIR [--steps N] [--data NAME] [--set key=value ...] [--resume]``.

Trains a model (noiselevels.runs.train) and writes the run folder: resolved config, log, loss profile over
λ, safetensors checkpoints. ``--resume`` (or ``--resume DIR``) continues the newest checkpoint of the
run folder with its stored configuration. Multi-GPU: ``accelerate launch --multi_gpu -m noiselevels
train ...``; several CPU processes: ``torchrun --standalone --nproc_per_node N -m noiselevels train ...``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model; writes checkpoints, logs and the loss profile over λ",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels train examples/train/mnist_v_cosine.toml --out runs/mnist\n"
            "  noiselevels train --out runs/digits --data digits --steps 500 \\\n"
            "      --set noise.process=vp --set noise.density.name=logit_normal\n"
            "  noiselevels train --resume runs/mnist --steps 4000\n"
            "  accelerate launch --multi_gpu --num_processes 4 -m noiselevels train C.toml --out runs/ddp\n"
            "  torchrun --standalone --nproc_per_node 2 -m noiselevels train CONFIG.toml --out runs/cpu2\n"
        ),
    )
    p.add_argument("config", nargs="?", help="TOML configuration ([noise], [data], [model], [train])")
    p.add_argument("--out", metavar="DIR", help="run folder to write (required unless --resume DIR)")
    p.add_argument("--steps", type=int, metavar="N", help="total optimizer steps (overrides [train] steps)")
    p.add_argument("--data", metavar="NAME", help="data set name (overrides [data] name)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value, e.g. train.lr=2e-4 (TOML-typed; repeatable)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="DIR",
        help="continue the newest checkpoint of the run folder (DIR or --out)",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite a run folder whose checkpoints cannot be loaded"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from noiselevels.runs.train import load_train_config, train

    out = args.out
    if isinstance(args.resume, str):
        if out is not None and Path(out) != Path(args.resume):
            raise ValueError(f"--resume {args.resume} and --out {out} name different run folders")
        out = args.resume
    if out is None:
        raise ValueError("--out DIR is required (the run folder to write)")
    if args.resume:
        if args.config or args.data or args.overrides:
            raise ValueError("--resume uses the run's stored configuration; drop CONFIG, --data and --set")
        result = train(None, out, resume=True, steps=args.steps, progress=not args.no_progress)
    else:
        cfg = load_train_config(args.config, overrides=list(args.overrides))
        if args.data:
            cfg = cfg.replace(data=dataclasses.replace(cfg.data, name=args.data))
        result = train(cfg, out, steps=args.steps, progress=not args.no_progress, force=args.force)
    if not result.main_process:
        return 130 if result.status == "interrupted" else 0
    last = result.final_record or {}  # the last line of log.jsonl (a final partial interval's)
    loss = f", loss {last['loss']:.4f}" if "loss" in last else ""
    print(f"{result.status} at step {result.step}{loss}; run folder: {result.out_dir}")
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}")
    return 130 if result.status == "interrupted" else 0
