"""Train the small MNIST classifier whose features ``noiselevels.runs.metrics`` uses for FD / KID.

Data: the embedded MNIST subset (``load_dataset("mnist")``), train split = first 450 images of each
class; the held-out accuracy is measured on the val split (last 50 of each class, 500 images).
Training: AdamW, cosine learning-rate decay, random ±2-pixel shifts, fixed seed, CPU.
Writes ``<out>/mnist_classifier.safetensors`` and ``<out>/mnist_classifier.json`` (accuracy, seed,
command, time). Usage::

    python scripts/train_classifier.py [--out src/noiselevels/assets] [--epochs 20] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from noiselevels.runs.data import load_dataset
from noiselevels.runs.metrics import MnistClassifier

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "noiselevels" / "assets"


def shift_batch(x: torch.Tensor, g: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random integer translations by up to ``max_shift`` pixels (background −1 fills the border)."""
    b, c, h, w = x.shape
    p = max_shift
    padded = F.pad(x, (p, p, p, p), value=-1.0)
    dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w)[None])[:, None, None, :]
    return padded[bi, ci, rows, cols]


@torch.no_grad()
def accuracy(model: MnistClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return float((pred == y).float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: reproducible, fast here)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    train = load_dataset("mnist", split="train")
    val = load_dataset("mnist", split="val")
    model = MnistClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps_per_epoch = len(train) // args.batch_size
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch_size : (i + 1) * args.batch_size]
            x = shift_batch(train.data[idx], g)
            loss = F.cross_entropy(model(x), train.labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            acc = accuracy(model, val.data, val.labels)
            t = time.perf_counter() - t0
            print(f"epoch {epoch + 1}: loss {loss.item():.4f} val acc {acc:.4f} ({t:.0f} s)", flush=True)
    elapsed = time.perf_counter() - t0
    val_acc = accuracy(model, val.data, val.labels)
    train_acc = accuracy(model, train.data, train.labels)

    from safetensors.torch import save_file

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "mnist_classifier.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    command = " ".join(["python scripts/train_classifier.py", *(sys.argv[1:] if argv is None else argv)])
    info = {
        "model": "noiselevels.runs.metrics.MnistClassifier",
        "feature_dim": MnistClassifier.feature_dim,
        "parameters": sum(p.numel() for p in model.parameters()),
        "data": "noiselevels.runs.data.load_dataset('mnist'): train split (4,500 images) for training, "
        "val split (last 50 of each class, 500 images) held out",
        "val_accuracy": round(val_acc, 4),
        "train_accuracy": round(train_acc, 4),
        "seed": args.seed,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "command": command,
        "train_seconds": round(elapsed, 1),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (args.out / "mnist_classifier.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
