"""Numerical routines the maths modules share, written once: the regularised incomplete beta function and
its inverse, monotone root finding, piecewise-linear interpolation.

Everything here is float64 and imports only torch and the standard library (no scipy in the core).
Tensor arguments may have any shape; the routines work elementwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from noiselevels.components import check_positive, check_range
from noiselevels.levels import to_tensor

__all__ = ["beta_ppf", "betainc", "betainc_pair", "interp", "solve_increasing"]

_TINY = 1e-300  # the modified Lentz method's stand-in for a zero denominator


# --- the regularised incomplete beta function and its inverse (no scipy in the core) -----------
def _nonzero(v):
    """``v`` with entries of magnitude ≤ 1e-300 replaced by 1e-300 (Python float or tensor)."""
    if isinstance(v, Tensor):
        return torch.where(v.abs() > _TINY, v, _TINY)
    return v if abs(v) > _TINY else _TINY


def _converged(delta, tol: float) -> bool:
    if isinstance(delta, Tensor):
        return bool(((delta - 1.0).abs() < tol).all())
    return abs(delta - 1.0) < tol


def _betacf(a: float, b: float, x, tol: float = 1e-16):
    """The continued fraction h of the incomplete beta function (modified Lentz; Numerical Recipes
    §6.4), so that I_x(a, b) = x^a (1 − x)^b / (a·B(a, b)) · h. Converges fast for
    x < (a + 1)/(a + b + 2). ``x`` is a Python float or a float64 tensor (evaluated elementwise, until
    every element has converged to ``tol``)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 / _nonzero(1.0 - qab * x / qap)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 / _nonzero(1.0 + aa * d)
        c = _nonzero(1.0 + aa / c)
        h = h * (d * c)
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 / _nonzero(1.0 + aa * d)
        c = _nonzero(1.0 + aa / c)
        delta = d * c
        h = h * delta
        if _converged(delta, tol):
            break
    return h


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), the cdf of Beta(a, b) at a Python float x ∈ [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def betainc_pair(
    a: float, b: float, x: Tensor, y: Tensor, log_x: Tensor, log_y: Tensor
) -> tuple[Tensor, Tensor]:
    """(I_x(a, b), 1 − I_x(a, b)) for float64 tensors x ∈ (0, 1), both without cancellation.

    ``y`` = 1 − x, ``log_x`` = log x and ``log_y`` = log(1 − x) are passed in, computed by the caller
    as accurately as it can (e.g. from λ for x = sigmoid(−λ/2)). The continued fraction is evaluated
    for I_x(a, b) where x < (a + 1)/(a + b + 2) and for I_{1−x}(b, a) = 1 − I_x(a, b) elsewhere.
    """
    left = x < (a + 1.0) / (a + b + 2.0)
    half = torch.full_like(x, 0.5)
    log_half = torch.full_like(x, -math.log(2.0))
    lx, ly = torch.where(left, log_x, log_half), torch.where(left, log_y, log_half)
    cf = _betacf(a, b, torch.where(left, x, half), 1e-15)
    lower = torch.exp(a * lx + b * ly - _log_beta(a, b)) * cf / a
    rx, ry = torch.where(left, log_half, log_x), torch.where(left, log_half, log_y)
    cf = _betacf(b, a, torch.where(left, half, y), 1e-15)
    upper = torch.exp(b * ry + a * rx - _log_beta(b, a)) * cf / b
    return torch.where(left, lower, 1.0 - upper), torch.where(left, 1.0 - lower, upper)


def betainc(a: float, b: float, x: Tensor) -> Tensor:
    """Regularised incomplete beta I_x(a, b), the cdf of Beta(a, b), elementwise for x ∈ [0, 1]
    (float64; 0 at x ≤ 0, 1 at x ≥ 1)."""
    a = check_positive("a", a)
    b = check_positive("b", b)
    x = to_tensor(x).to(torch.float64)
    inner = (x > 0) & (x < 1)
    xi = torch.where(inner, x, 0.5)
    lower, _ = betainc_pair(a, b, xi, 1.0 - xi, torch.log(xi), torch.log1p(-xi))
    return torch.where(inner, lower, (x >= 1).to(torch.float64))


def _ppf_lower(q: float, a: float, b: float) -> float:
    """The Beta(a, b) quantile at q for q ≤ I_½(a, b), i.e. x ∈ [0, ½]: safeguarded Newton on
    I_x(a, b) − q from the tail expansion I_x ≈ x^a/(a·B(a, b)), bracketed by bisection (geometric
    while the bracket spans orders of magnitude near 0), to relative float64 precision in x."""
    log_beta = _log_beta(a, b)
    log_x = (math.log(q) + math.log(a) + log_beta) / a
    if log_x < -745.0:
        return 0.0  # the quantile underflows float64
    lo, hi, x = 0.0, 0.5, min(math.exp(log_x), 0.5)
    if not lo < x < hi:
        x = 0.5 * (lo + hi)
    for _ in range(300):
        f = _betainc(a, b, x) - q
        if f == 0.0:
            return x
        if f > 0:
            hi = x
        else:
            lo = x
        log_pdf = (a - 1.0) * math.log(x) + (b - 1.0) * math.log1p(-x) - log_beta
        step = f / math.exp(log_pdf) if log_pdf < 700 else 0.0
        x_new = x - step
        if not (lo < x_new < hi) or step == 0.0:
            x_new = math.sqrt(lo * hi) if lo > 0 and hi < 0.5 * lo * 1e3 and hi / lo > 4 else 0.5 * (lo + hi)
            if lo == 0.0:
                x_new = 0.5 * hi
            if not lo < x_new < hi:  # the bracket is down to adjacent floats
                return x
        if abs(x_new - x) <= 1e-16 * max(x, 1e-300) or hi - lo <= 1e-17 * max(x, 1e-300):
            return x_new
        x = x_new
    return x


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile function (inverse cdf) of the Beta(a, b) distribution at q ∈ [0, 1], float64.

    Safeguarded Newton iteration on the regularised incomplete beta function I_x(a, b), bracketed by
    bisection; agrees with ``scipy.stats.beta.ppf`` to ~1e-14 (scipy is not a core dependency). A
    quantile above ½ is found as 1 − y with y the Beta(b, a) quantile at 1 − q (I_x(a, b) =
    1 − I_{1−x}(b, a)), so that 1 − x keeps its relative precision however close q is to 1.
    """
    q = check_range("q", q, 0.0, 1.0)
    a = check_positive("a", a)
    b = check_positive("b", b)
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    if a == b and q == 0.5:
        return 0.5  # the median of a symmetric Beta, exactly (index rounding depends on it)
    if q <= _betainc(a, b, 0.5):
        return _ppf_lower(q, a, b)
    return 1.0 - _ppf_lower(1.0 - q, b, a)


# --- monotone root finding ------------------------------------------------------------------------
def solve_increasing(
    fn: Callable[[Tensor], Tensor],
    target: Tensor,
    lo: Tensor | float,
    hi: Tensor | float,
    *,
    dfn: Callable[[Tensor], Tensor] | None = None,
    x0: Tensor | None = None,
    tol: float = 1e-12,
    max_iter: int = 400,
) -> Tensor:
    """Solve fn(x) = target elementwise for a nondecreasing ``fn`` on the bracket [lo, hi].

    Newton's method with derivative ``dfn`` where it stays inside the current bracket, bisection
    otherwise (or always, without ``dfn``); the bracket shrinks at every step, so the iteration
    cannot diverge. ``x0`` is the starting point (default: the bracket's midpoint). Stops when every
    step is below ``tol``·(1 + |x|), or after ``max_iter`` steps (``tol=0`` with bisection: exactly
    ``max_iter`` halvings). Targets outside [fn(lo), fn(hi)] give the nearer end of the bracket.
    All tensors float64, any shape.
    """
    target = to_tensor(target).to(torch.float64)
    lo = torch.as_tensor(lo, dtype=torch.float64).expand_as(target).clone()
    hi = torch.as_tensor(hi, dtype=torch.float64).expand_as(target).clone()
    x = 0.5 * (lo + hi) if x0 is None else torch.minimum(torch.maximum(x0, lo), hi)
    for _ in range(max_iter):
        f = fn(x) - target
        lo = torch.where(f < 0, x, lo)
        hi = torch.where(f > 0, x, hi)
        mid = 0.5 * (lo + hi)
        if dfn is None:
            xn = mid
        else:
            xn = x - f / dfn(x)
            xn = torch.where(torch.isfinite(xn) & (xn >= lo) & (xn <= hi), xn, mid)
        xn = torch.where(f == 0, x, xn)
        step = (xn - x).abs()
        x = xn
        scale = tol * (1.0 + x.abs())
        if bool(((step <= scale) | (hi - lo <= scale)).all()):
            break
    return x


# --- interpolation ----------------------------------------------------------------------------------
def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of the knots (xp, fp) at x, clamped to the end values.

    ``xp`` (K,) strictly increasing, ``fp`` (K,), K ≥ 2; ``x`` any shape. Differentiable in x, xp and fp
    (the segment is chosen on detached values), like ``numpy.interp``.
    """
    xc = x.clamp(xp[0], xp[-1])
    i = torch.searchsorted(xp, xc.detach().contiguous()).clamp(1, xp.numel() - 1)
    x0, x1, f0, f1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    w = (xc - x0) / (x1 - x0)
    return f0 + w * (f1 - f0)
