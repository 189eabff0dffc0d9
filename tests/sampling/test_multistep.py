"""The few-step solvers of ``noiselevels.sampling.multistep`` and ``.unipc``: parity with k-diffusion
(dpmpp_3m_sde, lms ≡ ipndm_v), diffusers (UniPC bh1/bh2, orders 1–3), numpy re-implementations from
the papers (DEIS, Heun++, iPNDM), convergence order on Gaussian data, NFE, grids per row."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from kdiffusion_ref import kdiffusion_sampling
from scipy import integrate
from torch.testing import assert_close

from noiselevels.catalog import from_dict
from noiselevels.sampling import multistep, unipc
from noiselevels.sampling.solvers import SOLVERS, solve, solver
from noiselevels.sampling.toy import Gaussian

NEW = [
    ("ipndm", {}),
    ("ipndm", {"max_order": 2}),
    ("ipndm_v", {}),
    ("deis", {}),
    ("heunpp2", {}),
    ("uni_pc", {}),
    ("uni_pc", {"order": 2, "lower_order_final": False}),
    ("uni_pc_bh2", {}),
    ("dpmpp_3m", {}),
    ("dpmpp_3m_sde", {"eta": 1.0}),
]


def _karras(n, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)])


def _den(x, sigma):
    # smooth and non-linear, so that parity is not an accident of linearity
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x / (1 + s**2) ** 0.5) * 0.8 + 0.1 * x / (1 + s)


def _x(shape=(4, 3, 5), seed=1, scale=80.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def test_every_new_solver_is_registered_and_round_trips():
    new = {n for n in SOLVERS.names() if SOLVERS.get(n).__module__ in (multistep.__name__, unipc.__name__)}
    assert new == {name for name, _ in NEW}
    for name, opts in NEW:
        s = solver(name, **opts)
        assert from_dict(s.to_dict()) == s


# --- parity ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpmpp_3m_parity_with_kdiffusion(eta):
    K = kdiffusion_sampling()
    x = _x()
    for sig in (_karras(9), _karras(6, 0.03, 14.6, 3.0)[:-1]):
        name = "dpmpp_3m_sde" if eta else "dpmpp_3m"
        ours = solve(_den, x, sigmas=sig, solver=name, generator=torch.Generator().manual_seed(5))
        torch.manual_seed(5)
        ref = K.sample_dpmpp_3m_sde(_den, x, sig, disable=True, eta=eta,
                                    noise_sampler=lambda s, t: torch.randn_like(x))
        assert_close(ours, ref, rtol=1e-6, atol=1e-6)


def test_ipndm_v_is_kdiffusion_lms_and_ipndm_on_uniform_steps():
    K = kdiffusion_sampling()
    x = _x()
    sig = _karras(8)[:-1]  # no final σ = 0 step: there lms integrates, ipndm_v jumps to D
    assert_close(solve(_den, x, sigmas=sig, solver="ipndm_v"), K.sample_lms(_den, x, sig, disable=True),
                 rtol=1e-9, atol=1e-9)
    uniform = torch.linspace(20.0, 0.5, 9, dtype=torch.float64)
    ours = solve(_den, x, sigmas=uniform, solver="ipndm_v")
    assert_close(ours, solve(_den, x, sigmas=uniform, solver="ipndm"), rtol=1e-9, atol=1e-9)
    # with the final jump x <- D
    last = solve(_den, x, sigmas=torch.cat([uniform, uniform.new_zeros(1)]), solver="ipndm")
    assert_close(last, _den(solve(_den, x, sigmas=uniform, solver="ipndm"), uniform[-1:].expand(4)))


def _np_ipndm(den, x, sig, max_order=4):
    """iPNDM from Zhang & Chen (2023), §4: Adams–Bashforth with uniform-step coefficients, in numpy."""
    ab = {1: [1], 2: [3 / 2, -1 / 2], 3: [23 / 12, -16 / 12, 5 / 12],
          4: [55 / 24, -59 / 24, 37 / 24, -9 / 24]}
    x, hist = x.numpy().copy(), []
    for i in range(len(sig) - 1):
        d0 = den(torch.from_numpy(x), torch.full((x.shape[0],), float(sig[i]), dtype=torch.float64)).numpy()
        hist = [(x - d0) / sig[i], *hist][:max_order]
        if sig[i + 1] == 0:
            x = d0
        else:
            x = x + (sig[i + 1] - sig[i]) * sum(c * d for c, d in zip(ab[len(hist)], hist))
    return torch.from_numpy(x)


def test_ipndm_matches_a_numpy_reimplementation():
    x, sig = _x(), _karras(9)
    for order in (2, 4):
        ref = _np_ipndm(_den, x, sig.numpy(), order)
        assert_close(solve(_den, x, sigmas=sig, solver="ipndm", max_order=order), ref, rtol=1e-10, atol=1e-10)


def _np_deis(den, x, sig, max_order=3):
    """DEIS-tAB (Zhang & Chen 2023, eq. 14) in numpy/scipy: Lagrange interpolation of the slopes in VP time
    τ with σ(τ)² = exp(β_d τ²/2 + β_min τ) − 1, σ(1e-3) = 0.002, σ(1) = 80, integrated by adaptive quad."""
    lo, hi, eps = math.log(1 + 0.002**2), math.log(1 + 80.0**2), 1e-3
    bd = 2 * (lo / eps - hi) / (eps - 1)
    bm = hi - bd / 2
    tau = [(math.sqrt(bm**2 + 2 * bd * math.log(1 + s**2)) - bm) / bd for s in sig]

    def dsig(t):
        e = math.exp(bd * t * t / 2 + bm * t)
        return (bd * t + bm) * e / (2 * math.sqrt(e - 1))

    x, hist = x.numpy().copy(), []
    for i in range(len(sig) - 1):
        d0 = den(torch.from_numpy(x), torch.full((x.shape[0],), float(sig[i]), dtype=torch.float64)).numpy()
        hist = [(x - d0) / sig[i], *hist][:max_order]
        p = len(hist)
        if sig[i + 1] == 0:
            x = d0
            continue
        nodes = [tau[i - k] for k in range(p)]
        for j, d in enumerate(hist):
            def basis(t, j=j, nodes=nodes, p=p):
                return np.prod([(t - nodes[k]) / (nodes[j] - nodes[k]) for k in range(p) if k != j]) * dsig(t)
            if p > 1:
                c = integrate.quad(basis, tau[i], tau[i + 1], epsabs=1e-13, epsrel=1e-12)[0]
            else:
                c = sig[i + 1] - sig[i]
            x = x + c * d
    return torch.from_numpy(x)


def test_deis_matches_a_numpy_reimplementation():
    x, sig = _x(), _karras(8)
    for order in (2, 3):
        ref = _np_deis(_den, x, sig.tolist(), order)
        assert_close(solve(_den, x, sigmas=sig, solver="deis", max_order=order), ref, rtol=1e-8, atol=1e-8)


def _np_heunpp2(den, x, sig):
    """Heun++ as ComfyUI's sample_heunpp2 describes it (weights σ_{i+1}/3σ₀, σ_{i+2}/3σ₀), in numpy."""
    n, x = len(sig) - 1, x.numpy().copy()

    def d(x, s):
        return (x - den(torch.from_numpy(x), torch.full((x.shape[0],), s, dtype=torch.float64)).numpy()) / s

    for i in range(n):
        d1, dt = d(x, sig[i]), sig[i + 1] - sig[i]
        if i == n - 1:
            x = x + d1 * dt
        elif i == n - 2:
            w2 = sig[i + 1] / (2 * sig[0])
            x = x + ((1 - w2) * d1 + w2 * d(x + d1 * dt, sig[i + 1])) * dt
        else:
            x2 = x + d1 * dt
            d2 = d(x2, sig[i + 1])
            d3 = d(x2 + d2 * (sig[i + 2] - sig[i + 1]), sig[i + 2])
            w2, w3 = sig[i + 1] / (3 * sig[0]), sig[i + 2] / (3 * sig[0])
            x = x + ((1 - w2 - w3) * d1 + w2 * d2 + w3 * d3) * dt
    return torch.from_numpy(x)


def test_heunpp2_matches_a_numpy_reimplementation():
    x = _x()
    for sig in (_karras(7), _karras(5, 0.05, 20.0)[:-1]):
        assert_close(solve(_den, x, sigmas=sig, solver="heunpp2"), _np_heunpp2(_den, x, sig.tolist()),
                     rtol=1e-10, atol=1e-10)


def _diffusers_unipc(den, x_ve, sig, variant, order, lower_order_final=True):
    """Drive diffusers' UniPCMultistepScheduler (ε prediction on its VP scale) with the VE denoiser on the
    grid ``sig`` (its sigmas replaced by ours)."""
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.UniPCMultistepScheduler(solver_order=order, solver_type=variant,
                                              lower_order_final=lower_order_final)
    n = len(sig) - 1
    sched.set_timesteps(n)
    sched.sigmas = sig.clone()
    sched.timesteps = torch.arange(n - 1, -1, -1) * 10
    sample = x_ve / (1 + sig[0] ** 2) ** 0.5
    for i, t in enumerate(sched.timesteps):
        s = float(sig[i])
        xv = sample * (1 + s**2) ** 0.5
        eps = (xv - den(xv, torch.full((x_ve.shape[0],), s, dtype=torch.float64))) / s
        sample = sched.step(eps, t, sample).prev_sample
    return sample * (1 + float(sig[-1]) ** 2) ** 0.5


@pytest.mark.parametrize(("name", "variant"), [("uni_pc", "bh1"), ("uni_pc_bh2", "bh2")])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_parity_with_diffusers(name, variant, order):
    x = _x((3, 4), seed=2)
    for sig in (_karras(8), _karras(6, 0.03, 14.6, 3.0)):
        # diffusers' bh1 step to σ = 0 is NaN (B(h) = −h = −∞ times a zero correction): compare up to
        # σ_{N−1} there; the step to 0 is x <- D(x, σ_{N−1}) by definition
        grid = sig if variant == "bh2" else sig[:-1]
        ref = _diffusers_unipc(_den, x * sig[0], grid, variant, order)
        ours = solve(_den, x * sig[0], sigmas=grid, solver=name, order=order)
        assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    ref = _diffusers_unipc(_den, x * 80, _karras(7)[:-1], variant, order, lower_order_final=False)
    ours = solve(_den, x * 80, sigmas=_karras(7)[:-1], solver=name, order=order, lower_order_final=False)
    assert_close(ours, ref, rtol=1e-10, atol=1e-10)


# --- convergence order on Gaussian data (closed-form ODE solution) ---------------------------------------

def _errors(name, steps_list, **opts):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    prob = Gaussian(torch.randn(3, generator=g, dtype=torch.float64), a @ a.T / 3 + 0.01 * torch.eye(3))
    x_t = prob.mean + torch.randn(64, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 20
    ref = prob.reference_solve(x_t, sigma_max=20.0, sigma_min=0.05)
    errs = []
    for n in steps_list:
        sig = torch.exp(torch.linspace(math.log(20.0), math.log(0.05), n + 1, dtype=torch.float64))
        out = solve(prob.denoiser, x_t, sigmas=sig, solver=name, **opts)
        errs.append(((out - ref) ** 2).mean().sqrt().item())
    return errs


@pytest.mark.parametrize(
    ("name", "opts", "order"),
    [
        ("ipndm_v", {"max_order": 3}, 3),
        ("deis", {"max_order": 2}, 2),
        ("uni_pc", {"order": 1, "lower_order_final": False}, 2),  # UniC raises the order by one
        ("uni_pc", {"order": 2, "lower_order_final": False}, 3),
        ("uni_pc_bh2", {"order": 2, "lower_order_final": False}, 3),
        ("uni_pc", {"order": 3}, 2),  # the order-1 last step limits the global order to 2
        ("ipndm", {}, 2),  # fixed coefficients on a geometric grid: consistent to order 2 only
    ],
)
def test_order_of_convergence_on_gaussian(name, opts, order):
    errs = _errors(name, [64, 128, 256], **opts)
    observed = math.log2(errs[-2] / errs[-1])
    assert abs(observed - order) < 0.35, errs


def test_deis_order_3_beats_order_2():
    # the slopes are not smooth in τ near σ = 0 (σ ∝ √τ), so DEIS-3 is not clean third order there;
    # it is still more accurate than DEIS-2 at every budget
    two, three = _errors("deis", [16, 32], max_order=2), _errors("deis", [16, 32], max_order=3)
    assert all(b < a / 2 for a, b in zip(two, three)), (two, three)


# --- NFE, per-row grids -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "opts"), NEW)
@pytest.mark.parametrize("steps", [1, 2, 5])
def test_nfe_is_counted_and_declared(name, opts, steps):
    calls = []

    def den(x, s):
        calls.append(s)
        return _den(x, s)

    solve(den, _x((2, 3)), sigmas=_karras(steps), solver=name, generator=torch.Generator(), **opts)
    assert len(calls) == solver(name, **opts).nfe(steps)


@pytest.mark.parametrize(("name", "opts"), NEW)
@pytest.mark.parametrize("end_at_zero", [True, False])
def test_rows_of_a_per_row_solve_equal_each_row_alone(name, opts, end_at_zero):
    grids = torch.stack([_karras(9), _karras(9, 0.03, 14.6, 3.0), _karras(9, 0.01, 30.0, 5.0)])
    grids = grids if end_at_zero else grids[:, :-1]
    x = _x((3, 2, 4), seed=4, scale=1.0) * grids[:, :1, None]
    gens = [torch.Generator().manual_seed(11 + b) for b in range(3)]
    batch = solve(_den, x, sigmas=grids, solver=name, generator=gens, **opts)
    for b in range(3):
        alone = solve(_den, x[b:b + 1], sigmas=grids[b], solver=name,
                      generator=torch.Generator().manual_seed(11 + b), **opts)
        assert_close(batch[b:b + 1], alone, rtol=0, atol=1e-12)
    same = solve(_den, x, sigmas=grids[0].expand(3, -1), solver=name,
                 generator=torch.Generator().manual_seed(6), **opts)
    shared = solve(_den, x, sigmas=grids[0], solver=name, generator=torch.Generator().manual_seed(6), **opts)
    assert_close(same, shared, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("name", "opts", "match"),
    [
        ("ipndm", {"max_order": 5}, r"max_order must be an integer in \[1, 4\]"),
        ("uni_pc", {"order": 0}, r"order must be an integer in \[1, 3\]"),
        ("uni_pc_bh2", {"lower_order_final": 1}, "lower_order_final must be true or false"),
        ("dpmpp_3m_sde", {"eta": -0.1}, "eta must be a finite number >= 0"),
        ("dpmpp_3m", {"eta": 1.0}, "unknown parameter"),
    ],
)
def test_bad_options(name, opts, match):
    with pytest.raises(ValueError, match=match):
        solver(name, **opts)
