"""The one training step, shared by ``runs.train.train`` and ``runs.finetune.finetune``.

A step, given the per-sample losses of a batch (the forward pass is the caller's: the trainer's under
accelerate's autocast, the fine-tune's with its prior-preservation term)::

    lr        ← warmup_lr(lr, warmup, k)                   linear warm-up, then constant
    check        every per-sample loss is finite            else NonFiniteLossError naming the λ range
    backward     of the mean loss                           (accelerate's backward in the trainer)
    clip         the gradient norm at ``grad_clip``         the norm before clipping is returned
    optimizer    step, then zero_grad(set_to_none=True)
    EMA          θ_ema ← lerp(θ_ema, θ, 1 − min(decay, (1 + k)/(10 + k)))   (trainer only)

followed, by the caller, by :func:`record_levels` (the loss profile over λ and the adaptive sampler see
the batch's levels and ε-unit losses) and :class:`LogInterval` (running means per log interval).

**The warm-up rule.** The k-th optimizer step (k = 1, 2, …) uses lr·min(1, k/warmup); ``warmup`` = 0
means lr from the first step. The trainer wrote this as ``(step + 1)/warmup`` with ``step`` counted from
0, the fine-tune as ``step/warmup`` with ``step`` counted from 1 — the same rule in two notations (so no
run changes). It is kept, in the trainer's notation (``step`` = optimizer steps already taken), because
the trainer's checkpoints and its bitwise resume equality depend on it and because a first step at
lr/warmup (not 0) never wastes a step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from noiselevels.runs.profile import LossProfile
from noiselevels.training.adaptive import AdaptiveSampler

__all__ = [
    "EMA",
    "LogInterval",
    "NonFiniteLossError",
    "StepOutput",
    "TrainStep",
    "check_finite",
    "log_due",
    "record_levels",
    "warmup_lr",
]


class NonFiniteLossError(ValueError):
    """The loss became NaN or ±inf; the message names the step and the λ range of the bad samples."""


def warmup_lr(lr: float, warmup: int, step: int) -> float:
    """The learning rate of the step taken after ``step`` optimizer steps: lr·min(1, (step + 1)/warmup),
    lr itself when ``warmup`` <= 0 (see the module docstring)."""
    if warmup <= 0:
        return lr
    return lr * min(1.0, (step + 1) / warmup)


def check_finite(
    losses: Tensor,
    logsnr: Tensor,
    *,
    step: int,
    all_finite: Callable[[Tensor], Tensor] | None = None,
    note: Callable[[], str] = lambda: "run stopped",
) -> None:
    """Raise ``NonFiniteLossError`` if any of the per-sample ``losses`` (B,) is NaN or ±inf.

    ``step``: the number of the step (from 1) named in the message, with how many samples failed and
    their λ range (``logsnr`` (B,)); ``all_finite`` reduces the local flag over processes (then another
    process's failure stops every process); ``note()`` ends the message (what was kept, what to try).
    """
    finite = torch.isfinite(losses.detach()).all()
    if all_finite is not None:
        finite = all_finite(finite)
    if bool(finite):
        return
    bad = ~torch.isfinite(losses.detach())
    lam = logsnr.detach()[bad] if bad.any() else logsnr.detach()
    where = "on another process"
    if lam.numel():
        where = f"λ in [{lam.min().item():.4g}, {lam.max().item():.4g}]"
    raise NonFiniteLossError(
        f"non-finite loss at step {step} ({int(bad.sum())} of {bad.numel()} samples, {where}); {note()}"
    )


_REMEDY = "lower the weighting's scale (float32 overflows near 3e38) or the learning rate"


def check_finite_value(what: str, value: Tensor | float, *, step: int, note: Callable[[], str]) -> None:
    """Raise ``NonFiniteLossError`` if ``value`` (the reduced loss that is optimised, or the gradient
    norm) is NaN or ±inf, even when every per-sample loss is finite (a float32 sum that overflows)."""
    v = float(value.detach()) if isinstance(value, Tensor) else float(value)
    if math.isfinite(v):
        return
    raise NonFiniteLossError(
        f"non-finite {what} at step {step} ({v}) although every per-sample loss is finite; "
        f"{note()}; {_REMEDY}"
    )


class EMA:
    """An exponential moving average of a model's parameters (buffers are copied).

    After k optimizer steps: θ_ema ← θ_ema + (1 − d)·(θ − θ_ema) with d = min(decay, (1 + k)/(10 + k))
    (the warm-up of the decay keeps the average from remembering the random initial weights)."""

    def __init__(self, ema_model: nn.Module, model: nn.Module, decay: float):
        self.decay = decay
        self.ema_params = list(ema_model.parameters())
        self.model_params = list(model.parameters())
        self.buffers = list(zip(ema_model.buffers(), model.buffers()))

    def update(self, step: int) -> None:
        """Fold in the model's weights after ``step`` optimizer steps."""
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(self.ema_params, self.model_params, 1.0 - decay)
            for be, bm in self.buffers:
                be.copy_(bm)


@dataclasses.dataclass
class StepOutput:
    """What one :class:`TrainStep` returns: the step number after it, and the gradient norm before
    clipping (None without clipping; NaN when the clip function returned none)."""

    step: int
    grad_norm: float | None


class TrainStep:
    """The one training step (module docstring): warm-up lr, finite check, backward, clip, optimizer, EMA.

    Args:
        optimizer: the optimizer over ``params``.
        params: the trained parameters (the norm is clipped over them).
        lr, warmup: the peak learning rate and the warm-up length in steps (:func:`warmup_lr`).
        grad_clip: the gradient norm bound; 0 = no clipping.
        ema: an :class:`EMA` updated after every optimizer step, or None.
        backward: ``backward(loss)`` (default ``loss.backward()``; the trainer passes accelerate's).
        clip_grad_norm: ``clip_grad_norm(params, max_norm) → norm`` (default torch's).
        all_finite: reduces the finite flag over processes (multi-process training).
        note: ends a non-finite loss error's message (:func:`check_finite`).
        check_grad: also stop on a non-finite gradient norm (False under fp16 loss scaling, whose
            scaler skips such steps itself).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        params: Iterable[nn.Parameter],
        *,
        lr: float,
        warmup: int = 0,
        grad_clip: float = 0.0,
        ema: EMA | None = None,
        backward: Callable[[Tensor], None] | None = None,
        clip_grad_norm: Callable[..., Any] | None = None,
        all_finite: Callable[[Tensor], Tensor] | None = None,
        note: Callable[[], str] = lambda: "run stopped",
        check_grad: bool = True,
    ):
        self.check_grad = check_grad
        self.optimizer = optimizer
        self.params = list(params)
        self.lr, self.warmup, self.grad_clip = lr, warmup, grad_clip
        self.ema = ema
        self.backward = backward if backward is not None else Tensor.backward
        self.clip_grad_norm = clip_grad_norm if clip_grad_norm is not None else torch.nn.utils.clip_grad_norm_
        self.all_finite = all_finite
        self.note = note

    def set_lr(self, step: int) -> None:
        """Set the learning rate of the step after ``step`` optimizer steps."""
        for group in self.optimizer.param_groups:
            group["lr"] = warmup_lr(self.lr, self.warmup, step)

    def __call__(self, step: int, loss: Tensor, losses: Tensor, logsnr: Tensor) -> StepOutput:
        """Take the step after ``step`` optimizer steps, minimising the scalar ``loss`` whose
        per-sample terms are ``losses`` (B,) at levels ``logsnr`` (B,). Returns the new step count."""
        self.set_lr(step)
        check_finite(losses, logsnr, step=step + 1, all_finite=self.all_finite, note=self.note)
        check_finite_value("mean loss", loss, step=step + 1, note=self.note)
        self.backward(loss)
        grad_norm = norm = None
        if self.grad_clip > 0:
            norm = self.clip_grad_norm(self.params, self.grad_clip)
            grad_norm = float("nan") if norm is None else float(norm)
        elif self.check_grad:
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else None
        if self.check_grad and norm is not None:
            check_finite_value("gradient norm", norm, step=step + 1, note=self.note)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        step += 1
        if self.ema is not None:
            self.ema.update(step)
        return StepOutput(step, grad_norm)


def record_levels(
    profile: LossProfile | None, sampler: AdaptiveSampler | None, logsnr: Tensor, eps_mse: Tensor
) -> None:
    """After a step: the batch's levels (B,) and unweighted ε-unit losses (B,) go into the loss profile
    and the adaptive sampler (either may be None)."""
    lam, mse = logsnr.detach(), eps_mse.detach()
    if profile is not None:
        profile.add(lam, mse)
    if sampler is not None:
        sampler.update(lam, mse)


@dataclasses.dataclass
class LogInterval:
    """The running sums of one log interval: the loss and the finite gradient norms (part of the
    trainer's checkpoint state, as the dict :meth:`to_dict`)."""

    loss: float = 0.0
    n: int = 0
    grad_norm: float = 0.0
    grad_n: int = 0

    def add(self, loss: float, grad_norm: float | None = None) -> None:
        self.loss += loss
        self.n += 1
        if grad_norm is not None and math.isfinite(grad_norm):
            self.grad_norm += grad_norm
            self.grad_n += 1

    def mean_loss(self) -> float:
        return self.loss / max(1, self.n)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LogInterval:
        """Restore :meth:`to_dict` (older checkpoints have no gradient-norm sums)."""
        return cls(**{**cls().to_dict(), **dict(d)})


def log_due(step: int, every: int, last: int) -> bool:
    """Whether a log record is written after ``step`` steps: every ``every`` steps and at the last."""
    return step % every == 0 or step == last
