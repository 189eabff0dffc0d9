"""Retention without a classifier: how much an adapter changes what the base model does elsewhere.

A LoRA that teaches a concept should leave the base model alone on everything else (DreamBooth's
"language drift", Ruiz et al. 2023 §3.3). Without a classifier of the other classes this is measured
directly on the denoiser, at the fixed levels and with the fixed noise of
``noiselevels.runs.validation`` (λ grid −8…8, noise of item i seeded from (seed, i), float64 after the
model):

* **prediction change** c_{i,k} = ‖ε̂_adapted − ε̂_base‖²/D at z = α·x₀ + σ·ε, λ = λ_k, with the
  conditioning of the *retention set* — prompts without the trigger (or the other classes of a
  class-conditional model) and their images x₀: regularisation images when given, otherwise samples of
  the base model for those prompts (what the base does). ε units: the difference of two predictions of
  the parameterisation's target divided by its factor f(λ), exact because the target is affine in ε̂
  at fixed z. 0 = the adapter changes nothing there.
* **validation loss** of the base and of the adapted model on the same items and noise, and their
  paired difference (adapted − base; > 0 = the adapter made the model worse on them).

Each as a curve over λ and per band (noisy / mid / clean), with standard errors over items
(``validation.level_summary``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from noiselevels.runs.validation import DEFAULT_GRID, Item, level_errors, level_summary, paired, settings

__all__ = ["retention", "without_trigger"]


def without_trigger(prompts: Sequence[str], trigger: str | None) -> list[str]:
    """The prompts with every whole-word occurrence of ``trigger`` removed (and the commas and spaces
    left behind tidied): the retention prompts of a concept's captions. Unchanged without a trigger."""
    if not trigger:
        return list(prompts)
    rx = re.compile(rf"(?<!\w){re.escape(trigger)}(?!\w)")
    out = []
    for p in prompts:
        s = rx.sub("", p)
        s = re.sub(r",(\s*,)+", ",", re.sub(r"\s+,", ",", s))
        s = re.sub(r"\s{2,}", " ", s).strip(" ,")
        out.append(s)
    return out


def retention(
    base: Callable[..., Tensor],
    adapted: Callable[..., Tensor],
    items: Sequence[Item],
    *,
    process: str,
    parameterization: Any,
    grid: Sequence[float] = DEFAULT_GRID,
    seed: int = 0,
    repeats: int = 1,
    batch_size: int = 64,
    device: str = "cpu",
    source: str = "",
) -> dict[str, Any]:
    """The retention measures of ``adapted`` against ``base`` on the retention set ``items`` (module
    docstring) as a JSON-able dict: ``change`` (prediction change), ``loss_base``, ``loss_adapted``,
    ``loss_difference`` (adapted − base, paired) — each a ``validation.level_summary`` — and
    ``settings`` (grid, seed, repeats, ``source``: where the items came from)."""
    le = level_errors({"base": base, "adapted": adapted}, items, process=process,
                      parameterization=parameterization, grid=grid, seed=seed, repeats=repeats,
                      batch_size=batch_size, reference="base", device=device)  # fmt: skip
    return {
        "change": level_summary(le.changes["adapted"], le.grid),
        "loss_base": level_summary(le.errors["base"], le.grid),
        "loss_adapted": level_summary(le.errors["adapted"], le.grid),
        "loss_difference": paired(le.errors["adapted"], le.errors["base"], le.grid),
        "settings": settings(le.grid, seed=seed, repeats=repeats, source=source),
    }
