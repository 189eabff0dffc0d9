"""Gaussian mixtures over per-image bounds (λ_min, λ_max), per class (parameterisation ours).

Sampling a per-instance model needs bounds for instances that do not exist yet: :class:`BoundsMixture`
fits a mixture to the training set's bounds (:func:`noiselevels.spectral.bounds.bounds`), one for all
images and one per class, and draws new (λ_min, λ_max) inside the fitted data's box. scikit-learn is
imported when a mixture is fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from noiselevels.spectral.bounds import _check_pair

__all__ = ["BoundsMixture"]

_F64 = torch.float64


@dataclasses.dataclass(frozen=True)
class _Gmm:
    weights: tuple[float, ...]
    means: tuple[tuple[float, float], ...]
    covs: tuple[tuple[tuple[float, float], tuple[float, float]], ...]
    box: tuple[float, float, float, float]  # lo_min, lo_max, hi_min, hi_max of the fitted data

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": list(self.weights),
            "means": [list(m) for m in self.means],
            "covs": [[list(r) for r in c] for c in self.covs],
            "box": list(self.box),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _Gmm:
        return cls(
            tuple(d["weights"]),
            tuple(tuple(m) for m in d["means"]),
            tuple(tuple(tuple(r) for r in c) for c in d["covs"]),
            tuple(d["box"]),
        )


def _fit_gmm(lo: Tensor, hi: Tensor, components: int, seed: int) -> _Gmm:
    """A ``components``-Gaussian mixture of the points (lo, hi) (fewer for few distinct points; one
    Gaussian of the sample mean and covariance below 3)."""
    xy = np.stack([lo.numpy(), hi.numpy()], axis=1)
    box = (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
    n_unique = len(np.unique(xy, axis=0))
    k = max(1, min(components, n_unique // 2))
    if n_unique < 3:
        mean = xy.mean(0)
        cov = np.cov(xy, rowvar=False) if xy.shape[0] > 1 else np.zeros((2, 2))
        cov = np.atleast_2d(cov) + 1e-6 * np.eye(2)
        return _Gmm((1.0,), (tuple(mean.tolist()),), (tuple(map(tuple, cov.tolist())),), box)
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=k, covariance_type="full", reg_covar=1e-6, random_state=seed, n_init=1)
    gm.fit(xy)
    return _Gmm(
        tuple(gm.weights_.tolist()),
        tuple(tuple(m) for m in gm.means_.tolist()),
        tuple(tuple(map(tuple, c)) for c in gm.covariances_.tolist()),
        box,
    )


class BoundsMixture:
    """Gaussian mixtures over (λ_min, λ_max) fitted to a training set's per-image bounds, one for all
    images (key ``"all"``) and one per class when labels are given (scikit-learn's
    ``GaussianMixture``, full covariances). :meth:`sample` draws bounds for new instances (per label)
    and keeps them inside the fitted data's box [min, max] per coordinate with λ_min < λ_max (rejection,
    then clamping for the rare leftovers)."""

    def __init__(self, mixtures: Mapping[str, _Gmm]):
        if "all" not in mixtures:
            raise ValueError("a BoundsMixture needs the 'all' mixture")
        self.mixtures = dict(mixtures)

    @classmethod
    def fit(
        cls,
        logsnr_min: Tensor,
        logsnr_max: Tensor,
        labels: Tensor | None = None,
        *,
        components: int = 4,
        seed: int = 0,
    ) -> BoundsMixture:
        """Fit on (B,) bounds (finite) and optional (B,) integer labels; ``components`` per mixture
        (fewer for small groups)."""
        if isinstance(components, bool) or not isinstance(components, int) or components < 1:
            raise ValueError(f"components must be an integer >= 1; got {components!r}")
        lo, hi = _check_pair(logsnr_min, logsnr_max)
        if lo.ndim != 1 or lo.numel() < 1:
            raise ValueError(f"bounds must have shape (B,) with B >= 1; got {tuple(lo.shape)}")
        mix = {"all": _fit_gmm(lo, hi, components, seed)}
        if labels is not None:
            labels = torch.as_tensor(labels).long().cpu()
            if labels.shape != lo.shape:
                raise ValueError(f"labels must have shape {tuple(lo.shape)}; got {tuple(labels.shape)}")
            for c in sorted(set(labels.tolist())):
                m = labels == c
                mix[str(c)] = _fit_gmm(lo[m], hi[m], components, seed)
        return cls(mix)

    def to_dict(self) -> dict[str, Any]:
        return {k: g.to_dict() for k, g in self.mixtures.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BoundsMixture:
        return cls({k: _Gmm.from_dict(v) for k, v in d.items()})

    def _sample_one(self, g: _Gmm, n: int, gen: torch.Generator | None) -> tuple[Tensor, Tensor]:
        w = torch.tensor(g.weights, dtype=_F64)
        mu = torch.tensor(g.means, dtype=_F64)
        cov = torch.tensor(g.covs, dtype=_F64)
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(2, dtype=_F64))
        lo_min, lo_max, hi_min, hi_max = g.box
        out = torch.empty(n, 2, dtype=_F64)
        todo = torch.arange(n)
        for _ in range(100):
            if todo.numel() == 0:
                break
            comp = torch.multinomial(w, todo.numel(), replacement=True, generator=gen)
            z = torch.randn(todo.numel(), 2, generator=gen, dtype=_F64)
            s = mu[comp] + (chol[comp] @ z[:, :, None])[:, :, 0]
            ok = (s[:, 0] >= lo_min) & (s[:, 0] <= lo_max) & (s[:, 1] >= hi_min) & (s[:, 1] <= hi_max)
            ok &= s[:, 0] < s[:, 1]
            out[todo[ok]] = s[ok]
            todo = todo[~ok]
        if todo.numel():  # clamp the (rare) leftovers into the box
            comp = torch.multinomial(w, todo.numel(), replacement=True, generator=gen)
            s = mu[comp].clone()
            s[:, 0] = s[:, 0].clamp(lo_min, lo_max)
            s[:, 1] = torch.maximum(s[:, 1].clamp(hi_min, hi_max), s[:, 0] + 1e-3)
            out[todo] = s
        return out[:, 0], out[:, 1]

    def sample(
        self, n: int, *, labels: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """n draws (λ_min (n,), λ_max (n,)), float64, CPU. With ``labels`` (n,) each draw comes from its
        class's mixture (label −1 = unconditional, the ``"all"`` mixture)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer; got {n!r}")
        lo, hi = torch.empty(n, dtype=_F64), torch.empty(n, dtype=_F64)
        if labels is None:
            return self._sample_one(self.mixtures["all"], n, generator)
        labels = torch.as_tensor(labels).long().cpu()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {tuple(labels.shape)}")
        for c in sorted(set(labels.tolist())):
            key = "all" if c < 0 else str(c)
            if key not in self.mixtures:
                raise ValueError(
                    f"no mixture for class {c}; fitted classes: "
                    f"{', '.join(k for k in self.mixtures if k != 'all') or '(none)'}"
                )
            m = labels == c
            lo[m], hi[m] = self._sample_one(self.mixtures[key], int(m.sum()), generator)
        return lo, hi
