"""The contract between an adaptive noise-level sampler and the training loop: :class:`AdaptiveSampler`.

A sampler replaces the objective's density p(λ) as the source of training levels. Each of its methods
is used by exactly one part of the loop:

=====================================  ==============================================================
method                                 caller
=====================================  ==============================================================
``sample(n, *, generator=None)``       :class:`~noiselevels.training.objective.Objective` (installed as
                                       its ``sampler``) draws the batch's levels and importance weights
``update(logsnr, loss)``               the training step (``runs.train``, ``runs.finetune``), after the
                                       optimiser step, with the batch's levels and ε-unit losses
``state_dict()`` / ``load_state_dict``  the trainer's checkpoints and ``--resume``; ``runs.adaptive.
                                       load_adaptive`` (a finished run's sampler)
``profile_overlay()``                  the trainer's loss profile (``adaptive.json``, the second axis
                                       of ``loss_profile.png``)
``to_dict()``                          ``Objective.to_dict`` (the run's resolved configuration)
=====================================  ==============================================================

Conventions: λ = log(α²/σ²) (large = clean); levels and importance weights are (n,) float64 tensors;
the losses fed to ``update`` are per-sample ε-unit MSEs ‖ε̂ − ε‖²/D (``ObjectiveOutput.eps_mse``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["AdaptiveSampler"]


@runtime_checkable
class AdaptiveSampler(Protocol):
    """What the training loop needs of an adaptive sampler (see the module docstring for the callers).

    ``isinstance(obj, AdaptiveSampler)`` checks that the methods exist (not their signatures).
    """

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """n levels λ and their importance weights, both (n,) float64: the objective's per-sample
        ε-unit weight becomes importance_weight·w(λ) (p(λ)/q(λ) for an unbiased proposal q)."""
        ...

    def update(self, logsnr: Tensor, loss: Tensor) -> None:
        """Fold in a batch's levels (B,) and unweighted ε-unit losses (B,), after every step."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The sampler's state: tensors and JSON-serialisable values (the trainer splits them)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError for the state of another kind or size."""
        ...

    def profile_overlay(self) -> dict[str, Any]:
        """The curve drawn over the loss profile: ``{"kind", "label", "logsnr", "value", ...}`` (JSON)."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The sampler's settings ``{"kind", ...}`` (JSON), as written into the run folder."""
        ...
