"""Benchmark: a real LoRA fine-tune of a diffusers pipeline (SD 1.5, SDXL, SD3, Flux) per timestep type.

Needs a CUDA GPU and a pipeline's weights on this machine (a folder with ``model_index.json`` or a hub id
already in the Hugging Face cache; nothing is downloaded). Without them it prints one line saying what
is missing and exits 0. It is not run by the tests.

For each timestep type (default ai-toolkit's ``linear``, ``sigmoid``, ``weighted``, ``shift``) it runs
``noiselevels.runs.finetune_latent.finetune_latent`` on the same captioned folder with the same seed,
then loads the saved ``pytorch_lora_weights.safetensors`` into the diffusers pipeline with
``load_lora_weights`` and renders ``--samples`` images of the trigger prompt (same seeds for every type;
the base model's images too). Recorded per run: wall time of the data step (encoding, or reading the
cache), training steps per second, peak GPU memory, the final logged loss, the cache counts.
Speeds are reported as ratios against the first timestep type's run in the same invocation; the cache's
effect as the ratio of the first run's data time to the later runs'.

Data: ``--images DIR`` (images + same-name ``.txt`` captions), or by default a synthetic concept — 20
pictures of a red-and-white striped ring on varied backgrounds, captioned "a photo of [trigger] ring, …".

Writes ``OUT/latent_finetune.json``, ``OUT/latent_finetune.md`` and ``OUT/samples_<type>.png``
(default OUT = benchmarks/results/latent_finetune).

    .venv/bin/python benchmarks/latent_finetune.py --model ~/models/stable-diffusion-v1-5 --steps 500
    .venv/bin/python benchmarks/latent_finetune.py --model black-forest-labs/FLUX.1-dev \\
        --mixed-precision bf16 --gradient-checkpointing --resolution 512 --steps 500
    .venv/bin/python benchmarks/latent_finetune.py --tiny sd --steps 3     # smoke test on CPU (tiny model)
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
DEFAULT_TYPES = ("linear", "sigmoid", "weighted", "shift")
_NEEDS = ("latent_finetune: needs a CUDA GPU and a diffusers pipeline's weights on this machine "
          "(--model FOLDER or a hub id in the local Hugging Face cache; nothing is downloaded)")  # fmt: skip


def synthetic_concept(folder: Path, n: int = 20, size: int = 512, seed: int = 0) -> Path:
    """``n`` captioned pictures of a striped ring on random backgrounds (the benchmark's default concept)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    places = ["on a table", "in the grass", "on sand", "against a wall", "on snow"]
    for i in range(n):
        bg = tuple(int(c) for c in rng.integers(30, 230, 3))
        im = Image.new("RGB", (size, size), bg)
        d = ImageDraw.Draw(im)
        cx, cy = (int(v) for v in rng.integers(size // 3, 2 * size // 3, 2))
        r = int(rng.integers(size // 8, size // 4))
        for k in range(8, 0, -1):
            col = (220, 20, 30) if k % 2 else (245, 245, 245)
            d.ellipse([cx - r * k // 8, cy - r * k // 8, cx + r * k // 8, cy + r * k // 8], fill=col)
        d.ellipse([cx - r // 4, cy - r // 4, cx + r // 4, cy + r // 4], fill=bg)
        im.save(folder / f"ring_{i:02d}.png")
        (folder / f"ring_{i:02d}.txt").write_text(f"a photo of [trigger] ring, {places[i % len(places)]}")
    return folder


def _render(folder, adapter, prompt, *, num, resolution, seed, device, dtype):
    """``num`` images of ``prompt`` by the diffusers pipeline (with the adapter's diffusers file)."""
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    if adapter is not None:
        pipe.load_lora_weights(str(adapter))
    gens = [torch.Generator(device="cpu").manual_seed(seed + i) for i in range(num)]
    with torch.no_grad():
        out = pipe([prompt] * num, height=resolution, width=resolution, generator=gens, output_type="np")
    del pipe
    return out.images


def _grid(images, path: Path) -> None:
    from PIL import Image

    arr = np.concatenate(list(images), axis=1)
    Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8)).save(path)


def _run_one(args, folder, images, tt, out: Path, cache: Path, device, dtype) -> dict:
    from noiselevels.runs.finetune_latent import finetune_latent

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = finetune_latent(folder, images, timestep_type=tt, out_dir=out / f"run_{tt}",
                          resolution=args.resolution, trigger=args.trigger,
                          caption_dropout=args.caption_dropout, rank=args.rank, lr=args.lr,
                          steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                          gradient_checkpointing=args.gradient_checkpointing,
                          mixed_precision=args.mixed_precision, cache_dir=cache, dtype=dtype, device=device,
                          progress=False)  # fmt: skip
    total = time.perf_counter() - t0
    return {
        "timestep_type": tt, "seconds_total": total, "seconds_train": res.train_seconds,
        "seconds_data_and_load": total - res.train_seconds,
        "steps_per_second": args.steps / res.train_seconds,
        "final_loss": res.info["final_loss"], "cache": res.info["cache"], "buckets": res.info["buckets"],
        "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
        "adapter": str(out / f"run_{tt}" / "adapter"),
    }  # fmt: skip


def _markdown(report: dict) -> str:
    runs = report["runs"]
    base = runs[0]
    lines = [
        f"# LoRA fine-tune of {report['family']} ({report['model']})", "",
        f"{report['num_images']} images, {report['steps']} steps, batch {report['batch_size']}, rank "
        f"{report['rank']}, lr {report['lr']}, resolution {report['resolution']}, mixed precision "
        f"{report['mixed_precision']}, {report['device']}.", "",
        "| timestep type | final loss | steps/s (× first) | data step s (× first) | latents encoded / read "
        "| peak GiB |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in runs:
        c = r["cache"]
        peak = "—" if r["peak_gpu_gib"] is None else f"{r['peak_gpu_gib']:.1f}"
        lines.append(
            f"| {r['timestep_type']} | {r['final_loss']:.4f} | {r['steps_per_second']:.2f} "
            f"({r['steps_per_second'] / base['steps_per_second']:.2f}) | {r['seconds_data_and_load']:.1f} "
            f"({r['seconds_data_and_load'] / base['seconds_data_and_load']:.2f}) | {c['encoded_images']} / "
            f"{c['read_images']} | {peak} |"
        )
    lines += ["", "Samples, same seeds: `samples_base.png` (the base model), `samples_<type>.png`."]
    return "\n".join(lines) + "\n"


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="pipeline folder or cached hub id")
    p.add_argument("--tiny", choices=("sd", "sdxl", "sd3", "flux"), default=None,
                   help="smoke test: a tiny random pipeline on the CPU (results to a temporary folder)")
    p.add_argument("--images", default=None, help="captioned folder (default: a synthetic concept)")
    p.add_argument("--timestep-types", default=",".join(DEFAULT_TYPES))
    p.add_argument("--trigger", default="zqx")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--caption-dropout", type=float, default=0.05)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="bf16")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "results" / "latent_finetune"))
    return p.parse_args(argv)


def _setup(args):
    """(pipeline folder, device, dtype, out) or None after printing what is missing."""
    from noiselevels.runs.families import resolve_pipeline
    from noiselevels.runs.families.tiny import build_tiny_pipeline

    if args.tiny:
        tmp = Path(tempfile.mkdtemp(prefix="latent_finetune_"))
        args.resolution = args.resolution or 32
        args.mixed_precision = "no"
        return build_tiny_pipeline(args.tiny, tmp / "pipe"), torch.device("cpu"), torch.float32, tmp / "out"
    if not torch.cuda.is_available():
        print(f"{_NEEDS}; found: no CUDA GPU")
        return None
    if args.model is None:
        print(f"{_NEEDS}; found: no --model given")
        return None
    try:
        folder = resolve_pipeline(args.model)
    except ValueError as e:
        print(f"{_NEEDS}; found: {e}")
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision, torch.float32)
    return folder, torch.device("cuda"), dtype, Path(args.out)


def main(argv=None) -> int:
    args = _parse(argv)
    setup = _setup(args)
    if setup is None:
        return 0
    folder, device, dtype, out = setup
    from noiselevels.runs.families import family_of

    out.mkdir(parents=True, exist_ok=True)
    res = args.resolution or 512
    images = Path(args.images) if args.images else synthetic_concept(out / "concept", size=res)
    cache = out / "cache"
    types = args.timestep_types.split(",")
    runs = [_run_one(args, folder, images, tt, out, cache, device, dtype) for tt in types]
    prompt = f"a photo of {args.trigger} ring" if not args.images else f"a photo of {args.trigger}"
    rows = [_render(folder, None, prompt, num=args.samples, resolution=res, seed=args.seed, device=device,
                    dtype=dtype)]  # fmt: skip
    for r in runs:
        rows.append(_render(folder, r["adapter"], prompt, num=args.samples, resolution=res, seed=args.seed,
                            device=device, dtype=dtype))  # fmt: skip
        _grid(rows[-1], out / f"samples_{r['timestep_type']}.png")
    _grid(rows[0], out / "samples_base.png")
    report = {"model": str(args.model or f"tiny {args.tiny}"), "family": family_of(folder),
              "steps": args.steps,
              "batch_size": args.batch_size, "rank": args.rank, "lr": args.lr, "resolution": res,
              "mixed_precision": args.mixed_precision, "num_images": len(list(Path(images).glob("*.txt"))),
              "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.machine(),
              "runs": runs}  # fmt: skip
    (out / "latent_finetune.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "latent_finetune.md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
