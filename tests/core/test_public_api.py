"""The public API: every name in ``noiselevels.__all__`` resolves, and the composition of DESIGN.md runs."""

import subprocess
import sys

import pytest
import torch

import noiselevels as nl


@pytest.mark.parametrize("name", nl.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(nl, name) is not None


def test_unknown_attribute_raises():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nl.nope  # noqa: B018


def test_import_is_lazy():
    code = "import sys, noiselevels; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_design_composition_runs():
    sched = nl.schedule("cosine")
    param = nl.parameterization("v")
    density = nl.density("uniform_t", schedule=sched)
    weight = nl.weighting("min_snr", gamma=5.0)
    loss_fn = nl.Objective(process="vp", parameterization=param, density=density, weighting=weight)

    def model(z, logsnr):
        return torch.zeros_like(z)

    x0 = torch.randn(8, 1, 4, 4)
    out = loss_fn(model, x0, generator=torch.Generator().manual_seed(0))
    assert out.loss.shape == (8,) and out.logsnr.shape == (8,)
    assert torch.isfinite(out.loss).all()

    W = nl.effective_weighting(density, weight)
    lam = torch.linspace(-10, 10, 21, dtype=torch.float64)
    torch.testing.assert_close(W(lam), density.prob(lam) * weight(lam))

    sigmas = nl.spacing("karras", rho=7).sigmas(18, sigma_min=0.002, sigma_max=80.0)
    assert sigmas.shape == (19,) and sigmas[-1] == 0

    def denoiser(x, sigma):
        return torch.zeros_like(x)

    noise = torch.randn(4, 2, dtype=torch.float64)
    x = nl.solve(denoiser, noise * sigmas[0], sigmas=sigmas, solver="heun")
    # the exact answer for a point mass at 0 is 0
    torch.testing.assert_close(x, torch.zeros_like(x))


def test_exported_functions_are_not_shadowed_by_submodules():
    """Importing any submodule first must not replace an exported function by a module of the same
    name (Python sets ``package.<submodule>`` on import)."""
    code = (
        "import importlib, pkgutil, types, noiselevels as nl\n"
        "for m in pkgutil.walk_packages(nl.__path__, 'noiselevels.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "bad = [n for n in nl._EXPORTS if isinstance(getattr(nl, n), types.ModuleType)]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_submodules():
    assert callable(nl.toy.mixture_2d) and callable(nl.spectral.rapsd)


def test_every_command_is_registered_and_its_help_is_plain_text():
    """All commands load (no silent skip), and --help shows no reST ``literal`` markers."""
    import argparse

    from noiselevels.cli import COMMAND_MODULES, build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(sub.choices) == set(COMMAND_MODULES)
    helps = [p.format_help() for p in sub.choices.values()]
    helps += [c.format_help() for a in sub.choices["spacing"]._actions
              if isinstance(a, argparse._SubParsersAction) for c in a.choices.values()]  # fmt: skip
    assert all("``" not in h for h in helps)
