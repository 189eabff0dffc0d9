"""noiselevels.runs.loop: the one training step shared by train and finetune."""

from __future__ import annotations

import pytest
import torch

from noiselevels.runs import finetune as ft
from noiselevels.runs import train as tr
from noiselevels.runs.loop import (
    EMA,
    LogInterval,
    NonFiniteLossError,
    TrainStep,
    check_finite,
    log_due,
    warmup_lr,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_warmup_rule():
    """The k-th step (k = step + 1) runs at lr·min(1, k/warmup): the trainer's (step+1)/warmup from 0 and
    the fine-tune's step/warmup from 1 were the same rule."""
    assert [warmup_lr(1.0, 4, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lr(2e-3, 0, 0) == 2e-3
    for k in range(1, 12):  # the fine-tune's old notation
        assert warmup_lr(2e-3, 5, k - 1) == 2e-3 * min(1.0, k / 5)


def test_check_finite_names_step_and_levels():
    losses = torch.tensor([1.0, float("nan"), 2.0, float("inf")])
    lam = torch.tensor([0.5, -3.0, 1.0, -1.0])
    with pytest.raises(NonFiniteLossError, match=r"step 7 \(2 of 4 samples, λ in \[-3, -1\]\); stop here"):
        check_finite(losses, lam, step=7, note=lambda: "stop here")
    check_finite(torch.ones(3), torch.zeros(3), step=1)
    assert issubclass(NonFiniteLossError, ValueError)


def test_train_step_matches_a_plain_loop():
    """Warm-up lr, clipping, AdamW step and EMA of TrainStep equal the written-out loop, bit for bit."""

    def make():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2)

    x, y = torch.randn(8, 3), torch.randn(8, 2)
    a, b = make(), make()
    ema_a, ema_b = make().requires_grad_(False), make().requires_grad_(False)
    opt_a = torch.optim.AdamW(a.parameters(), lr=0.1)
    opt_b = torch.optim.AdamW(b.parameters(), lr=0.1)
    step_fn = TrainStep(opt_a, a.parameters(), lr=0.1, warmup=3, grad_clip=0.5, ema=EMA(ema_a, a, 0.9))
    norms = []
    for s in range(5):
        losses = ((a(x) - y) ** 2).mean(1)
        out = step_fn(s, losses.mean(), losses, torch.zeros(8))
        assert out.step == s + 1
        norms.append(out.grad_norm)
        for g in opt_b.param_groups:
            g["lr"] = 0.1 * min(1.0, (s + 1) / 3)
        ((b(x) - y) ** 2).mean(1).mean().backward()
        norm = torch.nn.utils.clip_grad_norm_(b.parameters(), 0.5)
        opt_b.step()
        opt_b.zero_grad(set_to_none=True)
        d = min(0.9, (2.0 + s) / (11.0 + s))
        with torch.no_grad():
            for pe, pb in zip(ema_b.parameters(), b.parameters()):
                pe.lerp_(pb, 1.0 - d)
        assert norms[-1] == float(norm)
    for p, q in zip([*a.parameters(), *ema_a.parameters()], [*b.parameters(), *ema_b.parameters()]):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_log_interval_and_schedule():
    iv = LogInterval()
    iv.add(1.0, 2.0)
    iv.add(3.0, float("nan"))  # a non-finite norm is not averaged
    assert iv.mean_loss() == 2.0 and iv.grad_n == 1
    assert LogInterval.from_dict({"loss": 1.0, "n": 1}) == LogInterval(1.0, 1, 0.0, 0)  # older checkpoints
    assert LogInterval.from_dict(iv.to_dict()) == iv
    assert [s for s in range(1, 12) if log_due(s, 5, 11)] == [5, 10, 11]


def test_train_and_finetune_share_the_step():
    """Both loops use the one TrainStep (no second copy of warm-up / clipping / optimizer step)."""
    assert tr.TrainStep is TrainStep and ft.TrainStep is TrainStep
