"""Metrics: Fréchet distance and KID against closed forms and reference implementations; the shipped
MNIST classifier reaches its documented held-out accuracy; feature extractors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from noiselevels.runs.metrics import (
    MNIST_CLASSIFIER,
    MnistClassifier,
    classifier_info,
    feature_extractor,
    frechet_distance,
    frechet_distance_gaussian,
    kid,
    load_classifier,
    mmd2_unbiased,
)


def _random_cov(d, rng):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# ----------------------------------------------------------------------------------------------
# Fréchet distance
# ----------------------------------------------------------------------------------------------
def test_fd_closed_form_diagonal():
    # commuting covariances: FD = ‖μa − μb‖² + Σ (√a_i − √b_i)²
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    va, vb = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(va) - np.sqrt(vb)) ** 2).sum()
    got = frechet_distance_gaussian(mu_a, np.diag(va), mu_b, np.diag(vb))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_fd_matches_scipy_sqrtm_reference():
    rng = np.random.default_rng(1)
    d = 10
    ca, cb = _random_cov(d, rng), _random_cov(d, rng)
    ma, mb = rng.normal(size=d), rng.normal(size=d)
    covmean = scipy.linalg.sqrtm(ca @ cb).real
    ref = ((ma - mb) ** 2).sum() + np.trace(ca + cb - 2 * covmean)
    np.testing.assert_allclose(frechet_distance_gaussian(ma, ca, mb, cb), ref, rtol=1e-9)
    np.testing.assert_allclose(frechet_distance_gaussian(ma, ca, ma, ca), 0.0, atol=1e-10)


def test_fd_from_features_uses_sample_moments():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 5)) @ rng.normal(size=(5, 5))
    b = rng.normal(size=(200, 5)) + 1.0
    expected = frechet_distance_gaussian(
        a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    )
    got = frechet_distance(torch.from_numpy(a).float(), b)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(frechet_distance(a, b), frechet_distance(b, a), rtol=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_fd_one_dimensional_gaussians():
    # 1-D: FD = (μa − μb)² + (sa − sb)², with the sample moments
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    b = np.array([[5.0], [7.0], [9.0]])
    sa, sb = a.std(ddof=1), b.std(ddof=1)
    np.testing.assert_allclose(frechet_distance(a, b), (1.5 - 7.0) ** 2 + (sa - sb) ** 2, rtol=1e-12)


def test_fd_errors():
    with pytest.raises(ValueError, match="feature dimensions"):
        frechet_distance(np.zeros((3, 2)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        frechet_distance(np.full((3, 2), np.nan), np.zeros((3, 2)))


# ----------------------------------------------------------------------------------------------
# KID
# ----------------------------------------------------------------------------------------------
def _mmd2_reference(x, y):
    """Straight from the definition: unbiased MMD² with k(u, v) = (u·v/d + 1)³, double loops."""
    d = x.shape[1]

    def k(u, v):
        return (u @ v / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_mmd2_matches_definition():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 4)), rng.normal(size=(9, 4)) + 0.3
    np.testing.assert_allclose(mmd2_unbiased(x, y), _mmd2_reference(x, y), rtol=1e-10)


def test_kid_full_subset_equals_mmd2():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3))
    res = kid(x, y, subsets=1, subset_size=40)
    np.testing.assert_allclose(res.mean, mmd2_unbiased(x, y), rtol=1e-10)


def test_kid_population_value_1d():
    # d = 1, x = a + U(−1, 1), y = b + U(−1, 1): for independent u, v, E k(u, v) = E[(uv + 1)³]
    # = m3(p)m3(q) + 3·m2(p)m2(q) + 3pq + 1 with m2(μ) = μ² + 1/3, m3(μ) = μ³ + μ, so
    # MMD² = (m3(a) − m3(b))² + 3(m2(a) − m2(b))² + 3(a − b)²; the estimator is unbiased.
    a, b = 0.0, 0.5
    m2, m3 = (lambda u: u * u + 1 / 3), (lambda u: u**3 + u)
    exact = (m3(a) - m3(b)) ** 2 + 3 * (m2(a) - m2(b)) ** 2 + 3 * (a - b) ** 2
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-1, 1, size=(2000, 1)) + a, rng.uniform(-1, 1, size=(2000, 1)) + b
    res = kid(x, y, subsets=4, subset_size=1000)
    np.testing.assert_allclose(res.mean, exact, rtol=0.15)
    assert res.std > 0
    same = kid(x, rng.uniform(-1, 1, size=(2000, 1)) + a, subsets=4, subset_size=1000)
    assert abs(same.mean) < 0.01 * exact


def test_kid_errors():
    with pytest.raises(ValueError, match="subsets"):
        kid(np.zeros((4, 2)), np.zeros((4, 2)), subsets=0)
    with pytest.raises(ValueError, match="subset_size"):
        kid(np.zeros((4, 2)), np.zeros((4, 2)), subset_size=1)


# ----------------------------------------------------------------------------------------------
# the shipped classifier and the feature extractors
# ----------------------------------------------------------------------------------------------
def test_classifier_asset_is_small_and_documented():
    assert MNIST_CLASSIFIER.stat().st_size < 1_000_000
    info = classifier_info()
    for key in ("val_accuracy", "seed", "command", "epochs"):
        assert key in info
    assert info["val_accuracy"] >= 0.97


def test_classifier_reaches_documented_accuracy():
    from noiselevels.runs.data import load_dataset

    val = load_dataset("mnist", split="val")
    model = load_classifier()
    with torch.no_grad():
        acc = (model(val.data).argmax(1) == val.labels).float().mean().item()
    # inference is deterministic up to float reductions; allow one image to flip
    assert acc >= classifier_info()["val_accuracy"] - 1 / len(val)


def test_mnist_feature_extractor():
    from noiselevels.runs.data import load_dataset

    fx = feature_extractor("mnist", batch_size=128)
    val = load_dataset("mnist", split="val")
    feats = fx(val.data)
    assert feats.shape == (500, MnistClassifier.feature_dim) and feats.dtype == torch.float64
    # 3-channel 32×32 input is converted (gray, resized) before the network
    rgb = load_dataset("mnist", split="val", size=32, channels=3, num_images=50)
    assert fx(rgb.data).shape == (50, 128)
    # real digits are closer to held-out digits than noise or the brightness shapes are
    train = load_dataset("mnist", split="train", num_images=500)
    shapes = load_dataset("brightness", split="val", size=28)
    fd_real = frechet_distance(fx(train.data), feats)
    fd_shapes = frechet_distance(fx(shapes.data), feats)
    fd_noise = frechet_distance(fx(torch.rand(500, 1, 28, 28) * 2 - 1), feats)
    assert fd_real < 0.1 * min(fd_shapes, fd_noise)


def test_custom_feature_extractor():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1) is flattened

    fx = feature_extractor(fn, batch_size=4)
    out = fx(torch.full((10, 3, 5, 5), 2.0))  # clamped to 1 before the call
    torch.testing.assert_close(out, torch.ones(10, 3, dtype=torch.float64))
    assert calls == [4, 4, 2]
    with pytest.raises(ValueError, match="unknown feature extractor"):
        feature_extractor("inception")
    with pytest.raises(ValueError, match="shape"):
        fx(torch.zeros(3, 5, 5))


def test_load_classifier_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_classifier(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="cannot read"):
        load_classifier(bad)
