"""solve_per_instance (one σ grid per row, through ``noiselevels.sampling.solvers.solve``) against the
per-row loop it replaced, kept here as the reference: whole tensors, float64, to 1e-10."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from noiselevels import spectral as sp

F64 = torch.float64


def _reference_per_row(denoiser, x, sigmas, solver):
    """The per-instance solver as it was written before it went through ``solve``: euler, heun (EDM
    Alg. 1 without churn, Euler on the step to 0) and dpmpp_2m with σ a (B,) tensor per step."""
    s = sigmas.to(F64)

    def bc(v):
        return v.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

    old = None
    for i in range(s.shape[1] - 1):
        si, sn = s[:, i], s[:, i + 1]
        den = denoiser(x, si.to(x.dtype))
        if solver == "dpmpp_2m":
            ratio = sn / si
            if old is None or bool((sn == 0).all()):
                x = bc(ratio) * x + bc(1.0 - ratio) * den
            else:
                r = torch.log(s[:, i - 1] / si) / torch.log(si / sn)
                d = bc(1.0 + 1.0 / (2.0 * r)) * den - bc(1.0 / (2.0 * r)) * old
                x = bc(ratio) * x + bc(1.0 - ratio) * d
            old = den
            continue
        d = (x - den) / bc(si)
        step = bc(sn - si)
        if solver == "euler" or bool((sn == 0).all()):
            x = x + d * step
        else:
            x2 = x + d * step
            d2 = (x2 - denoiser(x2, sn.to(x.dtype))) / bc(sn)
            x = x + (d + d2) / 2 * step
    return x


def _nonlinear_denoiser(x, sigma):
    """A denoiser that mixes pixels and depends non-linearly on σ (so a wrong σ per row shows)."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return torch.tanh(x / (1.0 + s)) * (0.8 / (0.8 + s**2)) + 0.1 * x.mean(
        dim=tuple(range(1, x.ndim)), keepdim=True
    )


@pytest.mark.parametrize("trailing_zero", [True, False])
@pytest.mark.parametrize("solver", sp.PER_INSTANCE_SOLVERS)
def test_solve_per_instance_equals_the_per_row_reference(solver, trailing_zero):
    g = torch.Generator().manual_seed(0)
    b, steps = 5, 7
    lo = -8.0 + torch.rand(b, generator=g, dtype=F64) * 4
    hi = 4.0 + torch.rand(b, generator=g, dtype=F64) * 6
    fam = sp.InstanceSchedules(shape_t=(0.0, 0.3, 1.0), shape_s=(1.0, 0.5, 0.0))
    grids = fam.sigmas(steps, logsnr_min=lo, logsnr_max=hi)
    if not trailing_zero:
        grids = grids[:, :-1]
    x = torch.randn(b, 2, 4, 4, generator=g, dtype=F64) * grids[:, :1, None, None]
    out = sp.solve_per_instance(_nonlinear_denoiser, x, sigmas=grids, solver=solver)
    ref = _reference_per_row(_nonlinear_denoiser, x, grids, solver)
    assert_close(out, ref, rtol=0, atol=1e-10)
    assert not torch.equal(out[0], out[1])


def test_solve_per_instance_leaves_the_global_rng_alone():
    x = torch.randn(2, 3, dtype=F64)
    grids = torch.tensor([[4.0, 1.0, 0.2, 0.0], [9.0, 2.0, 0.5, 0.0]], dtype=F64)
    state = torch.get_rng_state()
    sp.solve_per_instance(_nonlinear_denoiser, x, sigmas=grids, solver="heun")
    assert torch.equal(torch.get_rng_state(), state)


def test_solve_per_instance_needs_one_grid_per_row():
    x = torch.randn(2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"shape \(B, N \+ 1\) with B = 2"):
        sp.solve_per_instance(_nonlinear_denoiser, x, sigmas=torch.tensor([2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match=r"shape \(B, N \+ 1\) with B = 2"):
        sp.solve_per_instance(_nonlinear_denoiser, x, sigmas=torch.ones(3, 4))
