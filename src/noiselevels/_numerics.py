"""Numerical routines the maths modules share, written once: the regularised incomplete beta function and
its inverse, monotone root finding, interpolation.

Everything here is float64 and imports only torch, numpy and the standard library (no scipy in the core).
"""

from __future__ import annotations

import math

from noiselevels.components import check_positive, check_range


# --- the regularised incomplete beta function and its inverse (no scipy in the core) -----------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz), x < (a + 1)/(a + b + 2)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b), the cdf of Beta(a, b) at x ∈ [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """Quantile function (inverse cdf) of the Beta(a, b) distribution at q ∈ [0, 1], float64.

    Safeguarded Newton iteration on the regularised incomplete beta function I_x(a, b), bracketed by
    bisection; agrees with ``scipy.stats.beta.ppf`` to ~1e-14 (scipy is not a core dependency).
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
    log_beta = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    # start from the tail expansion of the side q lies on: I_x ≈ x^a/(a·B) near 0, 1 − I_x ≈ (1−x)^b/(b·B)
    if q <= _betainc(a, b, 0.5):
        lo, hi = 0.0, 0.5
        log_x = (math.log(q) + math.log(a) + log_beta) / a
        if log_x < -745.0:
            return 0.0  # the quantile underflows float64
        x = min(math.exp(log_x), 0.5)
    else:
        lo, hi = 0.5, 1.0
        log_1mx = (math.log1p(-q) + math.log(b) + log_beta) / b
        if log_1mx < -38.0:
            return 1.0  # 1 − x is below half an ulp of 1
        x = max(1.0 - math.exp(log_1mx), 0.5)
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
            # bisect, geometrically while the bracket spans orders of magnitude near 0
            x_new = math.sqrt(lo * hi) if lo > 0 and hi < 0.5 * lo * 1e3 and hi / lo > 4 else 0.5 * (lo + hi)
            if lo == 0.0:
                x_new = 0.5 * hi
            if not lo < x_new < hi:  # the bracket is down to adjacent floats
                return x
        if abs(x_new - x) <= 1e-16 * max(x, 1e-300) or hi - lo <= 1e-17 * max(x, 1e-300):
            return x_new
        x = x_new
    return x
