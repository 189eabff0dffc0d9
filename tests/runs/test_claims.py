"""noiselevels.runs.claims: the intervals against scipy, the verdict rules, and every claim's --quick
version (the same code as the recorded full runs, tiny sizes) end to end, through the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch

from noiselevels.runs.claims import CLAIMS, markdown_table, run_claim
from noiselevels.runs.claims.mnist import equivalence, steps_to_reach
from noiselevels.runs.claims.stats import interval, paired_difference, ratio_interval, verdict, wasserstein_1d

pytestmark = pytest.mark.usefixtures("one_thread")
VERDICTS = {"reproduced", "not reproduced", "depends"}


def test_wasserstein_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    for n, m in ((100, 37), (5, 5), (1, 9)):
        a = torch.randn(n, generator=g, dtype=torch.float64)
        b = torch.rand(m, generator=g, dtype=torch.float64)
        want = torch.tensor(scipy_stats.wasserstein_distance(a.numpy(), b.numpy()))
        torch.testing.assert_close(torch.tensor(wasserstein_1d(a, b), dtype=torch.float64), want, rtol=1e-12,
                                   atol=1e-12)


def test_intervals_match_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    xs = [1.3, 2.9, 2.2, 0.4]
    ci = interval(xs)
    lo, hi = scipy_stats.t.interval(0.95, len(xs) - 1, loc=sum(xs) / 4, scale=scipy_stats.sem(xs))
    got = torch.tensor([ci["lo"], ci["hi"]], dtype=torch.float64)
    torch.testing.assert_close(got, torch.tensor([lo, hi], dtype=torch.float64))
    d = paired_difference([3.0, 5.0, 4.0], [1.0, 2.0, 2.5])  # differences 2, 3, 1.5
    m = 13 / 6
    want = torch.tensor([m, math.sqrt(((2 - m) ** 2 + (3 - m) ** 2 + (1.5 - m) ** 2) / 2)])
    torch.testing.assert_close(torch.tensor([d["mean"], d["sd"]], dtype=torch.float64), want.double())
    r = ratio_interval([2.0, 8.0, 4.0], [1.0, 2.0, 1.0])  # log ratios: log 2, log 4, log 4
    logs = interval([math.log(2), math.log(4), math.log(4)])
    want = torch.tensor([logs["mean"], logs["lo"], logs["hi"]], dtype=torch.float64).exp()
    torch.testing.assert_close(torch.tensor([r["mean"], r["lo"], r["hi"]], dtype=torch.float64), want)
    with pytest.raises(ValueError, match="at least 2"):
        interval([1.0])
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([1.0, -1.0], [1.0, 1.0])


@pytest.mark.parametrize(
    "lo, hi, side, want",
    [(0.5, 0.9, "below", "reproduced"), (1.1, 2.0, "below", "not reproduced"), (0.8, 1.2, "below", "depends"),
     (1.1, 2.0, "above", "reproduced"), (0.5, 0.9, "above", "not reproduced")],
)  # fmt: skip
def test_verdict(lo, hi, side, want):
    assert verdict({"lo": lo, "hi": hi}, better_if=side, threshold=1.0) == want


def test_equivalence_and_steps_to_reach():
    assert equivalence({"lo": 0.9, "hi": 1.1}) == "reproduced"
    assert equivalence({"lo": 1.3, "hi": 1.5}) == "not reproduced"
    assert equivalence({"lo": 0.7, "hi": 1.1}) == "depends"
    curve = [{"step": 100, "fd": 30.0}, {"step": 200, "fd": 10.0}, {"step": 300, "fd": 8.0}]
    assert steps_to_reach(curve, "fd", 20.0) == pytest.approx(150.0)
    assert steps_to_reach(curve, "fd", 40.0) == 100.0
    assert steps_to_reach(curve, "fd", 4.0) == pytest.approx(600.0)  # never reached: 300·8/4


def test_every_claim_quick_through_the_cli(tmp_path, capsys):
    """`noiselevels reproduce all --quick` runs every claim (2 seeds, tiny sizes) and records it; the
    records make a table with one row per finding and the command of each claim."""
    from noiselevels.cli import main

    assert main(["reproduce", "all", "--quick", "--seeds", "0", "1", "--out", str(tmp_path)]) == 0
    records = [json.loads((tmp_path / f"{name}.json").read_text()) for name in CLAIMS]
    assert len(records) >= 6
    for r in records:
        assert r["quick"] is True and r["seeds"] == [0, 1] and r["findings"]
        for f in r["findings"]:
            assert f["verdict"] in VERDICTS and len(f["values"]) == 2
            assert all(math.isfinite(v) for v in (f["mean"], f["lo"], f["hi"]))
            assert f["lo"] <= f["mean"] <= f["hi"]
    table = markdown_table(records)
    assert table.count("\n") == 2 + sum(len(r["findings"]) for r in records)
    assert "`noiselevels reproduce min_snr --quick`" in table
    out = capsys.readouterr().out
    assert "ztsnr_brightness:" in out and "quick: not evidence" in out


def test_cli_lists_and_refuses(capsys):
    from noiselevels.cli import main

    assert main(["reproduce"]) == 0
    assert "ztsnr_brightness" in capsys.readouterr().out
    assert main(["reproduce", "no_such_claim"]) == 2
    assert "unknown claim 'no_such_claim'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 2 distinct"):
        run_claim("min_snr", quick=True, seeds=[0])
