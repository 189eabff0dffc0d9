"""The [noise] TOML section: parsing, presets + overrides, round trips, errors, --set overrides.

``noiselevels.config.noise_config`` resolves a table's ``preset``; ``NoiseConfig.from_dict``
(``noiselevels.noise``, one layer below the presets) reads tables without one, or fully resolved ones.
"""

import math
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from noiselevels import noise
from noiselevels.config import (
    NoiseConfig,
    apply_overrides,
    load_config,
    noise_config,
    parse_value,
    read_toml,
)
from noiselevels.presets import preset
from noiselevels.schedules import schedule, shift, zero_terminal_snr
from noiselevels.training.densities import density
from noiselevels.training.weightings import in_units, weighting

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.toml"))
LAM = torch.linspace(-8.0, 8.0, 161, dtype=torch.float64)


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert any(n.startswith("kohya") for n in names)
    assert any(n.startswith("ai_toolkit") for n in names)
    assert len(names) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_configs_load_and_round_trip(path):
    cfg = load_config(path)
    assert NoiseConfig.from_dict(cfg.to_dict()) == cfg
    assert torch.isfinite(cfg.effective_weighting()(LAM)).all()


def test_explicit_config():
    cfg = NoiseConfig.from_dict(
        {
            "process": "vp",
            "parameterization": "v",
            "schedule": {"name": "cosine"},
            "density": {"name": "uniform_t", "truncate": [-15.0, 15.0]},
            "weighting": {"name": "min_snr", "gamma": 5.0},
            "noise_offset": 0.05,
        }
    )
    assert cfg.schedule == schedule("cosine")
    assert cfg.density == density("uniform_t", schedule=schedule("cosine")).truncate(-15.0, 15.0)
    assert cfg.weighting == weighting("min_snr", gamma=5.0)
    assert cfg.noise_offset == 0.05
    obj = cfg.objective()
    assert obj.process == "vp" and obj.noise_offset == 0.05


def test_defaults_and_names():
    cfg = NoiseConfig.from_dict({"process": "flow", "density": "logit_normal"})
    assert cfg.parameterization == "flow"  # default for the process
    assert cfg.weighting == weighting("constant")
    assert cfg.density == density("logit_normal")
    # uniform_t under flow without a schedule uses the flow schedule
    cfg = NoiseConfig.from_dict({"process": "flow", "density": {"name": "uniform_t"}})
    assert cfg.density == density("uniform_t", schedule=schedule("flow"))


def test_preset_then_explicit_keys_override():
    cfg = noise_config(
        {
            "preset": "kohya:sigmoid",
            "preset_params": {"sigmoid_scale": 1.5},
            "weighting": {"name": "constant"},
        }
    )
    assert cfg.preset == "kohya:sigmoid"
    assert cfg.density == density("logit_normal", mean=0.0, std=1.5)
    assert cfg.weighting == weighting("constant")
    assert cfg.process == "flow"
    same = noise_config({"preset": "kohya:sigmoid", "preset_params": {"sigmoid_scale": 1.5}})
    assert same == preset("kohya:sigmoid", sigmoid_scale=1.5)


def test_units_schedule_transforms_and_nested_components():
    cfg = NoiseConfig.from_dict(
        {
            "process": "flow",
            "schedule": {"name": "flow", "shift": 3.0},
            "density": {"name": "uniform_t"},
            "weighting": {"name": "constant", "units": "flow"},
        }
    )
    assert cfg.schedule == shift(schedule("flow"), 3.0)
    assert cfg.weighting == in_units(weighting("constant"), "flow", process="flow")
    assert_close(cfg.weighting(LAM), (1 + torch.exp(-LAM / 2)) ** 2)
    ztsnr = NoiseConfig.from_dict(
        {
            "process": "vp",
            "parameterization": "v",
            "schedule": {"name": "cosine", "zero_terminal_snr": True},
            "density": "uniform_t",
        }
    )
    assert ztsnr.schedule == zero_terminal_snr(schedule("cosine"))
    mix = NoiseConfig.from_dict(
        {
            "process": "flow",
            "density": {
                "name": "mixture",
                "components": [{"name": "logit_normal", "mean": 0.5}, {"name": "beta", "a": 1.0, "b": 1.0}],
                "weights": [0.75, 0.25],
            },
        }
    )
    assert mix.density.name == "mixture"
    assert_close(
        mix.density.prob(LAM),
        0.75 * density("logit_normal", mean=0.5).prob(LAM) + 0.25 * density("beta", a=1.0, b=1.0).prob(LAM),
    )
    assert NoiseConfig.from_dict(mix.to_dict()) == mix


@pytest.mark.parametrize(
    ("noise", "match"),
    [
        (
            {"process": "vp", "density": "logit_normal", "gamma": 5},
            r"unknown key\(s\) 'gamma' in \[noise\]; valid keys:",
        ),
        ({"process": "vq", "density": "logit_normal"}, "unknown process 'vq'"),
        (
            {"process": "vp", "parameterization": "u", "density": "logit_normal"},
            "unknown parameterization 'u'",
        ),
        (
            {"process": "vp", "density": {"name": "logit_normal", "stdd": 1}},
            r"unknown key\(s\) 'stdd' in noise\.density \(density 'logit_normal'\); "
            "valid keys: mean, std, truncate",
        ),
        ({"process": "vp", "density": {"name": "logit_norm"}}, "unknown density 'logit_norm'; valid names"),
        ({"process": "vp", "density": {"mean": 0.0}}, "needs a 'name' key"),
        ({"process": "vp", "density": {"name": "logit_normal", "std": -1.0}}, "std must be > 0"),
        ({"process": "vp", "density": {"name": "uniform_t"}}, "needs a schedule"),
        (
            {"process": "vp", "density": "logit_normal", "weighting": {"name": "min_snr", "units": "z"}},
            "unknown parameterization 'z'",
        ),
        ({"process": "vp", "density": {"name": "logit_normal", "truncate": [1.0]}}, "truncate must be"),
        ({"process": "vp"}, r"needs a \[noise.density\] table"),
        ({"density": "logit_normal"}, "needs 'process'"),
        ({"preset": "kohya:nope"}, "unknown preset 'kohya:nope'"),
        ({"preset_params": {"a": 1}, "process": "vp", "density": "logit_normal"}, "without noise.preset"),
        ({"process": "vp", "density": "logit_normal", "noise_offset": -0.1}, "noise_offset must be >= 0"),
    ],
)
def test_errors(noise, match):
    with pytest.raises(ValueError, match=match):
        noise_config(noise)
    if "preset" not in noise:  # the same checks without the preset layer
        with pytest.raises(ValueError, match=match):
            NoiseConfig.from_dict(noise)


def test_from_dict_leaves_presets_to_noise_config():
    table = {"preset": "kohya:sigmoid", "preset_params": {"sigmoid_scale": 1.5}}
    with pytest.raises(
        ValueError, match=r"preset 'kohya:sigmoid': resolve it with noiselevels\.config\.noise_config"
    ):
        NoiseConfig.from_dict(table)
    with pytest.raises(ValueError, match=r"resolve it with noiselevels\.config\.noise_config"):
        NoiseConfig.from_dict({"preset": "kohya:sigmoid", "weighting": "constant"})
    # a fully resolved table (to_dict's) only carries the preset as a label: no preset is built
    cfg = preset("kohya:sigmoid", sigmoid_scale=1.5)
    again = NoiseConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.preset == "kohya:sigmoid"
    resolved = noise_config(cfg.to_dict())
    assert resolved == cfg and resolved.description == cfg.description
    # the dataclass and the table reader live in noiselevels.noise; config re-exports them
    assert NoiseConfig is noise.NoiseConfig
    assert noise_config({"process": "flow", "density": "logit_normal"}) == NoiseConfig.from_dict(
        {"process": "flow", "density": "logit_normal"}
    )


def test_load_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[noise\nprocess = 1\n")
    with pytest.raises(ValueError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)
    empty = tmp_path / "empty.toml"
    empty.write_text("[train]\nsteps = 3\n")
    with pytest.raises(ValueError, match=r"empty.toml: no \[noise\] section"):
        load_config(empty)
    typo = tmp_path / "typo.toml"
    typo.write_text('[noise]\nprocess = "flow"\ndensity = "logit_normal"\nweigting = "constant"\n')
    with pytest.raises(ValueError, match=r"typo\.toml: unknown key\(s\) 'weigting'"):
        load_config(typo)
    with pytest.raises(OSError):
        load_config(tmp_path / "missing.toml")


def test_overrides(tmp_path):
    d = {"noise": {"process": "flow", "density": {"name": "logit_normal", "std": 1.0}}, "train": {"lr": 1e-4}}
    out = apply_overrides(
        d,
        [
            "noise.density.std=1.5",
            "noise.density.name=logit_normal",
            "train.lr=2e-4",
            "train.flags=[1, 2]",
            "noise.weighting.name=min_snr",
            "noise.weighting.gamma=5",
            "train.ema=true",
            'train.tag="a b"',
        ],
    )
    assert d["noise"]["density"]["std"] == 1.0  # the input is not modified
    assert out["noise"]["density"] == {"name": "logit_normal", "std": 1.5}
    assert out["train"] == {"lr": 2e-4, "flags": [1, 2], "ema": True, "tag": "a b"}
    assert out["noise"]["weighting"] == {"name": "min_snr", "gamma": 5}
    cfg = NoiseConfig.from_dict(out["noise"])
    assert cfg.weighting == weighting("min_snr", gamma=5.0)
    assert parse_value("kohya:sigmoid") == "kohya:sigmoid"
    assert parse_value("inf") == math.inf
    with pytest.raises(ValueError, match=r"must look like key\.path=value"):
        apply_overrides(d, ["noise.process"])
    with pytest.raises(ValueError, match="not a table"):
        apply_overrides(d, ["noise.process.x=1"])
    with pytest.raises(ValueError, match="cannot parse value"):
        apply_overrides(d, ["noise.x=[1, 2"])
    p = tmp_path / "c.toml"
    p.write_text('[noise]\nprocess = "flow"\n[noise.density]\nname = "logit_normal"\n')
    assert load_config(p, ["noise.density.mean=0.5"]).density == density("logit_normal", mean=0.5)
    assert read_toml(p)["noise"]["process"] == "flow"
