"""Image files read as a viewer shows them: decoded in full, EXIF orientation applied, 16-bit and float
samples scaled to 8 bits, transparency composited on black.

One function for every place that turns an image file into pixels (the image-folder converter, and
predictions on image files), so a photo reads the same wherever it enters.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ALPHA_BACKGROUND = (0, 0, 0)
"""Transparent pixels are composited on black (the zero a network input is padded with)."""
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
EXIF_ORIENTATION_TAG = 0x0112
UPRIGHT = 1

# What a conversion did to an image, for the converters' summary warning.
ORIENTED = "EXIF orientation applied"
SCALED = "scaled to 8 bits"
COMPOSITED = "transparency composited on black"


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded completely; the message names the file."""


@dataclass(frozen=True)
class DisplayedImage:
    """Pixels as shown (PIL mode "L" or "RGB", 8 bits) and what was changed to get them."""

    image: Image.Image
    conversions: tuple[str, ...]


def open_displayed(data: bytes, where: str) -> DisplayedImage:
    """Decode `data` completely (a truncated file is an error, not a half-grey image) and convert it to
    8-bit "L" or "RGB" as a viewer shows it. `where` names the source in errors."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()  # decodes every byte: truncated data fails here, not silently later
            oriented = _apply_orientation(opened)
            conversions = (ORIENTED,) if oriented is not opened else ()
            image, scaled = _to_eight_bits(oriented)
            conversions += (SCALED,) if scaled else ()
            image, composited = _composite_alpha(image)
            conversions += (COMPOSITED,) if composited else ()
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB")
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{where}: not a readable image ({error})") from error
    return DisplayedImage(image, conversions)


def read_image_array(data: bytes, where: str) -> np.ndarray:
    """uint8 [H, W, C] pixels of an encoded image as a viewer shows it (C is 1 for grey, else 3)."""
    image = open_displayed(data, where).image
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def read_image_file(path: str | Path) -> np.ndarray:
    """uint8 [H, W, C] pixels of an image file; `UnreadableImageError` names the file when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise UnreadableImageError(f"{path}: cannot be read ({error})") from error
    return read_image_array(data, str(path))


def _apply_orientation(image: Image.Image) -> Image.Image:
    """The image turned upright by its EXIF orientation tag (the same object when it has none)."""
    if image.getexif().get(EXIF_ORIENTATION_TAG, UPRIGHT) == UPRIGHT:
        return image
    return ImageOps.exif_transpose(image)


def _to_eight_bits(image: Image.Image) -> tuple[Image.Image, bool]:
    """16-bit and 32-bit grey images scaled to 8 bits over their sample range (full range for 16-bit
    files, 0..1 for floats in it); returns the image and whether it was scaled."""
    if image.mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64) / 65535.0
    elif image.mode in ("I", "F"):
        pixels = _unit_range(np.asarray(image, dtype=np.float64), float_mode=image.mode == "F")
    else:
        return image, False
    return Image.fromarray(np.round(pixels * 255.0).clip(0, 255).astype(np.uint8), mode="L"), True


def _unit_range(pixels: np.ndarray, float_mode: bool) -> np.ndarray:
    """Samples of a 32-bit image mapped to 0..1: floats already in 0..1 and integers up to 255 or 65535
    keep their scale (a 16-bit PNG often opens as 32-bit); anything else spans its own range."""
    low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
    if float_mode and low >= 0.0 and high <= 1.0:
        return pixels
    if not float_mode and low >= 0.0:
        if high <= 255.0:
            return pixels / 255.0
        if high <= 65535.0:
            return pixels / 65535.0
    return (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)


def _composite_alpha(image: Image.Image) -> tuple[Image.Image, bool]:
    """An image with transparency (alpha channel or palette transparency) laid on black; returns the
    image and whether it had transparency to lay down."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "PA"):
        return image, False
    rgba = image.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:  # fully opaque: nothing to composite
        return rgba.convert("L" if image.mode == "LA" else "RGB"), False
    background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
    composited = Image.alpha_composite(background, rgba)
    return composited.convert("L" if image.mode == "LA" else "RGB"), True
