"""Running the command line in-process for the reliability tests: exit status, stdout, stderr."""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path

import torch

from noiselevels.cli import main
from noiselevels.runs.bases import save_base
from noiselevels.runs.models import UNet

# A tiny training configuration (digits 8×8, a 2-level UNet): a step takes milliseconds.
TINY = """
[noise]
process = "vp"
parameterization = "v"
[noise.density]
name = "logit_normal"
[data]
name = "digits"
batch_size = 8
num_images = 80
[model]
channels = [8, 16]
emb_dim = 16
fourier_features = 4
[train]
steps = 4
log_every = 2
ckpt_every = 2
warmup = 2
"""


@dataclasses.dataclass
class Result:
    code: int
    out: str
    err: str

    def one_line_error(self, *needles: str) -> str:
        """Assert the promised user error: exit 2, one line on stderr, no traceback; return the line."""
        lines = self.err.strip().splitlines()
        assert self.code == 2, (self.code, self.err[-2000:])
        assert len(lines) == 1, self.err[-2000:]
        assert lines[0].startswith("noiselevels"), lines[0]
        for n in needles:
            assert n in lines[0], lines[0]
        return lines[0]


def run_cli(argv: list[str]) -> Result:
    """``noiselevels ARGV`` in this process; argparse's SystemExit becomes the exit status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([*argv])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return Result(int(code), out.getvalue(), err.getvalue())


def make_tiny_base(path: Path) -> Path:
    """A small class-conditional UNet on 8×8 MNIST without 7 (random weights, as tests/runs uses)."""
    torch.manual_seed(0)
    model = UNet(in_channels=1, channels=(8, 16), emb_dim=16, fourier_features=2, num_classes=10)
    with torch.no_grad():
        model.conv_out.weight.normal_(0, 0.1)
    config = {"noise": {"preset": "ai-toolkit:sigmoid"},
              "data": {"name": "mnist", "size": 8, "classes": [0, 1, 2, 3, 4, 5, 6, 8, 9], "batch_size": 8},
              "model": model.config.to_dict(), "train": {"steps": 1}}  # fmt: skip
    data = {"name": "mnist", "shape": [1, 8, 8], "num_classes": 10, "split": "train"}
    return save_base(model, config=config, data=data, path=path)
