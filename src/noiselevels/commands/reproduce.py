"""``noiselevels reproduce [NAME ...|all] [--quick] [--seeds 0 1 2] [--out DIR]``: the field's claims about
noise levels, each tested by one experiment over ≥ 3 seeds with a 95 % interval and a verdict.

``noiselevels reproduce`` (no name) lists the claims; ``reproduce NAME`` runs one (``all``: every one)
and prints its findings; ``--quick`` runs the same code at minute-scale sizes (a smoke test: the numbers
are not evidence); ``--out DIR`` also writes DIR/NAME.json. The recorded full results and the table are
in docs/claims.md (benchmarks/claims.py regenerates both).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="run the field's claims about noise levels (≥ 3 seeds, 95 % intervals, verdicts)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels reproduce                      # list the claims\n"
            "  noiselevels reproduce ztsnr_brightness --quick\n"
            "  noiselevels reproduce min_snr --seeds 0 1 2 3 4 --out results/\n"
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="claim name(s), or 'all'; none: list them")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds; a smoke test, not evidence)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S",
                   help="seeds (default 0 1 2; at least 2, an interval needs them)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", help="also write DIR/NAME.json for each claim")
    p.set_defaults(func=run)


def run(args) -> int:
    from noiselevels.runs.claims import CLAIMS, run_claim

    if not args.names:
        width = max(len(n) for n in CLAIMS)
        for name, c in CLAIMS.items():
            print(f"{name:<{width}}  {c.claim}")
        return 0
    names = list(CLAIMS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim {unknown[0]!r}; valid claims: {', '.join(CLAIMS)} (or 'all')")
    for name in names:
        r = run_claim(name, quick=args.quick, seeds=args.seeds, out_dir=args.out)
        print(f"{name}: {r['claim']} ({r['source']})")
        for f in r["findings"]:
            print(f"  {f['label']}: {f['figure']} = {f['mean']:.3g} [{f['lo']:.3g}, {f['hi']:.3g}] over "
                  f"{len(f['values'])} seeds -> {f['verdict']}")
        print(f"  ({r['seconds']:.0f} s{', quick: not evidence' if args.quick else ''})")
    return 0
