"""The small, fast experiment every claim shares: an MLP denoiser on flattened images, trained with an
``Objective`` (AdamW, linear warm-up, gradient clipping, an EMA of the weights), sampled with any grid.

This is the training step of ``noiselevels.runs.loop`` without the run folder (no files, checkpoints
or logs), so that a claim can train 2 configurations × 3 seeds in seconds on a CPU core and look at the
model as often as it likes. Seed s fixes the initial weights, the data order, the training noise and
the evaluation noise, so two configurations with the same seed differ only in their noise settings
(paired comparisons).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from noiselevels.noise import NoiseConfig
from noiselevels.parameterizations import parameterization as make_param
from noiselevels.runs.evaluate import bits_per_dim, sample_quality
from noiselevels.runs.models import build_model
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.solvers import initial_x, solve
from noiselevels.sampling.spacings import spacing
from noiselevels.training.objective import Objective

__all__ = ["QUICK", "Budget", "FlatMLP", "evaluate_fd", "objective_of", "sample", "train"]


@dataclasses.dataclass(frozen=True)
class Budget:
    """Sizes of one claim's experiment: training steps, evaluations along the way, samples per FD."""

    steps: int
    evals: int = 1
    num_samples: int = 500
    batch: int = 128
    lr: float = 1e-3
    hidden: int = 512
    sample_steps: int = 18


QUICK = Budget(steps=20, evals=2, num_samples=32, batch=32, hidden=64, sample_steps=4)
"""The ``--quick`` sizes (a smoke test of the same code for ``make test``; its numbers are not evidence)."""


class FlatMLP(nn.Module):
    """``noiselevels.runs.models`` MLP on images: flattens (B, C, H, W) and reshapes its output back."""

    def __init__(self, dim: int, hidden: int = 512):
        super().__init__()
        self.net = build_model({"kind": "mlp", "dim": dim, "hidden": hidden, "depth": 3, "emb_dim": 64})

    def forward(self, x: Tensor, logsnr: Tensor, **cond: Any) -> Tensor:
        return self.net(x.flatten(1), logsnr, **cond).view_as(x)


def objective_of(cfg: NoiseConfig, sampler: Any = None) -> Objective:
    """The configuration's ``Objective`` with an adaptive ``sampler`` (or None)."""
    return Objective(process=cfg.process, parameterization=make_param(cfg.parameterization),
                     density=cfg.density, weighting=cfg.weighting, noise_offset=cfg.noise_offset,
                     sampler=sampler)  # fmt: skip


def train(
    cfg: NoiseConfig,
    x: Tensor,
    budget: Budget,
    *,
    seed: int,
    sampler: Any = None,
    on_eval: Callable[[int, nn.Module], dict[str, float]] | None = None,
    ema_decay: float = 0.99,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a fresh :class:`FlatMLP` on images ``x`` (N, C, H, W) for ``budget.steps`` steps.

    ``on_eval(step, ema_model)`` is called ``budget.evals`` times at evenly spaced steps (the last at the
    end); its dicts, with ``step`` added, are returned with the EMA model."""
    torch.manual_seed(seed)
    model = FlatMLP(x[0].numel(), budget.hidden)
    ema = copy.deepcopy(model).requires_grad_(False)
    obj = objective_of(cfg, sampler)
    opt = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=0.0)
    g_data = torch.Generator().manual_seed(seed * 1009 + 1)
    g_noise = torch.Generator().manual_seed(seed * 1009 + 2)
    marks = {math.ceil(budget.steps * (k + 1) / budget.evals) for k in range(budget.evals)}
    curve = []
    for step in range(1, budget.steps + 1):
        for grp in opt.param_groups:
            grp["lr"] = budget.lr * min(1.0, step / 50)
        idx = torch.randint(x.shape[0], (budget.batch,), generator=g_data)
        out = obj(model, x[idx], generator=g_noise)
        out.loss.mean().backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if sampler is not None:
            sampler.update(out.logsnr.detach(), out.eps_mse.detach())
        with torch.no_grad():
            decay = min(ema_decay, step / (step + 10))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        if on_eval is not None and step in marks:
            curve.append({"step": step, **on_eval(step, ema)})
    return ema, curve


@torch.no_grad()
def sample(model: nn.Module, cfg: NoiseConfig, shape: tuple[int, ...], num: int, *, seed: int,
           sigmas: Tensor | None = None, steps: int = 18, solver: str = "heun") -> Tensor:  # fmt: skip
    """``num`` samples (num, *shape) along ``sigmas`` (default: Karras ρ = 7 over EDM's 0.002–80)."""
    if sigmas is None:
        sigmas = spacing("karras", rho=7.0).sigmas(steps, sigma_min=0.002, sigma_max=80.0)
    g = torch.Generator().manual_seed(seed * 7919 + 5)
    noise = torch.randn((num, *shape), generator=g)
    den = as_denoiser(model, process=cfg.process, parameterization=cfg.parameterization)
    return solve(den, initial_x(noise, sigmas), sigmas=sigmas, solver=solver, generator=g)


def evaluate_fd(model: nn.Module, cfg: NoiseConfig, reference: Tensor, budget: Budget, *, seed: int,
                bpd: bool = False) -> dict[str, float]:  # fmt: skip
    """Fréchet distance (the project's MNIST classifier features) of ``budget.num_samples`` samples to
    ``reference``; with ``bpd`` also the VDM bound in bits/dim on ``reference`` (4 levels per image)."""
    shape = tuple(reference.shape[1:])
    x = sample(model, cfg, shape, budget.num_samples, seed=seed, steps=budget.sample_steps)
    out = {"fd": sample_quality(x.clamp(-1, 1), reference, seed=seed)["fd"]}
    if bpd:
        param = make_param(cfg.parameterization)
        res = bits_per_dim(model, process=cfg.process, parameterization=param, x=reference,
                           num_levels=4, seed=seed)  # fmt: skip
        out["bpd"] = res["bpd"]
    return out
