"""Converters into the AutoDL format: ``.npz`` arrays and image-folder trees (folders or zip files).

Image files that are already 8-bit JPEG/PNG are stored byte for byte; other files (BMP, TIFF,
16-bit PNG, CMYK JPEG...) are re-encoded as PNG.
"""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from autoclint.autodl.writer import (
    DEFAULT_EXAMPLES_PER_SHARD,
    PIL_MODES,
    label_matrix,
    write_dataset,
    write_encoded_images,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
PASS_THROUGH_MODES = {"JPEG": ("L", "RGB"), "PNG": ("L", "RGB", "RGBA", "P", "LA")}
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def convert_npz(
    npz_path: str | Path,
    root: str | Path,
    name: str | None = None,
    *,
    image_format: str = "png",
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Convert an ``.npz`` with x_train/y_train/x_test/y_test (and optional ``classes``) to ``root/name``."""
    npz_path = Path(npz_path)
    with np.load(npz_path, allow_pickle=False) as arrays:
        missing = [key for key in NPZ_KEYS if key not in arrays.files]
        if missing:
            raise ValueError(f"{npz_path}: missing arrays {missing} (has {arrays.files})")
        data = {key: arrays[key] for key in NPZ_KEYS}
        classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else None
    return write_dataset(root, name or npz_path.stem, data["x_train"], data["y_train"], data["x_test"],
                         data["y_test"], label_names=classes, image_format=image_format,
                         examples_per_shard=examples_per_shard, overwrite=overwrite)


class ImageTree:
    """Relative POSIX paths and bytes of the image files in a folder or a zip file."""

    def __init__(self, source: str | Path) -> None:
        self.source = Path(source)
        if self.source.is_dir():
            self.zip = None
            names = [p.relative_to(self.source).as_posix() for p in self.source.rglob("*") if p.is_file()]
        elif zipfile.is_zipfile(self.source):
            self.zip = zipfile.ZipFile(self.source)
            names = [n for n in self.zip.namelist() if not n.endswith("/")]
        else:
            raise ValueError(f"{self.source}: neither a folder nor a zip file")
        self.paths = sorted(n for n in names if _is_image_path(n))
        if not self.paths:
            raise ValueError(f"{self.source}: no image files ({', '.join(IMAGE_SUFFIXES)}) found")

    def read(self, path: str) -> bytes:
        """The bytes of one file of the tree."""
        if self.zip is not None:
            return self.zip.read(path)
        return (self.source / path).read_bytes()


def _is_image_path(path: str) -> bool:
    """Image suffix, and no hidden or macOS resource-fork component."""
    parts = PurePosixPath(path).parts
    return path.lower().endswith(IMAGE_SUFFIXES) and not any(p.startswith((".", "__MACOSX")) for p in parts)


def _strip_common_prefix(paths: list[str]) -> tuple[str, list[tuple[str, ...]]]:
    """Drop leading folders shared by every path (a zip often wraps the tree in one top folder)."""
    parts = [PurePosixPath(p).parts for p in paths]
    depth = 0
    while all(len(p) > depth + 2 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    return "/".join(parts[0][:depth]), [p[depth:] for p in parts]


@dataclass(frozen=True)
class ImageItem:
    """One image file of the tree and its class name."""

    path: str
    label: str


def split_tree(tree: ImageTree, test_fraction: float, seed: int) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, test) items: from ``{train,test}/<class>/<img>``, else ``<class>/<img>`` split per class."""
    _, relative = _strip_common_prefix(tree.paths)
    if all(len(p) >= 3 and p[0] in ("train", "test") for p in relative):
        items: dict[str, list[ImageItem]] = {"train": [], "test": []}
        for path, parts in zip(tree.paths, relative):
            items[parts[0]].append(ImageItem(path, parts[1]))
        if not items["train"] or not items["test"]:
            raise ValueError(f"{tree.source}: 'train' and 'test' must both hold images")
        return items["train"], items["test"]
    if not all(len(p) >= 2 for p in relative):
        raise ValueError(f"{tree.source}: expected {{train,test}}/<class>/<image> or <class>/<image>")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    by_class: dict[str, list[ImageItem]] = {}
    for path, parts in zip(tree.paths, relative):
        by_class.setdefault(parts[-2], []).append(ImageItem(path, parts[-2]))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted(by_class):
        members = [by_class[label][i] for i in rng.permutation(len(by_class[label]))]
        n_test = int(round(len(members) * test_fraction))
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return train, test


def _read_items(tree: ImageTree, items: list[ImageItem]) -> tuple[list[bytes], list[tuple[int, int]], int]:
    """Bytes, (height, width) and the dataset's channel count (1 when every image is grayscale, else 3)."""
    datas, sizes, gray = [], [], True
    for item in items:
        data = tree.read(item.path)
        try:
            with Image.open(io.BytesIO(data)) as image:
                sizes.append((image.height, image.width))
                gray = gray and image.mode in GRAY_MODES
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{tree.source}: {item.path}: not a readable image ({error})") from error
        datas.append(data)
    return datas, sizes, 1 if gray else 3


def _storable(data: bytes, channels: int, where: str) -> bytes:
    """The image bytes as stored: unchanged for 8-bit JPEG/PNG, else re-encoded as PNG."""
    with Image.open(io.BytesIO(data)) as image:
        if image.mode in PASS_THROUGH_MODES.get(image.format or "", ()):
            return data
        logger.debug("%s: re-encoding %s/%s as PNG", where, image.format, image.mode)
        buffer = io.BytesIO()
        image.convert(PIL_MODES[channels]).save(buffer, format="PNG")
        return buffer.getvalue()


def convert_image_folder(
    source: str | Path,
    root: str | Path,
    name: str | None = None,
    *,
    test_fraction: float = 0.2,
    shuffle: bool = True,
    seed: int = 0,
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Convert an image-folder tree (folder or ``.zip``) to ``root/name``; classes are sorted folder names.

    ``{train,test}/<class>/<img>`` keeps its split; a plain ``<class>/<img>`` tree is split per class
    with ``test_fraction``. Records are shuffled (seeded) unless ``shuffle`` is False.
    """
    source = Path(source)
    tree = ImageTree(source)
    train, test = split_tree(tree, test_fraction, seed)
    class_names = sorted({item.label for item in train + test})
    index_of = {label: i for i, label in enumerate(class_names)}
    if shuffle:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in rng.permutation(len(train))]
        test = [test[i] for i in rng.permutation(len(test))]
    train_data, train_sizes, train_channels = _read_items(tree, train)
    test_data, test_sizes, test_channels = _read_items(tree, test)
    channels = max(train_channels, test_channels)
    heights = {h for h, _ in train_sizes + test_sizes}
    widths = {w for _, w in train_sizes + test_sizes}
    encoded = {
        split: [_storable(d, channels, f"{source}: {item.path}") for d, item in zip(datas, items)]
        for split, datas, items in (("train", train_data, train), ("test", test_data, test))
    }
    return write_encoded_images(
        root,
        name or source.stem,
        (encoded["train"], label_matrix([index_of[i.label] for i in train], len(class_names), "train")),
        (encoded["test"], label_matrix([index_of[i.label] for i in test], len(class_names), "test")),
        row_count=heights.pop() if len(heights) == 1 else -1,
        col_count=widths.pop() if len(widths) == 1 else -1,
        num_channels=channels,
        label_names=class_names,
        examples_per_shard=examples_per_shard,
        overwrite=overwrite,
    )
