"""Few-step solvers of the probability-flow ODE: the multistep and Heun-type methods samplers use at
5–10 network evaluations, under ComfyUI's names, on the ``solve`` contract of
``noiselevels.sampling.solvers`` (VE σ grids shared or per row, float64 grid arithmetic, NFE counted).

=================== ====== ================================================================ ===========
name                kind   method                                                           NFE
=================== ====== ================================================================ ===========
``ipndm``           ODE    improved PNDM (Zhang & Chen 2023): Adams–Bashforth in σ with the   N
                           fixed (uniform-step) coefficients, order ≤ ``max_order``
``ipndm_v``         ODE    iPNDM with variable-step coefficients (the Lagrange interpolant    N
                           of the past slopes in σ integrated exactly)
``deis``            ODE    DEIS-tAB (Zhang & Chen 2023): the past slopes interpolated in      N
                           VP time τ(σ), integrated against dσ
``heunpp2``         ODE    Heun++ (ComfyUI): Euler predictor, then the slopes at σ_{i+1} and  3N − 3
                           σ_{i+2} averaged with weights σ/(3σ₀); Heun, Euler on the last two
``uni_pc``          ODE    UniPC (Zhao et al. 2023), data prediction, B(h) = h (bh1),         N
                           predictor of order p, corrector of order p + 1 (``unipc`` module)
``uni_pc_bh2``      ODE    UniPC with B(h) = e^h − 1 (bh2; diffusers' default)                N
``dpmpp_3m``        ODE    DPM-Solver++(3M) (the η = 0 form of ``dpmpp_3m_sde``)              N
``dpmpp_3m_sde``    SDE    DPM-Solver++(3M) SDE (k-diffusion), η, s_noise                     N
=================== ====== ================================================================ ===========

Slopes are d = (x − D(x, σ))/σ (dx/dσ of the ODE); on a step to σ = 0 every method jumps to
x ← D(x, σ_{N−1}) (the exact limit of the ODE's last step for a denoiser frozen over it).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.sampling.solvers import SOLVERS, Solver, _at_zero, _lms_coefficient

__all__ = ["DEIS", "IPNDM", "DPMpp3M", "DPMpp3MSDE", "HeunPP2", "IPNDMVariable"]

_F64 = torch.float64
# Adams–Bashforth coefficients on a uniform grid, newest slope first (order 1–4)
_AB = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}
# DEIS's VP time τ(σ): σ(τ)² = exp(β_d τ²/2 + β_min τ) − 1 with σ(ε_s) = 0.002, σ(1) = 80 (EDM's range)
_DEIS_RANGE = (0.002, 80.0, 1e-3)


def _check_max_order(value, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= hi:
        raise ValueError(f"max_order must be an integer in [1, {hi}]; got {value!r}")
    return value


class _SlopeMultistep(Solver):
    """x_{i+1} = x_i + Σ_k c_{ik}·d_{i−k} over the last ``order`` slopes; subclasses give the
    (R,) float64 coefficients c_{ik} of step i (newest first)."""

    max_order: int = 4

    def __post_init__(self):
        _check_max_order(self.max_order, 4)

    def _coefficients(self, sigmas: Tensor, i: int, order: int) -> list[Tensor]:
        raise NotImplementedError

    def _run(self, ctx, x, sigmas):
        slopes: list[Tensor] = []
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            slopes.insert(0, (x - denoised) / ctx.bc(s))
            del slopes[self.max_order:]
            if _at_zero(s_next):
                x = denoised
                continue
            for c, d in zip(self._coefficients(sigmas, i, min(self.max_order, i + 1)), slopes):
                x = x + d * ctx.bc(c)
        return x


@SOLVERS.register("ipndm")
@dataclasses.dataclass(frozen=True)
class IPNDM(_SlopeMultistep):
    """Improved PNDM (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator",
    §4; ComfyUI ``sample_ipndm``): Adams–Bashforth of order min(i + 1, ``max_order``) in σ with the
    coefficients of a uniform grid (55, −59, 37, −9)/24, ... whatever the actual step sizes."""

    max_order: int = 4

    def _coefficients(self, sigmas, i, order):
        dt = sigmas[:, i + 1] - sigmas[:, i]
        return [dt * c for c in _AB[order]]


@SOLVERS.register("ipndm_v")
@dataclasses.dataclass(frozen=True)
class IPNDMVariable(_SlopeMultistep):
    """iPNDM with variable step sizes (ComfyUI ``sample_ipndm_v``, from zju-pi's diff-sampler): the
    Adams–Bashforth step of order min(i + 1, ``max_order``) for the actual, non-uniform σ grid, i.e.
    ∫_{σ_i}^{σ_{i+1}} of the Lagrange polynomial through the last slopes — the step of ``lms``, with
    the jump x ← D on the step to σ = 0. (ComfyUI's order-3/4 coefficients equal these on uniform
    steps only: on non-uniform ones they do not integrate a quadratic exactly; tested.)"""

    max_order: int = 4

    def _coefficients(self, sigmas, i, order):
        return [_lms_coefficient(order, sigmas, i, j) for j in range(order)]


def _deis_integral(tau: Tensor, i: int, j: int, order: int) -> Tensor:
    """∫_{τ_i}^{τ_{i+1}} ℓ_j(τ)·σ'(τ) dτ per row, ℓ_j the Lagrange basis polynomial in τ through the
    columns i, i−1, …, i−order+1 of the (R, N+1) VP times ``tau``; 16-point Gauss–Legendre."""
    a, b = tau[:, i], tau[:, i + 1]
    xs, ws = _gauss_legendre(16)
    total = torch.zeros_like(a)
    for xg, wg in zip(xs, ws):
        t = 0.5 * (b - a) * xg + 0.5 * (b + a)
        basis = torch.ones_like(a)
        for k in range(order):
            if k != j:
                basis = basis * (t - tau[:, i - k]) / (tau[:, i - j] - tau[:, i - k])
        total = total + wg * basis * _deis_dsigma(t)
    return 0.5 * (b - a) * total


@functools.lru_cache(maxsize=4)
def _gauss_legendre(m: int) -> tuple[list[float], list[float]]:
    xs, ws = np.polynomial.legendre.leggauss(m)
    return [float(v) for v in xs], [float(v) for v in ws]


@functools.lru_cache(maxsize=1)
def _deis_betas() -> tuple[float, float]:
    """(β_d, β_min) of the VP map with σ(ε_s) = σ_min and σ(1) = σ_max (``_DEIS_RANGE``)."""
    smin, smax, eps = _DEIS_RANGE
    lo, hi = math.log1p(smin**2), math.log1p(smax**2)
    # β_d ε²/2 + β_min ε = lo and β_d/2 + β_min = hi
    beta_d = 2 * (lo / eps - hi) / (eps - 1)
    return beta_d, hi - beta_d / 2


def _deis_tau(sigma: Tensor) -> Tensor:
    """The VP time τ(σ) of DEIS (inverse of σ(τ) = √(exp(β_d τ²/2 + β_min τ) − 1))."""
    beta_d, beta_min = _deis_betas()
    return (torch.sqrt(beta_min**2 + 2 * beta_d * torch.log1p(sigma**2)) - beta_min) / beta_d


def _deis_dsigma(tau: Tensor) -> Tensor:
    """dσ/dτ of the DEIS map."""
    beta_d, beta_min = _deis_betas()
    e = torch.exp(0.5 * beta_d * tau**2 + beta_min * tau)
    return (beta_d * tau + beta_min) * e / (2 * torch.sqrt(e - 1))


@SOLVERS.register("deis")
@dataclasses.dataclass(frozen=True)
class DEIS(_SlopeMultistep):
    """DEIS-tAB (Zhang & Chen 2023, eq. 14; ComfyUI ``sample_deis``, ``deis_mode='tab'``): the last
    min(i + 1, ``max_order``) slopes are interpolated by a polynomial in the VP time τ(σ) (a VP-SDE
    with σ(10⁻³) = 0.002 and σ(1) = 80, as ComfyUI) and x advances by ∫ d dσ over the step.
    Coefficients by 16-point Gauss–Legendre in τ (ComfyUI sums 10 000 rectangles)."""

    max_order: int = 3

    def _coefficients(self, sigmas, i, order):
        if order == 1:
            return [sigmas[:, i + 1] - sigmas[:, i]]
        tau = _deis_tau(sigmas)
        return [_deis_integral(tau, i, j, order) for j in range(order)]


@SOLVERS.register("heunpp2")
@dataclasses.dataclass(frozen=True)
class HeunPP2(Solver):
    """Heun++ (ComfyUI ``sample_heunpp2``): from x_i an Euler predictor to σ_{i+1} and on to σ_{i+2};
    x_{i+1} = x_i + (σ_{i+1} − σ_i)·(w₁d_i + w₂d_{i+1} + w₃d_{i+2}) with w₂ = σ_{i+1}/3σ₀,
    w₃ = σ_{i+2}/3σ₀, w₁ = 1 − w₂ − w₃ (σ₀ the grid's first level); the second-to-last step is Heun
    with w₂ = σ_{i+1}/2σ₀, the last an Euler step. NFE = 3N − 3 (N ≥ 2)."""

    def nfe(self, steps: int) -> int:
        return 1 if steps == 1 else 3 * steps - 3

    def _run(self, ctx, x, sigmas):
        n = sigmas.shape[1] - 1
        first = sigmas[:, 0]
        for i in range(n):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            d = (x - denoised) / ctx.bc(s)
            dt = ctx.bc(s_next - s)
            if i == n - 1:
                x = x + d * dt
                continue
            x_2 = x + d * dt
            d_2 = (x_2 - ctx.denoise(x_2, s_next)) / ctx.bc(s_next)
            if i == n - 2:
                w_2 = s_next / (2 * first)
                x = x + (d * ctx.bc(1 - w_2) + d_2 * ctx.bc(w_2)) * dt
                continue
            s_3 = sigmas[:, i + 2]
            x_3 = x_2 + d_2 * ctx.bc(s_3 - s_next)
            d_3 = (x_3 - ctx.denoise(x_3, s_3)) / ctx.bc(s_3)
            w_2, w_3 = s_next / (3 * first), s_3 / (3 * first)
            x = x + (d * ctx.bc(1 - w_2 - w_3) + d_2 * ctx.bc(w_2) + d_3 * ctx.bc(w_3)) * dt
        return x


class _DPMpp3M(Solver):
    """DPM-Solver++(3M) (Lu et al. 2022, "DPM-Solver++", multistep order 3; k-diffusion's
    ``sample_dpmpp_3m_sde``): with h = log(σ_i/σ_{i+1}), ĥ = (1 + η)h,
    x ← (σ_{i+1}/σ_i)e^(−ηh)·x − expm1(−ĥ)·D_i + φ₂·D₁ − φ₃·D₂ + σ_{i+1}√(−expm1(−2ηh))·s_noise·n,
    φ₂ = expm1(−ĥ)/ĥ + 1, φ₃ = φ₂/ĥ − ½, D₁, D₂ the first and second divided differences of the last
    three D's in log σ (first order on the first step, second order on the second)."""

    def _eta(self) -> float:
        return 0.0

    def _noise_scale(self) -> float:
        return 0.0

    def _run(self, ctx, x, sigmas):
        eta = self._eta()
        d_1 = d_2 = h_1 = h_2 = None
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            if _at_zero(s_next):
                x = denoised
            else:
                h = torch.log(s / s_next)
                h_eta = h * (eta + 1)
                x = x * ctx.bc(torch.exp(-h_eta)) - denoised * ctx.bc(torch.expm1(-h_eta))
                phi_2 = torch.expm1(-h_eta) / h_eta + 1
                if h_2 is not None:
                    r0, r1 = h_1 / h, h_2 / h
                    d1_0 = (denoised - d_1) / ctx.bc(r0)
                    d1_1 = (d_1 - d_2) / ctx.bc(r1)
                    diff_2 = (d1_0 - d1_1) / ctx.bc(r0 + r1)
                    phi_3 = phi_2 / h_eta - 0.5
                    x = x + (d1_0 + diff_2 * ctx.bc(r0)) * ctx.bc(phi_2) - diff_2 * ctx.bc(phi_3)
                elif h_1 is not None:
                    x = x + (denoised - d_1) * ctx.bc(phi_2 * h / h_1)
                if eta:
                    std = s_next * (-torch.expm1(-2 * h * eta)).sqrt() * self._noise_scale()
                    x = x + ctx.noise(x) * ctx.bc(std)
            d_1, d_2 = denoised, d_1
            h_1, h_2 = (None if _at_zero(s_next) else h), h_1
        return x


@SOLVERS.register("dpmpp_3m")
@dataclasses.dataclass(frozen=True)
class DPMpp3M(_DPMpp3M):
    """DPM-Solver++(3M), the deterministic (η = 0) form of ``dpmpp_3m_sde``."""


@SOLVERS.register("dpmpp_3m_sde")
@dataclasses.dataclass(frozen=True)
class DPMpp3MSDE(_DPMpp3M):
    """DPM-Solver++(3M) SDE (k-diffusion ``sample_dpmpp_3m_sde``); η = 0 is ``dpmpp_3m``. Noise is
    i.i.d. Gaussian from ``generator`` (k-diffusion defaults to a Brownian tree)."""

    stochastic: ClassVar[bool] = True
    eta: float = 1.0
    s_noise: float = 1.0

    def __post_init__(self):
        for name in ("eta", "s_noise"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")

    def _eta(self) -> float:
        return float(self.eta)

    def _noise_scale(self) -> float:
        return float(self.s_noise)
