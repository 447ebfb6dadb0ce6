"""The AutoDL metadata API (``metadata.textproto``), with the platform's method names and semantics."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format

from autoclint.autodl import proto
from autoclint.autodl.errors import AutoDLFormatError

METADATA_FILENAME = "metadata.textproto"


class AutoDLMetadata:
    """Read-only view of one split's ``DataSpecification`` as the AutoDL platform exposes it to models."""

    def __init__(self, dataset_name: str, spec: proto.DataSpecification | None = None) -> None:
        self.dataset_name_ = dataset_name
        self.metadata_ = spec if spec is not None else proto.DataSpecification()

    @classmethod
    def from_textproto(cls, path: str | Path, dataset_name: str) -> AutoDLMetadata:
        """Parse a ``metadata.textproto`` file; raises AutoDLFormatError naming the file when it is bad."""
        path = Path(path)
        if not path.is_file():
            raise AutoDLFormatError(f"{path}: metadata file not found")
        try:
            spec = text_format.Parse(path.read_text(encoding="utf-8"), proto.DataSpecification())
        except (text_format.ParseError, UnicodeDecodeError) as error:
            raise AutoDLFormatError(f"{path}: not a valid DataSpecification text proto: {error}") from error
        if not spec.matrix_spec:
            raise AutoDLFormatError(f"{path}: no matrix_spec (the example shape is undefined)")
        if spec.output_dim <= 0:
            raise AutoDLFormatError(f"{path}: output_dim must be positive, got {spec.output_dim}")
        return cls(dataset_name, spec)

    def to_textproto(self) -> str:
        """The metadata in the text format of ``metadata.textproto``."""
        return text_format.MessageToString(self.metadata_)

    def with_sample_count(self, sample_count: int) -> AutoDLMetadata:
        """A copy whose ``size()`` is ``sample_count`` (used when the records disagree with the file)."""
        spec = proto.DataSpecification()
        spec.CopyFrom(self.metadata_)
        spec.sample_count = sample_count
        return AutoDLMetadata(self.dataset_name_, spec)

    def get_dataset_name(self) -> str:
        """The dataset (split directory) name the metadata was read for."""
        return self.dataset_name_

    def is_compressed(self, bundle_index: int) -> bool:
        """Whether the bundle holds JPEG/PNG bytes per time step."""
        return self.metadata_.matrix_spec[bundle_index].format == proto.MatrixSpec.COMPRESSED

    def is_sparse(self, bundle_index: int) -> bool:
        """Whether the bundle holds sparse (row, col, channel, value) entries."""
        return self.metadata_.matrix_spec[bundle_index].format == proto.MatrixSpec.SPARSE

    def get_bundle_size(self) -> int:
        """Number of bundles (matrix specs) per example; AutoDL image/video datasets have one."""
        return len(self.metadata_.matrix_spec)

    def get_matrix_size(self, bundle_index: int) -> tuple[int, int]:
        """(row_count, col_count); -1 means variable size."""
        spec = self.metadata_.matrix_spec[bundle_index]
        return spec.row_count, spec.col_count

    def get_num_channels(self, bundle_index: int) -> int:
        """Channel count; the unset value -1 means 3 for compressed bundles and 1 otherwise."""
        num_channels = self.metadata_.matrix_spec[bundle_index].num_channels
        if num_channels == -1:
            return 3 if self.is_compressed(bundle_index) else 1
        return num_channels

    def get_tensor_size(self, bundle_index: int) -> tuple[int, int, int]:
        """(row_count, col_count, num_channels) of one time step."""
        row_count, col_count = self.get_matrix_size(bundle_index)
        return row_count, col_count, self.get_num_channels(bundle_index)

    def get_tensor_shape(self, bundle_index: int = 0) -> tuple[int, int, int, int]:
        """(sequence_size, row_count, col_count, num_channels) of one example."""
        row_count, col_count = self.get_matrix_size(bundle_index)
        return self.get_sequence_size(), row_count, col_count, self.get_num_channels(bundle_index)

    def get_sequence_size(self) -> int:
        """Number of time steps per example (1 for images)."""
        return self.metadata_.sequence_size

    def get_output_size(self) -> int:
        """Number of classes (length of each label vector)."""
        return self.metadata_.output_dim

    def size(self) -> int:
        """Number of examples in the split."""
        return self.metadata_.sample_count

    def get_label_to_index_map(self):  # noqa: ANN201 - a protobuf map, like the platform returns
        """Class name -> label index (empty when the dataset names no classes)."""
        return self.metadata_.label_to_index_map

    def get_channel_to_index_map(self):  # noqa: ANN201
        """Channel name -> channel index."""
        return self.metadata_.channel_to_index_map

    def get_feature_to_index_map(self):  # noqa: ANN201
        """Feature name -> feature index."""
        return self.metadata_.feature_to_index_map

    def __repr__(self) -> str:
        return (f"AutoDLMetadata({self.dataset_name_!r}, size={self.size()}, "
                f"shape={self.get_tensor_shape()}, output_dim={self.get_output_size()})")
