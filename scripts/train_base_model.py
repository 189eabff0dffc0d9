"""Train the class-conditional MNIST base model shipped as ``noiselevels/assets/mnist-base.safetensors``.

The base model is what ``noiselevels finetune --base mnist-base`` starts from: a rectified-flow
(velocity-prediction) :class:`noiselevels.runs.models.UNet` trained on the embedded MNIST train
split **without the digit 7** (4,050 images of the other nine classes). It has ``num_classes = 10``: the
label row of 7 exists but never receives a gradient here — it is the spare slot a fine-tune teaches the
new concept.
Noise levels: ai-toolkit's default ``sigmoid`` timestep type (λ ~ N(0, 2²), plain flow loss).

Writes ``<out>/mnist-base.safetensors`` (the EMA weights, with the resolved configuration in the
safetensors metadata) and ``<out>/mnist-base.json`` (command, seed, steps, wall time, and — when the
MNIST classifier of ``noiselevels.runs.metrics`` is available — the Fréchet distance per class of samples
against the real images of that class). Usage::

    python scripts/train_base_model.py [--out src/noiselevels/assets] [--steps 1500] [--seed 0]
    python scripts/train_base_model.py --evaluate-only      # (re)compute the per-class FD of the asset

``--all-classes`` trains the same budget on all ten classes (the reference of the fine-tuning
benchmark) and writes ``mnist-all.safetensors`` instead.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

from noiselevels.runs.bases import base_fd_per_class, export_base
from noiselevels.runs.train import train

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "noiselevels" / "assets"
HELD_OUT = 7


def config(*, steps: int, seed: int, all_classes: bool, batch_size: int) -> dict:
    classes = list(range(10)) if all_classes else [c for c in range(10) if c != HELD_OUT]
    return {
        "noise": {"preset": "ai-toolkit:sigmoid"},
        "data": {"name": "mnist", "classes": classes, "batch_size": batch_size},
        "model": {"kind": "unet", "num_classes": 10, "label_dropout": 0.1},
        "train": {
            "steps": steps,
            "lr": 2e-3,
            "warmup": 50,
            "ema_decay": 0.995,
            "grad_clip": 1.0,
            "seed": seed,
            "log_every": 50,
            "ckpt_every": 250,
            "keep_checkpoints": 1,
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--run-dir", type=Path, default=None, help="trainer run folder (default: a temp dir)")
    ap.add_argument("--all-classes", action="store_true", help="train on all ten classes (reference)")
    ap.add_argument("--evaluate-only", action="store_true", help="only (re)compute the per-class FD")
    ap.add_argument("--eval-samples", type=int, default=300, help="samples per class for the FD")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    name = "mnist-all" if args.all_classes else "mnist-base"
    asset = args.out / f"{name}.safetensors"
    info_path = args.out / f"{name}.json"
    if not args.evaluate_only:
        cfg = config(
            steps=args.steps, seed=args.seed, all_classes=args.all_classes, batch_size=args.batch_size
        )
        run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix=f"{name}-"))
        t0 = time.perf_counter()
        result = train(cfg, run_dir, progress=False, resume=(run_dir / "checkpoints" / "LATEST").is_file())
        wall = time.perf_counter() - t0
        export_base(run_dir, asset)
        info = {
            "name": name,
            "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *sys.argv[1:]]),
            "seed": args.seed,
            "steps": result.step,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "train_seconds": round(wall, 1),
            "classes": cfg["data"]["classes"],
            "held_out_class": None if args.all_classes else HELD_OUT,
            "final_loss": result.log[-1]["loss"] if result.log else None,
            "torch": torch.__version__,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        info_path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"wrote {asset} ({asset.stat().st_size / 1e6:.2f} MB) in {wall:.0f} s")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {"name": name}
    if args.eval_samples < 2:
        return 0
    try:
        fd = base_fd_per_class(asset, num=args.eval_samples, seed=args.seed)
    except ValueError as e:  # the classifier asset is missing
        print(f"per-class FD not computed: {e}")
        return 0
    info["frechet_distance_per_class"] = {str(k): round(v, 3) for k, v in fd.items()}
    info["frechet_distance_eval"] = (
        f"{args.eval_samples} samples per class (dpmpp_2m, 12 karras steps, no guidance) vs the real "
        "images of the class (mnist split 'all'), MNIST-classifier features (noiselevels.runs.metrics)"
    )
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info["frechet_distance_per_class"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
