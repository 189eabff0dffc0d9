"""Image helpers: grid layout, save/load round trips, conversions, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from noiselevels.runs.images import load_image, make_grid, resize_center_crop, save_image, to_uint8


def _quantised(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, shape, generator=g).float() / 127.5 - 1.0


def test_make_grid_layout():
    imgs = torch.stack([torch.full((1, 2, 3), float(k) / 10) for k in range(5)])
    grid = make_grid(imgs, nrow=3, padding=1, pad_value=-1.0)
    assert grid.shape == (1, 2 * 3 + 1, 3 * 4 + 1)
    # image k sits at row k // 3, column k % 3
    for k in range(5):
        r, c = divmod(k, 3)
        y, x = 1 + r * 3, 1 + c * 4
        torch.testing.assert_close(grid[:, y : y + 2, x : x + 3], imgs[k])
    # padding and the empty sixth cell
    torch.testing.assert_close(grid[:, 0], torch.full((1, 13), -1.0))
    torch.testing.assert_close(grid[:, 4:6, 9:12], torch.full((1, 2, 3), -1.0))


def test_make_grid_fewer_than_nrow_and_single():
    grid = make_grid(torch.zeros(2, 3, 4, 4), nrow=8, padding=0)
    assert grid.shape == (3, 4, 8)
    assert make_grid(torch.zeros(3, 4, 4), padding=2).shape == (3, 8, 8)


@pytest.mark.parametrize("bad", [torch.zeros(2, 2, 4, 4), torch.zeros(4, 4), torch.zeros(0, 1, 4, 4)])
def test_make_grid_errors(bad):
    with pytest.raises(ValueError):
        make_grid(bad)
    with pytest.raises(ValueError, match="nrow"):
        make_grid(torch.zeros(1, 1, 2, 2), nrow=0)


def test_to_uint8():
    x = torch.tensor([[[-2.0, -1.0, 0.0, 1.0, 3.0, float("nan")]]])
    np.testing.assert_array_equal(to_uint8(x)[..., 0], np.array([[0, 0, 128, 255, 255, 0]], np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_save_load_round_trip(tmp_path, channels):
    img = _quantised((channels, 5, 7))
    path = save_image(img, tmp_path / "sub" / "x.png")
    assert path.is_file()
    with Image.open(path) as im:
        assert im.mode == ("L" if channels == 1 else "RGB") and im.size == (7, 5)
    torch.testing.assert_close(load_image(path), img)


def test_save_grid_round_trip(tmp_path):
    imgs = _quantised((5, 3, 4, 4))
    save_image(imgs, tmp_path / "grid.png", nrow=2, padding=1)
    expected = make_grid(imgs, nrow=2, padding=1)
    torch.testing.assert_close(load_image(tmp_path / "grid.png"), expected)


def test_load_image_conversions(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[:, :3, 3] = 0  # left half transparent → black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(tmp_path / "a.png")
    assert x.shape == (3, 4, 6)
    torch.testing.assert_close(x[0, :, 3:], torch.ones(4, 3))
    torch.testing.assert_close(x[0, :, :3], -torch.ones(4, 3))
    gray = load_image(tmp_path / "a.png", channels=1, size=2)
    assert gray.shape == (1, 2, 2)
    Image.fromarray(np.full((3, 3), 1000, np.uint16)).save(tmp_path / "b16.png")
    assert load_image(tmp_path / "b16.png").shape == (1, 3, 3)


def test_resize_center_crop_one_pixel_wide():
    im = Image.fromarray(np.arange(50, dtype=np.uint8).reshape(50, 1), "L")
    out = resize_center_crop(im, 8)
    assert out.size == (8, 8)


def test_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ValueError, match="cannot read image"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="cannot save image"):
        save_image(torch.zeros(1, 2, 2), tmp_path / "x.unknownsuffix")
