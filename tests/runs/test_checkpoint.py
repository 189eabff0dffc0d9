"""Tests of noiselevels.runs.checkpoint: round trips, atomicity under a killed write, corruption errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from noiselevels.runs.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    optimizer_state_from_flat,
    optimizer_state_to_flat,
    save_checkpoint,
)


def _tensors(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.randn(3, generator=g, dtype=torch.float64)}


def test_round_trip(tmp_path):
    model, ema, extra = _tensors(0), _tensors(1), {"rng": torch.arange(5, dtype=torch.uint8)}
    path = save_checkpoint(tmp_path, 7, model=model, ema=ema, extra=extra, state={"a": [1, 2], "x": 0.5})
    assert path.name == "ckpt-00000007"
    ck = load_checkpoint(tmp_path)
    assert ck.step == 7 and ck.path == path
    for got, want in ((ck.model, model), (ck.ema, ema), (ck.extra, extra)):
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    assert ck.state == {"step": 7, "a": [1, 2], "x": 0.5}


def test_optimizer_state_round_trip(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=1e-3)
    p.grad = torch.randn(3, 2)
    opt.step()
    tensors, meta = optimizer_state_to_flat(opt.state_dict())
    save_checkpoint(tmp_path, 1, model={"p": p.detach()}, optimizer=tensors, state={"optimizer": meta})
    ck = load_checkpoint(tmp_path)
    opt2 = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone())], lr=1e-3)
    opt2.load_state_dict(optimizer_state_from_flat(ck.optimizer, ck.state["optimizer"]))
    for key in ("exp_avg", "exp_avg_sq", "step"):
        torch.testing.assert_close(opt2.state_dict()["state"][0][key], opt.state_dict()["state"][0][key])


def test_keep_and_latest(tmp_path):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model=_tensors(step), keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000003", "ckpt-00000004"]
    assert latest_checkpoint(tmp_path).name == "ckpt-00000004"
    save_checkpoint(tmp_path, 4, model=_tensors(9), keep=2)  # re-saving the same step replaces it
    torch.testing.assert_close(load_checkpoint(tmp_path).model["w"], _tensors(9)["w"])


_KILLER = """
import os, sys, torch
import safetensors.torch as st
from noiselevels.runs import checkpoint
mode = sys.argv[2]
if mode == "tensors":
    real = st.save_file
    calls = []
    def save_file(t, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            with open(path, "wb") as f:
                f.write(b"half a file")
            os._exit(9)
        real(t, path, metadata=metadata)
    st.save_file = save_file
elif mode == "pointer":
    real_replace = os.replace
    def replace(a, b):
        if str(b).endswith("LATEST"):
            os._exit(9)
        real_replace(a, b)
    os.replace = replace
checkpoint.save_checkpoint(sys.argv[1], 2, model={"w": torch.full((4, 3), 2.0)},
                           ema={"w": torch.full((4, 3), 2.0)})
"""


@pytest.mark.parametrize("mode", ["tensors", "pointer"])
def test_killed_write_leaves_previous_checkpoint(tmp_path, mode):
    save_checkpoint(tmp_path, 1, model={"w": torch.ones(4, 3)}, ema={"w": torch.ones(4, 3)})
    script = tmp_path / "killer.py"
    script.write_text(textwrap.dedent(_KILLER))
    res = subprocess.run([sys.executable, str(script), str(tmp_path), mode], capture_output=True)
    assert res.returncode == 9, res.stderr.decode()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 1
    torch.testing.assert_close(ck.model["w"], torch.ones(4, 3))
    # the next save cleans up the debris and works
    save_checkpoint(tmp_path, 3, model={"w": torch.zeros(4, 3)})
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    assert load_checkpoint(tmp_path).step == 3


def test_corrupt_file_is_one_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 5, model=_tensors(0))
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[:-7] + b"garbage")
    with pytest.raises(CheckpointError, match=r"corrupt checkpoint .*model\.safetensors"):
        load_checkpoint(tmp_path)
    # without the manifest check, the safetensors reader error is still turned into a CheckpointError
    (path / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match=r"cannot read model\.safetensors"):
        load_checkpoint(path, verify=False)


def test_missing_and_bad_pointer(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no checkpoint under"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, 1, model=_tensors(0))
    (tmp_path / "LATEST").write_text("ckpt-00000099\n")
    with pytest.raises(CheckpointError, match="LATEST"):
        load_checkpoint(tmp_path)
    (tmp_path / "LATEST").unlink()
    (tmp_path / "ckpt-00000001" / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest"):
        load_checkpoint(tmp_path / "ckpt-00000001")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, model=_tensors(0))
    with pytest.raises(ValueError, match="keep"):
        save_checkpoint(tmp_path, 1, model=_tensors(0), keep=0)
