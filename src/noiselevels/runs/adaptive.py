"""A run folder's adaptive sampler: :func:`load_adaptive` rebuilds the ``[adaptive]`` sampler of a
finished (or interrupted) training run from its ``config.json`` and restores its state from the newest
checkpoint.

The sampler's state is checkpointed split in two (``runs.train``): its tensors go into the checkpoint's
extra tensors under ``sampler.<key>``, everything else into the JSON state's ``"sampler"`` entry;
:func:`sampler_state` joins them again. The samplers themselves live in
:mod:`noiselevels.training.adaptive` (which knows nothing of run folders).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from noiselevels.runs.checkpoint import load_checkpoint
from noiselevels.runs.config import load_train_config, noise_config
from noiselevels.training.adaptive import AdaptiveSampler, from_config

__all__ = ["load_adaptive", "sampler_state"]

_PREFIX = "sampler."


def sampler_state(state: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler's ``state_dict()`` from a checkpoint: the JSON ``state["sampler"]`` entry joined
    with the extra tensors stored under ``sampler.<key>``."""
    out = dict(state.get("sampler", {}))
    out.update({k[len(_PREFIX) :]: v for k, v in extra.items() if k.startswith(_PREFIX)})
    return out


def load_adaptive(run_dir: str | os.PathLike) -> AdaptiveSampler:
    """The adaptive sampler of a run folder, restored from its newest checkpoint.

    E.g. a time warp exported as a sampling spacing:
    ``spacing("from_density", density=load_adaptive("runs/x").density())``.
    Raises ValueError for a folder that is not a run folder or a run without ``[adaptive]``.
    """
    path = Path(run_dir)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a run folder (no config.json)")
    cfg = load_train_config(path / "config.json")
    if not cfg.adaptive:
        raise ValueError(f"run {path} has no [adaptive] section")
    sampler = from_config(cfg.adaptive, objective=noise_config(cfg.noise).objective())
    ck = load_checkpoint(path / "checkpoints")
    sampler.load_state_dict(sampler_state(ck.state, ck.extra))
    return sampler
