"""Intervals over seeds for the claims: Student-t 95 % intervals of a mean, a paired difference and a
ratio (on the log scale), and the 1-D Wasserstein distance.

With n seeds the 95 % interval of a mean is x̄ ± t₀.₉₇₅,ₙ₋₁·s/√n (t₀.₉₇₅,₂ = 4.303 for 3 seeds: wide on
purpose — three seeds settle only large effects). A ratio a/b is summarised on the log scale,
exp(mean log(aᵢ/bᵢ) ± t·s/√n), so that 2× and ½× are symmetric and the interval stays positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["interval", "paired_difference", "ratio_interval", "t_quantile", "verdict", "wasserstein_1d"]


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student-t quantile t_{(1+level)/2, df} (scipy)."""
    from scipy.stats import t

    if df < 1:
        raise ValueError(f"an interval needs at least 2 seeds (df >= 1); got df={df}")
    return float(t.ppf(0.5 + level / 2, df))


def interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean, standard deviation and the t interval [lo, hi] of ``values`` (one per seed)."""
    xs = [float(v) for v in values]
    if len(xs) < 2 or not all(math.isfinite(v) for v in xs):
        raise ValueError(f"an interval needs at least 2 finite values; got {xs}")
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "lo": mean - half, "hi": mean + half, "n": n, "values": xs}


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """The interval of the per-seed difference a − b (a paired t interval)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths; got {len(a)} and {len(b)}")
    return interval([float(x) - float(y) for x, y in zip(a, b)], level)


def ratio_interval(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """The per-seed ratio a/b summarised on the log scale: geometric mean and exp of the log interval."""
    if len(a) != len(b) or any(float(x) <= 0 or float(y) <= 0 for x, y in zip(a, b)):
        raise ValueError(f"a ratio interval needs equal-length positive values; got {list(a)}, {list(b)}")
    logs = interval([math.log(float(x) / float(y)) for x, y in zip(a, b)], level)
    return {"mean": math.exp(logs["mean"]), "lo": math.exp(logs["lo"]), "hi": math.exp(logs["hi"]),
            "n": logs["n"], "values": [float(x) / float(y) for x, y in zip(a, b)]}  # fmt: skip


def verdict(ci: dict[str, float], *, better_if: str, threshold: float) -> str:
    """``reproduced`` when the whole interval is on the claimed side of ``threshold`` (``better_if``
    ``"below"`` or ``"above"``), ``not reproduced`` when the whole interval is on the other side, and
    ``depends`` (not settled at this scale) when it straddles the threshold."""
    if better_if not in ("below", "above"):
        raise ValueError(f"better_if must be 'below' or 'above'; got {better_if!r}")
    lo, hi = ci["lo"], ci["hi"]
    claimed = hi < threshold if better_if == "below" else lo > threshold
    against = lo > threshold if better_if == "below" else hi < threshold
    return "reproduced" if claimed else "not reproduced" if against else "depends"


def wasserstein_1d(a: Tensor, b: Tensor) -> float:
    """W₁ between the empirical distributions of two 1-D samples: ∫|F_a⁻¹(u) − F_b⁻¹(u)| du, exact
    for any sizes (the quantile functions are compared on the union of their breakpoints)."""
    a = torch.sort(torch.as_tensor(a, dtype=torch.float64).flatten()).values
    b = torch.sort(torch.as_tensor(b, dtype=torch.float64).flatten()).values
    if a.numel() == 0 or b.numel() == 0:
        raise ValueError("wasserstein_1d needs two non-empty samples")
    steps = [torch.arange(1, k + 1, dtype=torch.float64) / k for k in (a.numel(), b.numel())]
    u = torch.unique(torch.cat(steps))
    du = torch.diff(torch.cat([u.new_zeros(1), u]))
    mid = u - du / 2
    qa = a[torch.clamp((mid * a.numel()).long(), max=a.numel() - 1)]
    qb = b[torch.clamp((mid * b.numel()).long(), max=b.numel() - 1)]
    return float(((qa - qb).abs() * du).sum())
