"""``noiselevels finetune --base MODEL (--images DIR | --class C) --timestep-type NAME --out DIR``.

Teaches a base model a new concept from a few images with LoRA adapters (noiselevels.runs.finetune): the
concept is trained into the base's spare label slot (for ``mnist-base``: label 7, the digit it never
saw), only the adapter is saved. The noise levels come from ``--timestep-type`` (any preset: ai-toolkit's
``linear``, ``sigmoid``, ``weighted``, ``shift``, ... or ``tool:name``) or from a ``[noise]`` TOML
(``--noise FILE``, custom density / weighting); only their p(λ) and ε-unit w(λ) are used, the process
and parameterisation are the base's. Sample the result with
``noiselevels sample mnist-base --adapter DIR --class 7 --out samples.png``.

With ``--base PIPELINE`` (a diffusers pipeline folder or cached hub id: SD 1.x/2.x, SDXL, SD3, Flux) the
LoRA goes on the pipeline's UNet / transformer and ``--images`` is a kohya / ai-toolkit folder of images
with same-name ``.txt`` captions (noiselevels.runs.finetune_latent): ``--trigger``, ``--caption-dropout``,
``--resolution`` (aspect-ratio buckets), ``--lora-format diffusers|kohya``, ``--targets``; VAE latents and
text embeddings are cached (``--cache-dir``), so a sweep encodes its data once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="teach a base model a new concept from a few images with LoRA; saves only the adapter",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels finetune --base mnist-base --class 7 --num-images 30 --timestep-type sigmoid \\\n"
            "      --out runs/ft-sigmoid\n"
            "  noiselevels finetune --base mnist-base --images my_digits/ --timestep-type shift --rank 4 \\\n"
            "      --steps 400 --out runs/ft-mine\n"
            "  noiselevels finetune --base runs/mnist --class 7 --label 7 --noise custom.toml \\\n"
            "      --set noise.density.mean=0.5 --out runs/ft-custom\n"
            "  noiselevels finetune --base ~/models/sd15 --images my_dog/ --trigger zqx --resolution 512 \\\n"
            "      --timestep-type sigmoid --steps 1000 --out runs/dog-lora\n"
        ),
    )
    _add_data_args(p)
    _add_noise_args(p)
    _add_training_args(p)
    _add_output_args(p)
    _add_pipeline_args(p)
    p.set_defaults(func=run)


def _add_data_args(p) -> None:
    """The base model and the concept's images."""
    p.add_argument(
        "--base",
        required=True,
        metavar="MODEL",
        help="base model: mnist-base, an exported .safetensors, a run folder, or a diffusers pipeline "
        "(folder with model_index.json, or a hub id in the local cache)",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", metavar="DIR", help="folder of the concept's images (png/jpg/...)")
    src.add_argument(
        "--class",
        dest="class_label",
        type=int,
        metavar="C",
        help="use MNIST images of class C as the concept (held-out ones are kept for FD)",
    )
    p.add_argument(
        "--num-images",
        type=int,
        default=None,
        metavar="N",
        help="number of images to train on (default: 30 for --class, all for --images)",
    )


def _add_noise_args(p) -> None:
    """Where the noise levels come from: a timestep type, a [noise] TOML, overrides, an adaptive sampler."""
    noise = p.add_mutually_exclusive_group()
    noise.add_argument(
        "--timestep-type",
        default=None,
        metavar="NAME",
        help="noise-level preset (linear, sigmoid, weighted, shift, ..., or tool:name; default sigmoid)",
    )
    noise.add_argument("--noise", metavar="FILE.toml", help="a TOML with a [noise] table (custom p and w)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a [noise] value, e.g. noise.density.std=1.5 (repeatable)",
    )
    p.add_argument(
        "--adaptive",
        metavar="KIND",
        default=None,
        help="adaptive noise-level sampler (noiselevels.training.adaptive kind, e.g. importance)",
    )
    p.add_argument(
        "--prior-weight",
        type=float,
        default=0.0,
        help="prior preservation: weight of a loss on base-model samples of the other classes (default 0)",
    )


def _add_training_args(p) -> None:
    """The adapter's shape and the optimisation."""
    p.add_argument("--rank", type=int, default=None, help="LoRA rank r (default 8; pipelines 16)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default = rank)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 2e-3; pipelines 1e-4)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 300; pipelines 500)")
    p.add_argument("--batch-size", type=int, default=None, help="batch size (default 16; pipelines 1)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--label", type=int, default=None, help="trigger label (default: the base's spare slot)")
    p.add_argument(
        "--target",
        default=None,
        metavar="REGEX",
        help="adapt only the Conv2d/Linear modules whose name matches (default: all)",
    )


def _add_output_args(p) -> None:
    """The output folder, its samples and the optional evaluation."""
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (adapter + metadata)")
    p.add_argument(
        "--samples",
        type=int,
        default=64,
        metavar="K",
        help="write K samples of the concept to DIR/samples.png (0: none; default 64)",
    )
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="with --class: Fréchet distance of the concept vs its held-out real images",
    )


def _add_pipeline_args(p) -> None:
    """Options of a diffusers pipeline base (noiselevels.commands._pipeline_finetune)."""
    g = p.add_argument_group("diffusers pipelines (--base PIPELINE)")
    g.add_argument("--trigger", metavar="WORD", default=None,
                   help="trigger word: replaces [trigger] in a caption, else prepended (ai-toolkit's rule)")
    g.add_argument("--caption-dropout", type=float, default=None, metavar="P",
                   help="probability of training on the empty caption (default 0)")
    g.add_argument("--resolution", type=int, default=None, metavar="PX",
                   help="bucket resolution in pixels (default: the model's native size)")
    g.add_argument("--lora-format", choices=("diffusers", "kohya"), default=None,
                   help="diffusers: pytorch_lora_weights.safetensors; kohya: lora_unet_/_transformer_ keys")
    g.add_argument("--targets", default=None, metavar="NAMES",
                   help="comma-separated module names to adapt (default: the family's, e.g. to_q,to_v)")
    g.add_argument("--ema", type=float, default=None, metavar="DECAY", help="EMA of the adapter weights")
    g.add_argument("--gradient-checkpointing", action="store_true", default=None,
                   help="trade compute for memory (GPU)")
    g.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default=None,
                   help="autocast on CUDA (accepted, not applied, on a CPU); default no")
    g.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="latent/text cache (default $NOISELEVELS_CACHE or ~/.cache/noiselevels/latents)")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")


_PIPELINE_ONLY = ("trigger", "caption_dropout", "resolution", "lora_format", "targets", "ema",
                  "gradient_checkpointing", "mixed_precision", "cache_dir", "device")  # fmt: skip


def _noise_arg(args):
    if args.noise is None and not args.overrides:
        return args.timestep_type or "sigmoid"
    from noiselevels.options import apply_overrides, read_toml
    from noiselevels.presets import qualified_name

    d = read_toml(args.noise) if args.noise else {}
    if args.noise and "noise" not in d:
        raise ValueError(f"{args.noise} has no [noise] table")
    if args.timestep_type:
        d.setdefault("noise", {})["preset"] = qualified_name(args.timestep_type)
    d = apply_overrides(d, list(args.overrides))
    table = d.get("noise", {})
    if not table:
        raise ValueError("--set needs --timestep-type or --noise to start from")
    return table


def run(args) -> int:
    from noiselevels.runs.families import is_pipeline

    if is_pipeline(args.base):
        from noiselevels.commands._pipeline_finetune import run_pipeline

        return run_pipeline(args, _noise_arg(args))
    for flag in _PIPELINE_ONLY:
        if getattr(args, flag) is not None:
            raise ValueError(f"--{flag.replace('_', '-')} is for diffusers pipelines; {args.base} is not one")
    if args.samples is not None and args.samples < 0:  # checked before training (issue 17)
        raise ValueError(f"--samples must be >= 0; got {args.samples}")
    defaults = {"rank": 8, "lr": 2e-3, "steps": 300, "batch_size": 16}
    for k, v in defaults.items():
        setattr(args, k, v if getattr(args, k) is None else getattr(args, k))
    return _run_base(args)


def _run_base(args) -> int:
    import torch

    from noiselevels.runs.finetune import (
        concept_images,
        evaluate_finetune,
        finetune,
        load_base,
        resolve_noise,
        sample,
    )

    base = load_base(args.base)
    shape = tuple(base.data["shape"])
    noise = _noise_arg(args)
    resolve_noise(noise, base.noise)  # an unknown timestep type fails before any work
    if args.evaluate and args.class_label is None:  # checked before training, not after it
        raise ValueError("--evaluate needs --class (held-out real images of the concept)")
    if args.evaluate and base.num_classes is None:
        raise ValueError(f"--evaluate needs a class-conditional base; {base.source!r} has no labels")
    images, real_new, desc = concept_images(
        images=args.images, class_label=args.class_label, num_images=args.num_images, shape=shape
    )
    adaptive = {"kind": args.adaptive} if args.adaptive else None
    print(f"fine-tuning {base.source} on {desc}")
    res = finetune(
        base,
        images,
        timestep_type=noise,
        out_dir=args.out,
        rank=args.rank,
        alpha=args.alpha,
        lr=args.lr,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        label=args.label,
        target=args.target,
        adaptive=adaptive,
        prior_weight=args.prior_weight,
        extra_info={"images": desc},
    )
    out = Path(args.out)
    print(
        f"trained {args.steps} steps in {res.train_seconds:.1f} s, final loss {res.log[-1]['loss']:.4f}; "
        f"label {res.label}; adapter: {out / 'adapter'}"
    )
    if args.samples:
        from noiselevels.runs.images import make_grid, save_image

        labels = None if res.label is None else torch.full((args.samples,), res.label)
        x = sample(res.model, res.noise, shape, labels=labels, num=args.samples, seed=args.seed)
        nrow = max(1, round(args.samples**0.5))
        save_image(make_grid(x, nrow=nrow), out / "samples.png")
        print(f"samples: {out / 'samples.png'}")
    if args.evaluate:
        if real_new is None or res.label is None:
            raise ValueError("--evaluate needs --class (held-out real images of the concept)")
        m = evaluate_finetune(
            res.model,
            res.noise,
            shape,
            label=res.label,
            real_new=real_new,
            other_classes=[c for c in base.trained_classes or [] if c != res.label],
        )
        m.pop("samples_new")
        (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
        print(f"FD new concept {m['fd_new']:.3f}; FD other classes {m.get('fd_other', float('nan')):.3f}")
    return 0
