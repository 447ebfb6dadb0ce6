"""Labelled data and prediction inputs from files, read with the readers the format layer already has.

Labelled data (for `fit` and `evaluate`): an image-folder tree or zip (`<class>/<image>`, or
`{train,test}/<class>/<image>` whose train part fits and whose test part evaluates), an `.npz` with
x_train/y_train/x_test/y_test (and optional classes), or an AutoDL dataset folder (the train split fits;
the test split and its solution file evaluate). Prediction inputs: image files, folders read
recursively, or `.npz` arrays.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Optional

import numpy as np

from autoclint.autodl import open_dataset
from autoclint.autodl.convert import IMAGE_SUFFIXES, ImageTree, load_npz_arrays, split_tree
from autoclint.data.bridge import iterate_numpy
from autoclint.inputs import StoredImage

logger = logging.getLogger(__name__)

TRAIN, TEST = "train", "test"
NPZ_INPUT_KEYS = ("x", "x_test", "X")
"""Array names of an .npz of examples to predict, tried in this order (else its only array)."""
PLAIN_TREE_SPLIT = 0.5  # a <class>/<image> tree is read whole: both parts of any split are kept


@dataclass
class LabelledData:
    """Examples (arrays or stored images) and their labels: 1-D class names, or a 2-D 0/1 matrix."""

    examples: list[Any]
    labels: np.ndarray
    names: list[str]


def read_labelled(path: str | Path, split: str) -> LabelledData:
    """The `split` ("train" or "test") part of labelled data at `path` (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        return read_npz(path, split)
    if path.is_dir() and find_autodl_split(path, split) is not None:
        return read_autodl(path, split)
    if path.is_dir() or zipfile.is_zipfile(path):
        return read_tree(path, split)
    raise ValueError(f"{path}: not an image folder, a zip of one, an .npz or an AutoDL dataset folder")


def read_tree(path: Path, split: str) -> LabelledData:
    """An image-folder tree: its given split, else every image (class = parent folder name)."""
    tree = ImageTree(path)
    train, test = split_tree(tree, PLAIN_TREE_SPLIT, seed=0)
    given = all(split_folder(item.path) == TRAIN for item in train) and all(
        split_folder(item.path) == TEST for item in test)
    items = (train if split == TRAIN else test) if given else sorted(train + test, key=lambda item: item.path)
    return LabelledData([StoredImage(tree, item.path) for item in items], np.asarray([item.label for item in items]),
                        [item.path for item in items])


def split_folder(path: str) -> str:
    """The folder above the class folder of a tree path ('' when there is none)."""
    parts = PurePosixPath(path).parts
    return parts[-3] if len(parts) >= 3 else ""


def read_npz(path: Path, split: str) -> LabelledData:
    """x_<split> and y_<split> of an .npz; integer or one-hot labels named by its classes when it has them."""
    arrays, classes = load_npz_arrays(path)
    examples, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    return LabelledData(list(examples), named_labels(labels, classes), [f"{path.name}[{i}]" for i in range(len(examples))])


def find_autodl_split(path: Path, split: str) -> Optional[Path]:
    """The split folder of an AutoDL dataset given as `<name>`, `<name>.data` or the split itself."""
    candidates = [path] if (path / "metadata.textproto").is_file() else []
    candidates += [path / split] + sorted(path.glob(f"*.data/{split}"))
    return next((c for c in candidates if (c / "metadata.textproto").is_file() and c.name == split), None)


def read_autodl(path: Path, split: str) -> LabelledData:
    """An AutoDL split as arrays; test labels come from the dataset's solution file."""
    split_dir = find_autodl_split(path, split)
    dataset_dir = split_dir.parent.parent
    name = split_dir.parent.name.removesuffix(".data")
    pairs = list(iterate_numpy(open_dataset(split_dir, backend="python").get_dataset()))
    rows = np.stack([label for _, label in pairs])
    if split == TEST:
        solution = dataset_dir / f"{name}.solution"
        if not solution.is_file():
            raise ValueError(f"{split_dir}: the test labels ({solution}) are missing")
        rows = np.loadtxt(solution, ndmin=2)
    names_file = dataset_dir / f"{name}_label.name"
    classes = names_file.read_text().split("\n") if names_file.is_file() else None
    classes = [c for c in classes if c] if classes else None
    return LabelledData([example for example, _ in pairs], named_labels(rows, classes),
                        [f"{split_dir.name}[{i}]" for i in range(len(pairs))])


def named_labels(labels: np.ndarray, classes: Optional[list[str]]) -> np.ndarray:
    """Class names (or indices) from integer labels or one-hot rows; a multilabel matrix stays 0/1."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        positives = (labels > 0.5).sum(axis=1)
        if not np.all(positives == 1):
            return (labels > 0.5).astype(int)
        labels = labels.argmax(axis=1)
    labels = labels.astype(int)
    return np.asarray(classes)[labels] if classes and len(classes) > labels.max() else labels


# ---------------------------------------------------------------------------------------------------------
# Prediction inputs


def is_image_file(path: Path) -> bool:
    """An image suffix, and not hidden."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def prediction_inputs(paths: list[str | Path]) -> Iterator[tuple[str, Any]]:
    """(name, item) of every example to predict: image files, image files under folders (sorted), and the
    examples of .npz files (named file[index])."""
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not files:
                logger.warning("%s: no image files in this folder", path)
            yield from ((str(file), file) for file in files)
        elif path.suffix == ".npz":
            array = npz_examples(path)
            yield from ((f"{path}[{index}]", example) for index, example in enumerate(array))
        elif path.exists():
            yield str(path), path
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")


def npz_examples(path: Path) -> np.ndarray:
    """The examples array of an .npz to predict (x, x_test or X, else its only array); never unpickles."""
    with np.load(path, allow_pickle=False) as arrays:
        for key in NPZ_INPUT_KEYS:
            if key in arrays.files:
                return arrays[key]
        if len(arrays.files) == 1:
            return arrays[arrays.files[0]]
        raise ValueError(f"{path}: which array to predict? name it one of {NPZ_INPUT_KEYS} (has {arrays.files})")
