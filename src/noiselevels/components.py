"""Registries and the base classes of the four kinds of component.

Every component (a schedule, a training density, a loss weighting, a sampling spacing) is a frozen
dataclass registered under a name in the registry of its kind. ``registry.create(name, **kw)`` builds
one, rejecting unknown names (the message lists the valid ones) and unknown parameters (the message
lists the valid ones: no ``**kwargs`` swallow typos). ``component.to_dict()`` and
``noiselevels.catalog.from_dict(d)`` round-trip any component, nested ones included, so a run's resolved
configuration can be written to disk and read back.

Conventions: λ = ``logsnr`` = log(α²/σ²) (large = clean); schedule time t ∈ [0, 1] with t = 0 clean.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from noiselevels.levels import to_tensor

__all__ = [
    "Component",
    "Density",
    "Registry",
    "Schedule",
    "Weighting",
    "check_finite",
    "check_positive",
    "check_range",
]


# ----------------------------------------------------------------------------------------------
# argument checks: user errors are ValueErrors naming the value and the valid range
# ----------------------------------------------------------------------------------------------
def check_finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = check_finite(name, value)
    if value < 0 or (value == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    return value


def check_range(name: str, value: float, lo: float, hi: float, *, closed: bool = True) -> float:
    value = check_finite(name, value)
    ok = lo <= value <= hi if closed else lo < value < hi
    if not ok:
        brackets = ("[", "]") if closed else ("(", ")")
        raise ValueError(f"{name} must be in {brackets[0]}{lo}, {hi}{brackets[1]}; got {value!r}")
    return value


# ----------------------------------------------------------------------------------------------
# registries
# ----------------------------------------------------------------------------------------------
class Registry:
    """Names → component classes (or factories) of one kind."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable:
        def deco(cls):
            if name in self._items:
                raise RuntimeError(f"{self.kind} {name!r} registered twice")
            self._items[name] = cls
            if isinstance(cls, type) and "name" not in cls.__dict__:
                cls.name = name
            return cls

        return deco

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def get(self, name: str) -> Callable[..., Any]:
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; valid names: {', '.join(self.names())}")
        return self._items[name]

    def create(self, name: str, **kw: Any) -> Any:
        factory = self.get(name)
        if dataclasses.is_dataclass(factory):
            valid = [f.name for f in dataclasses.fields(factory) if f.init]
            bad = [k for k in kw if k not in valid]
            if bad:
                raise ValueError(
                    f"unknown parameter(s) {', '.join(map(repr, bad))} for {self.kind} {name!r}; "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
        for k, v in kw.items():
            if _absurd(v):
                raise ValueError(f"{self.kind} {name!r}: {k} = {v!r} is beyond ±1e100 (±2^53 for an integer)")
        try:
            return factory(**kw)
        except (OverflowError, ZeroDivisionError) as e:  # a huge or tiny number deep inside a formula
            raise ValueError(f"{self.kind} {name!r}: {_given(kw)} out of range ({e})") from None
        except ValueError as e:  # e.g. float("name") of a table given for a list: say which parameter
            if not kw or any(k in str(e) for k in kw):
                raise
            raise ValueError(f"{self.kind} {name!r}: {_given(kw)}: {e}") from None
        except TypeError as e:  # e.g. a number where a sequence belongs: name what was given
            if any(k in str(e) for k in kw) or "argument" in str(e):
                raise
            raise TypeError(f"{self.kind} {name!r}: wrong type in {_given(kw)} ({e})") from None


def _absurd(v: Any) -> bool:
    """A number no noise-level parameter takes: |x| > 1e100, or an integer beyond float precision."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    if isinstance(v, int):
        return abs(v) > 2**53
    return math.isfinite(v) and abs(v) > 1e100


def _given(kw: dict[str, Any]) -> str:
    """``mu=1e+19, b=2`` for an error message (each parameter named with its value)."""
    return ", ".join(f"{k}={v!r}"[:80] for k, v in kw.items()) or "the defaults"


_KINDS: dict[str, Registry] = {}


def _registry_of(kind: str) -> Registry:
    if kind not in _KINDS:
        _KINDS[kind] = Registry(kind)
    return _KINDS[kind]


def _encode(v: Any) -> Any:
    if isinstance(v, Component):
        return v.to_dict()
    if isinstance(v, (tuple, list)):
        return [_encode(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return v  # json writes Infinity; tomllib reads inf
    return v


@dataclasses.dataclass(frozen=True)
class Component:
    """Base of all registered components: frozen, comparable, serialisable. The kinds below are abstract
    base classes declaring the methods every component of theirs implements."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = "component"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name}
        for f in dataclasses.fields(self):
            if f.init:
                out[f.name] = _encode(getattr(self, f.name))
        return out

    def describe(self) -> str:
        """One line: name(param=value, ...)."""
        params = ", ".join(
            f"{f.name}={getattr(self, f.name).describe() if isinstance(getattr(self, f.name), Component) else getattr(self, f.name)!r}"  # noqa: E501
            for f in dataclasses.fields(self)
            if f.init
        )
        return f"{self.name}({params})"


# ----------------------------------------------------------------------------------------------
# the three kinds the core composes (spacings live in noiselevels.sampling.spacings)
# ----------------------------------------------------------------------------------------------
def _check_t(t: Tensor) -> Tensor:
    t = to_tensor(t)
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        bad = t[torch.isnan(t) | (t < 0) | (t > 1)].flatten()[0].item()
        raise ValueError(f"t must be in [0, 1] (0 = clean, 1 = noise); got {bad!r}")
    return t


class Schedule(Component, abc.ABC):
    """A monotone map from time t ∈ [0, 1] (0 clean, 1 noise) to λ, decreasing in t.

    Subclasses implement ``_logsnr(t)`` and ``_t_of(logsnr)`` on float64 tensors; the public
    ``logsnr`` and ``t_of`` check their input and keep the caller's floating dtype.
    """

    kind: ClassVar[str] = "schedule"

    @abc.abstractmethod
    def _logsnr(self, t: Tensor) -> Tensor:
        """λ(t) on a float64 tensor t ∈ [0, 1]."""

    @abc.abstractmethod
    def _t_of(self, logsnr: Tensor) -> Tensor:
        """t(λ) on a float64 tensor λ (the inverse of ``_logsnr``)."""

    def logsnr(self, t: Tensor) -> Tensor:
        """λ(t), decreasing from ``logsnr_max`` at t = 0 to ``logsnr_min`` at t = 1."""
        t = _check_t(t)
        return self._logsnr(t.to(torch.float64)).to(t.dtype)

    def t_of(self, logsnr: Tensor) -> Tensor:
        """The inverse t(λ), clamped to [0, 1] outside the schedule's range."""
        lam = to_tensor(logsnr)
        if torch.isnan(lam).any():
            raise ValueError("logsnr contains NaN")
        return self._t_of(lam.to(torch.float64)).clamp(0.0, 1.0).to(lam.dtype)

    def dlogsnr_dt(self, t: Tensor) -> Tensor:
        """dλ/dt (≤ 0). Default: exact autograd derivative of ``_logsnr`` in float64."""
        t = _check_t(t).to(torch.float64).detach().requires_grad_(True)
        with torch.enable_grad():
            lam = self._logsnr(t)
            (g,) = torch.autograd.grad(lam.sum(), t)
        return g.detach()

    @property
    def logsnr_max(self) -> float:
        """λ at t = 0 (may be +inf)."""
        return float(self._logsnr(torch.zeros((), dtype=torch.float64)))

    @property
    def logsnr_min(self) -> float:
        """λ at t = 1 (may be −inf)."""
        return float(self._logsnr(torch.ones((), dtype=torch.float64)))


class Density(Component):
    """A probability density p(λ) over the noise level, with exact ``log_prob``, ``cdf``, ``icdf``.

    The cdf is taken in increasing λ (from noisy to clean). ``sample`` draws by inversion, so a
    stratified (one draw per 1/n stratum) batch is ``sample(n, stratified=True)``.

    ``log_prob``, ``cdf`` and ``icdf`` are not abstract: a density used only for what it has (a
    weight's reference p(λ), a spacing's quantiles) may implement just that. The library's densities
    (``noiselevels.training.densities.ExactDensity``) implement all three, and ``truncate``.
    """

    kind: ClassVar[str] = "density"

    def log_prob(self, logsnr: Tensor) -> Tensor:
        raise NotImplementedError

    def cdf(self, logsnr: Tensor) -> Tensor:
        raise NotImplementedError

    def icdf(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    @property
    def support(self) -> tuple[float, float]:
        """(λ_lo, λ_hi) outside of which the density is 0."""
        return (-math.inf, math.inf)

    def prob(self, logsnr: Tensor) -> Tensor:
        return self.log_prob(logsnr).exp()

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        stratified: bool = False,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """n draws of λ, shape (n,). ``stratified``: one uniform draw in each of n equal cdf strata,
        in a random order (lower variance of batch means, same marginal)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        # draw on the generator's own device (a CUDA generator works too), then invert on the CPU
        gen_device = generator.device if generator is not None else None
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=gen_device).cpu()
        if stratified:
            perm = torch.randperm(n, generator=generator, device=gen_device).cpu()
            u = (perm.to(torch.float64) + u) / n
        u = u.clamp(1e-12, 1 - 1e-12)
        return self.icdf(u).to(dtype=dtype, device=device)


class Weighting(Component, abc.ABC):
    """A loss weight w(λ) in ε-MSE units (Kingma & Gao): the per-sample loss is w(λ)·‖ε̂ − ε‖²."""

    kind: ClassVar[str] = "weighting"

    @abc.abstractmethod
    def __call__(self, logsnr: Tensor) -> Tensor:
        """w(λ), elementwise, the shape of ``logsnr``."""


SCHEDULES = _registry_of("schedule")
DENSITIES = _registry_of("density")
WEIGHTINGS = _registry_of("weighting")
SPACINGS = _registry_of("spacing")
