"""`noiselevels spacing optimize --run MODEL`: every solver on the shipped mnist-base (class-conditional),
labels / guidance as part of the problem, the chosen solver in the JSON, bad input in one line."""

from __future__ import annotations

import json

import pytest

from noiselevels.cli import main
from noiselevels.sampling.solvers import SOLVERS

pytestmark = pytest.mark.usefixtures("one_thread")

# tiny settings (3 steps, 2 samples, one iteration, a 3-step reference): the plumbing, not the quality
_FAST = ["--steps", "3", "--num-samples", "2", "--iters", "1", "--init", "karras", "--reference-steps", "3",
         "--format", "json"]


def _optimize(capsys, *argv):
    code = main(["spacing", "optimize", "--run", "mnist-base", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_solver_on_mnist_base(capsys):
    klub_done = False
    for name in sorted(SOLVERS.names()):
        stochastic = SOLVERS.get(name).stochastic
        # the KL bound loads data examples (seconds): once; the other stochastic solvers by the solve error
        extra = ["--criterion", "solve_error"] if stochastic and klub_done else []
        code, out, err = _optimize(capsys, *_FAST, "--solver", name, *extra)
        assert code == 0, (name, err)
        obj = json.loads(out)
        assert obj["solver"]["name"] == name and obj["steps"] == 3 and obj["sigmas"][-1] == 0.0
        assert obj["sigmas"][0] == 80.0 and obj["optimization"]["source"] == "base mnist-base"
        assert "labels drawn from classes [0, 1, 2, 3, 4, 5, 6, 8, 9]" in obj["optimization"]["conditions"]
        criterion = "klub" if stochastic and not klub_done else "solve_error"
        assert obj["optimization"]["criterion"] == criterion
        assert obj["optimization"]["method"] == ("gradient" if not stochastic else "pattern")
        klub_done = klub_done or stochastic


def test_auto_class_and_guidance(capsys):
    code, out, err = _optimize(capsys, *_FAST, "--solver", "auto", "--class", "3", "--guidance", "2.0")
    assert code == 0, err
    obj = json.loads(out)
    screened = [s["solver"] for s in obj["optimization"]["screened"]]
    assert obj["solver"]["name"] in screened and len(screened) == 8
    assert obj["optimization"]["conditions"] == "class 3, guidance 2"
    assert "solver " + obj["solver"]["name"] in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--class", "7"], "class 7 is not one the model was trained on"),
        (["--prompt", "a cat"], "--prompts is for diffusers pipelines"),
        (["--solver", "rk4"], "unknown solver 'rk4'"),
    ],
)
def test_bad_input_one_line(capsys, argv, message):
    code, out, err = _optimize(capsys, *_FAST, *argv)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1
