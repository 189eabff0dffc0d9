"""The user's-own-concept part of ``noiselevels evaluate``: options, the run and the printed table.

``evaluate RUN|PIPELINE --adapter DIR --images DIR [--validation-images DIR] [--features PATH]
[--prompt TEXT ...] [--json FILE]`` calls ``noiselevels.runs.concept.evaluate_concept`` and prints the
validation loss per band (adapter, base, paired difference) and retention; the JSON holds everything,
including the curves over λ.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_concept_arguments", "format_bands", "run_concept", "wants_concept"]


def add_concept_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("your own concept (validation loss at fixed noise levels, retention, features)")
    g.add_argument("--images", metavar="DIR", help="the concept's image folder (captions in same-name .txt)")
    g.add_argument(
        "--validation-images",
        metavar="DIR",
        help="held-out images of the concept (default: a fixed, seeded 20%% split of --images)",
    )
    g.add_argument("--features", metavar="PATH", help="local CLIP or DINO folder (transformers format)")
    g.add_argument("--prompt", action="append", metavar="TEXT", help="evaluation prompt (repeatable)")
    g.add_argument("--samples-per-prompt", type=int, default=2, metavar="K", help="samples per prompt (2)")
    g.add_argument(
        "--levels", metavar="λ,λ,...", help="the fixed λ grid (default -8,-6,...,8; write --levels=-6,0,6)"
    )
    g.add_argument("--repeats", type=int, default=1, metavar="R", help="noise draws per image and level (1)")
    g.add_argument(
        "--retention-images", type=int, default=32, metavar="N", help="size of the retention set (32)"
    )
    g.add_argument("--samples-png", metavar="FILE.png", help="write the samples as an image grid")


def wants_concept(args) -> bool:
    """The concept evaluation runs with --images / --validation-images / --features or a pipeline."""
    if args.images or args.validation_images or args.features:
        return True
    return (Path(str(args.run)).expanduser() / "model_index.json").is_file()


def _levels(text: str | None):
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--levels must be comma-separated numbers (λ values); got {text!r}") from None


def format_bands(summary: dict, digits: int = 4) -> str:
    """``noisy 0.8123 ± 0.0040   mid …   clean …   all …`` of a ``validation.level_summary``."""

    def pm(d):
        se = d.get("stderr")
        return f"{d['mean']:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")

    parts = [f"{name} {pm(b)}" for name, b in summary["bands"].items()]
    return "   ".join([*parts, f"all {pm(summary['overall'])}"])


def run_concept(args) -> int:
    from noiselevels.runs.checkpoint import write_json_atomic
    from noiselevels.runs.concept import evaluate_concept
    from noiselevels.runs.concept_pipeline import load_subject
    from noiselevels.runs.validation import DEFAULT_GRID

    for name in ("samples_per_prompt", "repeats", "retention_images"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    subject = load_subject(args.run, args.adapter)
    res = evaluate_concept(
        subject, images=args.images, validation_images=args.validation_images, adapter=args.adapter,
        eval_prompts=args.prompt, samples_per_prompt=args.samples_per_prompt, steps=args.steps,
        features=args.features, grid=_levels(args.levels) or DEFAULT_GRID, seed=args.seed,
        repeats=args.repeats, retention_images=args.retention_images, with_samples=bool(args.samples_png),
    )  # fmt: skip
    samples = res.pop("samples", None)
    print(f"{res['model']}" + (f" + adapter {args.adapter}" if args.adapter else ""))
    print(f"validation images: {res['validation_source']}")
    v = res["validation"]
    print("validation loss, ε-MSE per dimension at fixed λ (± standard error over images):")
    print(f"  {'adapter' if 'baseline' in v else 'model'}    {format_bands(v['model'])}")
    if "baseline" in v:
        print(f"  base       {format_bands(v['baseline'])}")
        print(f"  adapter − base (paired)  {format_bands(v['difference'])}")
    if "retention" in res:
        r = res["retention"]
        print(f"retention on {r['settings']['source']}:")
        print(f"  prediction change  {format_bands(r['change'], 5)}")
        print(f"  loss adapter − base (paired)  {format_bands(r['loss_difference'])}")
    if "features" in res:
        f = res["features"]
        it = "–" if f["image_text"] is None else f"{f['image_text']:.4f}"
        ii = "–" if f["image_image"] is None else f"{f['image_image']:.4f}"
        fd = "–" if f["fd"] is None else f"{f['fd']:.3f}"
        print(f"features ({f['feature_model']}, {f['num_samples']} samples): image–text {it}   "
              f"image–image {ii}   FD {fd}")  # fmt: skip
    if args.samples_png and samples is not None:
        from noiselevels.runs.images import save_image

        save_image(samples, args.samples_png, nrow=args.samples_per_prompt)
        print(f"wrote {args.samples_png}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(args.json), res)
        print(f"wrote {args.json}")
    return 0
