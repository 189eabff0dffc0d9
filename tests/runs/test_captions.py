"""Captioned image folders: trigger rule, caption dropout, odd images, kohya's buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noiselevels.runs.captions import (
    apply_trigger,
    bucket_resolutions,
    bucket_step,
    drop_captions,
    load_rgb,
    read_caption_folder,
    resize_to_bucket,
    select_bucket,
)

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


# ------------------------------------------------------------------------------------------------
# trigger: ai-toolkit's inject_trigger_into_prompt, re-implemented from its source as the reference
# ------------------------------------------------------------------------------------------------
def _ai_toolkit_inject(prompt, trigger=None):
    trigger = "" if trigger is None else trigger
    out = prompt
    for r in ["[name]", "[trigger]"]:
        out = out.replace(r, trigger)
    if trigger.strip() != "" and out.count(trigger) == 0:
        out = trigger + " " + out
    return out


@pytest.mark.parametrize(
    "caption, trigger, expected",
    [
        ("a dog on grass", "sks", "sks a dog on grass"),
        ("a photo of [trigger] dog", "sks", "a photo of sks dog"),
        ("[name] and [trigger]", "sks", "sks and sks"),
        ("sks dog already", "sks", "sks dog already"),
        ("", "sks", "sks "),
        ("a photo of [trigger]", None, "a photo of "),
        ("plain", None, "plain"),
    ],
)
def test_trigger_rule_matches_ai_toolkit(caption, trigger, expected):
    assert apply_trigger(caption, trigger) == expected
    assert apply_trigger(caption, trigger) == _ai_toolkit_inject(caption, trigger)


def test_trigger_bad_type():
    with pytest.raises(TypeError, match="trigger must be a string"):
        apply_trigger("x", 3)


def test_caption_dropout_rate_and_reproducibility():
    caps = ["c"] * 20000
    a = drop_captions(caps, 0.1, torch.Generator().manual_seed(0))
    b = drop_captions(caps, 0.1, torch.Generator().manual_seed(0))
    assert a == b
    rate = a.count("") / len(a)
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / len(a))  # binomial 4σ
    assert drop_captions(caps[:5], 0.0, torch.Generator()) == caps[:5]
    assert drop_captions(caps[:5], 1.0, torch.Generator()) == [""] * 5
    with pytest.raises(ValueError, match=r"probability in \[0, 1\]; got 1.5"):
        drop_captions(caps, 1.5, torch.Generator())


# ------------------------------------------------------------------------------------------------
# folders and odd images
# ------------------------------------------------------------------------------------------------
def _exif_rotated(path, w, h):
    """A w×h JPEG whose EXIF orientation 6 says: rotate 90° clockwise to display (so it shows h×w)."""
    im = Image.new("RGB", (w, h), (200, 10, 10))
    im.paste((10, 10, 200), (0, 0, w // 2, h))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes(), quality=95)


def test_read_folder_captions_trigger_and_odd_images(tmp_path):
    Image.new("L", (20, 10), 128).save(tmp_path / "a_gray.png")
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    rgba.save(tmp_path / "b_rgba.png")
    _exif_rotated(tmp_path / "c_rot.jpg", 30, 12)
    Image.new("P", (4, 4)).save(tmp_path / "d_pal.bmp")
    (tmp_path / "a_gray.txt").write_text("a [trigger] gray thing\n\n", encoding="utf-8")
    (tmp_path / "b_rgba.txt").write_text("clear", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not an image")
    items = read_caption_folder(tmp_path, trigger="zqx")
    assert [p.path.name for p in items] == ["a_gray.png", "b_rgba.png", "c_rot.jpg", "d_pal.bmp"]
    assert [p.caption for p in items] == ["a zqx gray thing", "zqx clear", "zqx ", "zqx "]
    assert items[0].raw_caption == "a [trigger] gray thing"
    assert items[2].size == (12, 30)  # EXIF orientation applied: portrait
    # transparent pixels become white, grayscale becomes 3 equal channels
    assert np.asarray(load_rgb(tmp_path / "b_rgba.png")).tolist() == [[[255, 255, 255]] * 8] * 8
    g = np.asarray(load_rgb(tmp_path / "a_gray.png"))
    assert g.shape == (10, 20, 3) and (g == 128).all()
    # the rotated image: displayed top half is blue (the stored left half, rotated clockwise)
    rot = np.asarray(load_rgb(tmp_path / "c_rot.jpg")).astype(int)
    assert rot[:12, :, 2].mean() > 150 and rot[18:, :, 0].mean() > 150
    # same content under another name: same hash
    (tmp_path / "e_copy.png").write_bytes((tmp_path / "a_gray.png").read_bytes())
    items = read_caption_folder(tmp_path)
    assert items[0].sha256 == items[-1].sha256 and items[0].sha256 != items[1].sha256


def test_read_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_caption_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="holds no image"):
        read_caption_folder(tmp_path)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*x\.png"):
        read_caption_folder(tmp_path)
    (tmp_path / "x.png").unlink()
    Image.new("RGB", (4, 4)).save(tmp_path / "y.png")
    (tmp_path / "y.txt").write_bytes(b"\xff\xfe bad")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_caption_folder(tmp_path)
    with pytest.raises(ValueError, match="non-empty word"):
        read_caption_folder(tmp_path, trigger=" ")


# ------------------------------------------------------------------------------------------------
# buckets: kohya's make_bucket_resolutions (sd-scripts library/model_util.py), re-implemented
# ------------------------------------------------------------------------------------------------
def _kohya_make_bucket_resolutions(max_reso, min_size=256, max_size=1024, divisible=64):
    max_area = max_reso[0] * max_reso[1]
    resos = {(int(math.sqrt(max_area) // divisible) * divisible,) * 2}
    width = min_size
    while width <= max_size:
        height = min(max_size, int((max_area // width) // divisible) * divisible)
        if height >= min_size:
            resos.add((width, height))
            resos.add((height, width))
        width += divisible
    return sorted(resos)


def test_buckets_equal_kohya_defaults_at_512():
    assert bucket_resolutions(512, 64) == _kohya_make_bucket_resolutions((512, 512))
    assert bucket_resolutions(1024, 64) == _kohya_make_bucket_resolutions((1024, 1024), 512, 2048, 64)
    b = bucket_resolutions(32, 4)
    assert all(w % 4 == 0 and h % 4 == 0 and w * h <= 32 * 32 for w, h in b) and (32, 32) in b


def test_bucket_step_of_real_models():
    assert bucket_step(8, 8) == 64 and bucket_step(8, 4) == 32 and bucket_step(8, 2) == 16
    with pytest.raises(ValueError, match="latent_multiple must be an integer >= 1; got 0"):
        bucket_step(8, 0)
    with pytest.raises(ValueError, match="smaller than the bucket step"):
        bucket_resolutions(32, 64)


def test_select_bucket_least_aspect_error_and_resize():
    b = bucket_resolutions(512, 64)
    assert select_bucket(512, 512, b) == (512, 512)
    ref = _kohya_make_bucket_resolutions((512, 512))
    for w, h in [(1920, 1080), (1080, 1920), (333, 1000), (700, 500)]:  # kohya: argmin |ar_bucket − ar|
        ar = np.array([bw / bh for bw, bh in ref])
        assert select_bucket(w, h, b) == ref[int(np.abs(ar - w / h).argmin())]
    assert select_bucket(1920, 1080, b) == (640, 384)
    with pytest.raises(ValueError, match="at least 1×1"):
        select_bucket(0, 3, b)
    # a tiny 3×2 image is up-scaled to cover its bucket; a wide image is cropped in its centre
    tiny = Image.new("RGB", (3, 2), (255, 0, 0))
    arr = resize_to_bucket(tiny, (48, 32))
    assert arr.shape == (3, 32, 48) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(arr[1:], -1.0, atol=1e-6)
    wide = Image.new("RGB", (40, 10), (0, 0, 0))
    wide.paste((255, 255, 255), (15, 0, 25, 10))  # a white band in the middle 10 columns
    out = resize_to_bucket(wide, (10, 10))  # scale 1, crop columns 15..25
    np.testing.assert_allclose(out, 1.0, atol=1e-6)
