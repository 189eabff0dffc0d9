"""UniPC (Zhao et al. 2023, "UniPC: a unified predictor-corrector framework for fast sampling of
diffusion models"), data prediction, on the ``solve`` contract of ``noiselevels.sampling.solvers``.

In half-log-SNR λ = −log σ (VE σ), with h = λ_{i+1} − λ_i, the last model outputs (denoised) m₀ = D_i,
m₋ₖ = D_{i−k}, r_k = (λ_{i−k} − λ_i)/h and D1_k = (m₋ₖ − m₀)/r_k:

* predictor UniP-p:  x̃ = (σ_{i+1}/σ_i)·x − expm1(−h)·m₀ − B(h)·Σ_{k<p} a_k·D1_k
* corrector UniC-p:  x = (σ_{i+1}/σ_i)·x − expm1(−h)·m₀ − B(h)·(Σ_{k<p} c_k·D1_k + c_p·(D(x̃, σ_{i+1}) − m₀))

with B(h) = −h (``bh1``, ``uni_pc``) or expm1(−h) (``bh2``, ``uni_pc_bh2``, diffusers' default). The
coefficients solve the order conditions Σ_k c_k r_k^(j−1) = j!·φ_{j+1}(−h)·(−h)^… / B(h) (paper
eq. 9; ``_order_conditions``): the p × p system for the corrector (r_p = 1), its leading (p − 1) ×
(p − 1) block for the predictor; p = 1 uses c = ½ and p = 2 a = ½ (the paper's choices). The model
output at x̃ is the next step's m₀, so a step costs one evaluation (NFE = N): the corrector is applied
after every step but the last. The order p of step i is min(``order``, i + 1, N − i) (warm-up and,
with ``lower_order_final``, lower orders on the last steps, as UniPC's reference code and diffusers).
On a step to σ = 0 the update is the limit x ← m₀ (h = ∞).

Parity: equal to diffusers' ``UniPCMultistepScheduler`` (``predict_x0``, ``solver_type`` bh1/bh2,
``solver_order`` 1–3) on the same σ grid (tests/sampling/test_multistep.py). ComfyUI's ``uni_pc``
(bh1, order 3) replaces a final σ = 0 by 0.001 and integrates to it instead of jumping.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from noiselevels.sampling.solvers import SOLVERS, Solver, _at_zero

__all__ = ["UniPC", "UniPCBH2"]

_F64 = torch.float64


def _order_conditions(rks: list[Tensor], hh: Tensor, variant: str) -> tuple[Tensor, Tensor, Tensor]:
    """(R, p, p) matrix M[j, k] = r_k^j, (R, p) right-hand side and (R,) B(h) of UniPC's order
    conditions for p = len(rks) ratios (per row; hh = −h). The right-hand side is j!·g_j/B(h) with
    g_1 = expm1(hh)/hh − 1 and g_{j+1} = g_j/hh − 1/(j + 1)!."""
    p = len(rks)
    r = torch.stack(rks, dim=-1)  # (R, p)
    matrix = torch.stack([r**j for j in range(p)], dim=-2)  # (R, p, p)
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    g = torch.expm1(hh) / hh - 1
    rhs = []
    for j in range(1, p + 1):
        rhs.append(g * math.factorial(j) / b_h)
        g = g / hh - 1 / math.factorial(j + 1)
    return matrix, torch.stack(rhs, dim=-1), b_h


class _UniPCBase(Solver):
    """UniPC (module docstring); subclasses fix the variant."""

    variant = "bh1"
    order: int = 3
    lower_order_final: bool = True

    def __post_init__(self):
        if not isinstance(self.order, int) or isinstance(self.order, bool) or not 1 <= self.order <= 3:
            raise ValueError(f"order must be an integer in [1, 3]; got {self.order!r}")
        if not isinstance(self.lower_order_final, bool):
            raise ValueError(f"lower_order_final must be true or false; got {self.lower_order_final!r}")

    def _step_order(self, i: int, n: int) -> int:
        p = min(self.order, i + 1)
        return min(p, n - i) if self.lower_order_final else p

    def _run(self, ctx, x, sigmas):
        n = sigmas.shape[1] - 1
        lam = -torch.log(sigmas)  # (R, N+1); +inf at σ = 0
        outputs: list[Tensor] = [ctx.denoise(x, sigmas[:, 0])]  # newest last
        ctx.report(0, x, sigmas[:, 0], sigmas[:, 0], outputs[-1])
        for i in range(n):
            s, s_next = sigmas[:, i], sigmas[:, i + 1]
            m0 = outputs[-1]
            if _at_zero(s_next):
                return m0
            p = self._step_order(i, n)
            h = lam[:, i + 1] - lam[:, i]
            rks = [(lam[:, i - k] - lam[:, i]) / h for k in range(1, p)]
            diffs = [(outputs[-1 - k] - m0) / ctx.bc(r) for k, r in zip(range(1, p), rks)]
            matrix, rhs, b_h = _order_conditions([*rks, torch.ones_like(h)], -h, self.variant)
            base = x * ctx.bc(s_next / s) - m0 * ctx.bc(torch.expm1(-h))
            x = base - _combine(ctx, diffs, self._predictor(matrix, rhs, p), b_h)
            if i == n - 1:
                return x
            m_new = ctx.denoise(x, s_next)
            corr = self._corrector(matrix, rhs, p)
            x = base - _combine(ctx, [*diffs, m_new - m0], corr, b_h)
            outputs = [*outputs[-(self.order - 1):], m_new] if self.order > 1 else [m_new]
            ctx.report(i + 1, x, s_next, s_next, m_new)
        return x

    @staticmethod
    def _predictor(matrix: Tensor, rhs: Tensor, p: int) -> Tensor:
        """(R, p − 1) weights of the p − 1 differences in the predictor."""
        if p == 1:
            return rhs[:, :0]
        if p == 2:
            return torch.full_like(rhs[:, :1], 0.5)
        return torch.linalg.solve(matrix[:, : p - 1, : p - 1], rhs[:, : p - 1])

    @staticmethod
    def _corrector(matrix: Tensor, rhs: Tensor, p: int) -> Tensor:
        """(R, p) weights of the p − 1 differences and of D(x̃) − m₀ in the corrector."""
        if p == 1:
            return torch.full_like(rhs[:, :1], 0.5)
        return torch.linalg.solve(matrix, rhs)


def _combine(ctx, terms: list[Tensor], weights: Tensor, b_h: Tensor) -> Tensor | float:
    """B(h)·Σ_k w_k·term_k with per-row float64 weights (R, K)."""
    total: Tensor | float = 0.0
    for k, term in enumerate(terms):
        total = total + term * ctx.bc(weights[:, k] * b_h)
    return total


@SOLVERS.register("uni_pc")
@dataclasses.dataclass(frozen=True)
class UniPC(_UniPCBase):
    """UniPC with B(h) = h (bh1; ComfyUI's ``uni_pc``): predictor order ``order`` (1–3), corrector one
    higher, one evaluation per step (module docstring)."""

    order: int = 3
    lower_order_final: bool = True


@SOLVERS.register("uni_pc_bh2")
@dataclasses.dataclass(frozen=True)
class UniPCBH2(_UniPCBase):
    """UniPC with B(h) = e^h − 1 (bh2; ComfyUI's ``uni_pc_bh2``, diffusers' default ``solver_type``)."""

    variant = "bh2"
    order: int = 3
    lower_order_final: bool = True
