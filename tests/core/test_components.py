"""Registries, component serialisation and argument checks (noiselevels.components)."""

import dataclasses
import math

import pytest
import torch

from noiselevels.catalog import from_dict
from noiselevels.components import (
    Component,
    Registry,
    Schedule,
    check_positive,
    check_range,
)

REG = Registry("widget")


@REG.register("toy")
@dataclasses.dataclass(frozen=True)
class _Toy(Component):
    kind = "widget"
    gamma: float = 1.0


@dataclasses.dataclass(frozen=True)
class _Linear(Schedule):
    """λ(t) = 10 − 20 t: a schedule with a known derivative."""

    name = "linear-test"

    def _logsnr(self, t):
        return 10.0 - 20.0 * t

    def _t_of(self, logsnr):
        return (10.0 - logsnr) / 20.0


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown widget 'nope'; valid names: toy"):
        REG.create("nope")


def test_unknown_parameter_is_rejected_with_valid_ones():
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) 'gama'.*valid parameters: gamma"):
        REG.create("toy", gama=2.0)


def test_to_dict_from_dict_round_trip():
    import noiselevels.components as c

    c._KINDS["widget"] = REG
    try:
        t = REG.create("toy", gamma=3.0)
        d = t.to_dict()
        assert d == {"kind": "widget", "name": "toy", "gamma": 3.0}
        assert from_dict(d) == t
    finally:
        del c._KINDS["widget"]


def test_from_dict_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown component kind 'nope'"):
        from_dict({"kind": "nope", "name": "x"})


@pytest.mark.parametrize("bad", [float("nan"), math.inf, -1.0, 0.0, "3"])
def test_check_positive(bad):
    with pytest.raises(ValueError, match="gamma must be"):
        check_positive("gamma", bad)


def test_check_range_names_interval():
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\); got 1.0"):
        check_range("decay", 1.0, 0, 1, closed=False)
    assert check_range("decay", 0.5, 0, 1, closed=False) == 0.5


def test_schedule_base_checks_t_and_differentiates():
    s = _Linear()
    with pytest.raises(ValueError, match=r"t must be in \[0, 1\].*1.5"):
        s.logsnr(torch.tensor([0.5, 1.5]))
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(s.dlogsnr_dt(t), torch.full_like(t, -20.0))
    assert s.logsnr_max == 10.0 and s.logsnr_min == -10.0
    torch.testing.assert_close(s.t_of(s.logsnr(t)), t)
    # t_of clamps outside the range
    torch.testing.assert_close(s.t_of(torch.tensor([50.0, -50.0])), torch.tensor([0.0, 1.0]))


def test_from_dict_in_a_fresh_process_knows_every_registered_component():
    """A serialised component from any module (here the spectral 'tight' schedule) deserialises
    without the caller importing that module first."""
    import subprocess
    import sys

    code = (
        "import json, noiselevels as nl\n"
        "d = {'kind': 'schedule', 'name': 'tight', 't_knots': [0.0, 0.5, 1.0],"
        " 'logsnr_knots': [5.0, 0.0, -5.0]}\n"
        "print(type(nl.from_dict(d)).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() == "TightSchedule"
