"""Exact problems: denoisers against Tweedie's formula, Monte Carlo and each other; reference solves
against the closed form; samples; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from noiselevels.sampling.toy import (
    Empirical,
    Gaussian,
    GaussianMixture,
    anisotropic_mixture,
    gaussian,
    mixture_2d,
    mnist,
    ode_solve,
    problem,
)

F64 = torch.float64


def _mixture_log_density(prob: GaussianMixture, x: torch.Tensor, sigma: float):
    """log p_σ(x) of a full-covariance mixture, written directly with the covariance matrices."""
    covs = torch.diag_embed(prob.c)
    if prob.u is not None:
        covs = prob.u @ covs @ prob.u.transpose(-1, -2)
    d = prob.shape[0]
    cov = covs + sigma**2 * torch.eye(d, dtype=F64)
    dist = torch.distributions.MultivariateNormal(prob.means, covariance_matrix=cov)
    return torch.logsumexp(dist.log_prob(x[:, None, :]) + prob.log_w, dim=1)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0])
@pytest.mark.parametrize("make", [mixture_2d, lambda: anisotropic_mixture(dim=6, components=3)])
def test_mixture_denoiser_is_tweedie(make, sigma):
    prob = make()
    x = prob.sample(16, torch.Generator().manual_seed(0))
    x = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
    x.requires_grad_(True)
    (score,) = torch.autograd.grad(_mixture_log_density(prob, x, sigma).sum(), x)
    assert_close(prob.denoiser(x.detach(), sigma), x.detach() + sigma**2 * score, rtol=1e-9, atol=1e-10)


def test_diagonal_mixture_equals_full_with_diagonal_matrices():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 4, generator=g, dtype=F64)
    var = torch.rand(3, 4, generator=g, dtype=F64) + 0.01
    a = GaussianMixture(means, var, torch.tensor([0.2, 0.3, 0.5]))
    b = GaussianMixture(means, torch.diag_embed(var), torch.tensor([0.2, 0.3, 0.5]))
    x = torch.randn(10, 4, generator=g, dtype=F64)
    sig = torch.rand(10, generator=g, dtype=F64) * 2
    assert_close(a.denoiser(x, sig), b.denoiser(x, sig), rtol=1e-10, atol=1e-12)


def test_empirical_equals_mixture_of_points_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    ex = torch.randn(7, 3, generator=g, dtype=F64)
    emp = Empirical(ex)
    mix = GaussianMixture(ex, torch.zeros(7, 3, dtype=F64))
    x = torch.randn(5, 3, generator=g, dtype=F64)
    for sigma in (0.05, 0.5, 5.0):
        assert_close(emp.denoiser(x, sigma), mix.denoiser(x, sigma), rtol=1e-10, atol=1e-12)
    # Monte Carlo posterior mean: E[x0 | x] by self-normalised importance weights over prior draws
    x0 = emp.sample(200_000, torch.Generator().manual_seed(1))
    for sigma in (0.5, 1.5):
        logw = -((x[:, None, :] - x0[None]) ** 2).sum(-1) / (2 * sigma**2)
        mc = torch.softmax(logw, 1) @ x0
        assert_close(emp.denoiser(x, sigma), mc, rtol=0, atol=0.03)


def test_gaussian_denoiser_matches_single_component_mixture_and_sigma_zero():
    prob = gaussian(5)
    mix = GaussianMixture(prob.mean[None], (prob.u @ torch.diag(prob.c) @ prob.u.T)[None])
    x = torch.randn(6, 5, dtype=F64)
    sig = torch.tensor([0.0, 0.01, 0.1, 1.0, 10.0, 80.0], dtype=F64)
    assert_close(prob.denoiser(x, sig), mix.denoiser(x, sig), rtol=1e-9, atol=1e-10)
    assert_close(prob.denoiser(x, sig)[0], x[0])  # D(x, 0) = x


@settings(max_examples=20, deadline=None)
@given(st.floats(0.01, 5.0), st.floats(6.0, 100.0), st.integers(0, 1000))
def test_gaussian_closed_form_ode_solution_matches_adaptive_solve(sigma_min, sigma_max, seed):
    prob = gaussian(4, seed=seed % 7)
    x_t = torch.randn(3, 4, generator=torch.Generator().manual_seed(seed), dtype=F64) * sigma_max
    exact = prob.reference_solve(x_t, sigma_max=sigma_max, sigma_min=sigma_min)
    num = ode_solve(prob.denoiser, x_t, sigma_max=sigma_max, sigma_min=sigma_min, rtol=1e-10, atol=1e-10)
    assert_close(num, exact, rtol=1e-7, atol=1e-7)


def test_closed_form_is_on_the_ode():
    """d x(σ)/dσ = (x − D(x, σ))/σ along the closed form (central difference)."""
    prob = gaussian(3)
    x_t = torch.randn(4, 3, dtype=F64) * 10
    s, h = 0.7, 1e-5
    xp = prob.reference_solve(x_t, sigma_max=10.0, sigma_min=s + h)
    xm = prob.reference_solve(x_t, sigma_max=10.0, sigma_min=s - h)
    x = prob.reference_solve(x_t, sigma_max=10.0, sigma_min=s)
    assert_close((xp - xm) / (2 * h), (x - prob.denoiser(x, s)) / s, rtol=1e-6, atol=1e-8)


def test_gaussian_samples_have_the_covariance():
    prob = gaussian(3)
    x = prob.sample(200_000, torch.Generator().manual_seed(0))
    cov = prob.u @ torch.diag(prob.c) @ prob.u.T
    assert_close(x.mean(0), prob.mean, rtol=0, atol=0.01)
    assert_close(torch.cov(x.T), cov, rtol=0, atol=0.01)


def test_mixture_samples_match_moments():
    prob = mixture_2d()
    x = prob.sample(200_000, torch.Generator().manual_seed(0))
    w = prob.log_w.exp()
    mean = (w[:, None] * prob.means).sum(0)
    assert_close(x.mean(0), mean, rtol=0, atol=0.01)


def test_mnist_problem():
    prob = mnist(500)
    assert prob.examples.shape == (500, 784) and prob.shape == (784,)
    assert prob.examples.min() >= -1 and prob.examples.max() <= 1
    assert problem("mnist").examples.shape == (500, 784)
    x = prob.sample(3, torch.Generator().manual_seed(0))
    assert_close(prob.denoiser(x + 1e-4, 0.01), x)  # tiny noise: the nearest example


def test_empirical_reference_solve_lands_on_an_example():
    prob = Empirical(torch.tensor([[1.0, 0.0], [-1.0, 0.5], [0.0, -2.0]], dtype=F64))
    x_t = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64) * 40
    x = prob.reference_solve(x_t, sigma_max=40.0, sigma_min=0.01)
    d = torch.cdist(x, prob.examples).min(1).values
    assert (d < 0.02).all()


def test_problem_registry_and_errors():
    assert problem("mixture_2d").shape == (2,)
    assert problem("mixture_64d").shape == (64,)
    with pytest.raises(ValueError, match="unknown problem 'nope'"):
        problem("nope")
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        gaussian(2).reference_solve(torch.zeros(1, 2), sigma_max=1.0, sigma_min=2.0)
    with pytest.raises(ValueError, match="sigma_min"):
        ode_solve(lambda x, s: x, torch.zeros(1, 2), sigma_max=1.0, sigma_min=0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        gaussian(2).denoiser(torch.zeros(3, 5), 1.0)
    with pytest.raises(ValueError, match="sigma must be"):
        gaussian(2).denoiser(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="cov must have shape"):
        Gaussian(torch.zeros(2), torch.eye(3))
    with pytest.raises(ValueError, match=r"n must be in \[1, 5000\]"):
        mnist(0)
    assert math.isfinite(float(mixture_2d().denoiser(torch.full((1, 2), 1e3, dtype=F64), 0.001).sum()))
