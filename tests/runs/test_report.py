"""noiselevels.runs.report on hand-made sweep folders: the verdict names a winner only when it beats the
runner-up by more than the seed spread of the paired differences (pairing is what separates a consistent
gain from seed noise), says "no measurable difference" otherwise and with one seed; mean ± spread cells;
the validation-loss-over-λ plot; the base row."""

from __future__ import annotations

import json
import math

import pytest

from noiselevels.runs.checkpoint import write_json_atomic
from noiselevels.runs.report import collect, metric, summary_rows, validation_curves, verdict, write_report

GRID = [-8.0, 0.0, 8.0]


def summary(values):
    """A validation.level_summary-shaped dict whose every level, band and overall mean is ``values``
    shifted per level (level k: value + k)."""
    curve = [{"logsnr": lam, "mean": values + k, "stderr": 0.01} for k, lam in enumerate(GRID)]
    bands = {b: {"mean": values + k, "stderr": 0.01, "logsnr": [GRID[k]]}
             for k, b in enumerate(("noisy", "mid", "clean"))}  # fmt: skip
    return {"curve": curve, "bands": bands, "overall": {"mean": values + 1, "stderr": 0.01}, "num_items": 4}


def make_sweep(tmp_path, table, *, base_loss=2.0):
    """``table``: {config: {seed: Δ val vs base}}; val loss = base_loss + Δ."""
    runs = ["base-0"]
    seeds = sorted({s for v in table.values() for s in v})
    d = tmp_path / "runs" / "base-0"
    d.mkdir(parents=True)
    write_json_atomic(d / "result.json", {"id": "base-0", "config": "base", "seed": 0, "kind": "base",
                                          "validation": {"model": summary(base_loss - 1)}})  # fmt: skip
    for name, per in table.items():
        for seed, delta in per.items():
            rid = f"{name}-s{seed}"
            runs.append(rid)
            d = tmp_path / "runs" / rid
            d.mkdir(parents=True)
            res = {"id": rid, "config": name, "seed": seed, "kind": "finetune", "train_seconds": 1.0,
                   "validation": {"model": summary(base_loss - 1 + delta), "difference": summary(delta - 1)},
                   "retention": {"change": summary(0.01 * abs(delta) - 1)}}  # fmt: skip
            write_json_atomic(d / "result.json", res)
    meta = {"name": "t", "base": "not-a-base", "concept": {"images": "imgs"}, "seeds": seeds,
            "configs": {n: {"timestep_type": n} for n in table}, "eval": {}, "runs": runs}  # fmt: skip
    write_json_atomic(tmp_path / "sweep.json", meta)
    return tmp_path


def test_consistent_paired_gain_wins_even_with_large_seed_to_seed_variation(tmp_path):
    # the seeds move both configurations a lot (±1), but A is better than B by 0.1 ± 0.01 on each seed:
    # unpaired spreads (~1) would hide it; paired differences show it
    offsets = {0: -1.0, 1: 0.0, 2: 1.0}
    table = {"A": {s: o - 0.10 + 0.01 * s for s, o in offsets.items()}, "B": dict(offsets)}
    data = collect(make_sweep(tmp_path, table))
    v = verdict(data, "val_delta")
    assert v.startswith("Verdict on Δ val vs base: **A** wins — better than the runner-up B by 0.0900")
    assert "seed spread ± 0.0100" in v and "paired over seeds 0, 1, 2" in v


def test_no_measurable_difference_within_the_spread(tmp_path):
    table = {"A": {0: -0.5, 1: -0.2, 2: -0.3}, "B": {0: -0.2, 1: -0.4, 2: -0.25}}
    data = collect(make_sweep(tmp_path, table))
    v = verdict(data, "val_delta")
    # A − B gains: 0.3, −0.2, 0.05 → mean 0.05 < std 0.25
    assert "**no measurable difference** — A vs the runner-up B: 0.0500 ± 0.2500" in v
    md = write_report(tmp_path).read_text()
    assert "Verdict on Δ val vs base: **no measurable difference**" in md
    # a row: mean ± std over seeds of each metric; the base row has its own validation loss
    m, s = -1 / 3 + 1, math.sqrt(sum((x + 1 / 3) ** 2 for x in (-0.5, -0.2, -0.3)) / 2)
    assert f"| A | 3 | {2.0 + m - 1:.4f} ± {s:.4f} | {m - 1:.4f} ± {s:.4f} |" in md
    assert md.count("| base model (no fine-tune) | – | 2.0000 |") == 1
    assert (tmp_path / "validation_loss.png").is_file() and "validation_loss.png" in md
    assert "<table>" in (tmp_path / "report.html").read_text()


def test_one_seed_is_never_a_winner(tmp_path):
    data = collect(make_sweep(tmp_path, {"A": {0: -0.9}, "B": {0: -0.1}}))
    v = verdict(data, "val_delta")
    assert "**no measurable difference** — A leads B by 0.8000 on one seed" in v
    md = write_report(tmp_path, plots=False).read_text()
    assert "One seed per configuration" in md and "| A | 1 | 1.1000 | -0.9000 |" in md


def test_curves_metrics_and_rows(tmp_path):
    data = collect(make_sweep(tmp_path, {"A": {0: 0.2, 1: 0.4}, "B": {0: 0.3, 1: 0.3}}))
    curves, diffs, base = validation_curves(data)
    assert curves["A"][0] == GRID and curves["A"][1] == pytest.approx([1.3, 2.3, 3.3])
    assert curves["A"][2] == pytest.approx([math.sqrt(0.02)] * 3) and base == (GRID, [1.0, 2.0, 3.0])
    assert diffs["B"][1] == pytest.approx([-0.7, 0.3, 1.3])
    rows = {r["config"]: r for r in summary_rows(data)}
    assert rows["A"]["val_delta"] == pytest.approx((0.3, math.sqrt(0.02)))
    assert rows["A"]["ret_change"][0] == pytest.approx(0.003) and math.isnan(rows["A"]["fd_new"][0])
    r = data["configs"]["A"][0]
    assert metric(r, "val_noisy") == pytest.approx(-0.8) and metric(r, "fd_new") is None
    assert verdict(data, "fd_new") is None  # no FD in these runs: no verdict on it
    assert json.loads((tmp_path / "sweep.json").read_text())["seeds"] == [0, 1]
