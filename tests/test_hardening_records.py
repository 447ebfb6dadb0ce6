"""A record whose image cannot be decoded is skipped, counted and named (TFRecord file and record number), and
every other record is used: in the TensorFlow-free reader, through the bridge from tf.data (eager and
tf.compat.v1 graphs), and in the cache filler. Test sets keep their places: a blank stands in."""

import io
import logging
import re

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl.layout import find_dataset
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.writer import write_encoded_images
from autoclint.data.bridge import iterate_numpy
from autoclint.data.cache import CacheFiller, ExampleCache

COUNT = 14


def _jpeg(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _dataset(tmp_path, bad: tuple[int, ...]):
    """COUNT 16x16 JPEGs of growing brightness in one shard; those at `bad` cut to half their bytes."""
    images = [_jpeg(10 + 15 * i) for i in range(COUNT)]
    for index in bad:
        images[index] = images[index][: len(images[index]) // 2]
    labels = np.eye(2, dtype=np.float32)[np.arange(COUNT) % 2]
    root = write_encoded_images(tmp_path, "cut", (images, labels), (images, labels), row_count=16, col_count=16,
                                num_channels=3, label_names=["a", "b"])
    return find_dataset(root)


def _brightness(pairs):
    return [int(round(float(example.mean()) * 255)) for example, _ in pairs]


def _expected(bad):
    return [10 + 15 * i for i in range(COUNT) if i not in bad]


def _named(caplog, index):
    pattern = rf"sample-[^ ]*\.tfrecord: record {index}\b"
    return any(re.search(pattern, record.getMessage()) for record in caplog.records
               if record.levelno >= logging.WARNING)


@pytest.mark.parametrize("bad", [(9,), (2, 11)])
def test_the_python_reader_skips_and_names_undecodable_records(tmp_path, caplog, bad):
    train_dir = _dataset(tmp_path, bad)[1]
    with caplog.at_level(logging.WARNING):
        pairs = list(PyAutoDLDataset(train_dir).get_dataset())
    assert np.allclose(_brightness(pairs), _expected(bad), atol=2)
    assert all(_named(caplog, index) for index in bad)
    assert f"{len(bad)} undecodable record(s) skipped" in caplog.text


@pytest.mark.parametrize("bad", [(9,), (2, 11)])
def test_the_bridge_skips_undecodable_tf_records_and_names_them(tmp_path, caplog, bad):
    pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset

    train_dir = _dataset(tmp_path, bad)[1]
    with caplog.at_level(logging.WARNING):
        pairs = list(iterate_numpy(AutoDLDataset(train_dir).get_dataset()))
    assert np.allclose(_brightness(pairs), _expected(bad), atol=2)
    assert all(_named(caplog, index) for index in bad)
    assert f"{len(bad)} undecodable record(s) skipped" in caplog.text


def test_the_bridge_skips_undecodable_records_of_a_graph_dataset(tmp_path, caplog):
    tf = pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset

    train_dir = _dataset(tmp_path, (9,))[1]
    with tf.Graph().as_default():
        dataset = AutoDLDataset(train_dir).get_dataset()
        with caplog.at_level(logging.WARNING):
            pairs = list(iterate_numpy(dataset))
    assert np.allclose(_brightness(pairs), _expected((9,)), atol=2)
    assert "1 undecodable record(s) skipped" in caplog.text


def test_a_test_set_keeps_its_places_with_a_blank_for_an_undecodable_record(tmp_path):
    pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset

    test_dir = _dataset(tmp_path, (9,))[2]
    for dataset in (AutoDLDataset(test_dir).get_dataset(), PyAutoDLDataset(test_dir).get_dataset()):
        pairs = list(iterate_numpy(dataset, keep_places=True))
        assert len(pairs) == COUNT
        brightness = _brightness(pairs)
        assert brightness[9] == 0 and np.allclose(np.delete(brightness, 9), _expected((9,)), atol=2)


def test_the_cache_filler_uses_every_record_after_an_undecodable_one(tmp_path):
    pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset

    train_dir = _dataset(tmp_path, (3,))[1]
    cache = ExampleCache((1, 16, 16, 3), 2, capacity=4)
    filler = CacheFiller(iterate_numpy(AutoDLDataset(train_dir).get_dataset()), cache,
                         lambda example: (example * 255).round().astype(np.uint8)).start()
    filler.wait_for(COUNT, timeout=60)
    assert filler.finished and filler.error is None and len(cache) == COUNT - 1


@pytest.mark.parametrize("graph_mode", [False, True])
@pytest.mark.parametrize("bad", [(9,), (1, 12)])
def test_batched_reading_goes_on_one_record_at_a_time_from_the_failed_batch(tmp_path, monkeypatch, caplog,
                                                                            graph_mode, bad):
    """Static shapes are decoded four at a time here: the batches before the bad record are kept whole, and
    from the failed batch on every record is read alone, so the test set keeps each one in its place."""
    tf = pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset
    from autoclint.data import bridge

    monkeypatch.setattr(bridge, "MAX_READ_BATCH", 4)
    train_dir = _dataset(tmp_path, bad)[1]  # labelled, so that each label can be checked at its place
    graph = tf.Graph() if graph_mode else None
    with graph.as_default() if graph_mode else tf.init_scope():
        dataset = AutoDLDataset(train_dir).get_dataset()
    assert bridge.batchable(dataset.element_spec)
    with caplog.at_level(logging.DEBUG, logger="autoclint.data.bridge"):
        pairs = list(iterate_numpy(dataset, keep_places=True))
    assert len(pairs) == COUNT
    brightness = _brightness(pairs)
    assert [brightness[index] for index in bad] == [0] * len(bad)
    assert np.allclose(np.delete(brightness, bad), _expected(bad), atol=2)
    labels = [int(label.argmax()) for _, label in pairs]
    assert [labels[i] for i in range(COUNT) if i not in bad] == [i % 2 for i in range(COUNT) if i not in bad]
    assert all(not pairs[index][1].any() for index in bad)  # a blank stands in with a zero label
    assert all(_named(caplog, index) for index in bad)
    first_failed_batch = 1 + 4 * ((min(bad) - 1) // 4) if min(bad) else 0  # record 0 is read alone first
    assert f"a batch from record {first_failed_batch} failed" in caplog.text


def test_batched_reading_is_used_only_for_fixed_sizes_and_bounds_its_memory():
    tf = pytest.importorskip("tensorflow")
    from autoclint.data.bridge import batchable, read_batch_size

    def spec(*shape):
        return (tf.TensorSpec(shape, tf.float32), tf.TensorSpec((10,), tf.float32))

    assert batchable(spec(None, 28, 28, 1))  # an unknown frame count alone does not prevent it
    assert not batchable(spec(1, None, None, 3))  # sizes vary: one record per call
    assert not batchable((tf.TensorSpec((1, 8, 8, 1), tf.float32), tf.TensorSpec((None,), tf.float32)))
    assert read_batch_size(28 * 28 * 4 + 40) == 64
    assert read_batch_size(1024 * 1024 * 3 * 4) == 1  # 12 MB an example: more would pass the byte bound
    assert read_batch_size(256 * 256 * 3 * 4, max_bytes=8 * 2**20) == 10


def test_clips_of_different_lengths_are_read_one_at_a_time_from_the_first_that_differs(monkeypatch):
    """A batch of clips of different frame counts fails to stack: the reader goes on one record at a time."""
    tf = pytest.importorskip("tensorflow")
    from autoclint.data import bridge

    monkeypatch.setattr(bridge, "MAX_READ_BATCH", 4)
    frames = [2, 2, 2, 2, 2, 3, 2, 2, 2, 2]
    examples = [np.full((count, 4, 4, 1), i, np.float32) for i, count in enumerate(frames)]
    dataset = tf.data.Dataset.from_generator(
        lambda: ((example, np.float32([1, 0])) for example in examples),
        output_signature=(tf.TensorSpec((None, 4, 4, 1), tf.float32), tf.TensorSpec((2,), tf.float32)))
    pairs = list(iterate_numpy(dataset, keep_places=True))
    assert [int(example.flat[0]) for example, _ in pairs] == list(range(len(frames)))
    assert [len(example) for example, _ in pairs] == frames


def test_test_examples_are_counted_without_decoding_them(tmp_path, monkeypatch):
    """The class priors need only the number of test examples: every record is counted, the undecodable
    one too, and nothing is decoded (for the priors of a run with no time to read)."""
    tf = pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset
    from autoclint.data import bridge

    test_dir = _dataset(tmp_path, (4,))[2]
    monkeypatch.setattr(bridge, "iterate_numpy", None)  # any decoding would fail
    assert bridge.count_examples(AutoDLDataset(test_dir).get_dataset()) == COUNT
    records = tf.data.TFRecordDataset(sorted(str(path) for path in test_dir.glob("*.tfrecord")))
    assert bridge.count_examples(records.map(lambda record: (record, record))) == COUNT  # a foreign reader
    with tf.Graph().as_default():  # the organizers' TF1-style reader: a v1 dataset, mapped in parallel
        graph_records = tf.compat.v1.data.TFRecordDataset(sorted(str(path) for path in test_dir.glob("*.tfrecord")))
        parsed = graph_records.map(lambda record: (record, record), num_parallel_calls=4)
        assert type(parsed).__name__ == "DatasetV1Adapter"
        assert bridge.count_examples(parsed) == COUNT
    monkeypatch.undo()
    assert bridge.count_examples(tf.data.Dataset.range(5).map(lambda i: (i, i)).batch(2)) == 3  # read through
