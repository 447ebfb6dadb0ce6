"""The AutoAugment op set through torchvision's v2 functional API, on uint8 tensors [..., C, H, W] or on
PIL images (grey or RGB), where the same calls run Pillow's kernels as torchvision's AutoAugment does.

Leading dimensions (frames of a video) all get the same op and magnitude. torchvision's photometric
ops accept 1 or 3 channels only; for other channel counts they are applied to each channel as a
grey image, and Color (saturation), which has no meaning without RGB, leaves the image unchanged."""

from __future__ import annotations

import math
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

OP_NAMES = (
    "Identity",
    "ShearX",
    "ShearY",
    "TranslateX",
    "TranslateY",
    "Rotate",
    "Brightness",
    "Color",
    "Contrast",
    "Sharpness",
    "Posterize",
    "Solarize",
    "AutoContrast",
    "Equalize",
    "Invert",
)
"""Every op name understood by `apply_op` (AutoAugment's set plus TrivialAugment's Identity)."""

_TORCHVISION_CHANNELS = (1, 3)
PIL_CHANNELS = _TORCHVISION_CHANNELS
"""Channel counts that have a PIL image mode (grey "L" and "RGB") and so can take the PIL path."""

ImageLike = TypeVar("ImageLike", torch.Tensor, Image.Image)


def apply_op(
    images: torch.Tensor,
    name: str,
    magnitude: float,
    *,
    interpolation: InterpolationMode = InterpolationMode.NEAREST,
    fill: float = 0.0,
) -> torch.Tensor:
    """Apply one named AutoAugment op with a signed magnitude to uint8 images [..., C, H, W];
    shape and dtype are kept."""
    check_uint8_images(images)
    if name == "Identity":
        return images
    if name in _GEOMETRIC:
        return _GEOMETRIC[name](images, magnitude, interpolation, fill)
    if name in _PHOTOMETRIC:
        return _apply_per_channel_when_needed(_PHOTOMETRIC[name], images, name, magnitude)
    raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(OP_NAMES)}")


def apply_op_to_pil(
    image: Image.Image,
    name: str,
    magnitude: float,
    *,
    interpolation: InterpolationMode = InterpolationMode.NEAREST,
    fill: float = 0.0,
) -> Image.Image:
    """Apply one named op to a grey or RGB PIL image with torchvision's PIL kernels (what AutoAugment
    does on PIL input); unlike the tensor kernels, these never touch torch's OpenMP thread pool."""
    if not isinstance(image, Image.Image) or image.mode not in ("L", "RGB"):
        raise TypeError(f"apply_op_to_pil expects a grey (L) or RGB PIL image, got {image!r}")
    if name == "Identity":
        return image
    if name in _GEOMETRIC:
        return _GEOMETRIC[name](image, magnitude, interpolation, fill)
    if name in _PHOTOMETRIC:
        return _PHOTOMETRIC[name](image, magnitude)
    raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(OP_NAMES)}")


def apply_ops_with_pil(
    sample: np.ndarray,
    ops: Sequence[tuple[str, float]],
    *,
    interpolation: InterpolationMode = InterpolationMode.NEAREST,
    fill: float = 0.0,
) -> np.ndarray:
    """Apply named ops (name, signed magnitude) in turn to every frame of a uint8 array [..., C, H, W]
    with 1 or 3 channels, as PIL images; returns a new array of the same shape."""
    channels, height, width = sample.shape[-3:]
    if sample.dtype != np.uint8 or channels not in PIL_CHANNELS:
        raise ValueError(
            f"the PIL path takes uint8 arrays [..., C, H, W] with C in {PIL_CHANNELS}, "
            f"got {sample.dtype} shaped {sample.shape}"
        )
    frames = sample.reshape(-1, channels, height, width)
    result = np.empty_like(frames)
    for index, frame in enumerate(frames):
        image = Image.fromarray(frame[0] if channels == 1 else np.ascontiguousarray(frame.transpose(1, 2, 0)))
        for name, magnitude in ops:
            image = apply_op_to_pil(image, name, magnitude, interpolation=interpolation, fill=fill)
        pixels = np.asarray(image)
        result[index] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return result.reshape(sample.shape)


def check_uint8_images(images: torch.Tensor) -> None:
    """Reject anything but a uint8 tensor with at least [C, H, W] dimensions, saying what is wrong."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"augmentation expects a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"augmentation expects uint8 images, got dtype {images.dtype}")
    if images.ndim < 3:
        raise ValueError(f"augmentation expects images shaped [..., C, H, W], got shape {tuple(images.shape)}")


def _apply_per_channel_when_needed(
    op: Callable[[torch.Tensor, float], torch.Tensor], images: torch.Tensor, name: str, magnitude: float
) -> torch.Tensor:
    """Run a photometric op directly on 1/3-channel images, or channel by channel otherwise."""
    channels = images.shape[-3]
    if channels in _TORCHVISION_CHANNELS:
        return op(images, magnitude)
    if name == "Color":
        return images
    height, width = images.shape[-2:]
    as_grey = images.reshape(*images.shape[:-3], channels, 1, height, width)
    return op(as_grey, magnitude).reshape(images.shape)


def _shear_x(images: ImageLike, magnitude: float, interpolation: InterpolationMode, fill: float) -> ImageLike:
    """Horizontal shear; torchvision's convention: the magnitude is the shear's tangent."""
    return F.affine(
        images,
        angle=0.0,
        translate=[0, 0],
        scale=1.0,
        shear=[math.degrees(math.atan(magnitude)), 0.0],
        interpolation=interpolation,
        fill=fill,
        center=[0, 0],
    )


def _shear_y(images: ImageLike, magnitude: float, interpolation: InterpolationMode, fill: float) -> ImageLike:
    """Vertical shear; the magnitude is the shear's tangent."""
    return F.affine(
        images,
        angle=0.0,
        translate=[0, 0],
        scale=1.0,
        shear=[0.0, math.degrees(math.atan(magnitude))],
        interpolation=interpolation,
        fill=fill,
        center=[0, 0],
    )


def _translate_x(images: ImageLike, magnitude: float, interpolation: InterpolationMode, fill: float) -> ImageLike:
    """Horizontal shift by a whole number of pixels."""
    return F.affine(
        images, angle=0.0, translate=[int(magnitude), 0], scale=1.0, shear=[0.0, 0.0],
        interpolation=interpolation, fill=fill,
    )


def _translate_y(images: ImageLike, magnitude: float, interpolation: InterpolationMode, fill: float) -> ImageLike:
    """Vertical shift by a whole number of pixels."""
    return F.affine(
        images, angle=0.0, translate=[0, int(magnitude)], scale=1.0, shear=[0.0, 0.0],
        interpolation=interpolation, fill=fill,
    )


def _rotate(images: ImageLike, magnitude: float, interpolation: InterpolationMode, fill: float) -> ImageLike:
    """Rotation by `magnitude` degrees about the centre."""
    return F.rotate(images, angle=magnitude, interpolation=interpolation, fill=fill)


def _brightness(images: ImageLike, magnitude: float) -> ImageLike:
    return F.adjust_brightness(images, brightness_factor=1.0 + magnitude)


def _color(images: ImageLike, magnitude: float) -> ImageLike:
    return F.adjust_saturation(images, saturation_factor=1.0 + magnitude)


def _contrast(images: ImageLike, magnitude: float) -> ImageLike:
    return F.adjust_contrast(images, contrast_factor=1.0 + magnitude)


def _sharpness(images: ImageLike, magnitude: float) -> ImageLike:
    return F.adjust_sharpness(images, sharpness_factor=1.0 + magnitude)


def _posterize(images: ImageLike, magnitude: float) -> ImageLike:
    return F.posterize(images, bits=int(magnitude))


def _solarize(images: ImageLike, magnitude: float) -> ImageLike:
    """Invert pixels above a threshold given as a fraction of 255."""
    return F.solarize(images, threshold=255.0 * magnitude)


def _autocontrast(images: ImageLike, magnitude: float) -> ImageLike:
    return F.autocontrast(images)


def _equalize(images: ImageLike, magnitude: float) -> ImageLike:
    return F.equalize(images)


def _invert(images: ImageLike, magnitude: float) -> ImageLike:
    return F.invert(images)


_GEOMETRIC = {
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
    "Rotate": _rotate,
}

_PHOTOMETRIC = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _autocontrast,
    "Equalize": _equalize,
    "Invert": _invert,
}
