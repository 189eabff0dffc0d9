"""The tool-axis view of a configuration: Jacobian-transformed density and the weight on the tool's loss."""

import torch
from torch.testing import assert_close

from noiselevels.plots import plot_logsnr, tool_axis_curves
from noiselevels.presets import preset


def test_flow_axis_uniform_and_plain_loss():
    c = tool_axis_curves(preset("kohya:uniform"), n=200)
    assert c["axis"].startswith("flow t")
    assert_close(c["density"], torch.ones(200, dtype=torch.float64))  # σ uniform on [0, 1]
    assert_close(c["weight"], torch.ones(200, dtype=torch.float64))  # weight 1 on the flow loss


def test_ddpm_axis_is_diffusers_timesteps():
    cfg = preset("kohya:min_snr_gamma", gamma=5.0)
    c = tool_axis_curves(cfg, n=1000)
    assert c["axis"].startswith("diffusers timestep")
    assert float(c["x"][0]) < 0.0 and float(c["x"][-1]) > 998.0
    # uniform integer timesteps: density 1/T per timestep
    assert_close(c["density"][10:-10], torch.full((980,), 1e-3, dtype=torch.float64), rtol=1e-6, atol=1e-9)
    lam = cfg.schedule.logsnr((torch.arange(1000, dtype=torch.float64) + 0.5) / 1000)
    assert_close(c["weight"], torch.clamp(torch.exp(lam), max=5.0) / torch.exp(lam))


def test_plot_writes_png(tmp_path):
    p = plot_logsnr(
        {"a": preset("kohya:sigmoid"), "b": preset("onetrainer:sigmoid")}, tmp_path / "x.png", n=101
    )
    assert p.read_bytes()[:4] == b"\x89PNG"
