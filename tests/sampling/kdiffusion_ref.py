"""Load k-diffusion's ``sampling.py`` as a reference implementation, without its package ``__init__``.

The installed ``k_diffusion`` package imports torchvision in its ``__init__`` (and in ``utils``), which
cannot be installed beside the pinned CPU torch. ``sampling.py`` itself only needs ``utils.append_dims``,
scipy, torchsde, tqdm and ``torchdiffeq.odeint`` (used by ``log_likelihood`` only). This module loads the
file from the installed package under a private name with a stub parent package that provides a minimal
``utils`` (and a stub ``torchdiffeq`` when it is not installed), so tests can call e.g.
``kdiffusion_sampling().get_sigmas_karras`` or ``.sample_heun``. Nothing of k-diffusion is copied here.

Usage in a test::

    from kdiffusion_ref import kdiffusion_sampling
    K = kdiffusion_sampling()          # skips the test if k-diffusion is not installed
    K.get_sigmas_karras(18, 0.002, 80.0)
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch

_PKG = "_kdiffusion_ref"


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """Append trailing singleton dimensions until ``x`` has ``target_dims`` dimensions."""
    dims_to_append = target_dims - x.ndim
    if dims_to_append < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * dims_to_append]


@functools.lru_cache(maxsize=1)
def _load() -> types.ModuleType | None:
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "sampling.py"
    if not path.is_file():
        return None
    pkg = types.ModuleType(_PKG)
    pkg.__path__ = []  # a package, so that ``from . import utils`` resolves to the stub below
    utils = types.ModuleType(f"{_PKG}.utils")
    utils.append_dims = _append_dims
    pkg.utils = utils
    sys.modules.setdefault(_PKG, pkg)
    sys.modules.setdefault(f"{_PKG}.utils", utils)
    if importlib.util.find_spec("torchdiffeq") is None and "torchdiffeq" not in sys.modules:
        stub = types.ModuleType("torchdiffeq")

        def odeint(*args, **kwargs):
            raise RuntimeError("torchdiffeq is not installed (stubbed by tests/kdiffusion_ref.py)")

        stub.odeint = odeint
        sys.modules["torchdiffeq"] = stub
    mod_spec = importlib.util.spec_from_file_location(f"{_PKG}.sampling", path)
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[f"{_PKG}.sampling"] = module
    mod_spec.loader.exec_module(module)
    return module


def kdiffusion_sampling() -> types.ModuleType:
    """k-diffusion's ``sampling`` module; ``pytest.skip`` when k-diffusion is not installed."""
    module = _load()
    if module is None:
        pytest.skip("k-diffusion is not installed")
    return module
