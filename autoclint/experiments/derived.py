"""Derived benchmark datasets: a video set and a multilabel set made from the shared raw image sets.

No real video or multilabel image set is available offline, so two are generated, deterministically
from a seed, and written as PNG-compressed AutoDL datasets. Train examples are made only from the raw
set's train split and test examples only from its test split, so no source image is in both.

``mnist_video`` (video, 10 classes, one label per clip): each example is a clip of 10 grey frames of
48x48 pixels (uint8, black background) in which one MNIST digit (28x28, from ``mnist10k.npz``) moves
in a straight line. The digit's top-left corner starts at a uniformly random position in [0, 20] x
[0, 20] (the digit always lies wholly inside the frame) and moves with a constant velocity: a
uniformly random direction and a speed drawn uniformly from 1.5 to 3 pixels per frame. It bounces off
the frame's edges (mirror reflection) and is drawn at the nearest whole pixel. The label is the
digit's class. Classes are balanced: the clips take the classes in turn, in a shuffled order, and each
clip's digit is a random image of its class. 3,000 train / 1,000 test clips.

``cifar_mosaic`` (multilabel, 10 classes, multi-hot labels): each example is a 64x64 colour canvas
cut into a 2x2 grid of 32x32 cells. One to three cells (the count uniform over 1, 2, 3; the cells
chosen at random) each hold one CIFAR-10 image (32x32x3, from ``cifar10_15k.npz``); empty cells stay
black. The images of a mosaic have distinct classes, and its label is 1 for every class placed and 0
for the others. The first image's class runs through the classes in turn (shuffled order), so every
class is positive in about a tenth of the examples or more; the other classes are drawn at random
among the remaining ones. 3,000 train / 1,000 test mosaics.

Every label column of each split is checked to hold both a positive and a negative example, as the
scoring (per-class AUC) needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoclint.autodl.writer import write_dataset

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")


@dataclass(frozen=True)
class MovingDigitsSpec:
    """How `mnist_video` is made: clip counts, frames, canvas side, speed range (pixels/frame), seed."""

    train_count: int = 3000
    test_count: int = 1000
    frames: int = 10
    canvas: int = 48
    min_speed: float = 1.5
    max_speed: float = 3.0
    seed: int = 0


@dataclass(frozen=True)
class MosaicSpec:
    """How `cifar_mosaic` is made: mosaic counts, grid side (cells per row), most items per mosaic, seed."""

    train_count: int = 3000
    test_count: int = 1000
    grid: int = 2
    max_items: int = 3
    seed: int = 0


@dataclass(frozen=True)
class RawSplit:
    """One split of a raw set: uint8 images [N, H, W, C] and class indices [N]."""

    images: np.ndarray
    labels: np.ndarray


def load_raw_splits(source: Path) -> tuple[dict[str, RawSplit], list[str]]:
    """The train and test splits of a raw `.npz` set (x_*, y_*, classes), images as [N, H, W, C]."""
    with np.load(source, allow_pickle=False) as arrays:
        splits = {}
        for split in SPLITS:
            images = arrays[f"x_{split}"]
            splits[split] = RawSplit(images[..., None] if images.ndim == 3 else images,
                                     arrays[f"y_{split}"].astype(np.int64))
        classes = [str(c) for c in arrays["classes"]]
    return splits, classes


def split_rng(seed: int, split: str) -> np.random.Generator:
    """An independent generator per split, so a split's examples do not depend on the other's count."""
    return np.random.default_rng([seed, SPLITS.index(split)])


def balanced_classes(count: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """`count` class indices taking every class in turn (counts differ by at most one), shuffled."""
    return rng.permutation(np.arange(count) % num_classes)


def pick_image_of_class(labels: np.ndarray, label: int, rng: np.random.Generator) -> int:
    """The index of a random image of class `label`."""
    candidates = np.flatnonzero(labels == label)
    if candidates.size == 0:
        raise ValueError(f"the raw split has no image of class {label}")
    return int(rng.choice(candidates))


def check_label_coverage(labels: np.ndarray, what: str) -> None:
    """Raise ValueError unless every label column has both a positive and a negative example."""
    positives = labels.sum(axis=0)
    constant = np.flatnonzero((positives == 0) | (positives == len(labels)))
    if constant.size:
        raise ValueError(f"{what}: classes {constant.tolist()} lack positive or negative examples "
                         f"among {len(labels)}; make the split larger")


# --- moving digits -----------------------------------------------------------------------------------


def bounce(positions: np.ndarray, limit: float) -> np.ndarray:
    """Unbounded straight-line positions folded into [0, limit] by mirror reflection at both ends."""
    if limit <= 0:
        return np.zeros_like(positions)
    folded = np.mod(positions, 2 * limit)
    return np.where(folded > limit, 2 * limit - folded, folded)


def digit_trajectory(start: np.ndarray, velocity: np.ndarray, frames: int, limit: int) -> np.ndarray:
    """Whole-pixel top-left corners [frames, 2] (row, col) of a point bouncing inside [0, limit]^2."""
    steps = np.arange(frames)[:, None]
    return np.rint(bounce(start[None, :] + steps * velocity[None, :], limit)).astype(np.int64)


def random_trajectory(spec: MovingDigitsSpec, limit: int, rng: np.random.Generator) -> np.ndarray:
    """A trajectory with a uniform random start, direction and speed (see the module docstring)."""
    start = rng.uniform(0, limit, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(spec.min_speed, spec.max_speed)
    velocity = speed * np.array([np.sin(angle), np.cos(angle)])
    return digit_trajectory(start, velocity, spec.frames, limit)


def make_moving_digit_clip(digit: np.ndarray, trajectory: np.ndarray, canvas: int) -> np.ndarray:
    """A uint8 clip [T, canvas, canvas, C]: black frames with `digit` [h, w, C] at each corner."""
    height, width, channels = digit.shape
    clip = np.zeros((len(trajectory), canvas, canvas, channels), dtype=np.uint8)
    for frame, (row, col) in zip(clip, trajectory):
        frame[row:row + height, col:col + width] = digit
    return clip


def make_moving_digits(raw: RawSplit, count: int, spec: MovingDigitsSpec, num_classes: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` clips [N, T, H, W, C] and their class indices [N], classes balanced."""
    digit_side = max(raw.images.shape[1:3])
    if digit_side > spec.canvas:
        raise ValueError(f"digits of {digit_side} px do not fit a {spec.canvas} px canvas")
    limit = spec.canvas - digit_side
    labels = balanced_classes(count, num_classes, rng)
    clips = np.zeros((count, spec.frames, spec.canvas, spec.canvas, raw.images.shape[-1]), dtype=np.uint8)
    for i, label in enumerate(labels):
        digit = raw.images[pick_image_of_class(raw.labels, label, rng)]
        clips[i] = make_moving_digit_clip(digit, random_trajectory(spec, limit, rng), spec.canvas)
    return clips, labels


def write_moving_digits(source: Path, root: Path, name: str, spec: MovingDigitsSpec = MovingDigitsSpec()
                        ) -> Path:
    """Generate the moving-digit video set from a raw digit `.npz` and write it as `root/name` (PNG)."""
    raw, classes = load_raw_splits(source)
    made = {}
    for split, count in (("train", spec.train_count), ("test", spec.test_count)):
        clips, labels = make_moving_digits(raw[split], count, spec, len(classes), split_rng(spec.seed, split))
        check_label_coverage(np.eye(len(classes))[labels], f"{name} {split}")
        made[split] = (clips, labels)
    logger.info("generated %s: %d train / %d test clips of %s", name, spec.train_count, spec.test_count,
                made["train"][0].shape[1:])
    return write_dataset(root, name, made["train"][0], made["train"][1], made["test"][0], made["test"][1],
                         label_names=classes, image_format="png")


# --- mosaics -------------------------------------------------------------------------------------------


def make_mosaic(items: list[np.ndarray], cells: list[int], grid: int) -> np.ndarray:
    """A uint8 canvas of grid x grid cells (each an item's size), item k in cell `cells[k]`, others black."""
    if len(items) != len(cells) or not items:
        raise ValueError(f"need one cell per item and at least one item, got {len(items)} / {len(cells)}")
    height, width, channels = items[0].shape
    canvas = np.zeros((grid * height, grid * width, channels), dtype=np.uint8)
    for item, cell in zip(items, cells):
        row, col = divmod(cell, grid)
        canvas[row * height:(row + 1) * height, col * width:(col + 1) * width] = item
    return canvas


def mosaic_classes(first: int, num_classes: int, max_items: int, rng: np.random.Generator) -> list[int]:
    """Distinct classes of one mosaic: `first`, then 0 to max_items - 1 others (count uniform)."""
    count = int(rng.integers(1, max_items + 1))
    others = [c for c in range(num_classes) if c != first]
    return [first] + [int(c) for c in rng.choice(others, size=count - 1, replace=False)]


def make_mosaics(raw: RawSplit, count: int, spec: MosaicSpec, num_classes: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` mosaics [N, H, W, C] and their multi-hot labels [N, num_classes] (float32 0/1)."""
    most = min(spec.grid ** 2, num_classes)
    if not 1 <= spec.max_items <= most:
        raise ValueError(f"max_items must be in [1, {most}], got {spec.max_items}")
    height, width, channels = raw.images.shape[1:]
    mosaics = np.zeros((count, spec.grid * height, spec.grid * width, channels), dtype=np.uint8)
    labels = np.zeros((count, num_classes), dtype=np.float32)
    for i, first in enumerate(balanced_classes(count, num_classes, rng)):
        classes = mosaic_classes(int(first), num_classes, spec.max_items, rng)
        cells = rng.choice(spec.grid ** 2, size=len(classes), replace=False).tolist()
        items = [raw.images[pick_image_of_class(raw.labels, c, rng)] for c in classes]
        mosaics[i] = make_mosaic(items, cells, spec.grid)
        labels[i, classes] = 1.0
    return mosaics, labels


def write_mosaics(source: Path, root: Path, name: str, spec: MosaicSpec = MosaicSpec()) -> Path:
    """Generate the multilabel mosaic set from a raw image `.npz` and write it as `root/name` (PNG)."""
    raw, classes = load_raw_splits(source)
    made = {}
    for split, count in (("train", spec.train_count), ("test", spec.test_count)):
        mosaics, labels = make_mosaics(raw[split], count, spec, len(classes), split_rng(spec.seed, split))
        check_label_coverage(labels, f"{name} {split}")
        made[split] = (mosaics, labels)
    logger.info("generated %s: %d train / %d test mosaics of %s", name, spec.train_count, spec.test_count,
                made["train"][0].shape[1:])
    return write_dataset(root, name, made["train"][0], made["train"][1], made["test"][0], made["test"][1],
                         label_names=classes, image_format="png")


WRITERS = {"mnist_video": write_moving_digits, "cifar_mosaic": write_mosaics}
