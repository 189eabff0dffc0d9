"""Shared numerics (noiselevels._numerics): the incomplete beta function against closed forms, its
inverse, the monotone solver and piecewise-linear interpolation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels._numerics import _betainc, beta_ppf, betainc, betainc_pair, interp, solve_increasing

F64 = torch.float64
X = torch.cat([torch.tensor([1e-300, 1e-12, 1e-3]), torch.linspace(0.01, 0.99, 99), torch.tensor([0.999])])
X = X.to(F64)


def test_betainc_uniform_is_identity():
    assert_close(betainc(1.0, 1.0, X), X, rtol=1e-14, atol=0)


@pytest.mark.parametrize("a", [0.3, 1.0, 2.5, 7.0])
def test_betainc_with_b_one_is_a_power(a):
    assert_close(betainc(a, 1.0, X), X**a, rtol=1e-13, atol=1e-300)
    assert_close(betainc(1.0, a, X), -torch.expm1(a * torch.log1p(-X)), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 5.0), (0.3, 4.0), (9.0, 1.5)])
def test_betainc_symmetry_and_the_pair(a, b):
    x = X[3:]  # where 1 − x is exact enough to compare (1 − 1e-12 is not)
    assert_close(betainc(a, b, x), 1.0 - betainc(b, a, 1.0 - x), rtol=1e-12, atol=1e-14)
    lower, upper = betainc_pair(a, b, X, 1.0 - X, torch.log(X), torch.log1p(-X))
    assert_close(lower, betainc(a, b, X), rtol=0, atol=0)
    assert_close(lower + upper, torch.ones_like(X), rtol=0, atol=2e-16)


def test_betainc_closed_form_a2_b2():
    # I_x(2, 2) = 3x² − 2x³; arcsine law I_x(½, ½) = (2/π)·asin(√x)
    assert_close(betainc(2.0, 2.0, X), 3 * X**2 - 2 * X**3, rtol=1e-13, atol=1e-300)
    assert_close(betainc(0.5, 0.5, X), (2 / math.pi) * torch.asin(X.sqrt()), rtol=1e-13, atol=0)


def test_betainc_ends_and_scalar_path_agree():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=F64)
    assert_close(betainc(2.0, 3.0, x), torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=F64))
    for a, b in [(0.5, 0.5), (2.0, 5.0), (9.0, 1.5)]:
        tensor = betainc(a, b, X)
        scalar = torch.tensor([_betainc(a, b, float(x)) for x in X], dtype=F64)
        assert_close(tensor, scalar, rtol=1e-14, atol=1e-300)
    with pytest.raises(ValueError, match="a must be > 0"):
        betainc(0.0, 1.0, X)


def test_betainc_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for a, b in [(0.3, 0.7), (2.0, 5.0), (12.0, 3.5), (1 / 3, 1.0)]:
        ref = torch.tensor(special.betainc(a, b, X.numpy()), dtype=F64)
        assert_close(betainc(a, b, X), ref, rtol=1e-12, atol=1e-300)


@settings(max_examples=40, deadline=None)
@given(q=st.floats(1e-6, 1 - 1e-6), a=st.floats(0.2, 8.0), b=st.floats(0.2, 8.0))
def test_beta_ppf_inverts_betainc(q, a, b):
    x = beta_ppf(q, a, b)
    if 0.0 < x < 1.0:  # otherwise the quantile is within half an ulp of an end and rounds to it
        assert _betainc(a, b, x) == pytest.approx(q, rel=1e-10, abs=1e-14)


def test_beta_ppf_closed_forms():
    for q in (0.01, 0.3, 0.5, 0.9):
        assert beta_ppf(q, 1.0, 1.0) == pytest.approx(q, rel=1e-14)
        assert beta_ppf(q, 3.0, 1.0) == pytest.approx(q ** (1 / 3), rel=1e-14)
    assert beta_ppf(0.5, 0.6, 0.6) == 0.5
    assert (beta_ppf(0.0, 2.0, 2.0), beta_ppf(1.0, 2.0, 2.0)) == (0.0, 1.0)


def test_solve_increasing_newton_bisection_and_clamping():
    target = torch.tensor([-30.0, 0.0, 2.0, 2000.0], dtype=F64)

    def fn(x):
        return x**3 + x

    newton = solve_increasing(fn, target, -10.0, 10.0, dfn=lambda x: 3 * x**2 + 1)
    bisect = solve_increasing(fn, target, -10.0, 10.0, tol=0.0, max_iter=200)
    assert_close(fn(newton[:3]), target[:3], rtol=1e-12, atol=1e-12)
    assert_close(bisect[:3], newton[:3], rtol=1e-12, atol=1e-12)
    assert float(newton[3]) == pytest.approx(10.0)  # outside [fn(lo), fn(hi)]: the nearer end


def test_interp_matches_numpy_and_clamps():
    np = pytest.importorskip("numpy")
    xp = torch.tensor([-2.0, 0.0, 0.5, 3.0], dtype=F64)
    fp = torch.tensor([1.0, -1.0, 4.0, 4.5], dtype=F64)
    x = torch.linspace(-5.0, 5.0, 101, dtype=F64)
    ref = torch.tensor(np.interp(x.numpy(), xp.numpy(), fp.numpy()), dtype=F64)
    assert_close(interp(x, xp, fp), ref, rtol=1e-15, atol=1e-15)
    assert_close(interp(xp, xp, fp), fp, rtol=0, atol=1e-15)


def test_interp_is_differentiable_in_x_and_knots():
    xp = torch.tensor([0.0, 1.0, 2.0], dtype=F64, requires_grad=True)
    fp = torch.tensor([0.0, 2.0, 3.0], dtype=F64, requires_grad=True)
    x = torch.tensor([0.5, 1.5], dtype=F64, requires_grad=True)
    interp(x, xp, fp).sum().backward()
    assert_close(x.grad, torch.tensor([2.0, 1.0], dtype=F64))
    assert_close(fp.grad, torch.tensor([0.5, 1.0, 0.5], dtype=F64))
