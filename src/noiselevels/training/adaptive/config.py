"""The trainer's ``[adaptive]`` table → a sampler: :func:`from_config`.

``kind`` = ``"importance"`` | ``"uncertainty"`` | ``"timewarp"`` | ``"learned_schedule"`` plus that
kind's parameters (:data:`PARAMS`; unknown keys are errors). Reading a finished run's sampler back
from its folder is ``noiselevels.runs.adaptive.load_adaptive`` (a run folder is the runs layer's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from noiselevels.components import Density, Weighting
from noiselevels.options import check_keys
from noiselevels.training.adaptive.importance import LossImportanceSampler
from noiselevels.training.adaptive.learned import LearnedSchedule, LearnedScheduleSampler
from noiselevels.training.adaptive.protocol import AdaptiveSampler
from noiselevels.training.adaptive.timewarp import TimeWarp
from noiselevels.training.adaptive.uncertainty import UncertaintySampler
from noiselevels.training.objective import Objective

__all__ = ["PARAMS", "from_config"]

PARAMS: dict[str, tuple[str, ...]] = {
    "importance": ("bins", "logsnr_min", "logsnr_max", "decay", "floor", "statistic", "stratified"),
    "uncertainty": ("features", "lr", "seed", "stratified"),
    "timewarp": ("bins", "logsnr_min", "logsnr_max", "decay", "floor", "stratified"),
    "learned_schedule": ("bins", "logsnr_min", "logsnr_max", "decay", "lr", "grid", "hidden", "seed"),
}
"""Each kind's parameters (the keys of ``[adaptive]`` besides ``kind``)."""

_NET_PARAMS = ("logsnr_min", "logsnr_max", "hidden", "seed")  # learned_schedule: the network's


def from_config(
    section: Mapping[str, Any],
    *,
    objective: Objective | None = None,
    density: Density | None = None,
    weighting: Weighting | str | None = None,
) -> AdaptiveSampler:
    """Build the sampler of a trainer's ``[adaptive]`` section.

    ``kind`` = ``"importance"`` | ``"uncertainty"`` | ``"timewarp"`` | ``"learned_schedule"`` plus that
    kind's parameters (unknown keys are errors). The target p and w are the ``objective``'s density and
    weighting (or ``density``/``weighting``). Example::

        [adaptive]
        kind = "importance"
        bins = 100
        logsnr_min = -15.0
        logsnr_max = 15.0
        decay = 0.9
    """
    if not isinstance(section, Mapping):
        raise ValueError(f"[adaptive] must be a table; got {section!r}")
    sec = dict(section)
    kind = sec.pop("kind", None)
    if not isinstance(kind, str) or kind not in PARAMS:
        raise ValueError(f"[adaptive] kind must be one of {', '.join(map(repr, PARAMS))}; got {kind!r}")
    check_keys(f"[adaptive] (kind {kind!r})", sec, PARAMS[kind])
    if objective is not None:
        density = objective.density if density is None else density
        weighting = objective.weighting if weighting is None else weighting
    if kind == "timewarp":
        return TimeWarp(**sec)
    if density is None:
        raise ValueError(f"[adaptive] kind {kind!r} needs the objective's density p(λ) as its target")
    if kind == "importance":
        return LossImportanceSampler(density, weighting, **sec)
    if kind == "uncertainty":
        return UncertaintySampler(density, weighting, **sec)
    net_kw = {k: sec.pop(k) for k in _NET_PARAMS if k in sec}
    return LearnedScheduleSampler(LearnedSchedule(**net_kw), density, weighting, **sec)
