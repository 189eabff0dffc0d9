"""``noiselevels convert``: output, exact matches, bad input (one line, exit 2)."""

from __future__ import annotations

from noiselevels.cli import main


def test_convert_prints_the_tools_options(capsys):
    assert main(["convert", "kohya:shift?discrete_flow_shift=3", "--to", "simpletuner"]) == 0
    out = capsys.readouterr().out
    assert "simpletuner:sigmoid" in out
    assert "total-variation distance left: 0.0000" in out
    assert '"flow_schedule_shift": 3.0' in out


def test_convert_back_to_kohya(capsys):
    assert main(["convert", "simpletuner:sigmoid?flow_schedule_shift=3.0", "--to", "kohya"]) == 0
    assert "--timestep_sampling shift" in capsys.readouterr().out


def test_convert_a_noise_toml(capsys):
    assert main(["convert", "examples/configs/kohya_flux_sigmoid.toml", "--to", "simpletuner"]) == 0
    assert "closest simpletuner setting" in capsys.readouterr().out


def test_bad_input_is_one_line_exit_2(capsys):
    for argv in (["convert", "nope:x", "--to", "kohya"], ["convert", "kohya:shift", "--to", "nope"],
                 ["convert", "kohya:shift?bogus=1", "--to", "kohya"]):  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("noiselevels: error:") and "\n" not in err


def test_convert_a_tools_own_file(capsys):
    assert main(["convert", "tests/presets/fixtures/ai_toolkit_flux.yaml", "--to", "kohya"]) == 0
    out = capsys.readouterr().out
    assert "read as: ai-toolkit" in out and "--timestep_sampling" in out
