"""Property-based fuzzing of every command (hypothesis): generated argument lists and TOML documents
(wrong types, NaN/inf, negative, huge, unicode, empty, paths that are folders or missing) must give
exit 0 or the one-line exit-2 error — never a traceback, a hang (a per-example timeout) or a partial
output file.

Each command gets base arguments that keep its valid paths cheap (a tiny run folder, one training
step, two solver steps); the fuzzed options are appended after them, so they override the base values
(argparse keeps the last). Options that set the amount of work (steps, iterations, sample counts) draw
from the odd values without the merely-large ones (a million steps is legitimate work, not a hang);
sizes that cannot be allocated at all are kept in, since they must be refused with an estimate.
Derandomised, so CI sees the same examples every run; the whole module takes about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noiselevels.cli import build_parser
from noiselevels.runs.config import to_toml
from tests.reliability._cli import TINY, make_tiny_base, run_cli

pytestmark = pytest.mark.usefixtures("one_thread")

TIMEOUT_S = 60  # per example: only a hang gets near it (the slowest valid example takes ~1 s)
ODD = ["", " ", "0", "-1", "1", "2", "3.5", "-0", "nan", "inf", "-inf", "1e308", "1e-308", "λ☃",
       "x", "../x", "a=b", "=", "[1, 2]", "{ a = 1 }", "true", "kohya:sigmoid", "bad\x00byte"]  # fmt: skip
HUGE = ["1000000000", "99999999999999999999"]
KEYS = ["train.lr", "train.steps", "train.warmup", "train.grad_clip", "train.profile_bins", "train.precision",
        "train.ema_decay", "data.batch_size", "data.size", "data.num_images", "data.name", "model.channels",
        "model.kind", "noise.process", "noise.parameterization", "noise.density.name", "noise.density.mean",
        "noise.weighting.name", "noise.weighting.value", "noise.preset", "noise", "model", "adaptive.kind",
        "spectral", "x.y", "noise.density.std"]  # fmt: skip


class Hang(BaseException):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    def handler(signum, frame):
        raise Hang

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny run folder, a tiny base, TINY as a file: what the commands' base arguments name."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "c.toml").write_text(TINY)
    r = run_cli(["train", str(d / "c.toml"), "--out", str(d / "run"), "--steps", "2", "--no-progress"])
    assert r.code == 0, r.err
    base = make_tiny_base(d / "base.safetensors")
    return {"RUN": str(d / "run"), "CFG": str(d / "c.toml"), "BASE": str(base)}


def _actions(argv: list[str]) -> list[argparse.Action]:
    """The options of the (sub)command ``argv`` names (introspected from the parser)."""
    p = build_parser()
    for word in argv:
        sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or word not in sub.choices:
            break
        p = sub.choices[word]
    return [a for a in p._actions if a.option_strings and a.dest != "help"]


PATHY = ("out", "json", "plot", "save_tensor", "adapter", "sigmas", "images", "noise", "validation_images",
         "features", "cache_dir", "samples_png", "run", "base", "resume", "init", "prompts")  # fmt: skip


def _values(action: argparse.Action, work: set[str]) -> st.SearchStrategy[str]:
    odd = list(ODD) + ([] if action.dest in work else HUGE)
    if action.dest in PATHY:
        odd += ["OUT/f.json", "OUT", "OUT/missing/x.png", "OUT/g.png", "RUN"]
    if action.choices:
        return st.sampled_from([*map(str, action.choices), *odd])
    return st.sampled_from(odd)


def _option_args(command: list[str], work: set[str], skip: set[str]) -> st.SearchStrategy[list[str]]:
    """A list of options of ``command`` with odd values (flags present or not)."""
    acts = [a for a in _actions(command) if a.dest not in skip]
    one = st.sampled_from(acts).flatmap(
        lambda a: st.just([a.option_strings[-1]])
        if a.nargs == 0
        else st.lists(_values(a, work), min_size=1, max_size=2 if a.nargs in ("+", "*", 2) else 1).map(
            lambda vs, a=a: [a.option_strings[-1], *vs]
        )
    )
    return st.lists(one, max_size=4).map(lambda xs: [w for x in xs for w in x])


def _fill(argv: list[str], world: dict[str, str], out: str) -> list[str]:
    subst = {**world, "OUT": out}
    res = []
    for a in argv:
        for k, v in subst.items():
            a = a.replace(k, v) if a.startswith(k) else a
        res.append(a)
    return res


def check(argv: list[str], world: dict[str, str], files: dict[str, str] | None = None) -> None:
    """Run ``noiselevels ARGV`` in a fresh folder OUT: exit 0, or exit 2 with one line and nothing
    partial (no temporary file left, no single-file output written)."""
    with tempfile.TemporaryDirectory() as out:
        for name, text in (files or {}).items():
            Path(out, name).write_text(text)
        argv = _fill(argv, world, out)
        before = {p for p in Path(out).rglob("*")}
        try:
            with time_limit(TIMEOUT_S), contextlib.chdir(out):  # relative paths ("=", "a=b") land in OUT
                r = run_cli(argv)
        except Hang:
            pytest.fail(f"hang (> {TIMEOUT_S} s): noiselevels {argv}")
        assert "Traceback" not in r.err, (argv, r.err[-3000:])
        assert r.code in (0, 2), (argv, r.code, r.err[-3000:])
        new = {p for p in Path(out).rglob("*")} - before
        assert not [p for p in new if ".tmp" in p.name], (argv, new)
        if r.code == 2:
            r.one_line_error()
            outputs = ("--json", "--plot", "--save-tensor")
            single = {str(Path(out, argv[i + 1])) for i, a in enumerate(argv[:-1]) if a in outputs}
            assert not [p for p in new if str(p) in single], (argv, new)


FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))  # fmt: skip
SLOW = settings(FAST, max_examples=10)

# command → (base arguments, options that set the amount of work, options left out)
COMMANDS = {
    "inspect": (["inspect", "--preset", "kohya:sigmoid", "--no-plots"], {"steps"}, {"list_presets"}),
    "compare": (["compare", "kohya:sigmoid", "ai-toolkit:linear", "--no-plots"], set(), set()),
    "convert": (["convert", "kohya:sigmoid"], set(), set()),
    "spacing show": (["spacing", "show", "karras", "--steps", "3"], set(), set()),
    "spacing optimize": (["spacing", "optimize", "--problem", "gaussian", "--steps", "2", "--iters", "1",
                          "--num-samples", "4", "--reference-steps", "4"],
                         {"steps", "iters", "num_samples", "reference_steps"}, {"run", "prompt", "prompts"}),
    "train": (["train", "CFG", "--out", "OUT/run", "--no-progress", "--steps", "1"], {"steps"}, set()),
    "sample": (["sample", "RUN", "--out", "OUT/g.png", "--num", "2", "--steps", "2"],
               {"batch_size"}, {"prompt", "negative_prompt", "true_cfg", "size", "scheduler"}),
    "evaluate": (["evaluate", "RUN", "--num", "4", "--steps", "2", "--bpd-images", "4", "--bpd-levels", "1"],
                 {"num", "steps", "bpd_images", "bpd_levels", "batch_size", "samples_per_prompt", "repeats",
                  "retention_images"}, {"prompt", "levels"}),
    "spectral": (["spectral", "digits", "--num-images", "10"], {"num_images"}, set()),
    "finetune": (["finetune", "--base", "BASE", "--class", "7", "--num-images", "4", "--steps", "1",
                  "--batch-size", "2", "--rank", "2", "--samples", "0", "--out", "OUT/ft"],
                 {"steps", "samples", "num_images", "batch_size"},
                 {"evaluate", "trigger", "caption_dropout", "resolution", "lora_format", "targets", "ema",
                  "gradient_checkpointing", "mixed_precision", "cache_dir", "device"}),
    "reproduce": (["reproduce", "--quick"], set(), {"seeds"}),
}  # fmt: skip


def test_every_command_is_fuzzed():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    covered = {name.split()[0] for name in COMMANDS} | {"sweep"}  # sweep: its TOML is fuzzed below
    assert set(sub.choices) <= covered, set(sub.choices) - covered


def _fuzz(name: str, speed: settings):
    base, work, skip = COMMANDS[name]

    @speed
    @given(extra=_option_args(base[:2] if name.startswith("spacing") else base[:1], work, skip))
    def fuzz(world, extra):
        check([*base, *extra], world)

    return fuzz


test_fuzz_inspect = _fuzz("inspect", FAST)
test_fuzz_compare = _fuzz("compare", FAST)
test_fuzz_convert = _fuzz("convert", SLOW)
test_fuzz_spacing_show = _fuzz("spacing show", FAST)
test_fuzz_spacing_optimize = _fuzz("spacing optimize", SLOW)
test_fuzz_train = _fuzz("train", SLOW)
test_fuzz_sample = _fuzz("sample", SLOW)
test_fuzz_evaluate = _fuzz("evaluate", SLOW)
test_fuzz_spectral = _fuzz("spectral", SLOW)
test_fuzz_finetune = _fuzz("finetune", SLOW)


@FAST
@given(names=st.lists(st.sampled_from(ODD), min_size=1, max_size=2),
       extra=_option_args(["reproduce"], set(), {"seeds"}))  # fmt: skip
def test_fuzz_reproduce(world, names, extra):
    """Unknown claim names and odd options (a real claim, even --quick, is minutes of work)."""
    check(["reproduce", *[n if n.strip() else "x" for n in names], "--quick", *extra], world)


# ---------------------------------------------------------------------------------------------
# TOML documents: a training config, a [noise] table, a sweep
# ---------------------------------------------------------------------------------------------
ODD_SCALARS = [0, -1, 1, 2, 10**9, 10**18, -(10**18), 0.0, -0.0, 3.5, 1e308, -1e308, 1e-308,
               float("nan"), float("inf"), float("-inf"), True, False, "", " ", "λ☃", "x", "../x",
               "kohya:sigmoid", "vp", "flow", "eps", "v", "logit_normal", "constant", "min_snr",
               "linear", "pixels", "digits"]  # fmt: skip
SCALARS = st.one_of(st.sampled_from(ODD_SCALARS), st.text(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=4)


def _table(keys: list[str]) -> st.SearchStrategy[dict]:
    return st.dictionaries(st.sampled_from(keys), VALUES, max_size=4)


def _doc(sections: dict[str, list[str]]) -> st.SearchStrategy[dict]:
    """A document: some of ``sections``, each a table of odd values, or a scalar where a table belongs."""
    section = st.one_of(*[st.tuples(st.just(s), st.one_of(_table(k), SCALARS)) for s, k in sections.items()])
    return st.lists(section, max_size=4).map(dict)


TRAIN_SECTIONS = {
    "noise": ["process", "parameterization", "preset", "noise_offset", "density", "weighting", "schedule"],
    "data": ["name", "batch_size", "size", "num_images", "channels", "classes"],
    "model": ["channels", "kind", "emb_dim", "num_classes", "dropout"],
    "train": ["steps", "lr", "warmup", "grad_clip", "ema_decay", "log_every", "profile_bins", "seed"],
    "adaptive": ["kind", "bins"],
}


@SLOW
@given(doc=_doc(TRAIN_SECTIONS))
def test_fuzz_train_toml(world, doc):
    text = to_toml(doc)
    argv = ["train", "OUT/c.toml", "--out", "OUT/run", "--steps", "1", "--no-progress"]
    check(argv, world, {"c.toml": text})
    check(["inspect", "OUT/c.toml", "--no-plots"], world, {"c.toml": text})


@FAST
@given(noise=_table(TRAIN_SECTIONS["noise"] + ["preset_params"]))
def test_fuzz_noise_toml(world, noise):
    text = to_toml({"noise": noise})
    check(["compare", "OUT/n.toml", "kohya:sigmoid", "--no-plots"], world, {"n.toml": text})


SWEEP_SECTIONS = {
    "sweep": ["class", "num_images", "seeds", "workers", "name", "images"],
    "finetune": ["steps", "rank", "lr", "batch_size", "alpha", "noise", "timestep_type", "warmup"],
    "eval": ["num_new", "num_other", "steps", "features", "seed"],
    "grid": ["timestep_type", "rank", "lr"],
    "configs": ["x", "y"],
}


@FAST
@given(doc=_doc(SWEEP_SECTIONS))
def test_fuzz_sweep_toml(world, doc, monkeypatch_module):
    """Validation and preparation of odd sweeps (the runs themselves are stubbed: each is a process)."""
    sweep = doc.get("sweep") if isinstance(doc.get("sweep"), dict) else {}
    doc = {**doc, "sweep": {**sweep, "base": world["BASE"]}}
    check(["sweep", "OUT/s.toml", "--out", "OUT/out"], world, {"s.toml": to_toml(doc)})


@pytest.fixture(scope="module")
def monkeypatch_module():
    import noiselevels.runs.sweep as sw

    mp = pytest.MonkeyPatch()
    mp.setattr(sw, "_run_local", lambda todo, workers, progress: ({}, []))
    yield mp
    mp.undo()


def test_the_checker_catches_what_it_should(world, monkeypatch):
    """The oracle itself: a traceback, a second error line, a partial output, another exit status and a
    hang all fail; the one-line error passes."""
    import sys
    import time

    import tests.reliability._cli as cli_helper

    def fake(behaviour):
        def main(argv):
            if behaviour == "raise":
                raise RuntimeError("deep inside")
            if behaviour == "hang":
                time.sleep(5)
            if behaviour == "partial":
                Path(argv[-1]).write_text("{")
            lines = 2 if behaviour == "two lines" else 1
            print("noiselevels: error: x\n" * lines, end="", file=sys.stderr)
            return 1 if behaviour == "exit 1" else 2

        return main

    monkeypatch.setattr(cli_helper, "main", fake("one line"))
    check(["convert", "--json", "OUT/f.json"], world)
    monkeypatch.setattr(cli_helper, "main", fake("raise"))
    with pytest.raises(RuntimeError):
        check(["convert"], world)
    for behaviour in ("two lines", "partial", "exit 1"):
        monkeypatch.setattr(cli_helper, "main", fake(behaviour))
        with pytest.raises(AssertionError):
            check(["convert", "--json", "OUT/f.json"], world)
    monkeypatch.setattr(cli_helper, "main", fake("hang"))
    monkeypatch.setattr(sys.modules[__name__], "TIMEOUT_S", 0.2)
    with pytest.raises(pytest.fail.Exception, match="hang"):
        check(["convert"], world)
