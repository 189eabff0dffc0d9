"""The per-instance schedule family used for training and sampling (the paper's idea; the
parameterisation ours).

At inference no spectrum is available, only schedule parameters, so the per-instance schedules used
for training and sampling are a two-parameter family (:class:`InstanceSchedules`):
λ_i(t) = λ_min,i + (λ_max,i − λ_min,i)·s(t), with one normalised shape s (by default that of the
training set's global tight schedule, :func:`noiselevels.spectral.schedules.global_tight_schedule`).
Training draws t ~ U(0, 1) per example, uses λ_i(t) from the example's own bounds and conditions the
network on (λ, λ_min,i, λ_max,i) through its ``extra`` input; sampling uses the instance's own VE σ grid
(:meth:`InstanceSchedules.sigmas`, σ = e^(−λ/2)).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from noiselevels._numerics import interp
from noiselevels.components import Schedule
from noiselevels.options import check_keys
from noiselevels.sampling.spacings import spacing as make_spacing
from noiselevels.spectral.bounds import DC_MODES, _check_pair, _check_taus, _floor_logsnr, bounds
from noiselevels.spectral.schedules import TightSchedule, global_tight_schedule

__all__ = ["InstanceSchedules"]

_F64 = torch.float64


@dataclasses.dataclass(frozen=True)
class InstanceSchedules:
    """The per-instance schedule family used for training and sampling (parameterisation ours).

    λ_i(t) = λ_min,i + (λ_max,i − λ_min,i)·s(t), with the normalised shape s(t) = (λ_g(t) − λ_g(1)) /
    (λ_g(0) − λ_g(1)) of a base schedule λ_g (``shape_t``/``shape_s`` knots: s decreasing from 1 at
    t = 0 to 0 at t = 1). Build it with :meth:`from_data` (shape of the data set's global tight
    schedule) or :meth:`linear` (λ linear in t). The bound options (``tau_lo``, ``tau_hi``, ``dc``,
    ``quantisation_floor``) say how :meth:`bounds` measures an example.
    """

    kind: ClassVar[str] = "instance_schedules"
    shape_t: tuple[float, ...] = (0.0, 1.0)
    shape_s: tuple[float, ...] = (1.0, 0.0)
    tau_lo: float = 0.1
    tau_hi: float = 10.0
    dc: str = "include"
    quantisation_floor: bool | float = True

    def __post_init__(self):
        t = tuple(float(v) for v in self.shape_t)
        s = tuple(float(v) for v in self.shape_s)
        if (
            len(t) < 2
            or len(t) != len(s)
            or t[0] != 0.0
            or t[-1] != 1.0
            or any(b <= a for a, b in itertools.pairwise(t))
        ):
            raise ValueError("shape_t must increase strictly from 0 to 1 and match shape_s in length")
        if s[0] != 1.0 or s[-1] != 0.0 or any(b >= a for a, b in itertools.pairwise(s)):
            raise ValueError("shape_s must decrease strictly from 1 to 0")
        object.__setattr__(self, "shape_t", t)
        object.__setattr__(self, "shape_s", s)
        _check_taus(self.tau_lo, self.tau_hi)
        if self.dc not in DC_MODES:
            raise ValueError(f"dc must be one of {', '.join(DC_MODES)}; got {self.dc!r}")
        _floor_logsnr(self.quantisation_floor)

    # -- construction
    @classmethod
    def from_schedule(cls, schedule: Schedule, **kw: Any) -> InstanceSchedules:
        """The normalised shape of a finite-range schedule (e.g. a :class:`TightSchedule`)."""
        if isinstance(schedule, TightSchedule):
            t = torch.tensor(schedule.t_knots, dtype=_F64)
        else:
            t = torch.linspace(0, 1, 257, dtype=_F64)
        lam = schedule.logsnr(t)
        if not torch.isfinite(lam).all():
            raise ValueError("the base schedule must have a finite range (λ(0), λ(1) finite)")
        s = (lam - lam[-1]) / (lam[0] - lam[-1])
        return cls(shape_t=tuple(t.tolist()), shape_s=tuple(s.tolist()), **kw)

    @classmethod
    def linear(cls, **kw: Any) -> InstanceSchedules:
        """λ_i(t) linear in t from λ_max,i to λ_min,i."""
        return cls(**kw)

    @classmethod
    def from_data(
        cls,
        images: Tensor,
        *,
        kind: str = "mixed",
        mix: float = 0.5,
        tau_lo: float = 0.1,
        tau_hi: float = 10.0,
        dc: str = "include",
        quantisation_floor: bool | float = True,
        knots: int = 65,
    ) -> InstanceSchedules:
        """The shape of the data set's :func:`global_tight_schedule`."""
        g = global_tight_schedule(
            images,
            kind=kind,
            mix=mix,
            tau_lo=tau_lo,
            tau_hi=tau_hi,
            dc=dc,
            quantisation_floor=quantisation_floor,
            knots=knots,
        )
        return cls.from_schedule(
            g, tau_lo=tau_lo, tau_hi=tau_hi, dc=dc, quantisation_floor=quantisation_floor
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InstanceSchedules:
        check_keys("InstanceSchedules", d, [f.name for f in dataclasses.fields(cls)])
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    # -- evaluation
    @functools.cached_property
    def _tables(self) -> tuple[Tensor, Tensor]:
        return torch.tensor(self.shape_t, dtype=_F64), torch.tensor(self.shape_s, dtype=_F64)

    def bounds(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """:func:`bounds` of the examples with this family's options."""
        return bounds(
            images,
            tau_lo=self.tau_lo,
            tau_hi=self.tau_hi,
            dc=self.dc,
            quantisation_floor=self.quantisation_floor,
        )

    def logsnr(self, t: Tensor, *, logsnr_min: Tensor, logsnr_max: Tensor) -> Tensor:
        """λ_i(t) for t, logsnr_min, logsnr_max broadcastable (e.g. all (B,)); float64."""
        lo, hi = _check_pair(logsnr_min, logsnr_max)
        t = torch.as_tensor(t, dtype=_F64)
        if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
            raise ValueError("t must be in [0, 1] (0 = clean, 1 = noise)")
        tk, sk = self._tables
        return lo + (hi - lo) * interp(t, tk, sk)

    def t_of(self, logsnr: Tensor, *, logsnr_min: Tensor, logsnr_max: Tensor) -> Tensor:
        """The inverse of :meth:`logsnr` (clamped to [0, 1])."""
        lo, hi = _check_pair(logsnr_min, logsnr_max)
        s = (torch.as_tensor(logsnr, dtype=_F64) - lo) / (hi - lo)
        tk, sk = self._tables
        return interp(-s, -sk, tk)

    def draw(self, x0: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Training draw for a batch x0 (B, C, H, W): t ~ U(0, 1) per example, λ_i = λ_i(t) under the
        example's own bounds. Returns ``(logsnr (B,) float64, extra (B, 2) = (λ_min, λ_max) in x0's dtype)``
        on x0's device; the uniform draw uses ``generator`` (on its device)."""
        lo, hi = self.bounds(x0)
        gdev = generator.device if generator is not None else None
        t = torch.rand(x0.shape[0], generator=generator, dtype=_F64, device=gdev).cpu()
        lam = self.logsnr(t, logsnr_min=lo, logsnr_max=hi)
        extra = torch.stack([lo, hi], dim=1).to(device=x0.device, dtype=x0.dtype)
        return lam.to(x0.device), extra

    def sigmas(
        self,
        steps: int,
        *,
        logsnr_min: Tensor,
        logsnr_max: Tensor,
        spacing: str = "schedule",
        spacing_params: Mapping[str, Any] | None = None,
    ) -> Tensor:
        """Per-instance VE σ grids (B, steps + 1), decreasing, trailing 0.

        ``spacing="schedule"``: the instance's own schedule at evenly spaced t (t = 1 … 0); any other
        name is a registered spacing (``noiselevels.sampling.spacings``) over [σ(λ_max,i), σ(λ_min,i)].
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
        lo, hi = _check_pair(logsnr_min, logsnr_max)
        lo, hi = lo.reshape(-1), hi.reshape(-1)
        if spacing == "schedule":
            if spacing_params:
                raise ValueError("spacing 'schedule' takes no parameters")
            t = torch.linspace(1.0, 0.0, steps, dtype=_F64) if steps > 1 else torch.ones(1, dtype=_F64)
            lam = self.logsnr(
                t[None, :].expand(lo.numel(), -1), logsnr_min=lo[:, None], logsnr_max=hi[:, None]
            )
            sig = torch.exp(-0.5 * lam)
        else:
            sp = make_spacing(spacing, **dict(spacing_params or {}))
            rows = [
                torch.as_tensor(
                    sp.sigmas(
                        steps, sigma_min=math.exp(-0.5 * float(h)), sigma_max=math.exp(-0.5 * float(l))
                    ),
                    dtype=_F64,
                )[:steps]
                for l, h in zip(lo.tolist(), hi.tolist())
            ]
            sig = torch.stack(rows)
        return torch.cat([sig, torch.zeros(sig.shape[0], 1, dtype=_F64)], dim=1)
