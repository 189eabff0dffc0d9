"""The catalog (noiselevels.catalog): every registering module imported, class names unique across the
registries, and ``from_dict(c.to_dict()) == c`` for a component of every kind."""

import collections

import pytest

import noiselevels.catalog as catalog
from noiselevels.components import _KINDS

KINDS = ("schedule", "density", "weighting", "parameterization", "spacing", "solver", "objective")


def _classes():
    """(class name, kind, registered name) of every registered class (factories that are functions
    are left out: they build one of the classes)."""
    out = []
    for kind in sorted(_KINDS):
        reg = catalog.registry(kind)
        for name in reg.names():
            factory = reg.get(name)
            if isinstance(factory, type):
                out.append((factory.__name__, kind, name))
    return out


def test_importing_catalog_fills_every_registry():
    for kind in KINDS:
        assert catalog.registry(kind).names(), kind
    with pytest.raises(ValueError, match="unknown component kind 'schedules'; valid kinds: "):
        catalog.registry("schedules")


def test_every_registered_class_name_is_unique():
    seen = collections.defaultdict(list)
    for cls_name, kind, name in _classes():
        seen[cls_name].append(f"{kind} {name!r}")
    clashes = {cls_name: where for cls_name, where in seen.items() if len(where) > 1}
    assert clashes == {}


def _one_instance(kind):
    """The first component of this kind (in name order) that builds from its defaults (an objective
    needs its density)."""
    reg = catalog.registry(kind)
    if kind == "objective":
        return reg.create("objective", density=catalog.registry("density").create("logit_normal", mean=0.5))
    for name in reg.names():
        try:
            return reg.create(name)
        except (TypeError, ValueError):
            continue  # needs parameters
    raise AssertionError(f"no {kind} builds from its defaults")


@pytest.mark.parametrize("kind", KINDS)
def test_from_dict_round_trips_every_kind(kind):
    c = _one_instance(kind)
    assert catalog.from_dict(c.to_dict()) == c


def test_from_dict_round_trips_nested_components():
    schedule = catalog.registry("schedule").create("shift", factor=3.0)
    base = catalog.registry("density").create("uniform_t", schedule=schedule)
    d = catalog.registry("density").create("mixture", components=(base.truncate(-4.0, 6.0), base),
                                           weights=(1.0, 3.0))
    assert catalog.from_dict(d.to_dict()) == d
