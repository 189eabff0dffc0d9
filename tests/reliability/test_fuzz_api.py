"""Property-based fuzzing of the Python API's factories (``noiselevels.schedule``, ``density``,
``weighting``, ``spacing``, ``preset``): a name (registered or not) and one parameter (a real one or a
typo) with an odd value (NaN, ±inf, negative, zero, huge, a string, a list, None, a bool) gives the
component — which then evaluates without a crash — or a ``ValueError`` / ``TypeError`` naming that
parameter (or the unknown name); never an exception from deep inside.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import noiselevels
from noiselevels.catalog import registry
from noiselevels.presets import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")

ODD = [float("nan"), float("inf"), float("-inf"), -1.0, 0.0, -0.0, 1e308, 1e-308, 10**30, -5, 0, 1, 3,
       0.5, "", "x", "λ", [1, 2], [], None, True, False, {"name": "x"}]  # fmt: skip
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))  # fmt: skip


def _params(factory) -> list[str]:
    if dataclasses.is_dataclass(factory):
        return [f.name for f in dataclasses.fields(factory) if f.init]
    import inspect

    try:
        return [p for p in inspect.signature(factory).parameters if p not in ("self", "kw", "kwargs")]
    except (TypeError, ValueError):
        return []


def _case(kind: str):
    names = registry(kind).names()
    return st.sampled_from([*names, "no_such_name", ""]).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sampled_from([*(_params(registry(kind).get(n)) if n in names else []), "typo_param"]),
            st.sampled_from(ODD),
        )
    )


def _evaluate(kind: str, obj) -> None:
    """Use what was built (an error here must still be a ValueError naming something)."""
    lam = torch.linspace(-10, 10, 7, dtype=torch.float64)
    t = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)
    if kind == "schedule":
        obj.logsnr(t)
    elif kind == "density":
        obj.log_prob(lam)
        obj.icdf(t)
    elif kind == "weighting":
        obj(lam)
    elif kind == "spacing":
        obj.sigmas(5)


def _check(kind: str, name: str, key: str, value) -> None:
    factory = getattr(noiselevels, kind)
    try:
        obj = factory(name, **{key: value})
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert len(msg.strip().splitlines()) >= 1
        if name not in registry(kind):
            assert repr(name) in msg or name in msg, (name, msg)
        else:  # the parameter given, its value, or the required parameter that is missing
            named = [key, repr(value), *_params(registry(kind).get(name))]
            assert any(n in msg for n in named), (kind, name, key, value, msg)
        return
    try:
        _evaluate(kind, obj)
    except (ValueError, TypeError) as e:  # a clear error at use is allowed, a crash is not
        assert str(e).strip(), (kind, name, key, value)


@pytest.mark.parametrize("kind", ["schedule", "density", "weighting", "spacing"])
def test_fuzz_factories(kind):
    @SETTINGS
    @given(case=_case(kind))
    def fuzz(case):
        _check(kind, *case)

    fuzz()


@SETTINGS
@given(
    name=st.sampled_from([*sorted(PRESETS)[:40], "kohya:no_such", "nope", "", ":"]),
    key=st.sampled_from(["sigmoid_scale", "shift", "logit_mean", "logit_std", "typo_param", "gamma"]),
    value=st.sampled_from(ODD),
)
def test_fuzz_preset(name, key, value):
    try:
        cfg = noiselevels.preset(name, **{key: value})
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert name in msg or key in msg, (name, key, value, msg)
        return
    assert cfg.process in ("vp", "ve", "flow")
