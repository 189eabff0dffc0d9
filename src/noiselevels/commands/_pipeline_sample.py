"""``noiselevels sample PIPELINE --prompt TEXT … --out DIR``: the diffusers-pipeline branch of ``sample``.

Loads the pipeline as a ``LatentModel`` (``noiselevels.runs.families.load_pipeline``), attaches a LoRA
with ``--adapter`` (``noiselevels.runs.families.lora.apply_adapter``), samples along ``--scheduler
diffusers`` (the pipeline's own grid), ``--sigmas FILE.json`` or ``--spacing`` over the model's range
with ``--solver`` (``noiselevels.runs.families.generate``), and writes one PNG per sample to the
``--out`` folder (``0000.png``, …; with ``--save-tensor`` also the images as safetensors).
"""

from __future__ import annotations

import re
from pathlib import Path

_SIZE = re.compile(r"^(\d+)[xX](\d+)$")


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    """``WxH`` → (height, width); None → (None, None)."""
    if text is None:
        return None, None
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"--size must be WIDTHxHEIGHT in pixels, e.g. 1024x768; got {text!r}")
    return int(m.group(2)), int(m.group(1))


def is_pipeline(spec: str) -> bool:
    from noiselevels.runs.families import is_pipeline as _is_pipeline

    return _is_pipeline(spec)


def check_run_folder_args(args) -> None:
    """For a run folder: refuse the pipeline-only flags, fill the run folders' --num / --batch-size."""
    for flag in ("prompt", "negative_prompt", "true_cfg", "size", "scheduler"):
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} is for diffusers pipelines; {args.run} is not one")
    args.num = 64 if args.num is None else args.num
    args.batch_size = 256 if args.batch_size is None else args.batch_size


def run_pipeline(args, sigmas=None) -> int:
    """``sample`` for a pipeline; ``sigmas``: the grid of ``--sigmas FILE.json`` (read by the caller)."""
    from noiselevels.commands._args import build_params
    from noiselevels.runs.families import load_pipeline, resolve_pipeline
    from noiselevels.runs.families.generate import generate_images
    from noiselevels.runs.images import save_image

    folder = resolve_pipeline(args.run)  # first: a mistyped run folder reads as an uncached hub id
    if args.prompt is None:
        raise ValueError(f"{args.run} is a diffusers pipeline: give --prompt TEXT")
    for flag, value in (("--class", args.label), ("--nrow", args.nrow), ("--no-ema", args.no_ema or None)):
        if value is not None:
            raise ValueError(f"{flag} is for run folders; {args.run} is a diffusers pipeline")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    height, width = parse_size(args.size)
    grid = dict(
        scheduler=args.scheduler,
        spacing=args.spacing,
        spacing_params=build_params(args.spacing_param, "--spacing-param"),
        sigmas=sigmas,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
    )
    model = load_pipeline(folder)
    if args.adapter:
        from noiselevels.runs.families.lora import apply_adapter

        model = apply_adapter(model, args.adapter)
    images = generate_images(
        model, args.prompt, num=1 if args.num is None else args.num, negative_prompt=args.negative_prompt,
        guidance=args.guidance, true_cfg=args.true_cfg, height=height, width=width, steps=args.steps,
        solver=args.solver, seed=args.seed, batch_size=4 if args.batch_size is None else args.batch_size,
        **grid,
    )
    out = Path(args.out)
    if out.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"):
        raise ValueError(f"--out for a pipeline is a folder (one PNG per sample); got the file name {out}")
    out.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        save_image(img, out / f"{i:04d}.png")
    if args.save_tensor:
        from safetensors.torch import save_file

        save_file({"samples": images.contiguous()}, args.save_tensor)
    how = "the pipeline's scheduler" if args.scheduler else (
        "--sigmas grid" if args.sigmas else f"{args.spacing} spacing")
    h, w = images.shape[-2:]
    print(f"wrote {len(images)} image(s) {w}x{h} of {model.family} ({how}, {args.steps} steps, {args.solver}"
          f"{', adapter ' + args.adapter if args.adapter else ''}) to {out}")
    return 0
