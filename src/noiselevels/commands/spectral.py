"""``noiselevels spectral PATH|DATASET [--json FILE] [--plot FILE]``.

Per-image useful noise-level range (λ_min, λ_max) from each image's radially averaged power spectrum
(noiselevels.spectral), the data set's summary (quantiles, per class) and the global tight schedule;
``--plot`` draws RAPSD curves against the noise power e^(−λ) of a few λ (the picture of why high noise
hides the low frequencies last). PATH is an image file, an image folder (sub-folders = classes) or an
embedded data set name (mnist, digits, brightness).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from noiselevels.commands._args import check_output_file


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "spectral",
        help="per-image λ bounds from the power spectrum, data-set summary, RAPSD plot",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels spectral mnist --json mnist_bounds.json --plot mnist_rapsd.png\n"
            "  noiselevels spectral photos/ --size 64 --dc separate\n"
            "  noiselevels spectral cat.png --tau-lo 0.01 --tau-hi 100\n"
        ),
    )
    p.add_argument("source", metavar="PATH|DATASET", help="image file, image folder or embedded data set")
    p.add_argument("--split", default="train", choices=["train", "val", "all"], help="data set split")
    p.add_argument("--num-images", type=int, default=None, metavar="N", help="class-balanced subset")
    p.add_argument("--size", type=int, default=None, help="resize images to size×size (folders: default 32)")
    p.add_argument("--channels", type=int, default=None, choices=[1, 3], help="convert to 1 or 3 channels")
    p.add_argument("--tau-lo", type=float, default=0.1, help="SNR below which a frequency is drowned (0.1)")
    p.add_argument("--tau-hi", type=float, default=10.0, help="SNR above which a frequency is intact (10)")
    p.add_argument("--dc", default="include", choices=["include", "separate"], help="DC ring handling")
    p.add_argument("--no-quantisation-floor", action="store_true", help="do not cap λ_max at 8-bit noise")
    p.add_argument(
        "--kind", default="mixed", choices=["frequency", "power", "mixed"], help="tight schedule kind"
    )
    p.add_argument("--mix", type=float, default=0.5, help="power share of the mixed schedule (0.5)")
    p.add_argument("--json", metavar="FILE", help="write per-image bounds, summary and global schedule")
    p.add_argument("--plot", metavar="FILE", help="plot RAPSD curves against noise floors (PNG)")
    p.set_defaults(func=run)


def _load(args):
    import torch

    from noiselevels.runs.data import list_datasets, load_dataset
    from noiselevels.runs.images import load_image

    src = Path(args.source)
    if src.is_file():
        x = load_image(src, size=args.size, channels=args.channels)
        x = x[None] if x.ndim == 3 else x
        return x.to(torch.float64), None, None, [str(src)]
    if src.is_dir():
        ds = load_dataset(
            f"folder:{src}",
            split=args.split,
            size=args.size,
            channels=args.channels,
            num_images=args.num_images,
        )
    else:
        if args.source not in list_datasets():
            names = ", ".join(n for n in list_datasets() if ":" not in n)
            raise ValueError(
                f"{args.source!r} is neither an image file or folder nor an embedded data set ({names})"
            )
        ds = load_dataset(
            args.source, split=args.split, size=args.size, channels=args.channels, num_images=args.num_images
        )
    if not ds.is_image:
        raise ValueError(f"{args.source!r} is not an image data set")
    meta = ds.metadata()
    return ds.data.to(torch.float64), ds.labels, meta.get("class_names"), ds.files


def run(args) -> int:
    import torch

    from noiselevels import spectral as sp

    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1; got {args.num_images}")
    check_output_file(args.json, "--json")
    check_output_file(args.plot, "--plot")
    x, labels, class_names, files = _load(args)
    floor = not args.no_quantisation_floor
    opts = {"tau_lo": args.tau_lo, "tau_hi": args.tau_hi, "dc": args.dc, "quantisation_floor": floor}
    freqs, power = sp.rapsd(x)
    lo, hi = sp.bounds_from_power(freqs, power, **opts)
    summary = sp.summarize(lo, hi, labels, class_names=class_names)
    sched = None
    if bool(torch.isfinite(hi).all()):
        sched = sp.global_tight_schedule(x, kind=args.kind, mix=args.mix, **opts)
    _print_summary(args, x.shape, summary, sched)
    if args.json:
        out = {
            "source": args.source,
            "shape": list(x.shape[1:]),
            "options": {**opts, "kind": args.kind, "mix": args.mix},
            "summary": summary,
            "images": _image_records(lo, hi, labels, files),
            "global_tight_schedule": None if sched is None else sched.to_dict(),
            "rapsd_mean": {"freqs": freqs.tolist(), "power": power.mean(0).tolist()},
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    if args.plot:
        _plot(args, summary, hi, freqs, power)
    return 0


def _print_summary(args, shape, summary, sched) -> None:
    """The bounds' quantiles (overall, per class) and the global tight schedule at five t."""
    import torch

    a = summary["all"]
    floor = not args.no_quantisation_floor
    print(f"{shape[0]} image(s) of shape {tuple(shape[1:])} from {args.source}")
    print(f"options: τ_lo={args.tau_lo:g}, τ_hi={args.tau_hi:g}, dc={args.dc}, quantisation floor={floor}")
    for key in ("logsnr_min", "logsnr_max"):
        s = a[key]
        if "quantiles" in s:
            q = s["quantiles"]
            print(
                f"  {key}: median {q['0.5']:+.3f}  [5%, 95%] = [{q['0.05']:+.3f}, {q['0.95']:+.3f}]  "
                f"min {s['min']:+.3f}  max {s['max']:+.3f}  (σ_ve {math.exp(-0.5 * q['0.5']):.4g})"
            )
        if s["non_finite"]:
            print(f"  {key}: {s['non_finite']} non-finite value(s)")
    for name, c in summary.get("per_class", {}).items():
        print(
            f"  class {name}: median λ_min {c['logsnr_min']['quantiles']['0.5']:+.3f}, "
            f"median λ_max {c['logsnr_max']['quantiles']['0.5']:+.3f}  (n={c['logsnr_min']['count']})"
        )
    if sched is not None:
        t = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)
        vals = ", ".join(f"{v:+.2f}" for v in sched.logsnr(t).tolist())
        print(f"  global tight schedule ({args.kind}) λ at t = 0, ¼, ½, ¾, 1: {vals}")


def _image_records(lo, hi, labels, files=None) -> list[dict]:
    """One JSON record per image: index, file (image files and folders), label (if any), λ_min and
    λ_max (None where infinite)."""
    return [
        {
            "index": i,
            **({"file": files[i]} if files is not None else {}),
            **({"label": int(labels[i])} if labels is not None else {}),
            "logsnr_min": float(lo[i]),
            "logsnr_max": float(hi[i]) if math.isfinite(float(hi[i])) else None,
        }
        for i in range(lo.shape[0])
    ]


def _plot(args, summary, hi, freqs, power) -> None:
    """RAPSD curves against the noise power at the median λ_min, 0 and the median finite λ_max."""
    import torch

    from noiselevels.plots.spectral import plot_rapsd

    med_lo = summary["all"]["logsnr_min"]["quantiles"]["0.5"]
    hi_f = hi[torch.isfinite(hi)]
    levels = [med_lo, 0.0] + ([float(hi_f.median())] if hi_f.numel() else [])
    path = Path(args.plot)
    if not path.suffix:  # matplotlib would add .png itself: say so
        path = path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_rapsd(
        freqs,
        power,
        path,
        logsnrs=levels,
        title=f"RAPSD of {args.source} vs the noise power e^(−λ) at median λ_min, 0, median λ_max",
    )
    print(f"wrote {path}")
