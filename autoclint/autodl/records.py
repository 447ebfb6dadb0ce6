"""One AutoDL split on disk, without TensorFlow: locate and validate its records, decode them to numpy.

Shared by both readers so that they accept and reject exactly the same datasets. Validation reads
every record once (framing, both CRCs, label indices, image signatures, dense sizes) but decodes no
image, which keeps it far cheaper than one pass of training input.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf.message import DecodeError
from PIL import Image, UnidentifiedImageError

from autoclint.autodl import proto
from autoclint.autodl.errors import AutoDLFormatError, UndecodableRecordError
from autoclint.autodl.metadata import METADATA_FILENAME, AutoDLMetadata
from autoclint.autodl.tfrecord import RecordLocation, read_records, scan_records

logger = logging.getLogger(__name__)

LABEL_INDEX = "label_index"
LABEL_SCORE = "label_score"
RECORD_ID = "id"
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM")
PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
# Records decoded when a split is opened, to check their shape against the metadata up front.
RECORDS_DECODED_UP_FRONT = 8
# Same float32 scale factor as tf.image.convert_image_dtype(uint8 -> float32), so values match bit for bit.
UINT8_SCALE = np.float32(1.0 / 255.0)


def feature_key(bundle_index: int, name: str) -> str:
    """Feature-list key of a bundle, e.g. ``0_compressed``."""
    return f"{bundle_index}_{name}"


DENSE_KEY = feature_key(0, "dense_input")
COMPRESSED_KEY = feature_key(0, "compressed")
SPARSE_KEYS = tuple(
    feature_key(0, f"sparse_{n}") for n in ("col_index", "row_index", "channel_index", "value")
)


@dataclass(frozen=True)
class SplitIndex:
    """A validated split: its metadata (``size()`` = records found), sorted files and record locations."""

    directory: Path
    metadata: AutoDLMetadata
    files: tuple[Path, ...]
    locations: tuple[RecordLocation, ...]


def find_record_files(directory: Path) -> list[Path]:
    """The split's ``sample*`` files in sorted order, as the platform reads them."""
    files = sorted(p for p in directory.glob("sample*") if p.is_file())
    if not files:
        raise AutoDLFormatError(f"{directory}: no 'sample*' TFRecord files in this split directory")
    return files


def _check_metadata_supported(path: Path, metadata: AutoDLMetadata) -> None:
    """Reject metadata the readers cannot turn into one [T, H, W, C] tensor per example."""
    if metadata.get_bundle_size() != 1:
        raise AutoDLFormatError(f"{path}: {metadata.get_bundle_size()} bundles; only single-bundle datasets "
                                "are supported")
    row_count, col_count = metadata.get_matrix_size(0)
    fixed = row_count > 0 and col_count > 0
    if not metadata.is_compressed(0) and not fixed:
        raise AutoDLFormatError(f"{path}: dense/sparse bundles need a fixed row_count and col_count, "
                                f"got {row_count}x{col_count}")
    if metadata.get_num_channels(0) not in PIL_MODES and metadata.is_compressed(0):
        raise AutoDLFormatError(f"{path}: compressed images need 1, 3 or 4 channels, "
                                f"got {metadata.get_num_channels(0)}")


def parse_record(data: bytes, location: RecordLocation) -> proto.SequenceExample:
    """Parse one record's bytes as a SequenceExample; errors name file and record."""
    try:
        return proto.SequenceExample.FromString(data)
    except DecodeError as error:
        raise AutoDLFormatError(f"{location.path}: record {location.index}: not a SequenceExample "
                                f"({error})") from error


class RecordValidator:
    """Checks the content of each record against the metadata (callable handed to ``scan_records``)."""

    def __init__(self, metadata: AutoDLMetadata) -> None:
        self.metadata = metadata
        self.output_dim = metadata.get_output_size()
        row_count, col_count, channels = metadata.get_tensor_size(0)
        self.dense_size = row_count * col_count * channels

    def __call__(self, location: RecordLocation, data: bytes) -> None:
        """Raise AutoDLFormatError naming file and record when the record does not fit the metadata."""
        example = parse_record(data, location)
        where = f"{location.path}: record {location.index}"
        indices = label_indices(example)
        bad = [i for i in indices if not 0 <= i < self.output_dim]
        if bad:
            raise AutoDLFormatError(
                f"{where}: label index {bad[0]} outside [0, output_dim={self.output_dim})"
            )
        scores = label_scores(example)
        if scores and len(scores) != len(indices):
            raise AutoDLFormatError(f"{where}: {len(indices)} label indices but {len(scores)} label scores")
        lists = example.feature_lists.feature_list
        if self.metadata.is_compressed(0):
            self._check_images(where, lists)
        elif self.metadata.is_sparse(0):
            missing = [k for k in SPARSE_KEYS if k not in lists]
            if missing:
                raise AutoDLFormatError(f"{where}: sparse feature lists missing: {', '.join(missing)}")
        else:
            self._check_dense(where, lists)

    def _check_images(self, where: str, lists) -> None:  # noqa: ANN001 - protobuf map
        """Every time step holds one blob that starts with a known image signature."""
        if COMPRESSED_KEY not in lists or not lists[COMPRESSED_KEY].feature:
            raise AutoDLFormatError(f"{where}: no '{COMPRESSED_KEY}' images")
        for step, feature in enumerate(lists[COMPRESSED_KEY].feature):
            frames = feature.bytes_list.value
            if len(frames) != 1 or not frames[0].startswith(IMAGE_SIGNATURES):
                raise AutoDLFormatError(f"{where}: time step {step} is not a JPEG/PNG/GIF/BMP image "
                                        "(undecodable image)")

    def _check_dense(self, where: str, lists) -> None:  # noqa: ANN001 - protobuf map
        """Every time step holds exactly row*col*channels floats."""
        if DENSE_KEY not in lists or not lists[DENSE_KEY].feature:
            raise AutoDLFormatError(f"{where}: no '{DENSE_KEY}' values")
        for step, feature in enumerate(lists[DENSE_KEY].feature):
            if len(feature.float_list.value) != self.dense_size:
                count = len(feature.float_list.value)
                raise AutoDLFormatError(f"{where}: time step {step} has {count} values, "
                                        f"expected row*col*channels = {self.dense_size}")


def index_split(directory: str | Path, validate: bool = True) -> SplitIndex:
    """Read a split's metadata and locate (and by default fully validate) its records.

    When the metadata's ``sample_count`` disagrees with the records, a warning is logged and the
    returned metadata reports the number of records.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AutoDLFormatError(f"{directory}: split directory not found")
    metadata_path = directory / METADATA_FILENAME
    metadata = AutoDLMetadata.from_textproto(metadata_path, str(directory))
    _check_metadata_supported(metadata_path, metadata)
    files = find_record_files(directory)
    validator = RecordValidator(metadata) if validate else None
    locations: list[RecordLocation] = []
    for path in files:
        locations.extend(scan_records(path, check_data_crc=validate, inspect=validator))
    if len(locations) != metadata.size():
        logger.warning("%s: sample_count is %d but the files hold %d records; using the records",
                       metadata_path, metadata.size(), len(locations))
        metadata = metadata.with_sample_count(len(locations))
    if validate:
        decode_first_records(metadata, locations[:RECORDS_DECODED_UP_FRONT])
    return SplitIndex(directory, metadata, tuple(files), tuple(locations))


def decode_first_records(metadata: AutoDLMetadata, locations: Sequence[RecordLocation]) -> None:
    """Decode a few records so that a shape that disagrees with the metadata fails when the split is opened.

    Both readers open splits through :func:`index_split`, so they fail alike with this message instead
    of one returning other sizes and the other failing inside TensorFlow during training.
    """
    for data, location in zip(read_records(locations), locations):
        try:
            decode_example(parse_record(data, location), metadata, f"{location.path}: record {location.index}")
        except UndecodableRecordError:  # skipped and named when read, like any later one
            continue


def label_indices(example: proto.SequenceExample) -> list[int]:
    """The record's label indices (empty for test records)."""
    features = example.context.feature
    return list(features[LABEL_INDEX].int64_list.value) if LABEL_INDEX in features else []


def label_scores(example: proto.SequenceExample) -> list[float]:
    """The record's label scores (empty for test records)."""
    features = example.context.feature
    return list(features[LABEL_SCORE].float_list.value) if LABEL_SCORE in features else []


def record_id(example: proto.SequenceExample) -> int | None:
    """The record's ``id`` context feature, when present."""
    features = example.context.feature
    if RECORD_ID in features and features[RECORD_ID].int64_list.value:
        return int(features[RECORD_ID].int64_list.value[0])
    return None


def decode_label(example: proto.SequenceExample, output_dim: int) -> np.ndarray:
    """Dense float32 label vector from label_index/label_score (scores default to 1, test -> zeros)."""
    label = np.zeros(output_dim, dtype=np.float32)
    indices = label_indices(example)
    scores = label_scores(example) or [1.0] * len(indices)
    for index, score in zip(indices, scores):
        label[index] = score
    return label


def decode_image(data: bytes, channels: int, where: str) -> np.ndarray:
    """Decode JPEG/PNG bytes to float32 [H, W, channels] in [0, 1], matching tf.image.decode_image.

    Grayscale output from a colour JPEG asks libjpeg for grayscale directly (``draft``), as TF does.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if channels == 4 and image.format == "JPEG":  # TensorFlow's JPEG decoder gives 1 or 3 channels
                raise AutoDLFormatError(f"{where}: a JPEG image cannot have the metadata's 4 channels")
            if channels == 1 and image.format == "JPEG":
                image.draft("L", image.size)
            pixels = np.asarray(image.convert(PIL_MODES[channels]), dtype=np.uint8)
    except AutoDLFormatError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UndecodableRecordError(f"{where}: undecodable image ({error})") from error
    return pixels.reshape(pixels.shape[0], pixels.shape[1], channels).astype(np.float32) * UINT8_SCALE


def decode_example(example: proto.SequenceExample, metadata: AutoDLMetadata, where: str) -> np.ndarray:
    """The example tensor float32 [T, H, W, C] of bundle 0."""
    lists = example.feature_lists.feature_list
    row_count, col_count, channels = metadata.get_tensor_size(0)
    if metadata.is_compressed(0):
        frames = [decode_image(f.bytes_list.value[0], channels, f"{where}, time step {t}")
                  for t, f in enumerate(lists[COMPRESSED_KEY].feature)]
        if len({frame.shape for frame in frames}) > 1:
            raise AutoDLFormatError(f"{where}: frames of one example differ in size")
        check_image_size(frames[0].shape[:2], (row_count, col_count), where)
        return np.stack(frames)
    if metadata.is_sparse(0):
        return _decode_sparse(lists, (row_count, col_count, channels), where)
    values = [np.asarray(f.float_list.value, dtype=np.float32) for f in lists[DENSE_KEY].feature]
    return np.stack(values).reshape(len(values), row_count, col_count, channels)


def size_mismatch_message(size: tuple[int, int]) -> str:
    """The end of the message of both readers for an image whose size is not the metadata's."""
    return f"the metadata says {size[0]}x{size[1]} (row_count x col_count)"


def check_image_size(size: tuple[int, int], expected: tuple[int, int], where: str) -> None:
    """Raise when a decoded image is not the metadata's fixed size (-1 means any size)."""
    if any(want > 0 and got != want for got, want in zip(size, expected)):
        raise AutoDLFormatError(f"{where}: image is {size[0]}x{size[1]} pixels but "
                                f"{size_mismatch_message(expected)}")


def _decode_sparse(lists, size: tuple[int, int, int], where: str) -> np.ndarray:  # noqa: ANN001
    """Densify sparse (row, col, channel, value) entries per time step into [T, H, W, C]."""
    columns, rows, channels, values = (lists[key].feature for key in SPARSE_KEYS)
    steps = len(values)
    tensor = np.zeros((steps, *size), dtype=np.float32)
    for t in range(steps):
        r = np.asarray(rows[t].int64_list.value, dtype=np.int64)
        c = np.asarray(columns[t].int64_list.value, dtype=np.int64)
        ch = np.asarray(channels[t].int64_list.value, dtype=np.int64)
        v = np.asarray(values[t].float_list.value, dtype=np.float32)
        if not len(r) == len(c) == len(ch) == len(v):
            raise AutoDLFormatError(f"{where}: time step {t}: sparse index and value lists differ in length")
        outside = (r >= size[0]) | (c >= size[1]) | (ch >= size[2]) | (r < 0) | (c < 0) | (ch < 0)
        if outside.any():
            raise AutoDLFormatError(f"{where}: time step {t}: sparse index outside {size}")
        tensor[t, r, c, ch] = v
    return tensor


def read_examples(locations: Sequence[RecordLocation]) -> list[proto.SequenceExample]:
    """Parse the given records of a split (helper for tools that need ids or raw labels)."""
    return [parse_record(data, loc) for data, loc in zip(read_records(locations), locations)]
