"""``noiselevels sample DIR --steps N --spacing NAME --solver NAME --num K --out FILE.png``.

Draws samples from a trained run folder (EMA weights) along a grid of noise levels: any registered
spacing (``--spacing karras --spacing-param rho=7``) or an explicit / optimised grid from a JSON file
(``--sigmas FILE.json``: a list of VE σ, or an object with a ``sigmas`` list, decreasing, trailing 0;
the first may be ``"Infinity"``, as ``spacing show --format json`` writes a zero-terminal-SNR grid),
with any solver, optional class labels and classifier-free guidance. Writes an image grid (PNG) and,
with ``--save-tensor``, the raw samples as safetensors.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sample",
        help="draw samples from a trained run along a chosen grid of noise levels",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels sample runs/mnist --steps 10 --spacing karras --solver heun --num 64 "
            "--out samples.png\n"
            "  noiselevels sample runs/mnist --sigmas grid.json --solver dpmpp_2m --num 16 --out s.png\n"
            "  noiselevels sample runs/cond --class 3 --guidance 2.0 --out threes.png\n"
            "  noiselevels sample models/sd15 --prompt 'a photo of a dog' --size 512x512 --steps 25 "
            "--scheduler diffusers --solver euler --out dogs/\n"
        ),
    )
    p.add_argument(
        "run",
        metavar="DIR",
        help="run folder of `noiselevels train`, a base (mnist-base), or a diffusers pipeline folder / "
        "cached hub id (SD 1.x/2.x, SDXL, SD3, Flux: then --prompt, and --out is a folder of PNGs)",
    )
    p.add_argument("--adapter", metavar="DIR", help="LoRA fine-tune folder (noiselevels finetune) to attach")
    p.add_argument("--steps", type=int, default=20, metavar="N", help="number of solver steps (default 20)")
    p.add_argument("--spacing", default="karras", metavar="NAME", help="spacing name (default karras)")
    p.add_argument(
        "--spacing-param",
        action="append",
        default=[],
        metavar="K=V",
        help="spacing parameter, e.g. rho=7 (TOML-typed; repeatable)",
    )
    p.add_argument("--sigmas", metavar="FILE.json", help="explicit VE σ grid (overrides --spacing/--steps)")
    p.add_argument("--sigma-min", type=float, default=None, help="smallest non-zero VE σ (default 0.002)")
    p.add_argument("--sigma-max", type=float, default=None, help="largest VE σ (default 80)")
    p.add_argument("--solver", default="heun", metavar="NAME", help="solver name (default heun)")
    p.add_argument("--num", type=int, default=None, metavar="K",
                   help="number of samples (default 64; 1 for a pipeline)")
    p.add_argument("--class", dest="label", type=int, default=None, metavar="C", help="class label")
    p.add_argument("--guidance", type=float, default=None, metavar="W",
                   help="classifier-free guidance scale (a pipeline's default: 7.5 SD, 5 SDXL, 7 SD3; "
                   "Flux-dev: the embedded guidance, default 3.5)")
    pipe = p.add_argument_group("diffusers pipelines")
    pipe.add_argument("--prompt", metavar="TEXT", help="text prompt (pipelines)")
    pipe.add_argument("--negative-prompt", metavar="TEXT", help="negative prompt (the unconditional branch)")
    pipe.add_argument("--true-cfg", type=float, default=None, metavar="W",
                      help="Flux: real classifier-free guidance scale with --negative-prompt")
    pipe.add_argument("--size", metavar="WxH", help="image size in pixels (default the model's native size)")
    pipe.add_argument("--scheduler", choices=["diffusers"], default=None,
                      help="diffusers: the pipeline scheduler's own grid for --steps (instead of --spacing)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed (default 0): sample i depends only on (seed, i), whatever --num and --batch-size",
    )
    p.add_argument(
        "--batch-size", type=int, default=None, metavar="N",
        help="samples solved at once (default 256; 4 for a pipeline)"
    )
    p.add_argument("--nrow", type=int, default=None, help="images per grid row (default √K)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--out", required=True, metavar="FILE.png",
                   help="image grid to write (a pipeline: a folder, one PNG per sample)")
    p.add_argument("--save-tensor", metavar="FILE.safetensors", help="also save the samples (key 'samples')")
    p.set_defaults(func=run)


def load_sigmas(path: str):
    """A VE σ grid from JSON: a list, or an object with a ``sigmas`` list."""
    import torch

    try:
        data = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ValueError(f"cannot parse --sigmas file {path}: {e}") from None
    if isinstance(data, dict):
        if "sigmas" not in data:
            raise ValueError(f"--sigmas file {path} is an object without a 'sigmas' list")
        data = data["sigmas"]
    if isinstance(data, list) and data and data[0] in ("Infinity", "inf"):  # ZTSNR (as `spacing show` writes)
        data = [math.inf, *data[1:]]
    if not isinstance(data, list) or len(data) < 2 or not all(isinstance(v, (int, float)) for v in data):
        raise ValueError(f"--sigmas file {path} must hold a list of at least 2 numbers (the first may be "
                         '"Infinity": zero terminal SNR)')
    s = torch.tensor(data, dtype=torch.float64)
    if not bool((s[1:] < s[:-1]).all()) or float(s[-1]) < 0:
        raise ValueError(f"--sigmas in {path} must be strictly decreasing and >= 0")
    return s


def run(args) -> int:
    import torch

    from noiselevels.commands import _pipeline_sample as pipeline

    if pipeline.is_pipeline(args.run):  # a diffusers pipeline: --prompt, --out DIR
        return pipeline.run_pipeline(args, load_sigmas(args.sigmas) if args.sigmas else None)
    pipeline.check_run_folder_args(args)  # refuses the pipeline-only flags, fills --num / --batch-size

    from noiselevels.runs.images import make_grid, save_image
    from noiselevels.runs.lora import load_model
    from noiselevels.runs.run import generate

    if args.num < 1:
        raise ValueError(f"--num must be >= 1; got {args.num}")
    if args.steps < 1:
        raise ValueError(f"--steps must be >= 1; got {args.steps}")
    if args.nrow is not None and args.nrow < 1:
        raise ValueError(f"--nrow must be >= 1; got {args.nrow}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    from noiselevels.commands._args import build_params, check_grid_size, check_output_file
    from noiselevels.options import check_memory

    check_grid_size(args.steps)
    check_output_file(args.out, "--out")
    check_output_file(args.save_tensor, "--save-tensor")
    params = build_params(args.spacing_param, "--spacing-param")
    sigmas = load_sigmas(args.sigmas) if args.sigmas else None
    run_ = load_model(args.run, args.adapter, ema=not args.no_ema)  # = load_run for a run folder
    labels = None
    num_classes = run_.config.model.get("num_classes")
    if args.label is not None:
        if num_classes is None:
            raise ValueError(f"--class needs a class-conditional model; {args.run} is unconditional")
        if not 0 <= args.label < num_classes:
            raise ValueError(f"--class must be in 0..{num_classes - 1}; got {args.label}")
        labels = torch.full((args.num,), args.label, dtype=torch.long)
    elif num_classes is not None:
        labels = torch.arange(args.num) % num_classes
    check_memory(8 * args.num * math.prod(run_.data["shape"]), f"--num {args.num}", "draw fewer samples")
    x = generate(
        run_.model,
        run_.noise,
        tuple(run_.data["shape"]),
        num=args.num,
        steps=args.steps,
        spacing=args.spacing,
        spacing_params=params,
        solver=args.solver,
        sigmas=sigmas,
        labels=labels,
        guidance=args.guidance,
        seed=args.seed,
        batch_size=args.batch_size,
        sigma_min=args.sigma_min,
        sigma_max=args.sigma_max,
        spectral=run_.spectral,  # per-instance (spectral) runs: bounds from the run's mixture
    )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the model of {args.run} gave non-finite samples (NaN weights?); nothing written")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(run_.data["shape"]) == 3:
        nrow = args.nrow if args.nrow is not None else max(1, math.ceil(math.sqrt(args.num)))
        save_image(make_grid(x.clamp(-1, 1), nrow=nrow), out)
    else:
        _scatter(x, out)
    if args.save_tensor:
        from safetensors.torch import save_file

        save_file({"samples": x.contiguous()}, args.save_tensor)
    grid = "--sigmas grid" if sigmas is not None else f"{args.spacing} spacing, {args.steps} steps"
    print(f"wrote {args.num} samples ({grid}, {args.solver}) to {out}")
    return 0


def _scatter(x, path) -> None:
    """2-D toy samples as a scatter plot."""
    from noiselevels.plots._mpl import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 4), dpi=110)
    ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2, alpha=0.6)
    ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
