"""TensorFlow-free AutoDL reader: the same (example, label) arrays as the tf.data reader, from numpy.

For machines without TensorFlow and for tools that want plain arrays. Records are validated once
when the dataset is opened (see :mod:`autoclint.autodl.records`), then decoded lazily per iteration.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autoclint.autodl.errors import UndecodableRecordError
from autoclint.autodl.metadata import AutoDLMetadata
from autoclint.autodl.records import SplitIndex, decode_example, decode_label, index_split, parse_record
from autoclint.autodl.tfrecord import read_records

logger = logging.getLogger(__name__)


class PyDataset:
    """Re-iterable sequence of ``(example float32 [T,H,W,C], label float32 [output_dim])`` in record order."""

    def __init__(self, index: SplitIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index.locations)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.pairs(keep_places=False)

    def pairs(self, keep_places: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The pairs in record order; an undecodable record is skipped, or with `keep_places` stands as a
        black example with a zero label (a test set's predictions must stay in record order)."""
        metadata = self.index.metadata
        output_dim = metadata.get_output_size()
        blank = np.zeros((1, *(max(size, 1) for size in metadata.get_tensor_size(0))), np.float32)
        skipped: list[str] = []
        for data, location in zip(read_records(self.index.locations), self.index.locations):
            example = parse_record(data, location)
            where = f"{location.path}: record {location.index}"
            try:
                decoded = decode_example(example, metadata, where)
            except UndecodableRecordError as error:  # one bad image must not cost the rest of the data
                logger.warning("%s: %s", error, "a black example stands in" if keep_places else "skipped")
                skipped.append(where)
                if keep_places:
                    yield blank.copy(), np.zeros(output_dim, np.float32)
                continue
            blank = np.zeros_like(decoded)
            yield decoded, decode_label(example, output_dim)
        if skipped:
            logger.warning("%d undecodable record(s) %s: %s", len(skipped),
                           "replaced by black examples" if keep_places else "skipped", "; ".join(skipped))


class PyAutoDLDataset:
    """One split directory (``<name>.data/train`` or ``/test``) read with numpy, Pillow and protobuf."""

    def __init__(self, dataset_name: str | Path, validate: bool = True) -> None:
        self.dataset_name_ = str(dataset_name)
        self.index = index_split(dataset_name, validate=validate)
        self.dataset_ = PyDataset(self.index)

    def get_dataset(self) -> PyDataset:
        """The examples: iterate it as often as needed; each pass starts at the first record."""
        return self.dataset_

    def get_metadata(self) -> AutoDLMetadata:
        """The split's metadata (``size()`` is the number of records found)."""
        return self.index.metadata
