"""Converters into the AutoDL format: ``.npz`` arrays and image-folder trees (folders or zip files).

Every image is decoded in full and stored as a viewer shows it (`autoclint.autodl.images`): 8-bit JPEG/PNG
that need no conversion are stored byte for byte; images whose EXIF orientation, 16-bit samples or
transparency (composited on black) changed their pixels, and other files (BMP, TIFF, CMYK JPEG...), are
stored as PNG of the displayed pixels. An image that cannot be decoded is refused, naming it, or skipped
and listed with ``skip_bad``.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from autoclint.autodl.images import DisplayedImage, UnreadableImageError, open_displayed
from autoclint.autodl.writer import (
    DEFAULT_EXAMPLES_PER_SHARD,
    label_matrix,
    write_dataset,
    write_encoded_images,
)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
PASS_THROUGH_MODES = {"JPEG": ("L", "RGB"), "PNG": ("L", "RGB", "RGBA", "P", "LA")}
SPLITS = ("train", "test")


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
    name = name or npz_path.stem
    refuse_output_over_source(npz_path, Path(root) / name)
    data, classes = load_npz_arrays(npz_path)
    return write_dataset(root, name, data["x_train"], data["y_train"], data["x_test"],
                         data["y_test"], label_names=classes, image_format=image_format,
                         examples_per_shard=examples_per_shard, overwrite=overwrite)


def load_npz_arrays(npz_path: Path) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """The four arrays and the class names of an ``.npz``; never unpickles anything.

    A file that is not an ``.npz`` (numpy.savez's zip of ``.npy`` arrays) or that holds Python
    objects is reported as such; numpy's own message would suggest enabling unpickling.
    """
    if not npz_path.is_file():
        raise FileNotFoundError(f"{npz_path}: file not found")
    if not zipfile.is_zipfile(npz_path):
        raise ValueError(f"{npz_path}: not a valid .npz file (expected a zip archive of .npy arrays, "
                         "as numpy.savez writes)")
    try:
        with np.load(npz_path, allow_pickle=False) as arrays:
            missing = [key for key in NPZ_KEYS if key not in arrays.files]
            if missing:
                raise KeyError(f"missing arrays {missing} (has {arrays.files})")
            data = {key: arrays[key] for key in NPZ_KEYS}
            classes = [str(c) for c in arrays["classes"]] if "classes" in arrays.files else None
    except KeyError as error:
        raise ValueError(f"{npz_path}: {error.args[0]}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        reason = "it holds Python objects, not numeric arrays" if "pickle" in str(error) else str(error)
        raise ValueError(f"{npz_path}: not a valid .npz file ({reason})") from None
    return data, classes


def refuse_output_over_source(source: Path, dataset_dir: Path) -> None:
    """Raise when the dataset would be written over its own source (or a folder holding it)."""
    source, target = source.resolve(), dataset_dir.resolve()
    if source == target or target in source.parents:
        raise FileExistsError(f"the output folder {dataset_dir} is (or holds) the source {source}; "
                              "choose another --out or --name")


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
            unsafe = [n for n in self.zip.namelist() if _is_unsafe_entry(n)]
            if unsafe:
                raise ValueError(f"{self.source}: entries with an absolute path or '..' are refused: "
                                 f"{', '.join(unsafe[:5])}")
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


def _is_unsafe_entry(name: str) -> bool:
    """A zip entry that names a place outside the tree: absolute, with a drive letter, or with '..'."""
    posix = name.replace("\\", "/")
    return posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) is not None or ".." in posix.split("/")


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


def split_tree(
    tree: ImageTree, test_fraction: float, seed: int, ignore_extra: bool = False
) -> tuple[list[ImageItem], list[ImageItem]]:
    """(train, test) items: from ``{train,test}/<class>/<img>``, else ``<class>/<img>`` split per class.

    A top level with ``train/`` and ``test/`` keeps that split; anything else beside them is an error
    (or left out with ``ignore_extra``), never a reason to mix the given test images into training.
    """
    _, relative = _strip_common_prefix(tree.paths)
    top = {parts[0] for parts in relative}
    if top & set(SPLITS):
        train, test = _given_split(tree, relative, top, ignore_extra)
    else:
        train, test = _split_per_class(tree, relative, test_fraction, seed)
    _check_split(tree.source, train, test)
    return train, test


def _given_split(
    tree: ImageTree, relative: list[tuple[str, ...]], top: set[str], ignore_extra: bool
) -> tuple[list[ImageItem], list[ImageItem]]:
    """Items of a ``{train,test}/<class>/<img>`` tree; other top-level entries refused or left out."""
    absent = [split for split in SPLITS if split not in top]
    if absent:
        raise ValueError(f"{tree.source}: the top level has {sorted(top & set(SPLITS))[0]}/ but no "
                         f"{absent[0]}/; give both train/ and test/, or only <class>/<image> folders")
    extra = sorted(top - set(SPLITS))
    if extra and not ignore_extra:
        raise ValueError(f"{tree.source}: besides train/ and test/ the top level holds unexpected entries: "
                         f"{', '.join(extra)}; remove them or pass ignore_extra=True (--ignore-extra)")
    if extra:
        logger.warning("%s: leaving out the top-level entries %s (not in train/ or test/)", tree.source,
                       ", ".join(extra))
    items: dict[str, list[ImageItem]] = {split: [] for split in SPLITS}
    for path, parts in zip(tree.paths, relative):
        if parts[0] not in SPLITS:
            continue
        if len(parts) < 3:
            raise ValueError(f"{tree.source}: {path} is not in a class folder "
                             f"(expected {parts[0]}/<class>/<image>)")
        items[parts[0]].append(ImageItem(path, parts[1]))
    return items["train"], items["test"]


def _split_per_class(
    tree: ImageTree, relative: list[tuple[str, ...]], test_fraction: float, seed: int
) -> tuple[list[ImageItem], list[ImageItem]]:
    """A ``<class>/<img>`` tree split per class: every class with two images or more gets a test image."""
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
        n_test = min(max(int(round(len(members) * test_fraction)), 1), len(members) - 1)
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    return train, test


def _check_split(source: Path, train: list[ImageItem], test: list[ImageItem]) -> None:
    """Refuse an empty split; warn loudly about classes missing from one side."""
    for split, items in (("train", train), ("test", test)):
        if not items:
            raise ValueError(f"{source}: the {split} split has 0 images (each class needs two images or "
                             "more to be split, or give train/ and test/ folders)")
    train_classes, test_classes = {i.label for i in train}, {i.label for i in test}
    untested = sorted(train_classes - test_classes)
    if untested:
        logger.warning("%s: %d class(es) have no test image and will not be scored: %s", source,
                       len(untested), ", ".join(untested[:10]))
    untrained = sorted(test_classes - train_classes)
    if untrained:
        logger.warning("%s: %d class(es) have no training image: %s", source, len(untrained),
                       ", ".join(untrained[:10]))


@dataclass
class ReadImages:
    """The images of one split as they will be stored, and what reading them found."""

    items: list[ImageItem]
    datas: list[bytes]
    sizes: list[tuple[int, int]]
    gray: bool
    conversions: Counter  # how many images needed each kind of conversion
    converted: int  # images that needed any
    skipped: list[str]


def _read_items(tree: ImageTree, items: list[ImageItem], skip_bad: bool) -> ReadImages:
    """Decode every image in full; keep the bytes of plain 8-bit JPEG/PNG and the displayed pixels of the
    rest. An unreadable image raises naming it, or with `skip_bad` is left out and listed."""
    read = ReadImages([], [], [], True, Counter(), 0, [])
    for item in items:
        where = f"{tree.source}: {item.path}"
        try:
            displayed = open_displayed(tree.read(item.path), where)
        except UnreadableImageError as error:
            if not skip_bad:
                raise ValueError(f"{error}; fix or remove it, or pass skip_bad=True (--skip-bad)") from None
            read.skipped.append(item.path)
            continue
        data = tree.read(item.path)
        read.items.append(item)
        read.datas.append(data if _stored_as_is(data, displayed) else _displayed_png(displayed))
        read.sizes.append((displayed.image.height, displayed.image.width))
        read.gray = read.gray and displayed.image.mode == "L"
        read.conversions.update(displayed.conversions)
        read.converted += bool(displayed.conversions)
    return read


def _stored_as_is(data: bytes, displayed: DisplayedImage) -> bool:
    """Whether the file's own bytes show what the viewer shows: an 8-bit JPEG/PNG that needed no conversion."""
    if displayed.conversions:
        return False
    with Image.open(io.BytesIO(data)) as image:
        return image.mode in PASS_THROUGH_MODES.get(image.format or "", ())


def _displayed_png(displayed: DisplayedImage) -> bytes:
    """PNG bytes of the displayed 8-bit pixels."""
    buffer = io.BytesIO()
    displayed.image.save(buffer, format="PNG")
    return buffer.getvalue()


def _report_reading(source: Path, splits: list[ReadImages]) -> None:
    """Warn how many images were converted to what a viewer shows, and which unreadable ones were skipped."""
    conversions = sum((read.conversions for read in splits), Counter())
    if conversions:
        logger.warning("%s: %d image(s) converted as a viewer shows them (%s)", source,
                       sum(read.converted for read in splits),
                       ", ".join(f"{what}: {count}" for what, count in sorted(conversions.items())))
    skipped = [path for read in splits for path in read.skipped]
    if skipped:
        logger.warning("%s: %d unreadable image(s) skipped: %s", source, len(skipped), ", ".join(skipped))


def convert_image_folder(
    source: str | Path,
    root: str | Path,
    name: str | None = None,
    *,
    test_fraction: float = 0.2,
    shuffle: bool = True,
    seed: int = 0,
    ignore_extra: bool = False,
    skip_bad: bool = False,
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Convert an image-folder tree (folder or ``.zip``) to ``root/name``; classes are sorted folder names.

    ``{train,test}/<class>/<img>`` keeps its split (other top-level entries are an error unless
    ``ignore_extra``); a plain ``<class>/<img>`` tree is split per class with ``test_fraction``.
    Records are shuffled (seeded) unless ``shuffle`` is False. The source is never written to. An image
    that does not decode completely is an error naming it, or with ``skip_bad`` left out and listed.
    """
    source = Path(source)
    name = name or source.stem
    refuse_output_over_source(source, Path(root) / name)
    tree = ImageTree(source)
    train, test = split_tree(tree, test_fraction, seed, ignore_extra)
    class_names = sorted({item.label for item in train + test})
    index_of = {label: i for i, label in enumerate(class_names)}
    if shuffle:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in rng.permutation(len(train))]
        test = [test[i] for i in rng.permutation(len(test))]
    train_read, test_read = _read_items(tree, train, skip_bad), _read_items(tree, test, skip_bad)
    _report_reading(source, [train_read, test_read])
    if train_read.skipped or test_read.skipped:
        _check_split(tree.source, train_read.items, test_read.items)
    channels = 1 if train_read.gray and test_read.gray else 3
    heights = {h for h, _ in train_read.sizes + test_read.sizes}
    widths = {w for _, w in train_read.sizes + test_read.sizes}
    return write_encoded_images(
        root,
        name,
        (train_read.datas, label_matrix([index_of[i.label] for i in train_read.items], len(class_names), "train")),
        (test_read.datas, label_matrix([index_of[i.label] for i in test_read.items], len(class_names), "test")),
        row_count=heights.pop() if len(heights) == 1 else -1,
        col_count=widths.pop() if len(widths) == 1 else -1,
        num_channels=channels,
        label_names=class_names,
        examples_per_shard=examples_per_shard,
        overwrite=overwrite,
    )
