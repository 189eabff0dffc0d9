"""Sample-quality metrics that work offline: Fréchet distance and KID on the features of a small MNIST
classifier shipped with the package, or of any feature extractor the user provides.

* :func:`frechet_distance` — FD = ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2·(Σ_a^½ Σ_b Σ_a^½)^½) between Gaussians
  fitted to two feature sets (Heusel et al. 2017, "GANs trained by a two time-scale update rule", eq. 6
  — the FID formula, here on whatever features are given). Float64; the matrix square root comes from
  symmetric eigen-decompositions, so it is exact for PSD covariances and never complex.
* :func:`kid` — Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs", §4): the
  unbiased estimator of MMD² with the cubic polynomial kernel k(x, y) = (xᵀy/d + 1)³, averaged over
  random subsets; returns (mean, std over subsets).
* :func:`feature_extractor` — ``feature_extractor("mnist")`` loads the classifier trained by
  ``scripts/train_classifier.py`` on the embedded MNIST train split (``noiselevels/assets/
  mnist_classifier.safetensors``; its held-out accuracy, seed and command are in the json next to it)
  and returns a callable images (N, 1, H, W) in [−1, 1] → (N, 128) float64 penultimate-layer features.

Inception features (the usual FID) cannot be downloaded here. To use them, pass your own extractor:
any callable mapping a batch of images (B, C, H, W) in [−1, 1] to features (B, D) — e.g. a
``pytorch_fid.inception.InceptionV3([3])`` wrapped to rescale to [0, 1] and flatten its pool3 output —
as ``feature_extractor(my_callable)``; FD and KID on those features are FID and KID proper.
Numbers computed on the MNIST classifier's features are *not* comparable with published FIDs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ASSETS",
    "FeatureExtractor",
    "KIDResult",
    "MnistClassifier",
    "classifier_info",
    "feature_extractor",
    "frechet_distance",
    "frechet_distance_gaussian",
    "kid",
    "load_classifier",
]

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MNIST_CLASSIFIER = ASSETS / "mnist_classifier.safetensors"
MNIST_CLASSIFIER_INFO = ASSETS / "mnist_classifier.json"


# ----------------------------------------------------------------------------------------------
# the classifier
# ----------------------------------------------------------------------------------------------
class MnistClassifier(nn.Module):
    """Small CNN for 1×28×28 digits in [−1, 1].

    conv3×3(1→32) ReLU maxpool → conv3×3(32→64) ReLU maxpool → conv3×3(64→64) ReLU maxpool (3×3)
    → Linear(576→128) ReLU = **features** (128) → Linear(128→10) = logits. ~131k parameters.
    """

    feature_dim = 128

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 3 * 3, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.dropout = nn.Dropout(0.3)

    def features(self, x: Tensor) -> Tensor:
        """(B, 1, 28, 28) → (B, 128) post-ReLU penultimate features."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)  # 14
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)  # 7
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)  # 3
        return F.relu(self.fc(h.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def load_classifier(path: str | Path | None = None) -> MnistClassifier:
    """The shipped MNIST classifier (eval mode, float32) from safetensors."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else MNIST_CLASSIFIER
    if not path.is_file():
        raise ValueError(
            f"classifier weights {str(path)!r} not found; run scripts/train_classifier.py to create them"
        )
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"cannot read classifier weights {str(path)!r}: {e}") from e
    model = MnistClassifier()
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as e:
        raise ValueError(f"classifier weights {str(path)!r} do not match MnistClassifier: {e}") from e
    return model.eval()


def classifier_info() -> dict:
    """The json written with the shipped classifier (held-out accuracy, seed, command, ...)."""
    return json.loads(MNIST_CLASSIFIER_INFO.read_text())


# ----------------------------------------------------------------------------------------------
# feature extraction
# ----------------------------------------------------------------------------------------------
class FeatureExtractor:
    """Callable images (N, C, H, W) in [−1, 1] → features (N, D) float64 (CPU), in batches, no grad.

    ``fn`` maps a batch to (B, D) (or (B, D, 1, 1), flattened); ``channels`` / ``size``, when set,
    convert the images first (gray ↔ RGB, bilinear resize); inputs are clamped to [−1, 1].
    """

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        *,
        name: str = "custom",
        channels: int | None = None,
        size: int | None = None,
        batch_size: int = 500,
        device: str | torch.device | None = None,
    ):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
        self.fn = fn
        self.name = name
        self.channels = channels
        self.size = size
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else None

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.float().clamp(-1.0, 1.0)
        if self.channels is not None and x.shape[1] != self.channels:
            if self.channels == 1 and x.shape[1] == 3:
                x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, True)
            elif self.channels == 3 and x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            else:
                raise ValueError(f"images must have 1 or 3 channels; got shape {tuple(x.shape)}")
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        return x

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must be a tensor of shape (N, C, H, W); got {shape}")
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            x = images[i : i + self.batch_size]
            if self.device is not None:
                x = x.to(self.device)
            f = self.fn(self._prepare(x))
            out.append(f.reshape(f.shape[0], -1).to("cpu", torch.float64))
        return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)


def feature_extractor(
    name: str | Callable[[Tensor], Tensor] = "mnist",
    *,
    batch_size: int = 500,
    device: str | torch.device | None = None,
) -> FeatureExtractor:
    """A :class:`FeatureExtractor`: ``"mnist"`` (the shipped classifier's 128-d features; images are
    converted to 1 channel and resized to 28×28) or a user callable (e.g. an Inception network) used
    as is."""
    if callable(name) and not isinstance(name, str):
        return FeatureExtractor(name, batch_size=batch_size, device=device)
    if name != "mnist":
        raise ValueError(
            f"unknown feature extractor {name!r}; valid: 'mnist' or a callable images -> features"
        )
    model = load_classifier()
    if device is not None:
        model = model.to(device)
    return FeatureExtractor(
        model.features, name="mnist", channels=1, size=28, batch_size=batch_size, device=device
    )


# ----------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------
def _as_features(x, what: str) -> np.ndarray:
    a = (
        x.detach().to("cpu", torch.float64).numpy()
        if isinstance(x, Tensor)
        else np.asarray(x, dtype=np.float64)
    )
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{what} must have shape (N, D) with N >= 2; got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains non-finite values")
    return a


def _sqrtm_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_gaussian(mu_a, cov_a, mu_b, cov_b) -> float:
    """‖μ_a − μ_b‖² + tr(Σ_a) + tr(Σ_b) − 2·tr((Σ_a^½ Σ_b Σ_a^½)^½) (Heusel et al. 2017, eq. 6), float64.

    tr((Σ_a Σ_b)^½) is computed as Σᵢ √eigᵢ(Σ_a^½ Σ_b Σ_a^½) (same eigenvalues, symmetric PSD), so it is
    real and exact up to rounding; covariances must be symmetric PSD (D, D).
    """
    mu_a, mu_b = np.asarray(mu_a, np.float64).ravel(), np.asarray(mu_b, np.float64).ravel()
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    d = mu_a.shape[0]
    if mu_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
        raise ValueError(
            f"shapes do not match: mu_a {mu_a.shape}, cov_a {cov_a.shape}, "
            f"mu_b {mu_b.shape}, cov_b {cov_b.shape}"
        )
    sa = _sqrtm_psd(cov_a)
    m = sa @ cov_b @ sa
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt, 0.0))


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, D), (N_b, D) (unbiased
    covariances, float64). With Inception pool3 features this is FID."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_gaussian(
        a.mean(0), np.atleast_2d(np.cov(a, rowvar=False)), b.mean(0), np.atleast_2d(np.cov(b, rowvar=False))
    )


# ----------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------
class KIDResult(NamedTuple):
    """KID estimate: mean and standard deviation of the unbiased MMD² over the subsets."""

    mean: float
    std: float


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ (Bińkowski et al. 2018, eq. 4 with the KID kernel):
    mean of k over distinct pairs within x, plus the same within y, minus twice the mean over x × y."""
    d = x.shape[1]
    m, n = x.shape[0], y.shape[0]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        k = a @ b.T
        k /= d
        k += 1.0
        return k * k * k

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(feats_a, feats_b, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> KIDResult:
    """Kernel Inception Distance: unbiased MMD² (cubic polynomial kernel) averaged over ``subsets``
    random subsets of ``min(subset_size, N_a, N_b)`` items from each set (drawn without replacement
    within a subset, seeded). Returns :class:`KIDResult` (mean, std). Can be slightly negative."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if isinstance(subsets, bool) or not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be an integer >= 1; got {subsets!r}")
    if isinstance(subset_size, bool) or not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an integer >= 2; got {subset_size!r}")
    size = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        ia = rng.choice(a.shape[0], size, replace=False)
        ib = rng.choice(b.shape[0], size, replace=False)
        vals.append(mmd2_unbiased(a[ia], b[ib]))
    v = np.asarray(vals)
    return KIDResult(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan)
