"""Running the command line in-process for the reliability tests: exit status, stdout, stderr."""

from __future__ import annotations

import contextlib
import dataclasses
import io

from noiselevels.cli import main

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
