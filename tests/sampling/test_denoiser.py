"""as_denoiser: an oracle model of every process × parameterisation gives back the exact denoiser;
σ = 0; classifier-free guidance; bad input."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization
from noiselevels.sampling.denoiser import as_denoiser
from noiselevels.sampling.solvers import solve
from noiselevels.sampling.toy import gaussian

F64 = torch.float64


def _oracle(prob, process, param):
    """A 'network' that predicts the exact target of ``param`` from its input, for data ``prob``."""

    def model(inp, logsnr, *, offset=0.0):
        alpha, sigma = alpha_sigma(logsnr=logsnr.to(F64), process=process)
        a, s = broadcast(alpha, inp), broadcast(sigma, inp)
        z = inp * torch.sqrt(s**2 + (a * param.sigma_data) ** 2) if param.name == "edm" else inp
        x0 = prob.denoiser(z / a, (s / a).flatten()) + offset
        eps = (z - a * x0) / s
        return param.target(x0=x0, eps=eps, alpha=a, sigma=s)

    return model


@pytest.mark.parametrize("process", ["vp", "ve", "flow"])
@pytest.mark.parametrize("name", ["eps", "x0", "v", "flow", "edm"])
def test_oracle_model_gives_the_exact_denoiser(process, name):
    prob = gaussian(4)
    param = parameterization(name)
    den = as_denoiser(_oracle(prob, process, param), process=process, parameterization=name)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), dtype=F64) * 3
    sig = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 40.0], dtype=F64)
    assert_close(den(x, sig), prob.denoiser(x, sig), rtol=1e-8, atol=1e-8)


def test_sigma_zero_returns_x_and_skips_nothing_else():
    prob = gaussian(3)
    den = as_denoiser(_oracle(prob, "vp", parameterization("v")), process="vp", parameterization="v")
    x = torch.randn(3, 3, dtype=F64)
    sig = torch.tensor([0.0, 0.7, 0.0], dtype=F64)
    out = den(x, sig)
    assert_close(out[0], x[0])
    assert_close(out[2], x[2])
    assert_close(out[1], prob.denoiser(x[1:2], 0.7)[0])
    assert_close(den(x, torch.zeros(3, dtype=F64)), x)


def test_classifier_free_guidance():
    prob = gaussian(3)
    model = _oracle(prob, "flow", parameterization("flow"))
    x = torch.randn(4, 3, dtype=F64)
    sig = torch.full((4,), 0.8, dtype=F64)
    den = as_denoiser(model, process="flow", parameterization="flow", guidance=3.0, uncond={}, offset=0.5)
    # D_c = D + 0.5, D_u = D, so D_u + 3 (D_c − D_u) = D + 1.5
    assert_close(den(x, sig), prob.denoiser(x, sig) + 1.5)
    plain = as_denoiser(model, process="flow", parameterization="flow", offset=0.5)
    assert_close(plain(x, sig), prob.denoiser(x, sig) + 0.5)


def test_float32_and_solver_integration():
    prob = gaussian(3)
    den = as_denoiser(_oracle(prob, "vp", parameterization("eps")), process="vp", parameterization="eps")
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(1), dtype=F64) * 20
    sig = torch.exp(torch.linspace(3.0, -3.0, 30, dtype=F64))
    assert_close(solve(den, x, sigmas=sig, solver="heun"), solve(prob.denoiser, x, sigmas=sig, solver="heun"))
    out32 = den(x.float(), sig[:5].float())
    assert out32.dtype == torch.float32


def test_bad_input():
    model = _oracle(gaussian(2), "vp", parameterization("eps"))
    with pytest.raises(ValueError, match="unknown process"):
        as_denoiser(model, process="edm", parameterization="eps")
    with pytest.raises(ValueError, match="unknown parameterization"):
        as_denoiser(model, process="vp", parameterization="score")
    with pytest.raises(ValueError, match="needs uncond"):
        as_denoiser(model, process="vp", parameterization="eps", guidance=2.0)
    den = as_denoiser(model, process="vp", parameterization="eps")
    with pytest.raises(ValueError, match="sigma must have shape"):
        den(torch.zeros(3, 2), torch.ones(2))
    with pytest.raises(ValueError, match="finite and >= 0"):
        den(torch.zeros(2, 2), torch.tensor([1.0, -1.0]))
