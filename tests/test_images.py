"""Image files read as a viewer shows them: 16-bit scaled, transparency on black, EXIF orientation,
truncated files refused with their name."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl.images import (
    COMPOSITED,
    ORIENTED,
    SCALED,
    UnreadableImageError,
    open_displayed,
    read_image_array,
    read_image_file,
)


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_sixteen_bit_gradient_is_scaled_not_clipped() -> None:
    gradient = np.linspace(0, 65535, 256, dtype=np.float64).round().astype(np.uint16).reshape(16, 16)
    data = encode(Image.fromarray(gradient))
    shown = open_displayed(data, "gradient.png")
    pixels = read_image_array(data, "gradient.png")
    assert SCALED in shown.conversions
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 1)
    expected = np.round(gradient / 257.0)
    assert np.abs(pixels[..., 0].astype(int) - expected).max() <= 1
    assert 120 < pixels.mean() < 135  # a clipped read would be almost all 255


def test_transparent_pixels_are_composited_on_black() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    rgba[2:, :, 3] = 0
    data = encode(Image.fromarray(rgba, mode="RGBA"))
    shown = open_displayed(data, "rgba.png")
    pixels = read_image_array(data, "rgba.png")
    assert COMPOSITED in shown.conversions
    assert pixels.shape == (4, 4, 3)
    assert (pixels[:2] == (200, 100, 50)).all()
    assert (pixels[2:] == 0).all()


def test_opaque_alpha_is_no_conversion() -> None:
    rgba = np.full((3, 3, 4), 255, np.uint8)
    shown = open_displayed(encode(Image.fromarray(rgba, mode="RGBA")), "opaque.png")
    assert shown.conversions == () and shown.image.mode == "RGB"


def test_exif_orientation_turns_the_photo_upright() -> None:
    stored = np.zeros((2, 6, 3), np.uint8)  # stored sideways: 2 rows, 6 columns
    stored[:, 0] = 255  # bright left column as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    data = encode(Image.fromarray(stored), "JPEG", exif=exif.tobytes(), quality=100)
    shown = open_displayed(data, "photo.jpg")
    pixels = read_image_array(data, "photo.jpg")
    assert ORIENTED in shown.conversions
    assert pixels.shape[:2] == (6, 2)  # upright: taller than wide
    assert pixels[0].mean() > 200 and pixels[-1].mean() < 60  # stored left column is now the top row


def test_truncated_jpeg_is_refused_with_its_name(tmp_path) -> None:
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="cut.jpg"):
        read_image_file(path)


def test_plain_eight_bit_images_read_unchanged() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8)
    grey = rng.integers(0, 255, (5, 7), dtype=np.uint8)
    assert (read_image_array(encode(Image.fromarray(rgb)), "rgb.png") == rgb).all()
    assert (read_image_array(encode(Image.fromarray(grey)), "grey.png")[..., 0] == grey).all()


def test_missing_or_non_image_file_names_it(tmp_path) -> None:
    with pytest.raises(UnreadableImageError, match="absent.png"):
        read_image_file(tmp_path / "absent.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(UnreadableImageError, match="notes.png"):
        read_image_file(text)
