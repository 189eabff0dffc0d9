"""Adaptive noise levels: the training levels (or their weights) adapt to the loss during training.

Four mechanisms, each usable on its own and through the trainer's ``[adaptive]`` section
(:func:`from_config`). All of them plug into :class:`~noiselevels.training.objective.Objective` as a
*sampler*, an :class:`AdaptiveSampler` (the typed contract with the training loop): an object with
``sample(n, *, generator=None) -> (logsnr, importance_weight)`` (both (n,), float64),
``update(logsnr, loss)`` (fed, after every step, the levels and the unweighted ε-unit loss
‖ε̂ − ε‖²/D of the batch), ``state_dict()`` / ``load_state_dict()`` (checkpointed by the trainer),
``profile_overlay()`` (the curve the trainer draws over its loss profile) and ``to_dict()`` (its
settings, written into the run folder). The objective multiplies
its weighting w(λ) by the importance weight, so a sampler whose proposal is q(λ) and which returns
p(λ)/q(λ) keeps the effective weighting W(λ) = p(λ)·w(λ) exactly: per sample W(λ)/q(λ)·‖ε̂ − ε‖².

==========================  ==================================================  ======================
mechanism                   what adapts                                         effective weighting
==========================  ==================================================  ======================
:class:`LossImportanceSampler`  proposal q ∝ W·EMA(loss) per λ bin, weight W/q   unchanged (unbiased)
:class:`UncertaintySampler`     per-level weight e^(−u(λ)), u learned           changes: → W/E[loss]
    (+ :class:`UncertaintyWeighting`, the u(λ) module)
:class:`TimeWarp`               density ∝ |dL/dλ| (monotone fit of the loss)    changes: q_warp·w
:class:`LearnedScheduleSampler` λ(t) of a monotone net, t ~ U, weight W·|λ'|     unchanged (unbiased)
    (+ :class:`LearnedSchedule`, the λ(t) network)
==========================  ==================================================  ======================

Sources: Kingma & Gao 2023, "Understanding diffusion objectives", App. F (importance sampling of
λ from a loss EMA); Karras et al. 2024 (EDM2), "Analyzing and improving the training dynamics",
§5 / eq. 21 (learned uncertainty u(σ), loss w/e^u·‖D − y‖² + u); Dieleman et al. 2022 (CDCD),
"Continuous diffusion for categorical data", §3.3 (time warping); Kingma et al. 2021 (VDM),
"Variational diffusion models", App. I.2 / eq. 22 (learned γ(t) with positive weights, interior
trained to minimise the variance of the loss estimator).

Modules: ``importance`` (and ``piecewise``, the proposal density), ``uncertainty``, ``timewarp``,
``learned``; ``protocol`` (:class:`AdaptiveSampler`), ``config`` (:func:`from_config`). A finished run's
sampler is read back by ``noiselevels.runs.adaptive.load_adaptive`` (this package imports nothing above
``training``).

Conventions: λ = log(α²/σ²) (large = clean); t ∈ [0, 1], t = 0 clean. The losses fed to
``update`` are ε-unit MSEs per sample (``ObjectiveOutput.eps_mse``). Everything here is float64 on
the CPU (a few hundred numbers), whatever device the model is on.
"""

from __future__ import annotations

from noiselevels.training.adaptive.config import PARAMS, from_config
from noiselevels.training.adaptive.importance import LossImportanceSampler
from noiselevels.training.adaptive.learned import (
    LearnedSchedule,
    LearnedScheduleSampler,
    LearnedScheduleSnapshot,
)
from noiselevels.training.adaptive.piecewise import PiecewiseConstant
from noiselevels.training.adaptive.protocol import AdaptiveSampler
from noiselevels.training.adaptive.timewarp import TimeWarp
from noiselevels.training.adaptive.uncertainty import UncertaintySampler, UncertaintyWeighting

__all__ = [
    "PARAMS",
    "AdaptiveSampler",
    "LearnedSchedule",
    "LearnedScheduleSampler",
    "LearnedScheduleSnapshot",
    "LossImportanceSampler",
    "PiecewiseConstant",
    "TimeWarp",
    "UncertaintySampler",
    "UncertaintyWeighting",
    "from_config",
]
