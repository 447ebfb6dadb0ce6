"""The AutoAugment op set on batches of uint8 tensors [N, ..., C, H, W], each sample with its own op
and magnitude: one tensor call per op and batch, not one per image.

Every sample of a group that drew the same op goes through one call with per-sample parameters: the
geometric ops (shear, translate, rotate) as one batched affine resampling with a matrix per sample,
exactly as torchvision's affine/rotate resample one image; the photometric ops as torchvision's
formulas with a per-sample factor, bit mask or threshold (Equalize, AutoContrast and Invert have none
and are torchvision's own calls). The batch workers and the policy search both use this code, on the
CPU or on the GPU; torch kernels release the GIL, so worker threads run them in parallel.

Leading dimensions after the first (frames of a video) share their sample's op. Photometric ops see
1 or 3 channels as torchvision does; other channel counts are treated one channel at a time as grey
images, and Color (saturation), which has no meaning without RGB, leaves them unchanged."""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2.functional._geometry import _get_inverse_affine_matrix

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
"""Every op name understood here (AutoAugment's set plus TrivialAugment's Identity)."""

GEOMETRIC_OPS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})
"""Ops that move pixels: resampled together, one affine matrix per sample."""

_TORCHVISION_CHANNELS = (1, 3)

OpDraw = tuple[str, float]
"""One op to apply: its name and signed magnitude."""


def apply_op(images: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """Apply one named op with a signed magnitude to uint8 images [..., C, H, W], all alike (a video's
    frames too); shape and dtype are kept."""
    check_uint8_images(images)
    return apply_op_batch(images.unsqueeze(0), name, [magnitude])[0]


def apply_ops_batch(batch: torch.Tensor, draws: Sequence[Sequence[OpDraw]]) -> torch.Tensor:
    """Apply each sample's ops (name, signed magnitude), in order, to a uint8 batch [N, ..., C, H, W]:
    per position in the samples' op lists, one call per op over every sample that drew it.
    Returns a new tensor (the input is left as it was) or the input itself when no sample has an op."""
    check_uint8_images(batch)
    if len(draws) != batch.shape[0]:
        raise ValueError(f"{len(draws)} draws for a batch of {batch.shape[0]} samples")
    for draw in draws:
        for name, _ in draw:
            _check_op_name(name)
    if not any(name != "Identity" for draw in draws for name, _ in draw):
        return batch
    result = batch.clone()
    for position in range(max(len(draw) for draw in draws)):
        for name, (indices, magnitudes) in _group_by_op(draws, position).items():
            if len(indices) == len(draws):
                result = apply_op_batch(result, name, magnitudes)
                continue
            chosen = torch.tensor(indices, device=batch.device)
            put_samples(result, indices, apply_op_batch(result.index_select(0, chosen), name, magnitudes))
    return result


def put_samples(batch: torch.Tensor, indices: list[int], samples: torch.Tensor) -> None:
    """batch[indices] = samples, in place. On the CPU through numpy: its row copy is 5-10x faster than
    `index_copy_` on uint8 (measured at 32x32 and 64x64), which otherwise dominates small groups."""
    if batch.device.type == "cpu" and batch.is_contiguous():
        batch.numpy()[indices] = samples.numpy()
    else:
        batch.index_copy_(0, torch.tensor(indices, device=batch.device), samples)


def _group_by_op(draws: Sequence[Sequence[OpDraw]], position: int) -> dict[str, tuple[list[int], list]]:
    """Samples whose op at `position` is the same, with their magnitudes; the geometric ops form one
    group ("affine") whose magnitudes are (name, magnitude) pairs."""
    groups: dict[str, tuple[list[int], list]] = {}
    for index, draw in enumerate(draws):
        if position >= len(draw) or draw[position][0] == "Identity":
            continue
        name, magnitude = draw[position]
        key, value = ("affine", (name, magnitude)) if name in GEOMETRIC_OPS else (name, magnitude)
        indices, magnitudes = groups.setdefault(key, ([], []))
        indices.append(index)
        magnitudes.append(value)
    return groups


def apply_op_batch(batch: torch.Tensor, name: str, magnitudes: Sequence) -> torch.Tensor:
    """One op over a uint8 batch [N, ..., C, H, W] with a magnitude per sample (for "affine": a
    (geometric op name, magnitude) pair per sample)."""
    check_uint8_images(batch)
    if batch.ndim < 4 or len(magnitudes) != batch.shape[0]:
        raise ValueError(f"{len(magnitudes)} magnitudes for a batch shaped {tuple(batch.shape)}")
    if name == "Identity":
        return batch
    if name == "affine" or name in GEOMETRIC_OPS:
        pairs = magnitudes if name == "affine" else [(name, magnitude) for magnitude in magnitudes]
        return affine_batch(batch, pairs)
    _check_op_name(name)
    channels = batch.shape[-3]
    if channels in _TORCHVISION_CHANNELS:
        return _PHOTOMETRIC[name](batch, magnitudes)
    if name == "Color":
        return batch
    height, width = batch.shape[-2:]
    as_grey = batch.reshape(*batch.shape[:-3], channels, 1, height, width)
    return _PHOTOMETRIC[name](as_grey, magnitudes).reshape(batch.shape)


def check_uint8_images(images: torch.Tensor) -> None:
    """Reject anything but a uint8 tensor with at least [C, H, W] dimensions, saying what is wrong."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"augmentation expects a torch.Tensor, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        raise TypeError(f"augmentation expects uint8 images, got dtype {images.dtype}")
    if images.ndim < 3:
        raise ValueError(f"augmentation expects images shaped [..., C, H, W], got shape {tuple(images.shape)}")


def _check_op_name(name: str) -> None:
    if name not in OP_NAMES:
        raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(OP_NAMES)}")


# ---------------------------------------------------------------- geometric: one resampling per batch


def affine_batch(batch: torch.Tensor, ops: Sequence[OpDraw]) -> torch.Tensor:
    """Shear, translate or rotate each sample of a uint8 batch [N, ..., C, H, W] by its own (name,
    magnitude): nearest-neighbour resampling, zeros outside, as torchvision's affine and rotate do.
    Each op's source pixel map is computed once per image size (magnitudes are few) and the pixels
    are gathered as uint8."""
    channels, height, width = batch.shape[-3:]
    maps = [_source_map(name, float(magnitude), height, width, str(batch.device)) for name, magnitude in ops]
    source = torch.stack([index for index, _ in maps]).long()
    inside = torch.stack([mask for _, mask in maps])
    frames = batch[0].numel() // (channels * height * width)
    images = batch.reshape(len(ops), frames * channels, height * width)
    gathered = images.gather(2, source.view(len(ops), 1, -1).expand(-1, frames * channels, -1))
    return gathered.mul_(inside.view(len(ops), 1, -1)).reshape(batch.shape)


@functools.lru_cache(maxsize=512)
def _source_map(name: str, magnitude: float, height: int, width: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """For one geometric op: the flat index (int32) of each output pixel's source pixel and whether it
    lies inside the image (uint8 0/1), from torchvision's affine grid as grid_sample rounds it."""
    theta = torch.tensor(_inverse_matrix(name, magnitude, height, width), dtype=torch.float32, device=device)
    index, inside = _source_pixels(_sampling_grid(theta.view(1, 2, 3), height, width), height, width)
    return index.view(-1).to(torch.int32), inside.view(-1)


def _source_pixels(grid: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat index of the nearest source pixel of each output pixel, and whether it lies inside the
    image (uint8 0/1): grid_sample's unnormalisation and rounding (to nearest, ties to even)."""
    x = grid[..., 0].add(1.0).mul_(0.5 * width).sub_(0.5).round_()
    y = grid[..., 1].add(1.0).mul_(0.5 * height).sub_(0.5).round_()
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    index = (y.clamp_(0, height - 1) * width + x.clamp_(0, width - 1)).long()
    return index, inside.to(torch.uint8)


def _sampling_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Normalised sampling positions [N, H, W, 2] of inverse affine matrices in pixel units about the
    image centre (torchvision's affine grid, one matrix per image)."""
    scale = torch.tensor([0.5 * width, 0.5 * height], dtype=theta.dtype, device=theta.device)
    rescaled = theta.transpose(1, 2).div(scale)
    base = _pixel_centres(height, width, str(theta.device))
    grid = base.view(1, height * width, 3).expand(len(theta), -1, -1).bmm(rescaled)
    return grid.view(len(theta), height, width, 2)


@functools.lru_cache(maxsize=64)
def _pixel_centres(height: int, width: int, device: str) -> torch.Tensor:
    """Homogeneous pixel-centre coordinates [1, H, W, 3] about the image centre (never written to)."""
    base = torch.empty(1, height, width, 3, dtype=torch.float32, device=device)
    base[..., 0].copy_(torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, steps=width, device=device))
    base[..., 1].copy_(torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, steps=height,
                                      device=device).unsqueeze_(-1))
    base[..., 2].fill_(1)
    return base


@functools.lru_cache(maxsize=4096)
def _inverse_matrix(name: str, magnitude: float, height: int, width: int) -> tuple[float, ...]:
    """torchvision's inverse affine matrix of one geometric AutoAugment op (magnitudes are few: cached).

    Shears turn about the top-left corner with the magnitude as the shear's tangent; translations move
    by whole pixels; rotations turn about the centre by `magnitude` degrees."""
    if name in ("ShearX", "ShearY"):
        degrees = math.degrees(math.atan(magnitude))
        shear = [degrees, 0.0] if name == "ShearX" else [0.0, degrees]
        return tuple(_get_inverse_affine_matrix([-0.5 * width, -0.5 * height], 0.0, [0.0, 0.0], 1.0, shear))
    if name in ("TranslateX", "TranslateY"):
        shift = [float(int(magnitude)), 0.0] if name == "TranslateX" else [0.0, float(int(magnitude))]
        return tuple(_get_inverse_affine_matrix([0.0, 0.0], 0.0, shift, 1.0, [0.0, 0.0]))
    if name == "Rotate":
        angle = magnitude % 360
        if angle == 0:
            return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        return tuple(_get_inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], 1.0, [0.0, 0.0]))
    raise ValueError(f"{name!r} is not a geometric op; those are {', '.join(sorted(GEOMETRIC_OPS))}")


# ---------------------------------------------------------------- photometric: per-sample parameters


def _per_sample(values: Sequence[float], batch: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values shaped [N, 1, ..., 1] to broadcast over the samples of `batch`."""
    return torch.tensor(values, dtype=dtype, device=batch.device).view(-1, *([1] * (batch.ndim - 1)))


def _blend(batch: torch.Tensor, degenerate: torch.Tensor, factors: Sequence[float]) -> torch.Tensor:
    """factor * batch + (1 - factor) * degenerate per sample, clamped to [0, 255] and truncated to
    uint8 (torchvision's blend; 1 - factor in double precision as there)."""
    ratio, complement = _per_sample(factors, batch), _per_sample([1.0 - f for f in factors], batch)
    return batch.mul(ratio).add_(degenerate * complement).clamp_(0, 255).to(torch.uint8)


def _grey(batch: torch.Tensor) -> torch.Tensor:
    """Luma of RGB [.., 3, H, W] floored to whole levels, or the single channel, as float."""
    if batch.shape[-3] == 1:
        return batch.float()
    red, green, blue = batch.unbind(dim=-3)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).unsqueeze(-3).floor_()


def _brightness(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    factor = _per_sample([1.0 + float(m) for m in magnitudes], batch)
    return batch.mul(factor).clamp_(0, 255).to(torch.uint8)


def _color(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    if batch.shape[-3] == 1:  # saturation of a grey image: none (as Pillow and torchvision)
        return batch
    return _blend(batch, _grey(batch), [1.0 + float(m) for m in magnitudes])


def _contrast(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    mean = _grey(batch).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(batch, mean, [1.0 + float(m) for m in magnitudes])


def _sharpness(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    """Blend with a 3x3 smoothing of the inner pixels (the border is kept), as torchvision does. The
    smoothing sums whole levels (8 neighbours + 5 x centre, divided by 13 and rounded: never a tie, so
    it equals torchvision's convolution rounded) without leaving integers."""
    height, width = batch.shape[-2:]
    if height <= 2 or width <= 2:
        return batch
    levels = batch.to(torch.int16)
    total = levels[..., 1:-1, 1:-1] * 5
    for dy in range(3):
        for dx in range(3):
            if (dy, dx) != (1, 1):
                total += levels[..., dy:height - 2 + dy, dx:width - 2 + dx]
    blurred = total.mul_(2).add_(13).div_(26, rounding_mode="floor").float()
    output = batch.float()
    inner = output[..., 1:-1, 1:-1]
    inner.add_(blurred.sub_(inner).mul_(_per_sample([1.0 - (1.0 + float(m)) for m in magnitudes], batch)))
    return output.clamp_(0, 255).to(torch.uint8)


def _posterize(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    masks = [((1 << int(bits)) - 1) << (8 - int(bits)) for bits in magnitudes]
    return batch & _per_sample(masks, batch, torch.uint8)


def _solarize(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    """Invert pixels at or above a threshold given as a fraction of 255 (compared as whole levels:
    a level reaches a threshold exactly when it reaches the threshold rounded up; inverting a level is
    flipping its bits)."""
    threshold = _per_sample([math.ceil(float(torch.tensor(255.0 * m, dtype=torch.float32))) for m in magnitudes],
                            batch, torch.int16)
    return batch ^ (batch >= threshold).to(torch.uint8).mul_(255)


def _autocontrast(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    return F.autocontrast(batch)


def _equalize(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    return F.equalize(batch)


def _invert(batch: torch.Tensor, magnitudes: Sequence[float]) -> torch.Tensor:
    return F.invert(batch)


_PHOTOMETRIC: dict[str, Callable[[torch.Tensor, Sequence[float]], torch.Tensor]] = {
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
