"""A learned noise schedule (Kingma et al. 2021, VDM, "Variational diffusion models", App. I.2 /
eq. 22): :class:`LearnedSchedule` (the monotone network λ(t)), :class:`LearnedScheduleSnapshot`
(it frozen into the registered schedule ``"learned"``) and :class:`LearnedScheduleSampler` (trains its
interior to minimise the variance of the loss estimate).

Conventions: λ = log(α²/σ²) (large = clean); t ∈ [0, 1] with t = 0 clean, so λ(t) decreases from
logsnr_max to logsnr_min; float64 on the CPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from noiselevels._numerics import solve_increasing
from noiselevels.components import SCHEDULES, Density, Schedule, Weighting, check_finite, check_positive
from noiselevels.training.adaptive._common import (
    F64,
    Adam,
    as_weighting,
    bin_means,
    check_bins,
    check_decay,
    check_density,
    check_lam_range,
    lam_loss,
    log_effective_weight,
    require_keys,
)
from noiselevels.training.densities import density as _density

__all__ = ["LearnedSchedule", "LearnedScheduleSampler", "LearnedScheduleSnapshot"]


def _monotone_net(
    t: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, w3: Tensor
) -> tuple[Tensor, Tensor]:
    """VDM's monotone γ̃(t) = l1(t) + l3(sigmoid(l2(l1(t)))) with positive weights w1, w2, w3 (biases
    free) and its derivative dγ̃/dt, both of t's shape."""
    h = w1 * t + b1
    a = h[..., None] * w2 + b2
    s = torch.sigmoid(a)
    g = h + (s * w3).sum(-1)
    dg = w1 * (1.0 + (s * (1.0 - s) * w2 * w3).sum(-1))
    return g, dg


def _normalised(t: Tensor, lam_min, lam_max, params) -> tuple[Tensor, Tensor]:
    """λ(t) = λ_max − (λ_max − λ_min)·(γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)) and dλ/dt."""
    g, dg = _monotone_net(t, *params)
    ends = torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device)
    g01, _ = _monotone_net(ends, *params)
    span = g01[1] - g01[0]
    ghat = (g - g01[0]) / span
    lam = lam_max - (lam_max - lam_min) * ghat
    dlam = -(lam_max - lam_min) * dg / span
    return lam, dlam


class LearnedSchedule(nn.Module):
    """VDM's learned noise schedule (Kingma et al. 2021, App. I.2): a monotone network λ(t).

    γ̃(t) = l1(t) + l3(sigmoid(l2(l1(t)))) with l1: 1→1, l2: 1→``hidden``, l3: ``hidden``→1 and
    positive weights (softplus of free parameters), so γ̃ is strictly increasing; normalised to
    λ(0) = ``logsnr_max``, λ(1) = ``logsnr_min``:  λ(t) = λ_max − (λ_max − λ_min)·(γ̃(t) − γ̃(0))/(γ̃(1) − γ̃(0)).
    The endpoints are fixed, or parameters (``learn_endpoints=True``; trained by whatever loss the
    caller backpropagates, e.g. VDM's bound — :class:`LearnedScheduleSampler` trains only the interior).

    ``logsnr(t)``, ``dlogsnr_dt(t)`` are differentiable in the parameters; ``t_of(λ)`` inverts by
    bisection/Newton. ``schedule()`` freezes the current network into a registered
    :class:`~noiselevels.components.Schedule` (``"learned"``), usable anywhere a schedule is, e.g.
    ``density("uniform_t", schedule=net.schedule())``.
    """

    def __init__(
        self,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        *,
        hidden: int = 64,
        learn_endpoints: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        lo, hi = check_lam_range(logsnr_min, logsnr_max)
        if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer; got {hidden!r}")
        g = torch.Generator().manual_seed(int(seed))
        self.hidden = hidden
        end = torch.tensor([lo, hi], dtype=F64)
        if learn_endpoints:
            self.endpoints = nn.Parameter(end)
        else:
            self.register_buffer("endpoints", end)
        # start near linear in t (the hidden branch small): λ(t) ≈ λ_max − (λ_max − λ_min)·t
        self.w1_raw = nn.Parameter(torch.tensor([math.log(math.expm1(1.0))], dtype=F64))
        self.b1 = nn.Parameter(torch.zeros(1, dtype=F64))
        self.w2_raw = nn.Parameter(torch.randn(hidden, generator=g, dtype=F64) + 1.0)
        self.b2 = nn.Parameter(torch.randn(hidden, generator=g, dtype=F64) * 2.0)
        self.w3_raw = nn.Parameter(torch.randn(hidden, generator=g, dtype=F64) - 4.0)

    def params(self) -> tuple[Tensor, ...]:
        sp = nn.functional.softplus
        return (sp(self.w1_raw), self.b1, sp(self.w2_raw), self.b2, sp(self.w3_raw))

    @property
    def logsnr_min(self) -> float:
        return float(self.endpoints[0])

    @property
    def logsnr_max(self) -> float:
        return float(self.endpoints[1])

    def _check_t(self, t) -> Tensor:
        t = torch.as_tensor(t, dtype=F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        return t

    def logsnr_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        t = self._check_t(t)
        return _normalised(t, self.endpoints[0], self.endpoints[1], self.params())

    def forward(self, t: Tensor) -> Tensor:
        return self.logsnr(t)

    def logsnr(self, t: Tensor) -> Tensor:
        """λ(t) (differentiable in the parameters), decreasing from logsnr_max to logsnr_min."""
        return self.logsnr_and_derivative(t)[0]

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        """dλ/dt < 0 (differentiable in the parameters)."""
        return self.logsnr_and_derivative(t)[1]

    @torch.no_grad()
    def t_of(self, logsnr: Tensor) -> Tensor:
        return self.schedule().t_of(logsnr)

    def schedule(self) -> LearnedScheduleSnapshot:
        """The current λ(t) frozen into a serialisable Schedule component."""
        with torch.no_grad():
            w1, b1, w2, b2, w3 = (p.detach().cpu() for p in self.params())
        return LearnedScheduleSnapshot(
            logsnr_min=self.logsnr_min,
            logsnr_max=self.logsnr_max,
            w1=float(w1[0]),
            b1=float(b1[0]),
            w2=tuple(w2.tolist()),
            b2=tuple(b2.tolist()),
            w3=tuple(w3.tolist()),
        )


@SCHEDULES.register("learned")
@dataclasses.dataclass(frozen=True)
class LearnedScheduleSnapshot(Schedule):
    """A :class:`LearnedSchedule` frozen: VDM's monotone γ̃ with given positive weights (see there)."""

    logsnr_min: float = -15.0  # type: ignore[assignment]
    logsnr_max: float = 15.0  # type: ignore[assignment]
    w1: float = 1.0
    b1: float = 0.0
    w2: tuple = ()
    b2: tuple = ()
    w3: tuple = ()

    def __post_init__(self) -> None:
        lo, hi = check_lam_range(self.logsnr_min, self.logsnr_max)
        object.__setattr__(self, "logsnr_min", lo)
        object.__setattr__(self, "logsnr_max", hi)
        if not (isinstance(self.w1, (int, float)) and self.w1 > 0):
            raise ValueError(f"w1 must be > 0; got {self.w1!r}")
        for name in ("w2", "b2", "w3"):
            object.__setattr__(self, name, tuple(check_finite(name, float(v)) for v in getattr(self, name)))
        if not len(self.w2) == len(self.b2) == len(self.w3):
            raise ValueError("w2, b2 and w3 must have the same length")
        if any(v < 0 for v in self.w2 + self.w3):
            raise ValueError("w2 and w3 must be >= 0 (a monotone network has positive weights)")

    def _params(self) -> tuple[Tensor, ...]:
        return (
            torch.tensor(float(self.w1), dtype=F64),
            torch.tensor(float(self.b1), dtype=F64),
            torch.tensor(self.w2, dtype=F64),
            torch.tensor(self.b2, dtype=F64),
            torch.tensor(self.w3, dtype=F64),
        )

    def _logsnr(self, t: Tensor) -> Tensor:
        return _normalised(t, self.logsnr_min, self.logsnr_max, self._params())[0]

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        return _normalised(t, self.logsnr_min, self.logsnr_max, self._params())[1]

    def _t_of(self, logsnr: Tensor) -> Tensor:
        lam = logsnr.clamp(self.logsnr_min, self.logsnr_max)
        p = self._params()

        def fn(t):
            return -_normalised(t, self.logsnr_min, self.logsnr_max, p)[0]

        def dfn(t):
            return -_normalised(t, self.logsnr_min, self.logsnr_max, p)[1]

        return solve_increasing(fn, -lam, 0.0, 1.0, dfn=dfn, tol=1e-14)


class LearnedScheduleSampler:
    """Train a :class:`LearnedSchedule` to minimise the variance of the loss estimate (VDM).

    Draws t with VDM's low-discrepancy rule t_i = (u + i/n) mod 1, λ = λ(t), and returns the
    importance weight p(λ)·|λ'(t)| (= p/q for the schedule's density q = |dt/dλ|), so the objective's
    per-sample weight is W(λ)·|λ'(t)|: unbiased for ∫ W(λ)·L(λ) dλ over the schedule's range, whatever
    its interior shape. The interior is trained on the estimator's second moment

        V = E_t[(W(λ(t))·|λ'(t)|)²·M₂(λ(t))] = ∫ W(λ)²·M₂(λ)/q(λ) dλ,

    with M₂(λ) = E[L² | λ] an EMA (``decay``) per bin (``bins`` over the range, interpolated
    linearly): ``update`` folds in the batch and takes one Adam step (``lr``) on log V, estimated by
    ``grid``-point midpoint quadrature in t. (VDM takes the same gradient stochastically, 2ℓ·∂ℓ/∂η
    through the network; the binned M₂ avoids the second backward pass.) The minimiser is
    q ∝ W·√M₂, the same proposal as :class:`LossImportanceSampler` with ``statistic="rms"``.
    """

    kind: ClassVar[str] = "learned_schedule"

    def __init__(
        self,
        schedule: LearnedSchedule,
        density: Density,
        weighting: Weighting | str | None = None,
        *,
        bins: int = 100,
        decay: float = 0.9,
        lr: float = 1e-2,
        grid: int = 256,
    ):
        if not isinstance(schedule, LearnedSchedule):
            raise ValueError(f"schedule must be a LearnedSchedule; got {schedule!r}")
        self.net = schedule
        self.target = check_density(density, "LearnedScheduleSampler")
        self.weighting = as_weighting(weighting)
        self.bins = check_bins(bins)
        self.decay = check_decay(decay)
        self.lr = check_positive("lr", lr)
        if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
            raise ValueError(f"grid must be an integer >= 2; got {grid!r}")
        self.grid = grid
        self.edges = torch.linspace(schedule.logsnr_min, schedule.logsnr_max, self.bins + 1, dtype=F64)
        self.m2 = torch.zeros(self.bins, dtype=F64)
        self.seen = torch.zeros(self.bins, dtype=torch.bool)
        self.updates = 0
        self._opt = Adam([p for n, p in schedule.named_parameters() if n != "endpoints"], lr=self.lr)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        gdev = generator.device if generator is not None else None
        u = torch.rand(1, generator=generator, dtype=F64, device=gdev).cpu()
        t = torch.remainder(u + torch.arange(n, dtype=F64) / n, 1.0).clamp(1e-9, 1 - 1e-9)
        with torch.no_grad():
            lam, dlam = self.net.logsnr_and_derivative(t)
            lam, dlam = lam.detach().to(F64), dlam.detach().to(F64)
            logp = self.target.log_prob(lam).to(F64)
            iw = torch.where(torch.isneginf(logp), 0.0, (logp + dlam.abs().log()).exp())
        return lam, iw

    def _m2_at(self, lam: Tensor) -> Tensor:
        if not self.seen.any():
            return torch.ones_like(lam)
        m2 = torch.where(self.seen, self.m2, self.m2[self.seen].max())
        c = 0.5 * (self.edges[1:] + self.edges[:-1])
        return torch.tensor(np.interp(lam.detach().numpy(), c.numpy(), m2.numpy()), dtype=F64)

    def variance_objective(self) -> Tensor:
        """log V (differentiable in the schedule's parameters), V as in the class docstring."""
        t = (torch.arange(self.grid, dtype=F64) + 0.5) / self.grid
        lam, dlam = self.net.logsnr_and_derivative(t)
        lam_c = lam.detach()

        def log_integrand(x: Tensor) -> Tensor:  # log(W(λ)²·M₂(λ)), not differentiable itself
            return 2.0 * log_effective_weight(self.target, self.weighting, x) + torch.log(self._m2_at(x))

        # λ(t) enters W and M₂ too: first order, with the slope of log(W²M₂) by a central difference
        h = 1e-4
        base = log_integrand(lam_c)
        slope = ((log_integrand(lam_c + h) - log_integrand(lam_c - h)) / (2 * h)).nan_to_num(0.0, 0.0, 0.0)
        finite = torch.isfinite(base)
        terms = base.nan_to_num(0.0, 0.0, 0.0) + slope * (lam - lam_c) + 2.0 * torch.log(dlam.abs())
        terms = torch.where(finite, terms, torch.full_like(terms, -math.inf))
        return torch.logsumexp(terms, 0) - math.log(self.grid)

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        lam, val = lam_loss(logsnr, loss)
        binned = bin_means(lam, val * val, self.edges)
        if binned is None:
            return
        cnt, mean = binned
        hit = cnt > 0
        new = torch.where(self.seen, self.decay * self.m2 + (1 - self.decay) * mean, mean)
        self.m2 = torch.where(hit, new, self.m2)
        self.seen = self.seen | hit
        with torch.enable_grad():
            self.variance_objective().backward()
        self._opt.step()
        self.updates += 1

    def density(self) -> Density:
        """The current training density over λ: uniform t under the frozen schedule."""
        return _density("uniform_t", schedule=self.net.schedule())

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"net.{k}": v.detach().clone() for k, v in self.net.state_dict().items()}
        out.update(self._opt.state_dict("adam."))
        out.update({"m2": self.m2.clone(), "seen": self.seen.to(torch.uint8), "updates": self.updates})
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        keys = [f"net.{k}" for k in self.net.state_dict()]
        require_keys(state, [*keys, "m2", "seen"], "LearnedScheduleSampler")
        with torch.no_grad():
            self.net.load_state_dict({k[4:]: torch.as_tensor(state[k]) for k in keys})
        self._opt.load_state_dict(state, "adam.")
        m2 = torch.as_tensor(state["m2"], dtype=F64)
        if m2.shape != (self.bins,):
            raise ValueError(f"LearnedScheduleSampler state has {m2.numel()} bins; this one has {self.bins}")
        self.m2 = m2.clone()
        self.seen = torch.as_tensor(state["seen"]).to(torch.bool).clone()
        self.updates = int(state.get("updates", 0))

    def profile_overlay(self) -> dict[str, Any]:
        c = 0.5 * (self.edges[1:] + self.edges[:-1])
        q = self.density()
        return {
            "kind": self.kind,
            "label": "learned-schedule density q(λ)",
            "logsnr": c.tolist(),
            "value": q.prob(c).tolist(),
            "schedule": self.net.schedule().to_dict(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "density": self.target.to_dict(),
            "weighting": self.weighting.to_dict(),
            "bins": self.bins,
            "decay": self.decay,
            "lr": self.lr,
            "grid": self.grid,
            "logsnr_min": self.net.logsnr_min,
            "logsnr_max": self.net.logsnr_max,
            "hidden": self.net.hidden,
        }
