"""noiselevels.runs.sweep: parsing, a 2-run sweep end to end (local backend, 2 workers), resuming an
interrupted sweep, failures recorded with finished runs intact, bad input, the report, Ray (optional)."""

from __future__ import annotations

import json

import pytest
from test_finetune import make_tiny_base

from noiselevels.cli import main
from noiselevels.runs.report import collect, summary_rows, write_report
from noiselevels.runs.sweep import load_sweep, parse_sweep, run_sweep


def sweep_table(base, **extra_configs):
    d = {
        "sweep": {"base": str(base), "class": 7, "num_images": 10, "seeds": [0]},
        "finetune": {"steps": 2, "batch_size": 4, "rank": 2},
        "eval": {"num_new": 10, "num_other": 12, "steps": 2, "features": "pixels"},
        "grid": {"timestep_type": ["linear", "shift"]},
    }
    if extra_configs:
        d["configs"] = extra_configs
    return d


def results(out):
    return {p.parent.name: p.read_text() for p in sorted((out / "runs").glob("*/result.json"))}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny_base(tmp_path_factory.mktemp("base") / "tiny.safetensors")


@pytest.fixture(scope="module")
def done(base, tmp_path_factory):
    """A finished 2-run sweep (plus the base's evaluation) with 2 local workers."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    res = run_sweep(parse_sweep(sweep_table(base)), out, workers=2, progress=False)
    return out, res


def test_parse_sweep(base):
    sw = parse_sweep(sweep_table(base, custom={"noise": {"density": {"name": "logit_normal"}}}))
    assert list(sw.configs) == ["linear", "shift", "custom"]
    assert sw.configs["shift"] == {"steps": 2, "batch_size": 4, "rank": 2, "timestep_type": "shift"}
    assert [r.config for r in sw.runs()] == ["base", "linear", "shift", "custom"]
    grid = sweep_table(base)
    grid["grid"]["rank"] = [2, 4]
    grid["sweep"]["seeds"] = [0, 1]
    sw = parse_sweep(grid)
    assert "timestep_type=linear,rank=4" in sw.configs and len(sw.runs()) == 1 + 4 * 2
    ids = [r.run_id(sw) for r in sw.runs()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["sweep"].update(colour="red"), "unknown key\\(s\\) 'colour' in \\[sweep\\]"),
        (lambda d: d["sweep"].update(images="x"), "exactly one of class"),
        (lambda d: d["grid"].update(timestep_type=[]), "non-empty list"),
        (lambda d: d["finetune"].update(ranks=4), "unknown key\\(s\\) 'ranks' in \\[finetune\\]"),
        (lambda d: d["sweep"].update(seeds=[-1]), "seeds must be"),
        (lambda d: d.pop("grid"), "no configurations"),
    ],
)
def test_parse_errors(base, change, message):
    d = sweep_table(base)
    change(d)
    with pytest.raises(ValueError, match=message):
        parse_sweep(d)


def test_two_run_sweep_end_to_end(done):
    out, res = done
    assert not res.failed and not res.skipped and len(res.finished) == 3
    data = collect(out)
    assert set(data["configs"]) == {"linear", "shift"} and data["base"] is not None
    for rs in data["configs"].values():
        (r,) = rs
        assert r["threads"] >= 1 and r["train_seconds"] > 0
        assert {"fd_new", "fd_other"} <= set(r)
    d = out / "runs" / data["configs"]["linear"][0]["id"]
    assert (d / "adapter" / "adapter_model.safetensors").is_file() and (d / "loss_profile.json").is_file()
    rows = {r["config"]: r for r in summary_rows(data)}
    lin = data["configs"]["linear"][0]
    assert rows["linear"]["retention"][0] == pytest.approx(lin["fd_other"] - data["base"]["fd_other"])
    md = (out / "report.md").read_text()
    assert "| linear | 1 |" in md and "| shift | 1 |" in md and "base model (no fine-tune)" in md
    # one seed: the mean alone (no "± 0.00" spread that was never measured) and a warning
    assert f"| linear | 1 | {lin['fd_new']:.2f} |" in md and "± 0.00" not in md
    assert "One seed per configuration" in md
    for f in ("report.html", "samples.png", "effective_weightings.png", "loss_profiles.png"):
        assert (out / f).is_file(), f
    assert "<table>" in (out / "report.html").read_text()


def test_resume_interrupted_sweep(done, base):
    out, _ = done
    before = results(out)
    # an interrupted run: its folder exists with partial output but no result.json
    victim = next(k for k in before if k.startswith("shift"))
    (out / "runs" / victim / "result.json").unlink()
    (out / "runs" / victim / "log.jsonl").write_text("partial")
    res = run_sweep(parse_sweep(sweep_table(base)), out, workers=2, progress=False)
    assert res.finished == [victim] and sorted(res.skipped) == sorted(k for k in before if k != victim)
    after = results(out)
    for k, v in before.items():
        if k != victim:
            assert after[k] == v  # untouched
    assert json.loads(after[victim])["config"] == "shift"


def test_failure_recorded_and_bad_input_leaves_runs_intact(done, base):
    out, _ = done
    before = results(out)
    # unknown timestep type: rejected before anything runs
    with pytest.raises(ValueError, match="configuration 'oops': unknown timestep type 'nope'"):
        run_sweep(parse_sweep(sweep_table(base, oops={"timestep_type": "nope"})), out, progress=False)
    assert results(out) == before
    # fewer images than asked for / an empty image folder
    d = sweep_table(base)
    d["sweep"]["num_images"] = 10_000
    with pytest.raises(ValueError, match="num_images must be in"):
        run_sweep(parse_sweep(d), out, progress=False)
    d = sweep_table(base)
    del d["sweep"]["class"]
    empty = out.parent / "empty"
    empty.mkdir()
    d["sweep"]["images"] = str(empty)
    with pytest.raises(ValueError, match="contains no images"):
        run_sweep(parse_sweep(d), out, progress=False)
    assert results(out) == before
    # a bad argument of one configuration: rejected before any run starts (issue 17)
    with pytest.raises(ValueError, match=r"configuration 'bad': lr must be a number in \(0, 1\]"):
        run_sweep(parse_sweep(sweep_table(base, bad={"lr": 5.0})), out, progress=False)
    assert results(out) == before
    # a run failing at run time (a label the base has no row for): recorded, the others stay intact
    res = run_sweep(parse_sweep(sweep_table(base, bad={"label": 99})), out, workers=2, progress=False)
    (bad_id,) = res.failed
    assert bad_id.startswith("bad-") and "label must be an integer" in res.failed[bad_id]
    assert (out / "runs" / bad_id / "error.json").is_file()
    after = results(out)
    assert {k: after[k] for k in before} == before
    assert "failed — ValueError: label must be an integer" in write_report(out).read_text()


def test_cli_sweep(done, base, tmp_path, capsys):
    out, _ = done
    assert main(["sweep", "--report-only", "--out", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    f = tmp_path / "s.toml"
    f.write_text(f'[sweep]\nbase = "{base}"\nclass = 7\n[grid]\ntimestep_type = ["nope"]\n')
    assert load_sweep(f).configs == {"nope": {"timestep_type": "nope"}}
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "unknown timestep type 'nope'" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_ray_backend_two_trials(base, tmp_path):
    # the ray extra is part of the dev extra (make test's environment): run, never skip
    import ray

    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_sweep(parse_sweep(sweep_table(base)), out, backend="ray", cpus_per_trial=1, progress=False)
    finally:
        ray.shutdown()
    assert not res.failed and len(res.finished) == 3
    assert set(collect(out)["configs"]) == {"linear", "shift"}


@pytest.mark.parametrize("name", ["timestep-types-demo.toml", "timestep-types.toml"])
def test_bundled_sweeps_parse(name):
    from pathlib import Path

    sw = load_sweep(Path(__file__).resolve().parents[2] / "examples" / "sweeps" / name)
    assert {"linear", "sigmoid", "weighted", "shift", "sigmoid+importance"} <= set(sw.configs)
    assert sw.base == "mnist-base" and sw.concept["class"] == 7


def test_demo_study_prints_question_table_and_caveat(done, monkeypatch, capsys):
    """`make demo` prints the question, the sweep table, the winners and the one-seed caveat."""
    import noiselevels.demo as demo
    import noiselevels.runs.sweep as sweep_mod

    out, _ = done
    monkeypatch.setattr(sweep_mod, "run_demo", lambda o, *, workers: out / "report.md")
    assert demo.study(out) == 0
    text = capsys.readouterr().out
    assert "Which timestep type teaches" in text
    assert "| configuration | runs | FD new ↓ |" in text and "| linear | 1 |" in text
    assert "Verdict on FD new: **no measurable difference**" in text and "One seed per configuration" in text
