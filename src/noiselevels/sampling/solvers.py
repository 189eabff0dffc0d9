"""Samplers for the probability-flow ODE and the reverse SDE, over a grid of VE noise levels.

The contract is k-diffusion's (Karras et al. 2022, "Elucidating the design space", EDM):

* ``denoiser(x, sigma) -> x0_hat``, where ``x`` has shape (B, ...) on the variance-exploding scale
  x = z/α = x₀ + σ·ε, and ``sigma`` = σ_ve = e^(−λ/2) has shape (B,) in ``x``'s dtype and device.
  ``noiselevels.sampling.denoiser.as_denoiser`` turns any model trained with an ``Objective`` into one.
* ``sigmas`` is the grid the sampler visits, decreasing, usually with a trailing 0
  (``noiselevels.spacing(name).sigmas(N, ...)``). The sampler takes N steps from sigmas[..., 0] to
  sigmas[..., N]. Two shapes are accepted:

  - (N+1,): one grid shared by every row of the batch (the denoiser sees the same σ in every row);
  - (B, N+1): one grid per row of ``x`` (per-instance noise levels, ``noiselevels.spectral``): row b
    follows its own grid and the denoiser receives the per-row σ of shape (B,). Every row must have
    N+1 values, strictly decreasing, and either every row ends in 0 or none does. A (B, N+1) grid
    whose rows are equal gives the same result as the (N+1,) grid; row b of a solve with different
    rows equals the solve of row b alone with its own grid (tested for every solver).
* In log σ the probability-flow ODE is dx/dσ = (x − D(x, σ))/σ (EDM eq. 3 with σ(t) = t, s(t) = 1).
* **Zero terminal SNR: a grid may start at σ = inf** (λ = −inf; every row or none, only the first value).
  x = x₀ + σ·ε is infinite there, so the convention is: when ``sigmas[..., 0]`` is inf, ``x`` is the
  unit-variance noise ε itself (z_T of the vp and flow processes, whose α is 0 and σ is 1 at λ = −inf;
  :func:`initial_x` builds it) and the denoiser is called at σ = inf with that ε
  (``noiselevels.sampling.denoiser`` reads it so for v-, x₀-, flow- and EDM-models and refuses
  ε-models, which cannot predict x₀ at α = 0). The first step is then, for every solver, the
  deterministic DDIM step from pure noise (Lin et al. 2024, "Common diffusion noise schedules and
  sample steps are flawed", §3.3; diffusers' ``DDIMScheduler`` with ``rescale_betas_zero_snr`` and
  ``timestep_spacing="trailing"``): x̂₀ = D(ε, inf), ε̂ = ε (α = 0), x₁ = x̂₀ + σ₁·ε. The solver then runs
  on the rest of the grid, σ₁ … σ_N, as if started at x₁: multistep history (``dpmpp_2m``, ``lms``,
  ``dpmpp_2m_sde``) starts after the first step, stochastic solvers add noise from the second step
  on, and the callback reports the first step as i = 0 (σ = inf) and the solver's steps as 1, 2, ….
  NFE is one more than the solver's own count on σ₁ … σ_N.

Each method is a frozen dataclass registered in ``SOLVERS`` whose fields are its options, so unknown
options are rejected by name and a solver round-trips through ``to_dict``. ``solve`` is the one entry
point:

=================== ====== ============================================================ ==========
name                kind   method                                                       NFE
=================== ====== ============================================================ ==========
``euler``           ODE    Euler in σ (= deterministic DDIM, Song et al. 2021, eq. 13)   N
``heun``            ODE    EDM Alg. 1: Heun's 2nd order, Euler on the step to σ = 0     2N − 1
``dpmpp_2m``        ODE    DPM-Solver++(2M), Lu et al. 2022, Alg. 2 (data prediction)   N
``lms``             ODE    linear multistep in σ (order ≤ 4, k-diffusion's LMS)         N
``euler_ancestral`` SDE    Euler step to σ_down, then fresh noise σ_up (eta)            N
``edm_stochastic``  SDE    EDM Alg. 2: churn (s_churn, s_tmin, s_tmax, s_noise) + Heun  2N − 1
``dpmpp_2m_sde``    SDE    DPM-Solver++(2M) SDE, midpoint variant (eta, s_noise)        N
=================== ====== ============================================================ ==========

All arithmetic on the grid is done in float64 ((R,) CPU tensors, R = 1 for a shared grid and B for
per-row grids; a shared grid's step coefficients are applied as Python floats, exactly as before
per-row grids existed). The data stays in the caller's dtype, so a float64 ``x`` gives a float64
solve. The outputs equal k-diffusion's ``sample_*`` functions for the same denoiser, grid and noise
(tests/sampling/test_solvers.py, to 1e-6 in float64).

Noise of the stochastic solvers (and of ``heun`` with ``s_churn`` > 0) comes from ``generator``:

* one ``torch.Generator`` (or None for the global RNG): the noise of a step is drawn with
  ``torch.randn(x.shape, generator=generator)`` in the same order as k-diffusion draws
  ``torch.randn_like(x)``, so a generator seeded like the global RNG reproduces its samples;
* a sequence of B generators, one per row (EDM's ``StackedRandomGenerator``): row b's noise is drawn
  with ``torch.randn(x.shape[1:], generator=generator[b])``, so sample b depends only on its own
  generator (and its own x and grid), not on the batch it was solved in or on the batch size.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from noiselevels.components import Component, _registry_of, check_positive

__all__ = ["SOLVERS", "Solver", "initial_x", "solve", "solver"]

SOLVERS = _registry_of("solver")

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
Generators = torch.Generator | Sequence[torch.Generator] | None

_F64 = torch.float64


class _Context:
    """What a step function needs besides x: the denoiser with its (B,) σ, the step coefficients in
    x's dtype, noise and callback. Grid columns are (R,) float64 CPU tensors, R = 1 (shared grid) or B."""

    __slots__ = ("_denoiser", "_ones", "_view", "callback", "generator", "nfe", "shared")

    def __init__(self, denoiser: Denoiser, x: Tensor, shared: bool, generator, callback):
        self._denoiser = denoiser
        self._ones = x.new_ones(x.shape[0])
        self._view = (-1, *([1] * (x.ndim - 1)))
        self.shared = shared
        self.generator = generator
        self.callback = callback
        self.nfe = 0

    def sigma(self, sigma: Tensor) -> Tensor:
        """The (B,) σ the denoiser receives, in x's dtype and device."""
        if self.shared:
            return self._ones * float(sigma)
        return sigma.to(device=self._ones.device, dtype=self._ones.dtype)

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        self.nfe += 1
        return self._denoiser(x, self.sigma(sigma))

    def bc(self, coefficient: Tensor) -> float | Tensor:
        """A per-row float64 coefficient (R,) as a factor for x: a Python float for a shared grid,
        else an (B, 1, ...) tensor in x's dtype and device."""
        if self.shared:
            return float(coefficient)
        return coefficient.to(device=self._ones.device, dtype=self._ones.dtype).reshape(self._view)

    def noise(self, x: Tensor) -> Tensor:
        """Standard normal noise shaped like x: from one generator, or row b from generator[b]."""
        if isinstance(self.generator, list):
            return torch.stack([
                torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=x.device) for g in self.generator
            ])
        return torch.randn(x.shape, generator=self.generator, dtype=x.dtype, device=x.device)

    def report(self, i: int, x: Tensor, sigma: Tensor, sigma_hat: Tensor, denoised: Tensor) -> None:
        """Call the callback; σ values are Python floats for a shared grid, (B,) tensors otherwise."""
        if self.callback is not None:
            if self.shared:
                sigma, sigma_hat = float(sigma), float(sigma_hat)
            self.callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def _at_zero(sigma: Tensor) -> bool:
    """Whether this grid column is σ = 0 (every row or none, as ``_check_sigmas`` ensures)."""
    return bool((sigma == 0).all())


class Solver(Component):
    """A sampler over a σ grid. Subclasses implement ``_run(ctx, x, sigmas)`` with ``sigmas`` an
    (R, N+1) float64 CPU tensor (R = 1 for a grid shared by the batch, R = B for one grid per row)."""

    kind: ClassVar[str] = "solver"
    stochastic: ClassVar[bool] = False
    evals_per_step: ClassVar[int] = 1

    def nfe(self, steps: int) -> int:
        """Denoiser evaluations for ``steps`` steps on a grid ending in 0."""
        return steps if self.evals_per_step == 1 else 2 * steps - 1

    def _run(self, ctx: _Context, x: Tensor, sigmas: Tensor) -> Tensor:
        raise NotImplementedError


def _churn(i: int, n: int, sigma: Tensor, s_churn: float, s_tmin: float, s_tmax: float) -> Tensor:
    """EDM's γ_i = min(S_churn/N, √2 − 1) for σ_i ∈ [S_tmin, S_tmax], else 0 (EDM Alg. 2, line 4);
    per row, (R,) float64."""
    inside = (sigma >= s_tmin) & (sigma <= s_tmax)
    return inside.to(_F64) * min(s_churn / n, 2**0.5 - 1)


@dataclasses.dataclass(frozen=True)
class _ChurnOptions(Solver):
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self):
        check_positive("s_churn", self.s_churn, allow_zero=True)
        check_positive("s_noise", self.s_noise, allow_zero=True)
        if not (isinstance(self.s_tmin, (int, float)) and self.s_tmin >= 0):
            raise ValueError(f"s_tmin must be >= 0; got {self.s_tmin!r}")
        if not (isinstance(self.s_tmax, (int, float)) and self.s_tmax >= self.s_tmin):
            raise ValueError(f"s_tmax must be >= s_tmin = {self.s_tmin!r}; got {self.s_tmax!r}")

    def _churn_step(self, ctx: _Context, x: Tensor, i: int, n: int, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Raise the noise level from σ_i to σ̂ = σ_i(1 + γ_i) by adding fresh noise (EDM Alg. 2 l. 5-6).

        Noise is drawn on every step (as EDM and k-diffusion do) so that generators stay in step.
        Rows with γ_i = 0 are left unchanged (σ̂ = σ_i exactly)."""
        gamma = _churn(i, n, sigma, self.s_churn, self.s_tmin, self.s_tmax)
        eps = ctx.noise(x) * self.s_noise
        sigma_hat = sigma * (gamma + 1.0)
        if bool((gamma > 0).any()):
            x = x + eps * ctx.bc((sigma_hat**2 - sigma**2) ** 0.5)
        return x, sigma_hat


@SOLVERS.register("euler")
@dataclasses.dataclass(frozen=True)
class Euler(Solver):
    """Euler's method in σ: x ← x + (σ_{i+1} − σ_i)·(x − D(x, σ_i))/σ_i. In the VE frame this is
    exactly deterministic DDIM (Song et al. 2021, eq. 13; Karras et al. 2022, §3)."""

    def _run(self, ctx, x, sigmas):
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            x = x + (x - denoised) * ctx.bc((s_next - s) / s)
        return x


@SOLVERS.register("heun")
@dataclasses.dataclass(frozen=True)
class Heun(_ChurnOptions):
    """EDM Algorithm 1 (deterministic with s_churn = 0; Algorithm 2 otherwise): Heun's second-order
    method in σ with an Euler step where σ_{i+1} = 0. NFE = 2N − 1 on a grid ending in 0."""

    evals_per_step: ClassVar[int] = 2

    def _run(self, ctx, x, sigmas):
        n = sigmas.shape[1] - 1
        for i in range(n):
            x, s_hat = self._churn_step(ctx, x, i, n, sigmas[:, i])
            s_next = sigmas[:, i + 1]
            denoised = ctx.denoise(x, s_hat)
            ctx.report(i, x, sigmas[:, i], s_hat, denoised)
            d = (x - denoised) / ctx.bc(s_hat)
            dt = s_next - s_hat
            if _at_zero(s_next):
                x = x + d * ctx.bc(dt)
            else:
                x_2 = x + d * ctx.bc(dt)
                d_2 = (x_2 - ctx.denoise(x_2, s_next)) / ctx.bc(s_next)
                x = x + (d + d_2) * ctx.bc(0.5 * dt)
        return x


@SOLVERS.register("edm_stochastic")
@dataclasses.dataclass(frozen=True)
class EDMStochastic(Heun):
    """EDM Algorithm 2: Heun with stochastic churn. Defaults are EDM's ImageNet-64 settings
    (S_churn = 40, S_tmin = 0.05, S_tmax = 50, S_noise = 1.003; Karras et al. 2022, Table 5)."""

    stochastic: ClassVar[bool] = True
    s_churn: float = 40.0
    s_tmin: float = 0.05
    s_tmax: float = 50.0
    s_noise: float = 1.003


@SOLVERS.register("euler_ancestral")
@dataclasses.dataclass(frozen=True)
class EulerAncestral(Solver):
    """Ancestral sampling in the VE frame: an Euler step down to σ_down, then fresh noise of std
    σ_up, with σ_up = min(σ_{i+1}, η·√(σ_{i+1}²(σ_i² − σ_{i+1}²)/σ_i²)) and σ_down = √(σ_{i+1}² − σ_up²).
    η = 1 is DDPM ancestral sampling, η = 0 is Euler (DDIM)."""

    stochastic: ClassVar[bool] = True
    eta: float = 1.0
    s_noise: float = 1.0

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("s_noise", self.s_noise, allow_zero=True)

    def _run(self, ctx, x, sigmas):
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            if self.eta:
                s_up = torch.minimum(s_next, self.eta * (s_next**2 * (s**2 - s_next**2) / s**2) ** 0.5)
                s_down = (s_next**2 - s_up**2) ** 0.5
            else:
                s_up, s_down = torch.zeros_like(s_next), s_next
            x = x + (x - denoised) * ctx.bc((s_down - s) / s)
            if not _at_zero(s_next):
                x = x + ctx.noise(x) * ctx.bc(self.s_noise * s_up)
        return x


@SOLVERS.register("dpmpp_2m")
@dataclasses.dataclass(frozen=True)
class DPMpp2M(Solver):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) in k-diffusion's σ form. With h = λ_{i+1}/2 − λ_i/2
    = log(σ_i/σ_{i+1}): x ← (σ_{i+1}/σ_i)·x − expm1(−h)·D̃, where D̃ = (1 + 1/2r)·D_i − (1/2r)·D_{i−1},
    r = h_{i−1}/h; first-order (D̃ = D_i) on the first step and on the step to σ = 0."""

    def _run(self, ctx, x, sigmas):
        old = None
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            if _at_zero(s_next):
                x = denoised
            else:
                h = torch.log(s / s_next)
                if old is None:
                    d = denoised
                else:
                    r = torch.log(sigmas[:, i - 1] / s) / h
                    d = denoised * ctx.bc(1 + 1 / (2 * r)) - old * ctx.bc(1 / (2 * r))
                x = x * ctx.bc(s_next / s) - d * ctx.bc(torch.expm1(-h))
            old = denoised
        return x


@SOLVERS.register("dpmpp_2m_sde")
@dataclasses.dataclass(frozen=True)
class DPMpp2MSDE(Solver):
    """DPM-Solver++(2M) SDE (Lu et al. 2022, "DPM-Solver++", §5 / k-diffusion), midpoint variant:
    with h = log(σ_i/σ_{i+1}) and ηh = η·h,
    x ← (σ_{i+1}/σ_i)e^(−ηh)·x − expm1(−h−ηh)·D_i − ½·expm1(−h−ηh)·(D_i − D_{i−1})/r
        + σ_{i+1}·√(−expm1(−2ηh))·s_noise·n,   r = h_{i−1}/h.
    Noise is i.i.d. Gaussian from ``generator`` (k-diffusion defaults to a Brownian tree)."""

    stochastic: ClassVar[bool] = True
    eta: float = 1.0
    s_noise: float = 1.0

    def __post_init__(self):
        check_positive("eta", self.eta, allow_zero=True)
        check_positive("s_noise", self.s_noise, allow_zero=True)

    def _run(self, ctx, x, sigmas):
        old, h_last = None, None
        for i in range(sigmas.shape[1] - 1):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            if _at_zero(s_next):
                x = denoised
                h = None
            else:
                h = torch.log(s / s_next)
                eta_h = self.eta * h
                em = -torch.expm1(-h - eta_h)
                x = x * ctx.bc(s_next / s * torch.exp(-eta_h)) + denoised * ctx.bc(em)
                if old is not None:
                    r = h_last / h
                    x = x + (denoised - old) * ctx.bc(0.5 * em / r)
                if self.eta:
                    x = x + ctx.noise(x) * ctx.bc(s_next * (-torch.expm1(-2 * eta_h)) ** 0.5 * self.s_noise)
            old, h_last = denoised, h
        return x


def _lms_coefficient(order: int, ts: Tensor, i: int, j: int) -> Tensor:
    """∫_{σ_i}^{σ_{i+1}} ℓ_j(τ) dτ for the Lagrange basis ℓ_j over the nodes σ_i, σ_{i−1}, …
    (exact Gauss-Legendre quadrature of the degree-(order−1) polynomial), per row of the (R, N+1)
    grid ``ts``: shape (R,)."""
    nodes = [ts[:, i - k] for k in range(order)]
    a, b = ts[:, i], ts[:, i + 1]
    xs, ws = _gauss_legendre(max(order, 1))
    total = torch.zeros_like(a)
    for xg, wg in zip(xs, ws):
        tau = 0.5 * (b - a) * xg + 0.5 * (b + a)
        prod = torch.ones_like(a)
        for k in range(order):
            if k != j:
                prod = prod * ((tau - nodes[k]) / (nodes[j] - nodes[k]))
        total = total + wg * prod
    return 0.5 * (b - a) * total


@functools.lru_cache(maxsize=16)
def _gauss_legendre(m: int) -> tuple[list[float], list[float]]:
    xs, ws = np.polynomial.legendre.leggauss(m)
    return [float(v) for v in xs], [float(v) for v in ws]


@SOLVERS.register("lms")
@dataclasses.dataclass(frozen=True)
class LMS(Solver):
    """Linear multistep (Adams-Bashforth on a non-uniform σ grid) of order ≤ ``order`` applied to
    dx/dσ = (x − D)/σ, as k-diffusion's ``sample_lms``."""

    order: int = 4

    def __post_init__(self):
        if not isinstance(self.order, int) or isinstance(self.order, bool) or not 1 <= self.order <= 6:
            raise ValueError(f"order must be an integer in [1, 6]; got {self.order!r}")

    def _run(self, ctx, x, sigmas):
        ds: list[Tensor] = []
        for i in range(sigmas.shape[1] - 1):
            s = sigmas[:, i]
            denoised = ctx.denoise(x, s)
            ctx.report(i, x, s, s, denoised)
            ds.append((x - denoised) / ctx.bc(s))
            if len(ds) > self.order:
                ds.pop(0)
            cur = min(i + 1, self.order)
            for j, d in enumerate(reversed(ds)):
                x = x + d * ctx.bc(_lms_coefficient(cur, sigmas, i, j))
        return x


def solver(name: str, **options: Any) -> Solver:
    """The solver ``name`` with its options validated (unknown names or options raise ValueError)."""
    return SOLVERS.create(name, **options)


def _check_sigmas(sigmas: Tensor | Sequence[float], batch: int) -> Tensor:
    """The grid as an (R, N+1) float64 CPU tensor: R = 1 for a shared (N+1,) grid, R = ``batch`` for
    a (B, N+1) one. Raises ValueError for a bad shape, NaN, inf anywhere but the first column (zero
    terminal SNR), negative values, rows that are not strictly decreasing, or rows that disagree on
    ending in 0 or on starting at inf."""
    s = torch.as_tensor(sigmas, dtype=_F64).detach().cpu()
    if s.ndim == 1 and s.numel() >= 2:
        s = s.unsqueeze(0)
    elif s.ndim != 2 or s.shape[0] != batch or s.shape[1] < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 values (N+1 for N steps) or a (B, N+1) "
                         f"grid per row with B = {batch} rows; got shape {tuple(s.shape)}")
    values = s.tolist() if s.shape[0] > 1 else s[0].tolist()
    if not torch.isfinite(s[:, 1:]).all() or torch.isnan(s[:, 0]).any() or (s < 0).any():
        raise ValueError(f"sigmas must be >= 0 and finite (only the first value may be inf: zero terminal "
                         f"SNR); got {values}")
    first_inf = torch.isinf(s[:, 0])
    if first_inf.any() and not first_inf.all():
        raise ValueError(f"either every row of sigmas starts at inf or none does; got first values "
                         f"{s[:, 0].tolist()}")
    if (s[:, 1:] >= s[:, :-1]).any():
        raise ValueError(f"sigmas must be strictly decreasing; got {values}")
    last_zero = s[:, -1] == 0
    if last_zero.any() and not last_zero.all():
        raise ValueError(f"either every row of sigmas ends in 0 or none does; got last values "
                         f"{s[:, -1].tolist()}")
    return s


def _check_generator(generator: Generators, batch: int) -> torch.Generator | list[torch.Generator] | None:
    """None, one generator, or a list of ``batch`` generators (one per row)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gens = list(generator) if isinstance(generator, Sequence) else None
    if gens is None or not all(isinstance(g, torch.Generator) for g in gens):
        raise ValueError(f"generator must be a torch.Generator, a sequence of them (one per row) or None; "
                         f"got {type(generator).__name__}")
    if len(gens) != batch:
        raise ValueError(f"generator has {len(gens)} generators; one per row of x needs {batch}")
    return gens


def solve(
    denoiser: Denoiser,
    x: Tensor,
    *,
    sigmas: Tensor | Sequence[float],
    solver: str | Solver = "heun",
    generator: Generators = None,
    callback: Callback | None = None,
    progress: bool = False,
    **options: Any,
) -> Tensor:
    """Integrate from ``x`` at ``sigmas[..., 0]`` down the grid ``sigmas`` and return the sample.

    Args:
        denoiser: D(x, σ) → x̂₀, x of shape (B, ...) on the VE scale, σ of shape (B,).
        x: the starting point, shape (B, ...), usually ``noise * sigmas[0]`` (add the data mean for a
           non-centred prior, or ``x_0 + σ·ε`` for SDEdit-style starts; for per-row grids
           ``noise * sigmas[:, :1]`` broadcast over the data dimensions).
        sigmas: VE noise levels, strictly decreasing, ≥ 0 (only the last may be 0, only the first may
           be inf — then ``x`` is the unit noise, see the module docstring): (N+1,) for one grid shared
           by the batch, or (B, N+1) for one grid per row of x (all rows ending in 0 or none, all
           starting at inf or none).
        solver: a name in ``SOLVERS`` (``euler``, ``heun``, ``dpmpp_2m``, ``lms``, ``euler_ancestral``,
           ``edm_stochastic``, ``dpmpp_2m_sde``) or a ``Solver`` instance.
        generator: the noise source of stochastic solvers (also used by ``heun`` with ``s_churn`` > 0):
           one ``torch.Generator``, a sequence of B generators (row b's noise from generator b, so
           sample b does not depend on the rest of the batch), or None (the global RNG).
        callback: called after each denoiser evaluation at the start of step i with a dict
           ``{i, x, sigma, sigma_hat, denoised}`` (σ values are floats for a shared grid, (B,)
           float64 tensors for per-row grids).
        progress: show a tqdm progress bar over the steps (needs tqdm).
        **options: the solver's options (e.g. ``eta`` for ``euler_ancestral``; ``s_churn``, ``s_tmin``,
           ``s_tmax``, ``s_noise`` for ``heun`` / ``edm_stochastic``); unknown ones raise ValueError.

    Returns:
        The sample at ``sigmas[..., -1]``, same shape and dtype as ``x``.
    """
    if isinstance(solver, Solver):
        if options:
            raise ValueError(f"options {sorted(options)} given with a Solver instance; set them on it")
        method = solver
    else:
        method = SOLVERS.create(solver, **options)
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise ValueError("x must be a floating tensor of shape (B, ...)")
    grid = _check_sigmas(sigmas, x.shape[0])
    gens = _check_generator(generator, x.shape[0])
    if progress:
        callback = _progress(grid.shape[1] - 1, callback)
    ctx = _Context(denoiser, x, grid.shape[0] == 1, gens, callback)
    if bool(torch.isinf(grid[:, 0]).all()):
        x = _step_from_pure_noise(ctx, x, grid)
        if grid.shape[1] == 2:
            return x
        grid = grid[:, 1:]
        if callback is not None:
            ctx.callback = lambda info: callback({**info, "i": info["i"] + 1})
    return method._run(ctx, x, grid)


def _step_from_pure_noise(ctx: _Context, noise: Tensor, grid: Tensor) -> Tensor:
    """The first step of a grid that starts at σ = inf (the module docstring): x̂₀ = D(ε, inf), then
    x₁ = x̂₀ + σ₁·ε (deterministic DDIM from ᾱ = 0, where ε̂ = ε); x₁ = x̂₀ when σ₁ = 0."""
    inf = grid[:, 0]
    denoised = ctx.denoise(noise, inf)
    if not bool(torch.isfinite(denoised).all()):
        raise ValueError("the denoiser's prediction from pure noise (σ = inf) is not finite; a grid starting "
                         "at σ = inf needs a model that predicts x₀ at λ = −inf (v, x0, flow or edm)")
    ctx.report(0, noise, inf, inf, denoised)
    if _at_zero(grid[:, 1]):
        return denoised
    return denoised + noise * ctx.bc(grid[:, 1])


def initial_x(noise: Tensor, sigmas: Tensor | Sequence[float]) -> Tensor:
    """The ``x`` that :func:`solve` starts from for standard normal ``noise`` (B, ...) and a grid:
    ``noise·sigmas[..., 0]`` (per row for a (B, N+1) grid), or ``noise`` itself when the grid starts
    at σ = inf (zero terminal SNR; the module docstring)."""
    grid = _check_sigmas(sigmas, noise.shape[0])
    if bool(torch.isinf(grid[:, 0]).all()):
        return noise.clone()
    first = grid[:, 0].to(device=noise.device, dtype=noise.dtype)
    return noise * first.reshape(-1, *([1] * (noise.ndim - 1)))


def _progress(n: int, callback: Callback | None) -> Callback:
    from tqdm.auto import tqdm

    bar = tqdm(total=n, unit="step")

    def cb(info: dict[str, Any]) -> None:
        bar.update(1)
        if info["i"] == n - 1:
            bar.close()
        if callback is not None:
            callback(info)

    return cb
