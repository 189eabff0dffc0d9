"""The timestep-type study: which noise levels teach a base model a new concept from 30 images best?

Runs ``examples/sweeps/timestep-types.toml`` (or ``--sweep FILE``) with the local backend and measures
the issue's targets:

1. **fine-tune time** — one 30-image fine-tune of one configuration (the sweep's settings) on the
   cores given (target: < 3 minutes on a 2-core CPU);
2. **parallel scaling** — N equal runs with N workers vs one run with one worker (target ≤ 1.3×);
3. **quality vs a model that saw the class** — the best configuration's Fréchet distance on the new
   class against that of ``mnist-all`` (the same network and budget trained on all ten classes,
   ``scripts/train_base_model.py --all-classes``), both against the same held-out real 7s
   (target ≤ 1.5×).

Writes ``benchmarks/results/finetune_timestep_types.json`` and ``.md`` (the sweep's report table plus
the three measurements, the machine and its load). Usage::

    python benchmarks/finetune_timestep_types.py [--out runs/bench-timestep-types] [--workers 2]
        [--sweep examples/sweeps/timestep-types.toml] [--skip-scaling] [--skip-reference]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from noiselevels.runs.bases import load_base
from noiselevels.runs.finetune import concept_images, evaluate_finetune
from noiselevels.runs.report import collect, summary_rows
from noiselevels.runs.sweep import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def scaling(sweep, out: Path, workers: int) -> dict:
    """Wall time of 1 run with 1 worker vs ``workers`` equal runs (seeds) with ``workers`` workers."""
    name = next(iter(sweep.configs))
    # without the base model's evaluation, so that both timings are of equal fine-tune runs only
    one = dataclasses.replace(sweep, configs={name: sweep.configs[name]}, seeds=(100,), evaluate_base=False)
    many = dataclasses.replace(one, seeds=tuple(100 + i for i in range(workers)))
    times = {}
    for label, sw, w in (
        ("one_run_one_worker", one, 1),
        (f"{workers}_runs_{workers}_workers", many, workers),
    ):
        d = out / f"scaling-{label}"
        shutil.rmtree(d, ignore_errors=True)
        t0 = time.perf_counter()
        res = run_sweep(sw, d, workers=w, report=False, progress=False)
        times[label] = {"seconds": time.perf_counter() - t0, "runs": len(res.finished), "load": _load()}
    a, b = (v["seconds"] for v in times.values())
    return {"config": name, **times, "ratio": b / a, "target": 1.3}


def reference_fd(sweep, seed: int = 1234) -> dict:
    """FD on the new class of ``mnist-all`` (trained on all ten classes, same budget), same evaluation."""
    ref = load_base("mnist-all")
    shape = tuple(ref.data["shape"])
    c = sweep.concept["class"]
    _, real_new, _ = concept_images(
        class_label=c, num_images=sweep.concept.get("num_images", 30), shape=shape
    )
    ev = {k: v for k, v in sweep.eval.items() if k in ("num_new", "steps", "features")}
    m = evaluate_finetune(
        ref.model,
        ref.noise,
        shape,
        label=c,
        real_new=real_new,
        other_classes=[],
        num_other=0,
        seed=seed,
        **ev,
    )
    return {"fd_new": m["fd_new"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", type=Path, default=ROOT / "examples" / "sweeps" / "timestep-types.toml")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-timestep-types")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    sweep = load_sweep(args.sweep)
    t0 = time.perf_counter()
    res = run_sweep(sweep, args.out / "study", workers=args.workers)
    study_seconds = time.perf_counter() - t0
    data = collect(args.out / "study")
    rows = summary_rows(data)
    runs = [r for rs in data["configs"].values() for r in rs]
    train_s = [r["train_seconds"] for r in runs]
    out: dict = {
        "sweep": str(args.sweep.relative_to(ROOT) if args.sweep.is_relative_to(ROOT) else args.sweep),
        "command": "python " + " ".join([sys.argv[0], *sys.argv[1:]]),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "platform": platform.platform(),
            "load_at_end": _load(),
        },
        "workers": args.workers,
        "study_seconds": study_seconds,
        "failed": res.failed,
        "base": data["base"],
        "configs": {
            r["config"]: {k: list(v) if isinstance(v, tuple) else v for k, v in r.items() if k != "config"}
            for r in rows
        },
        "finetune_seconds": {
            "max": max(train_s),
            "mean": sum(train_s) / len(train_s),
            "target": 180,
            "threads_per_run": runs[0]["threads"],
        },
    }
    if not args.skip_scaling:
        out["scaling"] = scaling(sweep, args.out, args.workers)
    best = min((r for r in rows if r["fd_new"][0] == r["fd_new"][0]), key=lambda r: r["fd_new"][0])
    out["best_fd_new"] = {"config": best["config"], "fd_new": list(best["fd_new"])}
    if not args.skip_reference:
        try:
            ref = reference_fd(sweep)
            out["reference_all_classes"] = {
                **ref,
                "ratio_best_to_reference": best["fd_new"][0] / ref["fd_new"],
                "target": 1.5,
            }
        except ValueError as e:
            out["reference_all_classes"] = {"error": str(e)}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "finetune_timestep_types.json").write_text(json.dumps(out, indent=2) + "\n")
    report = (args.out / "study" / "report.md").read_text()
    table = "\n".join(line for line in report.splitlines() if line.startswith("|"))
    lines = [
        "# Fine-tuning a new concept: timestep types",
        "",
        f"`{out['command']}` — {out['machine']['cpus']} CPUs, {args.workers} workers, "
        f"load average at the end {out['machine']['load_at_end']} (the machine was shared).",
        "",
        table,
        "",
        f"- fine-tune time (one run, {runs[0]['threads']} thread(s), training only): mean "
        f"{out['finetune_seconds']['mean']:.0f} s, max {out['finetune_seconds']['max']:.0f} s "
        "(target < 180 s)",
    ]
    if "scaling" in out:
        s = out["scaling"]
        k = next(k for k in s if k.endswith("workers"))
        lines.append(
            f"- parallel scaling: 1 run / 1 worker {s['one_run_one_worker']['seconds']:.0f} s; "
            f"{k.replace('_', ' ')} {s[k]['seconds']:.0f} s; ratio {s['ratio']:.2f} (target ≤ 1.3)"
        )
    ref = out.get("reference_all_classes", {})
    if "fd_new" in ref:
        lines.append(
            f"- best FD new ({best['config']}) {best['fd_new'][0]:.2f} vs all-classes model "
            f"{ref['fd_new']:.2f}: ratio {ref['ratio_best_to_reference']:.2f} (target ≤ 1.5)"
        )
    (args.results / "finetune_timestep_types.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
