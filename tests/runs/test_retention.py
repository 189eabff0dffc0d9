"""noiselevels.runs.retention: the prediction change of an adapter in ε units (exact for a known change
in every parameterisation), zero for an unchanged model, the paired loss difference, trigger removal."""

from __future__ import annotations

import pytest
from test_validation import GaussianOracle, gaussian_items

from noiselevels.runs.retention import retention, without_trigger


@pytest.mark.parametrize(("param", "process"), [("eps", "vp"), ("v", "vp"), ("x0", "vp"), ("flow", "flow")])
def test_known_change_in_eps_units(param, process):
    items = gaussian_items(6)
    res = retention(GaussianOracle(param, process), GaussianOracle(param, process, bias=0.2), items,
                    process=process, parameterization=param, seed=1)  # fmt: skip
    # ε̂ moved by 0.2 in every dimension: change 0.04 at every level, whatever the model predicts
    for c in res["change"]["curve"]:
        assert c["mean"] == pytest.approx(0.04, rel=1e-9) and c["stderr"] == pytest.approx(0.0, abs=1e-12)
    assert res["change"]["bands"]["noisy"]["mean"] == pytest.approx(0.04, rel=1e-9)
    d = res["loss_difference"]["overall"]
    assert abs(d["mean"] - 0.04) < 4 * d["stderr"]
    lb, la = res["loss_base"]["overall"]["mean"], res["loss_adapted"]["overall"]["mean"]
    assert la - lb == pytest.approx(d["mean"], rel=1e-9)


def test_unchanged_model_retains_everything():
    items = gaussian_items(4)
    m = GaussianOracle("eps")
    res = retention(m, m, items, process="vp", parameterization="eps", source="test items")
    assert res["change"]["overall"] == {"mean": 0.0, "stderr": 0.0}
    assert res["loss_difference"]["overall"]["mean"] == 0.0
    assert res["settings"]["source"] == "test items" and res["settings"]["grid"][0] == -8.0


def test_without_trigger():
    caps = ["sks dog on a beach", "a photo of sks, a dog", "sks", "a sksy thing", "no trigger here"]
    assert without_trigger(caps, "sks") == ["dog on a beach", "a photo of, a dog", "", "a sksy thing",
                                             "no trigger here"]  # fmt: skip
    assert without_trigger(caps, None) == caps
    assert without_trigger(["photo of [x] toy, sks , red"], "sks") == ["photo of [x] toy, red"]
