"""Shared test guards."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _no_leaked_torch_state():
    """A test (or the library code it calls) must not leave autograd switched off or change the
    default dtype: the next test would fail far from the cause."""
    dtype = torch.get_default_dtype()
    yield
    leaked = []
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        leaked.append("autograd left disabled")
    if torch.get_default_dtype() != dtype:
        torch.set_default_dtype(dtype)
        leaked.append(f"default dtype left at {torch.get_default_dtype()}")
    if leaked:
        pytest.fail("; ".join(leaked), pytrace=False)


@pytest.fixture
def one_thread():
    """Tiny models and many tiny ops: torch's intra-op thread pool costs more than it gains and fights
    the other tests for the two cores. Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
