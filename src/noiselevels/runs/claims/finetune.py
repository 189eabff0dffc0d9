"""The fine-tuning post's rules of thumb, tested on the project's new-concept task: LoRA on
``mnist-base`` (which never saw the digit 7), taught the 7 from 30 images (``noiselevels.runs.finetune``,
the same fine-tune and evaluation as ``noiselevels sweep`` and benchmarks/finetune_timestep_types.py),
with ai-toolkit's timestep types ``sigmoid``, ``linear``, ``weighted`` and ``style``.

FD new: Fréchet distance of generated 7s to the held-out real 7s (MNIST classifier features); FD other:
of the other digits to their real images (retention: lower = the base's knowledge kept). Every type
uses the same seeds (LoRA init, data order, noise), so the comparisons are paired.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from noiselevels.runs.bases import load_base
from noiselevels.runs.claims.registry import finding, register
from noiselevels.runs.claims.stats import ratio_interval, verdict
from noiselevels.runs.finetune import concept_images, evaluate_finetune, finetune

__all__ = ["TYPES"]

TYPES = ("sigmoid", "linear", "weighted", "style")
_FULL = {"steps": 100, "num_new": 100, "num_other": 60, "sample_steps": 8, "features": "mnist"}
_QUICK = {"steps": 2, "num_new": 8, "num_other": 9, "sample_steps": 2, "features": "pixels"}


@functools.lru_cache(maxsize=1)
def _base():
    return load_base("mnist-base")


def _one(timestep_type: str, seed: int, sizes: dict[str, Any]) -> dict[str, float]:
    base = _base()
    shape = tuple(base.data["shape"])
    x, real_new, _ = concept_images(class_label=7, num_images=30, shape=shape)
    other = [c for c in (base.trained_classes or []) if c != base.spare_label]
    res = finetune(base, x, timestep_type=timestep_type, rank=8, lr=2e-3, steps=sizes["steps"],
                   batch_size=16, seed=seed)  # fmt: skip
    m = evaluate_finetune(res.model, res.noise, shape, label=res.label, real_new=real_new,
                          other_classes=other,
                          num_new=sizes["num_new"], num_other=sizes["num_other"], steps=sizes["sample_steps"],
                          seed=1234 + seed, features=sizes["features"])  # fmt: skip
    return {"fd_new": float(m["fd_new"]), "fd_other": float(m["fd_other"]), "seconds": res.train_seconds}


@register(
    "finetune_rules",
    claim="fine-tuning rules of thumb: sigmoid is a good default, linear is poor, weighted is good for new "
    "subjects, and style (low-noise) timesteps teach style rather than content",
    source="the ai-toolkit fine-tuning folklore (timestep types of ai-toolkit; 'sigmoid for likeness, "
    "weighted for new subjects, style for style') as collected in this project's issue 16",
    setup="LoRA rank 8 on mnist-base, 30 images of the unseen 7, 100 steps, batch 16, lr 2e-3; FD of 100 "
    "generated 7s to the held-out 7s and of 60 other digits (dpmpp_2m, 8 steps)",
)
def finetune_rules(quick: bool, seeds: Sequence[int]) -> dict[str, Any]:
    sizes = _QUICK if quick else _FULL
    res = {t: [_one(t, s, sizes) for s in seeds] for t in TYPES}

    def col(t, k):
        return [r[k] for r in res[t]]

    linear = ratio_interval(col("linear", "fd_new"), col("sigmoid", "fd_new"))
    weighted = ratio_interval(col("weighted", "fd_new"), col("sigmoid", "fd_new"))
    style = ratio_interval(col("style", "fd_new"), col("sigmoid", "fd_new"))
    keep = ratio_interval(col("style", "fd_other"), col("sigmoid", "fd_other"))
    return {"findings": [
        finding("linear is poor: FD new", "linear / sigmoid, ×", linear,
                verdict(linear, better_if="above", threshold=1.0), "reproduced if the interval is above 1×"),
        finding("weighted is good for a new subject: FD new", "weighted / sigmoid, ×", weighted,
                verdict(weighted, better_if="below", threshold=1 / 0.85),
                "reproduced if the interval is below 1.18× (no more than 15 % worse than sigmoid)"),
        finding("style timesteps teach content worse: FD new", "style / sigmoid, ×", style,
                verdict(style, better_if="above", threshold=1.0), "reproduced if the interval is above 1×"),
        finding("style timesteps keep the rest: FD other", "style / sigmoid, ×", keep,
                verdict(keep, better_if="below", threshold=1.0), "reproduced if the interval is below 1×"),
    ], "details": {"runs": res, "sizes": sizes}}  # fmt: skip
