"""Validation loss at fixed noise levels: the ε-unit denoising loss of a model on held-out images.

The training loss of a fine-tune is a noisy number: every step draws its own levels and noise. This
module measures one model (or several on the same inputs) the same way every time:

* a **fixed grid of levels** λ₁ < … < λ_K (default −8, −6, …, 8; λ = log(α²/σ²), large = clean);
* **fixed noise**: item i (an image or latent x₀, in the order given) draws its noise ε_{i,r,k}
  (``repeats`` r, levels k) from its own CPU generator seeded from (``seed``, i)
  (``noiselevels.runs.run.sample_seed``), in float64, in that order — so the numbers do not depend on
  the batch size, on the device the model runs on, or on how many items there are;
* the **ε-unit loss** e_{i,k} = mean_r ‖ε̂ − ε‖²/D at z = α·x₀ + σ·ε, computed as in the training
  objective (``noiselevels.training.objective``): ‖pred − target‖²/(D·f(λ)) with the parameterisation's
  factor f (ε-MSE units, Kingma & Gao 2023; DESIGN.md), so an ε-, v-, x₀- or flow-predicting model of the
  same denoiser gets the same number. The model runs in its own dtype; everything after its output
  (targets, squares, means) is float64 on the CPU.

Reported (:func:`level_summary`) per level (the curve over λ), per **band** — ``noisy`` λ < −3,
``mid`` −3 ≤ λ ≤ 3, ``clean`` λ > 3 — and over all levels: the mean over items of e_{i,k} and its
standard error std_i(ē_i)/√N over items (items are the independent unit; the levels of one item share
its image). Two models evaluated on the same noise are compared item by item (:func:`paired`): the
difference has a paired standard error, usually far smaller than either model's own.

The model contract is the objective's: ``model(model_input(z), λ, **cond)`` returns the
parameterisation's target, with ``cond`` a dict of tensors with a leading batch dimension (class labels
of an MNIST model, text embeddings of a latent pipeline).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from noiselevels.levels import alpha_sigma, broadcast
from noiselevels.parameterizations import parameterization as _parameterization
from noiselevels.runs.run import sample_generators

__all__ = [
    "BANDS",
    "DEFAULT_GRID",
    "Item",
    "LevelErrors",
    "holdout_split",
    "items_from",
    "level_errors",
    "level_summary",
    "paired",
    "settings",
    "validation_loss",
]

DEFAULT_GRID: tuple[float, ...] = tuple(float(v) for v in range(-8, 9, 2))
# (name, low, high): noisy λ < −3, mid −3 ≤ λ ≤ 3, clean λ > 3
BANDS: tuple[tuple[str, float, float], ...] = (
    ("noisy", -math.inf, -3.0),
    ("mid", -3.0, 3.0),
    ("clean", 3.0, math.inf),
)


@dataclasses.dataclass(frozen=True)
class Item:
    """One validation item: clean data ``x0`` (C, …) (image or latent) and its conditioning ``cond``
    (tensors without the batch dimension, e.g. a 0-d label or (L, D) text embeddings)."""

    x0: Tensor
    cond: Mapping[str, Tensor] = dataclasses.field(default_factory=dict)
    name: str = ""


def items_from(
    x0: Tensor, cond: Mapping[str, Tensor] | None = None, names: Sequence[str] | None = None
) -> list[Item]:
    """Items from a batch ``x0`` (N, C, …) and conditioning tensors with the same leading N."""
    if not isinstance(x0, Tensor) or x0.ndim < 2:
        raise ValueError(f"x0 must be a tensor of shape (N, C, ...); got {getattr(x0, 'shape', x0)!r}")
    n = x0.shape[0]
    cond = dict(cond or {})
    for k, v in cond.items():
        if not isinstance(v, Tensor) or v.ndim < 1 or v.shape[0] != n:
            raise ValueError(f"cond[{k!r}] must be a tensor with leading dimension {n}; got {v!r:.80}")
    if names is not None and len(names) != n:
        raise ValueError(f"names must have {n} entries; got {len(names)}")
    return [Item(x0[i], {k: v[i] for k, v in cond.items()}, names[i] if names else str(i)) for i in range(n)]


def holdout_split(n: int, *, fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """A fixed, seeded split of n items (in their sorted order) into (train, held-out) index lists:
    round(fraction·n) held out, at least 1 of each; the held-out indices are the first of a seeded
    permutation (``torch.randperm`` on a CPU generator), both lists sorted."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"a held-out split needs at least 2 images; got {n!r}")
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction must be a number in (0, 1); got {fraction!r}")
    k = min(n - 1, max(1, round(fraction * n)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed))).tolist()
    return sorted(perm[k:]), sorted(perm[:k])


def _check_grid(grid: Sequence[float]) -> Tensor:
    g = torch.as_tensor(list(grid), dtype=torch.float64)
    if g.ndim != 1 or len(g) < 1 or not torch.isfinite(g).all() or (len(g) > 1 and (g.diff() <= 0).any()):
        raise ValueError(f"the λ grid must be finite, increasing values; got {list(grid)!r}")
    return g


def _model_dtype(model: Any) -> torch.dtype:
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.dtype
    return torch.float32


@dataclasses.dataclass
class LevelErrors:
    """Per item and level (N, K), float64: ``errors[name]`` the ε-unit loss of each model,
    ``changes[name]`` the ε-unit mean squared change ‖ε̂_name − ε̂_reference‖²/D of its prediction
    (models other than the reference); ``grid`` the levels (K,)."""

    grid: Tensor
    errors: dict[str, Tensor]
    changes: dict[str, Tensor]
    names: list[str]


def _noise(items: Sequence[Item], idx: Sequence[int], seed: int, k: int, repeats: int) -> Tensor:
    """Item i's fixed noise (repeats, K, *shape), float64, from its own generator (module docstring)."""
    gens = sample_generators(seed, idx)
    return torch.stack(
        [torch.randn((repeats, k, *items[i].x0.shape), generator=g, dtype=torch.float64)
         for i, g in zip(idx, gens)]
    )  # fmt: skip


def _groups(items: Sequence[Item]) -> list[list[int]]:
    """Consecutive runs of items with the same x0 shape and conditioning shapes (batchable)."""
    out: list[list[int]] = []
    key_prev = None
    for i, it in enumerate(items):
        key = (tuple(it.x0.shape), tuple(sorted((k, tuple(v.shape)) for k, v in it.cond.items())))
        if out and key == key_prev:
            out[-1].append(i)
        else:
            out.append([i])
        key_prev = key
    return out


@torch.no_grad()
def level_errors(
    models: Mapping[str, Callable[..., Tensor]],
    items: Sequence[Item],
    *,
    process: str,
    parameterization: Any,
    grid: Sequence[float] = DEFAULT_GRID,
    seed: int = 0,
    repeats: int = 1,
    batch_size: int = 64,
    reference: str | None = None,
    device: str | torch.device = "cpu",
) -> LevelErrors:
    """The ε-unit loss of every model in ``models`` at every (item, level), on the same fixed noise
    (module docstring), and with ``reference`` the mean squared change of each other model's prediction
    against it. ``batch_size`` rows (item × repeat × level) per model call."""
    if not models:
        raise ValueError("level_errors needs at least one model")
    if reference is not None and reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {sorted(models)}")
    if not items:
        raise ValueError("no validation items: give at least one image")
    for name, v in (("repeats", repeats), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    g = _check_grid(grid)
    p = _parameterization(parameterization) if isinstance(parameterization, str) else parameterization
    k = len(g)
    n = len(items)
    errors = {m: torch.zeros(n, k, dtype=torch.float64) for m in models}
    changes = {m: torch.zeros(n, k, dtype=torch.float64) for m in models if reference and m != reference}
    for idx in _groups(items):
        eps_all = _noise(items, idx, seed, k, repeats)  # (n_g, R, K, *shape)
        x0_all = torch.stack([items[i].x0 for i in idx]).to(torch.float64)
        cond_all = {c: torch.stack([items[i].cond[c] for i in idx]) for c in items[idx[0]].cond}
        rows = torch.arange(len(idx) * repeats * k)
        for chunk in rows.split(batch_size):
            it, rem = chunk // (repeats * k), chunk % (repeats * k)
            r, lv = rem // k, rem % k
            x0, eps, lam = x0_all[it], eps_all[it, r, lv], g[lv]
            a, s = (broadcast(c, x0) for c in alpha_sigma(logsnr=lam, process=process))
            z = a * x0 + s * eps
            zin = p.model_input(z, alpha=a, sigma=s)
            target = p.target(x0=x0, eps=eps, alpha=a, sigma=s)
            factor = p.loss_factor(lam, process=process)
            cond = {c: v[it].to(device) for c, v in cond_all.items()}
            preds = {}
            for name, model in models.items():
                dt = _model_dtype(model)
                out = model(zin.to(device, dt), lam.to(device, dt), **cond)
                if out.shape != target.shape:
                    raise ValueError(f"model {name!r} returned shape {tuple(out.shape)}; "
                                     f"expected {tuple(target.shape)}")  # fmt: skip
                preds[name] = out.to("cpu", torch.float64)
                err = (preds[name] - target).pow(2).flatten(1).mean(1) / factor
                errors[name].index_put_((torch.as_tensor(idx)[it], lv), err / repeats, accumulate=True)
            for name in changes:
                ch = (preds[name] - preds[reference]).pow(2).flatten(1).mean(1) / factor
                changes[name].index_put_((torch.as_tensor(idx)[it], lv), ch / repeats, accumulate=True)
    return LevelErrors(g, errors, changes, [it.name for it in items])


def _in_band(lam: float, lo: float, hi: float) -> bool:
    """noisy (−inf, −3), mid [−3, 3] (both ends), clean (3, inf)."""
    return lo <= lam <= hi if math.isfinite(lo) and math.isfinite(hi) else lo < lam < hi


def _mean_se(v: Tensor) -> tuple[float, float | None]:
    """Mean over items and its standard error std/√N (None with one item)."""
    n = v.numel()
    se = float(v.std(unbiased=True) / math.sqrt(n)) if n > 1 else None
    return float(v.mean()), se


def level_summary(per_item: Tensor, grid: Sequence[float] | Tensor) -> dict[str, Any]:
    """Summary of an (N, K) table of per-item values at the levels ``grid`` (K,): ``curve`` (per level:
    λ, mean, stderr), ``bands`` (noisy / mid / clean: mean over the band's levels, stderr over items,
    the levels used), ``overall`` (all levels) and ``num_items`` (module docstring)."""
    g = torch.as_tensor(grid, dtype=torch.float64)
    v = per_item.to(torch.float64)
    if v.ndim != 2 or v.shape[1] != len(g):
        raise ValueError(f"per-item values must have shape (N, {len(g)}); got {tuple(v.shape)}")
    curve = []
    for j, lam in enumerate(g.tolist()):
        m, se = _mean_se(v[:, j])
        curve.append({"logsnr": lam, "mean": m, "stderr": se})
    bands = {}
    for name, lo, hi in BANDS:
        sel = [j for j, lam in enumerate(g.tolist()) if _in_band(lam, lo, hi)]
        if sel:
            m, se = _mean_se(v[:, sel].mean(1))
            bands[name] = {"mean": m, "stderr": se, "logsnr": [g[j].item() for j in sel]}
    m, se = _mean_se(v.mean(1))
    return {"curve": curve, "bands": bands, "overall": {"mean": m, "stderr": se}, "num_items": v.shape[0]}


def paired(a: Tensor, b: Tensor, grid: Sequence[float] | Tensor) -> dict[str, Any]:
    """:func:`level_summary` of the item-by-item difference a − b (same items, same noise)."""
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    return level_summary(a - b, grid)


def validation_loss(
    model: Callable[..., Tensor],
    items: Sequence[Item],
    *,
    process: str,
    parameterization: Any,
    grid: Sequence[float] = DEFAULT_GRID,
    seed: int = 0,
    repeats: int = 1,
    batch_size: int = 64,
    baseline: Callable[..., Tensor] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The validation loss of ``model`` on ``items`` (module docstring) as a JSON-able dict:
    ``model`` (:func:`level_summary`), with ``baseline`` (the base without the adapter) also
    ``baseline`` and ``difference`` (model − baseline, paired), plus the settings used."""
    models = {"model": model} if baseline is None else {"model": model, "baseline": baseline}
    le = level_errors(models, items, process=process, parameterization=parameterization, grid=grid,
                      seed=seed, repeats=repeats, batch_size=batch_size, device=device)  # fmt: skip
    out: dict[str, Any] = {"model": level_summary(le.errors["model"], le.grid)}
    if baseline is not None:
        out["baseline"] = level_summary(le.errors["baseline"], le.grid)
        out["difference"] = paired(le.errors["model"], le.errors["baseline"], le.grid)
    out["settings"] = settings(le.grid, seed=seed, repeats=repeats)
    return out


def settings(grid: Tensor, *, seed: int, repeats: int, source: str | None = None) -> dict[str, Any]:
    """The settings a result was measured with (JSON): grid, seed, repeats, the bands' λ limits (None =
    unbounded), the units, and with ``source`` where the items came from."""
    bands = {n: [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None] for n, lo, hi in BANDS}
    return {"grid": torch.as_tensor(grid).tolist(), "seed": seed, "repeats": repeats, "bands": bands,
            "units": "eps-MSE per dimension", **({} if source is None else {"source": source})}  # fmt: skip
