"""``noiselevels sweep SWEEP.toml --out DIR [--workers N] [--backend local|ray] [--address ADDR]``.

Runs a grid of fine-tunes (timestep types × seeds × ranks × ...; see noiselevels.runs.sweep for the file
format) in parallel — local worker processes, or Ray Tune trials with ``--backend ray`` — resuming a
half-finished sweep without redoing finished runs, and writes DIR/report.md and DIR/report.html
(noiselevels.runs.report).
"""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of fine-tunes in parallel (resumable) and write a report",
        description=__doc__.split("\n\n")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  noiselevels sweep examples/sweeps/timestep-types-demo.toml --out runs/demo-sweep --workers 2\n"
            "  noiselevels sweep examples/sweeps/timestep-types.toml --out runs/tt --backend ray \\\n"
            "      --address auto --cpus-per-trial 2\n"
            "  noiselevels sweep --report-only --out runs/tt\n"
        ),
    )
    p.add_argument("sweep", nargs="?", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--out", required=True, metavar="DIR", help="sweep folder (runs/, report.md, report.html)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="parallel runs of the local backend (default: the file's workers, else 1)",
    )
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="local (default) or ray")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address for ray.init(address=...) (default: RAY_ADDRESS or local)",
    )
    p.add_argument(
        "--cpus-per-trial",
        type=int,
        default=None,
        metavar="K",
        help="CPUs (= torch threads) per Ray trial (default 1)",
    )
    p.add_argument("--report-only", action="store_true", help="only (re)write the report of DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    from noiselevels.runs.report import write_report
    from noiselevels.runs.sweep import run_sweep

    if args.report_only:
        print(f"report: {write_report(args.out)}")
        return 0
    if args.sweep is None:
        raise ValueError("give the sweep file (SWEEP.toml), or --report-only")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1; got {args.workers}")
    if args.backend != "ray" and (args.address or args.cpus_per_trial):
        raise ValueError("--address and --cpus-per-trial apply to --backend ray only")
    res = run_sweep(
        args.sweep,
        args.out,
        workers=args.workers,
        backend=args.backend,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
    )
    print(
        f"{len(res.finished)} runs finished, {len(res.skipped)} already done, {len(res.failed)} failed "
        f"in {res.seconds:.0f} s; report: {res.out_dir / 'report.md'}"
    )
    for rid, msg in res.failed.items():
        print(f"  failed {rid}: {msg}")
    if res.interrupted:
        print(f"{len(res.interrupted)} runs interrupted (redone when the sweep runs again): "
              + ", ".join(res.interrupted))
        return 130
    return 1 if res.failed else 0
