"""Write datasets in the AutoDL format from numpy arrays (images or videos; dense, JPEG or PNG records).

Records are framed by :mod:`autoclint.autodl.tfrecord`, so writing needs no TensorFlow. The layout
is the platform's: ``root/name/name.data/{train,test}/{metadata.textproto, sample-*.tfrecord}``,
``root/name/name.solution`` (test labels in record order) and ``root/name/name_label.name``, plus a
marker file that lets a later ``overwrite=True`` replace this folder and nothing else. Datasets are
written beside the target and renamed into place, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from PIL import Image

from autoclint.autodl import proto
from autoclint.autodl.metadata import METADATA_FILENAME
from autoclint.autodl.records import (
    COMPRESSED_KEY,
    DENSE_KEY,
    LABEL_INDEX,
    LABEL_SCORE,
    PIL_MODES,
    RECORD_ID,
    UINT8_SCALE,
)
from autoclint.autodl.tfrecord import write_records

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("dense", "jpeg", "png")
DEFAULT_EXAMPLES_PER_SHARD = 5000
JPEG_QUALITY = 95
# Written into every dataset folder made here: only such a folder may ever be replaced (overwrite=True).
DATASET_MARKER = ".autoclint_dataset"
MARKER_TEXT = "AutoDL dataset written by autoclint.autodl.writer; overwrite=True may replace this folder\n"
SHARD_PATTERN = re.compile(r"sample-\d{5}-of-\d{5}\.tfrecord")


@dataclass(frozen=True)
class SplitSpec:
    """What a split's metadata says: sizes (-1 = variable), channels, time steps, classes and format."""

    sample_count: int
    output_dim: int
    row_count: int
    col_count: int
    num_channels: int
    sequence_size: int
    compressed: bool
    label_names: tuple[str, ...] = ()


def build_metadata(spec: SplitSpec) -> proto.DataSpecification:
    """The ``DataSpecification`` written as ``metadata.textproto``."""
    data_spec = proto.DataSpecification(
        is_sequence=spec.sequence_size != 1,
        sample_count=spec.sample_count,
        sequence_size=spec.sequence_size,
        output_dim=spec.output_dim,
    )
    data_spec.matrix_spec.add(
        col_count=spec.col_count,
        row_count=spec.row_count,
        num_channels=spec.num_channels,
        is_sequence_col=False,
        is_sequence_row=False,
        has_locality_col=True,
        has_locality_row=True,
        format=proto.MatrixSpec.COMPRESSED if spec.compressed else proto.MatrixSpec.DENSE,
    )
    for index, name in enumerate(spec.label_names):
        data_spec.label_to_index_map[name] = index
    return data_spec


def make_record(steps: Sequence[bytes] | np.ndarray, label: np.ndarray | None, record_id: int) -> bytes:
    """Serialize one SequenceExample: encoded images per time step (bytes) or a dense float32 [T,H,W,C]."""
    example = proto.SequenceExample()
    context = example.context.feature
    context[RECORD_ID].int64_list.value.append(record_id)
    indices = np.flatnonzero(label) if label is not None else np.empty(0, dtype=np.int64)
    context[LABEL_INDEX].int64_list.value.extend(indices.tolist())
    context[LABEL_SCORE].float_list.value.extend(label[indices].tolist() if label is not None else [])
    lists = example.feature_lists.feature_list
    if isinstance(steps, np.ndarray):
        dense = lists[DENSE_KEY]
        for step in steps.reshape(steps.shape[0], -1):
            dense.feature.add().float_list.value.extend(step.tolist())
    else:
        compressed = lists[COMPRESSED_KEY]
        for data in steps:
            compressed.feature.add().bytes_list.value.append(data)
    return example.SerializeToString()


def shard_paths(directory: Path, sample_count: int, examples_per_shard: int) -> list[Path]:
    """``sample-00000-of-0000N.tfrecord`` names; at least one shard even for an empty split."""
    n_shards = max(1, -(-sample_count // examples_per_shard))
    return [directory / f"sample-{i:05d}-of-{n_shards:05d}.tfrecord" for i in range(n_shards)]


def write_split(directory: Path, spec: SplitSpec, records: Iterable[bytes], examples_per_shard: int) -> None:
    """Write one split directory: metadata plus ``spec.sample_count`` records spread over shards."""
    if examples_per_shard < 1:
        raise ValueError(f"examples_per_shard must be >= 1, got {examples_per_shard}")
    directory.mkdir(parents=True, exist_ok=True)
    metadata_text = text_format.MessageToString(build_metadata(spec))
    (directory / METADATA_FILENAME).write_text(metadata_text, encoding="utf-8")
    iterator = iter(records)
    written = 0
    for path in shard_paths(directory, spec.sample_count, examples_per_shard):
        written += write_records(path, (next(iterator) for _ in range(min(examples_per_shard,
                                                                         spec.sample_count - written))))
    if next(iterator, None) is not None:
        raise ValueError(f"{directory}: more records than sample_count={spec.sample_count}")


def write_solution(path: Path, labels: np.ndarray) -> None:
    """One row per test example, space-separated; 0/1 labels are written as integers."""
    as_int = np.array_equal(labels, labels.astype(np.int64))
    rows = labels.astype(np.int64) if as_int else labels
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(" ".join(str(v) for v in row.tolist()) + "\n")


def write_label_names(path: Path, names: Sequence[str]) -> None:
    """One class name per line, in label-index order."""
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


def dataset_paths(root: str | Path, name: str) -> tuple[Path, Path, Path]:
    """(dataset dir, train split dir, test split dir) of a dataset written under ``root``."""
    dataset_dir = Path(root) / name
    return dataset_dir, dataset_dir / f"{name}.data" / "train", dataset_dir / f"{name}.data" / "test"


def check_dataset_name(name: str) -> None:
    """Refuse names that are not one plain folder name (no separators, no leading dot, not empty)."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"invalid dataset name {name!r}")


def foreign_entries(dataset_dir: Path, name: str) -> list[str]:
    """Paths under ``dataset_dir`` that this writer would not have written (all of them without the marker).

    A dataset written here holds the marker file, ``name.data/{train,test}/`` with the metadata and
    ``sample-*.tfrecord`` shards, the solution and the label names, and nothing else.
    """
    entries = sorted(p.relative_to(dataset_dir).as_posix() for p in dataset_dir.rglob("*"))
    if DATASET_MARKER not in entries:
        return entries
    splits = {f"{name}.data/train", f"{name}.data/test"}
    expected = {DATASET_MARKER, f"{name}.data", f"{name}.solution", f"{name}_label.name"} | splits

    def ours(entry: str) -> bool:
        parent, _, leaf = entry.rpartition("/")
        shard = SHARD_PATTERN.fullmatch(leaf) is not None
        return entry in expected or (parent in splits and (leaf == METADATA_FILENAME or shard))

    return [entry for entry in entries if not ours(entry)]


def check_replaceable(dataset_dir: Path, name: str, overwrite: bool) -> None:
    """Raise unless ``dataset_dir`` is absent, empty, or (with ``overwrite``) a dataset written here.

    Never lets anything else be replaced, whatever ``overwrite`` says: a source tree, another tool's
    dataset, or one of ours holding files added by hand.
    """
    if not dataset_dir.exists() and not dataset_dir.is_symlink():
        return
    if not dataset_dir.is_dir() or dataset_dir.is_symlink():
        raise FileExistsError(f"{dataset_dir} exists and is not a folder; choose another --out or --name")
    if not any(dataset_dir.iterdir()):
        return
    foreign = foreign_entries(dataset_dir, name)
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise FileExistsError(f"{dataset_dir} already exists and holds files this writer did not write "
                              f"({shown}); it is never replaced: choose another --out or --name")
    if not overwrite:
        raise FileExistsError(f"{dataset_dir} already exists and holds an AutoDL dataset written here "
                              "(replace it with overwrite=True or --overwrite)")


@contextmanager
def staging_dir(root: Path, name: str) -> Iterator[Path]:
    """A fresh hidden folder beside the target; removed with everything in it unless renamed away."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=root))
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def install_dataset(staging: Path, dataset_dir: Path, name: str, overwrite: bool) -> None:
    """Rename a complete dataset into place; an old one of ours is moved aside first and removed last."""
    check_replaceable(dataset_dir, name, overwrite)
    if not dataset_dir.exists():
        os.rename(staging, dataset_dir)
        return
    if not any(dataset_dir.iterdir()):
        dataset_dir.rmdir()
        os.rename(staging, dataset_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{name}.old-", dir=dataset_dir.parent))
    os.rename(dataset_dir, old / name)
    os.rename(staging, dataset_dir)
    shutil.rmtree(old)
    logger.info("replaced the dataset written earlier in %s", dataset_dir)


def as_examples(x: np.ndarray | Sequence[np.ndarray], what: str) -> list[np.ndarray]:
    """Examples as [T, H, W, C] arrays from [N,H,W] / [N,H,W,C] (images), [N,T,H,W,C] (videos) or a list."""
    if isinstance(x, np.ndarray):
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim == 4:
            x = x[:, None]
        if x.ndim != 5:
            raise ValueError(f"{what}: expected [N,H,W], [N,H,W,C] or [N,T,H,W,C], got shape {x.shape}")
        return list(x)
    examples = []
    for i, item in enumerate(x):
        item = np.asarray(item)
        if item.ndim == 2:
            item = item[None, ..., None]
        elif item.ndim == 3:
            item = item[None]
        elif item.ndim != 4:
            raise ValueError(f"{what}[{i}]: expected [H,W], [H,W,C] or [T,H,W,C], got shape {item.shape}")
        examples.append(item)
    return examples


def label_matrix(y: np.ndarray | Sequence, num_classes: int, what: str) -> np.ndarray:
    """Labels as float32 [N, num_classes]: class indices [N] one-hot, or a 0/1 (multilabel) matrix."""
    y = np.asarray(y)
    if y.ndim == 1:
        if y.size and (y.min() < 0 or y.max() >= num_classes or not np.array_equal(y, y.astype(np.int64))):
            raise ValueError(f"{what}: class indices must be integers in [0, {num_classes})")
        matrix = np.zeros((len(y), num_classes), dtype=np.float32)
        matrix[np.arange(len(y)), y.astype(np.int64)] = 1.0
        return matrix
    if y.ndim == 2 and y.shape[1] == num_classes:
        return y.astype(np.float32)
    raise ValueError(f"{what}: expected class indices [N] or a [N, {num_classes}] matrix, "
                     f"got shape {y.shape}")


def infer_num_classes(y_train: np.ndarray, y_test: np.ndarray, label_names: Sequence[str] | None) -> int:
    """Number of classes from the names, the label matrix width, or the largest class index + 1."""
    if label_names is not None:
        return len(label_names)
    if y_train.ndim == 2:
        return y_train.shape[1]
    return int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1


def to_uint8(example: np.ndarray, what: str) -> np.ndarray:
    """uint8 pixels for image encoding: uint8 as is, floats in [0, 1] scaled by 255 and rounded."""
    if example.dtype == np.uint8:
        return example
    if example.size and (example.min() < 0 or example.max() > 1):
        raise ValueError(f"{what}: float images must lie in [0, 1] to be encoded (got "
                         f"[{example.min()}, {example.max()}]); pass uint8 or use image_format='dense'")
    return np.rint(example * 255.0).astype(np.uint8)


def to_dense(example: np.ndarray) -> np.ndarray:
    """float32 values for dense records: uint8 scaled to [0, 1] exactly as image decoding does."""
    if example.dtype == np.uint8:
        return example.astype(np.float32) * UINT8_SCALE
    return example.astype(np.float32)


def encode_image(pixels: np.ndarray, image_format: str) -> bytes:
    """JPEG (quality 95, no chroma subsampling) or PNG bytes of one uint8 [H, W, C] image."""
    channels = pixels.shape[-1]
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=PIL_MODES[channels])
    buffer = io.BytesIO()
    if image_format == "jpeg":
        image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _check_channels(examples: list[np.ndarray], image_format: str, what: str) -> int:
    """The common channel count, checked against what the format can store."""
    channels = {e.shape[-1] for e in examples}
    if len(channels) > 1:
        raise ValueError(f"{what}: examples have different channel counts {sorted(channels)}")
    count = channels.pop() if channels else 1
    allowed = {"jpeg": (1, 3), "png": (1, 3, 4)}.get(image_format)
    if allowed is not None and count not in allowed:
        raise ValueError(f"{what}: {image_format} stores {allowed} channels, got {count}")
    return count


def _common_size(sizes: set[int]) -> int:
    """The size shared by all examples, or -1 (variable)."""
    return sizes.pop() if len(sizes) == 1 else -1


def _records(
    examples: list[np.ndarray], labels: np.ndarray | None, image_format: str, what: str
) -> Iterator[bytes]:
    """Serialized records of a split, encoded lazily (labels None for the unlabelled test records)."""
    for i, example in enumerate(examples):
        where = f"{what}[{i}]"
        if image_format == "dense":
            steps: Sequence[bytes] | np.ndarray = to_dense(example)
        else:
            steps = [encode_image(frame, image_format) for frame in to_uint8(example, where)]
        yield make_record(steps, labels[i] if labels is not None else None, i)


def write_dataset(
    root: str | Path,
    name: str,
    x_train: np.ndarray | Sequence[np.ndarray],
    y_train: np.ndarray | Sequence,
    x_test: np.ndarray | Sequence[np.ndarray],
    y_test: np.ndarray | Sequence,
    *,
    label_names: Sequence[str] | None = None,
    image_format: str = "dense",
    num_classes: int | None = None,
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Write an AutoDL dataset ``root/name`` from arrays and return its directory.

    ``x_*``: [N,H,W,C] images or [N,T,H,W,C] videos (uint8, or float; floats must be in [0, 1] for
    JPEG/PNG), or a list of per-example arrays whose H/W (and T) may vary (variable sizes are written
    as -1). ``y_*``: class indices [N] or a 0/1 matrix [N, K] (multilabel). uint8 dense values are
    stored scaled to [0, 1], so dense and PNG datasets read back identically.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
    y_train_arr, y_test_arr = np.asarray(y_train), np.asarray(y_test)
    if num_classes is None:
        num_classes = infer_num_classes(y_train_arr, y_test_arr, label_names)
    if label_names is not None and len(label_names) != num_classes:
        raise ValueError(f"{len(label_names)} label names for {num_classes} classes")
    names = tuple(label_names) if label_names is not None else tuple(str(i) for i in range(num_classes))
    splits = {}
    for split, x, y in (("train", x_train, y_train_arr), ("test", x_test, y_test_arr)):
        examples = as_examples(x, f"x_{split}")
        labels = label_matrix(y, num_classes, f"y_{split}")
        if len(examples) != len(labels):
            raise ValueError(f"x_{split} has {len(examples)} examples but y_{split} has {len(labels)} labels")
        splits[split] = (examples, labels)
    all_examples = splits["train"][0] + splits["test"][0]
    channels = _check_channels(all_examples, image_format, "x_train/x_test")
    row_count = _common_size({e.shape[1] for e in all_examples})
    col_count = _common_size({e.shape[2] for e in all_examples})
    sequence_size = _common_size({e.shape[0] for e in all_examples})
    if image_format == "dense" and (row_count < 0 or col_count < 0):
        raise ValueError("variable-size examples need image_format 'jpeg' or 'png' "
                         "(dense records have a fixed size)")

    split_records = {}
    for split, (examples, labels) in splits.items():
        spec = SplitSpec(len(examples), num_classes, row_count, col_count, channels, sequence_size,
                         image_format != "dense", tuple(label_names or ()))
        records = _records(examples, labels if split == "train" else None, image_format, f"x_{split}")
        split_records[split] = (spec, records)
    return write_splits(root, name, split_records, splits["test"][1], names,
                        examples_per_shard=examples_per_shard, overwrite=overwrite)


def write_splits(
    root: str | Path,
    name: str,
    split_records: dict[str, tuple[SplitSpec, Iterable[bytes]]],
    test_labels: np.ndarray,
    label_names: Sequence[str],
    *,
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Write both splits' records, the solution and the label names; returns the dataset directory.

    Everything is written into a hidden folder beside ``root/name`` and renamed into place at the end,
    so an error leaves nothing behind and an existing dataset stays whole until the new one is complete.
    """
    check_dataset_name(name)
    dataset_dir = Path(root) / name
    check_replaceable(dataset_dir, name, overwrite)  # fail before the (long) writing, and again at the end
    with staging_dir(Path(root), name) as staging:
        (staging / DATASET_MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        for split in ("train", "test"):
            spec, records = split_records[split]
            write_split(staging / f"{name}.data" / split, spec, records, examples_per_shard)
        write_solution(staging / f"{name}.solution", test_labels)
        write_label_names(staging / f"{name}_label.name", label_names)
        install_dataset(staging, dataset_dir, name, overwrite)
    logger.info("wrote %s: %d train / %d test examples", dataset_dir, split_records["train"][0].sample_count,
                split_records["test"][0].sample_count)
    return dataset_dir


def write_encoded_images(
    root: str | Path,
    name: str,
    train: tuple[Sequence[bytes], np.ndarray],
    test: tuple[Sequence[bytes], np.ndarray],
    *,
    row_count: int,
    col_count: int,
    num_channels: int,
    label_names: Sequence[str],
    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
    overwrite: bool = False,
) -> Path:
    """Write already-encoded JPEG/PNG images (one per example) with label matrices [N, K] as a dataset.

    Used by converters to keep source files byte for byte instead of decoding and re-encoding them.
    """
    split_records = {}
    for split, (images, labels) in (("train", train), ("test", test)):
        spec = SplitSpec(len(images), len(label_names), row_count, col_count, num_channels, 1, True,
                         tuple(label_names))
        rows = labels if split == "train" else [None] * len(images)
        records = (make_record([data], row, i) for i, (data, row) in enumerate(zip(images, rows)))
        split_records[split] = (spec, records)
    return write_splits(root, name, split_records, test[1], label_names,
                        examples_per_shard=examples_per_shard, overwrite=overwrite)
