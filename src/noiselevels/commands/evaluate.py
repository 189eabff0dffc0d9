"""``noiselevels evaluate RUN|PIPELINE [--adapter DIR] [--images DIR] [--validation-images DIR]
[--features PATH] [--json FILE]``.

Metrics of a trained run folder (EMA weights): bits per dimension from the continuous-time variational
bound (VDM; any process and parameterisation), Fréchet distance and KID of ``--num`` samples against the
validation split on the features of the project's MNIST classifier, or, for 2-D toy data, the sliced
Wasserstein distance to the true distribution. Fixed seed: the numbers are reproducible.

With ``--images`` / ``--validation-images`` (or a diffusers pipeline folder) it measures a fine-tune on
the user's own concept instead (``noiselevels.runs.concept``): the ε-unit validation loss at fixed noise
levels on held-out images (per band noisy / mid / clean, ± standard error; adapter, base and their paired
difference), retention (how much the adapter changes the base's predictions without the trigger), and
with ``--features`` a local CLIP/DINO folder's similarities and FD of samples of the ``--prompt``s.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from noiselevels.commands.evaluate_concept import add_concept_arguments, run_concept, wants_concept


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="bits/dim, FD/KID (or the error on toy data) of a trained run",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run", metavar="RUN|PIPELINE", help="run folder of `noiselevels train`, a base or a pipeline folder"
    )
    p.add_argument("--adapter", metavar="DIR", help="LoRA fine-tune folder (noiselevels finetune) to attach")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--num", type=int, default=500, help="samples for FD/KID/SWD (default 500)")
    p.add_argument("--steps", type=int, default=20, help="solver steps for the samples (default 20)")
    p.add_argument("--spacing", default="karras", help="spacing of the sampler grid (default karras)")
    p.add_argument("--solver", default="heun", help="solver (default heun)")
    p.add_argument("--sigmas", metavar="FILE.json", help="explicit VE σ grid for the sampler")
    p.add_argument(
        "--bpd-images",
        type=int,
        default=500,
        help="validation images for bits/dim, a class-balanced subset (default 500)",
    )
    p.add_argument("--bpd-levels", type=int, default=4, help="λ draws per image for bits/dim (default 4)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed (default 0) of the subsets and the samples: sample i depends only on (seed, i)",
    )
    p.add_argument(
        "--batch-size", type=int, default=256, metavar="N", help="samples solved at once (default 256)"
    )
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    add_concept_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from noiselevels.commands.sample import load_sigmas
    from noiselevels.runs.evaluate import evaluate_run

    if wants_concept(args):
        return run_concept(args)

    if args.bpd_images < 1:
        raise ValueError(f"--bpd-images must be >= 1; got {args.bpd_images}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    res = evaluate_run(
        args.run,
        num=args.num,
        steps=args.steps,
        spacing=args.spacing,
        solver=args.solver,
        sigmas=load_sigmas(args.sigmas) if args.sigmas else None,
        bpd_images=args.bpd_images,
        bpd_levels=args.bpd_levels,
        seed=args.seed,
        ema=not args.no_ema,
        adapter=args.adapter,
        batch_size=args.batch_size,
    )
    print(f"run {res['run']} at step {res['step']} ({res['data']}; {res['noise']})")
    if "bits_per_dim" in res:
        b = res["bits_per_dim"]
        print(
            f"bits/dim   {b['bpd']:.4f} ± {b['bpd_stderr']:.4f}  (prior {b['prior']:.4f}, diffusion "
            f"{b['diffusion']:.4f}, decoder {b['reconstruction']:.4f}; {b['num_images']} images)"
        )
    sampler = f"{args.steps} {args.solver} steps, {args.spacing}" if not args.sigmas else args.sigmas
    if res.get("fd") is not None:
        n = res["num_samples"]
        print(f"FD         {res['fd']:.3f}   KID {res['kid']:.5f}   ({n} samples, {sampler})")
    if "swd" in res:
        n = res["num_samples"]
        print(f"sliced W2  {res['swd']:.4f}   (floor {res['swd_floor']:.4f}; {n} samples, {sampler})")
    if args.json:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(clean(res), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
