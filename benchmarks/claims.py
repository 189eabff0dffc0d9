"""Benchmark: the field's claims about noise levels, each with ≥ 3 seeds and a 95 % interval
(``noiselevels.runs.claims``; one claim = ``noiselevels reproduce NAME``).

Runs the full version of the named claims (default: all) and records each as
``benchmarks/results/claims/NAME.json``, then regenerates the table of ``docs/claims.md`` (between its
``<!-- claims-table -->`` markers) from every recorded JSON. ``--docs-only`` only regenerates the table.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python benchmarks/claims.py            # all (≈ 40 min, 1 core)
    .venv/bin/python benchmarks/claims.py ztsnr_brightness noise_offset
    .venv/bin/python benchmarks/claims.py --docs-only
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from noiselevels.runs.claims import CLAIMS, markdown_table, run_claim

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "claims"
DOC = ROOT / "docs" / "claims.md"
START, END = "<!-- claims-table -->", "<!-- /claims-table -->"


def write_table() -> None:
    """Replace the table between the markers of docs/claims.md by the recorded results (claims order)."""
    paths = [RESULTS / f"{n}.json" for n in CLAIMS]
    records = [json.loads(p.read_text()) for p in paths if p.is_file()]
    text = DOC.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{DOC} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    total = sum(r["seconds"] for r in records)
    findings = sum(len(r["findings"]) for r in records)
    setups = "\n".join(
        f"- `{r['name']}` ({r['source']}): {r['setup']}; seeds {r['seeds']}, {r['seconds']:.0f} s."
        for r in records
    )
    body = (f"{START}\n{markdown_table(records)}\n{len(records)} claims, {findings} findings; the recorded "
            f"runs took {total / 60:.0f} min of wall time (one CPU thread each, at nice 10 on two cores "
            f"shared with other jobs; "
            f"`benchmarks/results/claims/*.json`).\n\n### Setups\n\n{setups}\n{END}")  # fmt: skip
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(head + body + tail)
    os.replace(tmp, DOC)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", help="claims to run (default: all)")
    ap.add_argument("--docs-only", action="store_true", help="only regenerate the table of docs/claims.md")
    args = ap.parse_args(argv)
    if not args.docs_only:
        for name in args.names or list(CLAIMS):
            r = run_claim(name, out_dir=RESULTS)
            verdicts = [(f["label"], f["verdict"]) for f in r["findings"]]
            print(name, f"{r['seconds']:.0f} s", verdicts, flush=True)
    write_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
