"""The tf.data AutoDL reader, with the AutoDL platform's ``AutoDLDataset`` interface.

Works in TF2 eager mode and inside ``tf.Graph().as_default()`` (tf.compat.v1 iterators/sessions).
Files are validated up-front by the TensorFlow-free scanner, so framing/CRC, label and image
signature errors are raised at construction as AutoDLFormatError naming the file and record instead
of surfacing later as a TensorFlow error from inside the pipeline.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from autoclint.autodl import tf_import
from autoclint.autodl.metadata import AutoDLMetadata
from autoclint.autodl.records import (
    COMPRESSED_KEY,
    DENSE_KEY,
    LABEL_INDEX,
    LABEL_SCORE,
    SPARSE_KEYS,
    index_split,
    size_mismatch_message,
)

tf = tf_import()


class AutoDLDataset:
    """One split directory (``<name>.data/train`` or ``/test``) as a tf.data.Dataset of (example, label)."""

    def __init__(self, dataset_name: str | Path, validate: bool = True) -> None:
        self.dataset_name_ = str(dataset_name)
        self.index = index_split(dataset_name, validate=validate)
        self.metadata_ = self.index.metadata
        self.dataset_ = self._create_dataset()
        # read by the model's bridge to name a record that fails to decode (the platform passes this object on)
        self.dataset_.autodl_record_names = tuple(f"{location.path}: record {location.index}"
                                                  for location in self.index.locations)

    def get_dataset(self) -> tf.data.Dataset:
        """Examples float32 [T, H, W, C] (H/W None if variable) and labels float32 [output_dim], in order."""
        return self.dataset_

    def get_metadata(self) -> AutoDLMetadata:
        """The split's metadata (``size()`` is the number of records found)."""
        return self.metadata_

    def _create_dataset(self) -> tf.data.Dataset:
        """TFRecords of the sorted ``sample*`` files, parsed in record order."""
        files = [str(path) for path in self.index.files]
        return tf.data.TFRecordDataset(files).map(self._parse_function)

    def _sequence_features(self) -> dict:
        """Parsing spec of bundle 0's feature lists for the metadata's format."""
        if self.metadata_.is_compressed(0):
            return {COMPRESSED_KEY: tf.io.VarLenFeature(tf.string)}
        if self.metadata_.is_sparse(0):
            spec = {key: tf.io.VarLenFeature(tf.int64) for key in SPARSE_KEYS[:3]}
            spec[SPARSE_KEYS[3]] = tf.io.VarLenFeature(tf.float32)
            return spec
        return {DENSE_KEY: tf.io.FixedLenSequenceFeature(self.metadata_.get_tensor_size(0), dtype=tf.float32)}

    def _parse_function(self, serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One serialized SequenceExample -> (example [T, H, W, C], label [output_dim])."""
        context, features = tf.io.parse_single_sequence_example(
            serialized,
            context_features={
                LABEL_INDEX: tf.io.VarLenFeature(tf.int64),
                LABEL_SCORE: tf.io.VarLenFeature(tf.float32),
            },
            sequence_features=self._sequence_features(),
        )
        if self.metadata_.is_compressed(0):
            example = self._decode_frames(features[COMPRESSED_KEY].values)
        elif self.metadata_.is_sparse(0):
            example = self._densify(features)
        else:
            example = features[DENSE_KEY]
        return example, self._label(context[LABEL_INDEX].values, context[LABEL_SCORE].values)

    def _decode_frames(self, frames: tf.Tensor) -> tf.Tensor:
        """JPEG/PNG bytes per time step -> float32 [T, H, W, C] in [0, 1]."""
        row_count, col_count, channels = self.metadata_.get_tensor_size(0)
        example = tf.map_fn(self._decode_frame, frames, fn_output_signature=tf.float32)
        if row_count > 0 and col_count > 0:  # the first records were checked when the split was opened
            check = tf.debugging.assert_equal(
                tf.shape(example)[1:3], tf.constant([row_count, col_count]),
                message=f"image size disagrees: {size_mismatch_message((row_count, col_count))}")
            with tf.control_dependencies([check]):
                example = tf.identity(example)
        example.set_shape([None, row_count if row_count > 0 else None, col_count if col_count > 0 else None,
                           channels])
        return example

    def _decode_frame(self, data: tf.Tensor) -> tf.Tensor:
        """One image, converted with tf.image.convert_image_dtype (uint8 / 255 in float32).

        JPEGs use libjpeg's accurate integer IDCT (tf.io.decode_image would use the fast one), the
        method Pillow uses, so both readers give identical arrays; it is also the more exact decode.
        """
        image = tf.cond(tf.io.is_jpeg(data), partial(self._decode_jpeg, data),
                        partial(self._decode_other, data))
        return tf.image.convert_image_dtype(image, tf.float32)

    def _decode_jpeg(self, data: tf.Tensor) -> tf.Tensor:
        """uint8 [H, W, C] of a JPEG, accurate integer IDCT."""
        channels = self.metadata_.get_num_channels(0)
        return tf.io.decode_jpeg(data, channels=channels, dct_method="INTEGER_ACCURATE")

    def _decode_other(self, data: tf.Tensor) -> tf.Tensor:
        """uint8 [H, W, C] of a PNG/GIF/BMP (first frame of an animation)."""
        return tf.io.decode_image(data, channels=self.metadata_.get_num_channels(0), expand_animations=False)

    def _densify(self, features: dict) -> tf.Tensor:
        """Sparse (row, col, channel, value) entries per time step -> dense float32 [T, H, W, C]."""
        columns, rows, channels, values = (features[key] for key in SPARSE_KEYS)
        steps = tf.cast(values.dense_shape[0], tf.int32)
        indices = tf.stack([values.indices[:, 0], rows.values, columns.values, channels.values], axis=1)
        shape = tf.concat([[steps], tf.constant(self.metadata_.get_tensor_size(0), tf.int32)], axis=0)
        return tf.scatter_nd(tf.cast(indices, tf.int32), values.values, shape)

    def _label(self, indices: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
        """Dense label vector; missing scores count as 1 and test records (no labels) give zeros."""
        missing = tf.maximum(tf.size(indices) - tf.size(scores), 0)
        scores = tf.concat([scores, tf.ones([missing], tf.float32)], axis=0)
        output_dim = self.metadata_.get_output_size()
        return tf.scatter_nd(tf.reshape(indices, [-1, 1]), scores, [output_dim])
