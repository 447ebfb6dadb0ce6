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
