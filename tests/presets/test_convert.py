"""``noiselevels.presets.convert``: round trips, exact matches, targets that cannot express the source.

Properties only (presets' parameters are being made exact while this is written): a preset converted to its
own tool is itself (TV 0); A → B → A lands on A's settings where B expresses A; the emitted text reads back.
"""

from __future__ import annotations

import pytest

from noiselevels.presets import preset
from noiselevels.presets.convert import CLOSE_TV, convert, emit, tv_distance


def _convert(spec: str, params: dict, tool: str):
    return convert(preset(spec, **params), tool, source_preset=spec, source_params=params)


def test_tv_of_a_preset_with_itself_is_zero():
    cfg = preset("kohya:shift", discrete_flow_shift=3.0)
    assert tv_distance(cfg, cfg) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("spec", ["kohya:shift", "ai-toolkit:weighted", "simpletuner:sigmoid"])
def test_same_tool_is_exact(spec):
    tool = spec.split(":")[0]
    r = _convert(spec, {}, tool)
    assert r.tv == pytest.approx(0.0, abs=1e-6)
    assert r.close


def test_round_trip_kohya_shift_through_simpletuner():
    src = {"discrete_flow_shift": 3.0}
    there = _convert("kohya:shift", src, "simpletuner")
    assert there.close
    back = convert(preset(there.preset, **there.params), "kohya")
    assert back.preset == "kohya:shift"
    assert back.params["discrete_flow_shift"] == pytest.approx(3.0, rel=0.02)
    assert back.tv < 0.01


def test_round_trip_of_an_off_default_shift():
    cfg = preset("simpletuner:sigmoid", flow_schedule_shift=5.0)
    there = convert(cfg, "kohya")
    assert there.close
    back = convert(preset(there.preset, **there.params), "simpletuner")
    # several SimpleTuner settings give the same W (shift and offset both move the logit-normal's mean):
    # the round trip must land on A's weighting, not necessarily on the same spelling
    assert back.preset == "simpletuner:sigmoid"
    assert tv_distance(preset(back.preset, **back.params), cfg) < 0.01


def test_target_that_cannot_express_the_source_says_so():
    # kohya's shift (logit-normal, shifted) has no counterpart among ai-toolkit's fixed-shape options
    r = _convert("kohya:shift", {"discrete_flow_shift": 3.0}, "ai-toolkit")
    if r.tv > CLOSE_TV:
        assert any("cannot express" in line for line in r.lines())
    else:
        assert not any("cannot express" in line for line in r.lines())


def test_emitters_write_each_tools_format():
    assert "--timestep_sampling shift" in emit("kohya:shift", {"discrete_flow_shift": 3.0})
    assert "--discrete_flow_shift 3" in emit("kohya:shift", {"discrete_flow_shift": 3.0})
    ai = emit("ai-toolkit:shift", {"shift": 3.0})
    assert "train:" in ai and "timestep_type: shift" in ai and "shift: 3" in ai
    assert '"timestep_distribution": "SIGMOID"' in emit("onetrainer:sigmoid", {})
    assert '"flow_use_beta_schedule": true' in emit("simpletuner:beta", {})
    assert "--weighting_scheme cosmap" in emit("diffusers:cosmap", {})
    assert "min_snr_gamma: 5" in emit("ai-toolkit:min_snr_gamma", {"gamma": 5.0})


def test_unknown_tool_is_a_value_error():
    with pytest.raises(ValueError, match="valid tools"):
        convert(preset("kohya:shift"), "nope")


def test_the_source_models_kind_is_kept():
    # a v-prediction DDPM source converts to a DDPM preset for a v model, never to a flow preset
    r = convert(preset("kohya:ddpm", v_parameterization=True), "simpletuner")
    assert preset(r.preset, **r.params).parameterization == "v"
    assert preset(r.preset, **r.params).process == "vp"
    assert r.close


def test_string_options_are_searched():
    # min-SNR-γ exists in OneTrainer as a loss_weight_fn: the search finds it
    r = convert(preset("kohya:min_snr_gamma", gamma=5.0), "onetrainer")
    assert r.close
    assert r.params.get("loss_weight_fn") == "MIN_SNR_GAMMA"
    assert '"loss_weight_fn": "MIN_SNR_GAMMA"' in r.text
