"""Bad datasets give AutoDLFormatError naming the file and the problem, in both readers."""

import io
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl import tf_available
from autoclint.autodl.errors import AutoDLFormatError
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.metadata import METADATA_FILENAME, AutoDLMetadata
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.records import decode_image
from autoclint.autodl.tfrecord import write_records
from autoclint.autodl.writer import make_record, write_dataset


def _readers():
    """The reader classes available here (the tf.data one only when TensorFlow is installed)."""
    if not tf_available():
        return [PyAutoDLDataset, pytest.param(None, id="AutoDLDataset", marks=pytest.mark.skip(
            reason="TensorFlow is not installed: no tf.data reader to check"))]
    from autoclint.autodl.reader import AutoDLDataset

    return [PyAutoDLDataset, AutoDLDataset]


@pytest.fixture(params=_readers(), ids=lambda cls: cls.__name__)
def reader(request):
    return request.param


@pytest.fixture()
def train_dir(tmp_path):
    x = np.zeros((4, 3, 3, 3), dtype=np.uint8)
    root = write_dataset(tmp_path, "ds", x, [0, 1, 2, 1], x[:2], [0, 1], image_format="png",
                         examples_per_shard=2)
    return find_dataset(root)[1]


def _rewrite_shard(train_dir, records):
    shard = sorted(train_dir.glob("sample*"))[1]
    write_records(shard, records)
    return shard


def test_good_dataset_opens(train_dir, reader):
    assert reader(train_dir).get_metadata().size() == 4


def test_missing_metadata(train_dir, reader):
    (train_dir / METADATA_FILENAME).unlink()
    with pytest.raises(AutoDLFormatError, match=rf"{METADATA_FILENAME}: metadata file not found"):
        reader(train_dir)


def test_unparsable_metadata(train_dir, reader):
    (train_dir / METADATA_FILENAME).write_text("output_dim: ten\n")
    with pytest.raises(AutoDLFormatError, match=rf"{METADATA_FILENAME}: not a valid DataSpecification"):
        reader(train_dir)


def test_no_sample_files(train_dir, reader):
    for shard in train_dir.glob("sample*"):
        shard.unlink()
    with pytest.raises(AutoDLFormatError, match=r"no 'sample\*' TFRecord files"):
        reader(train_dir)


def test_missing_split_directory(tmp_path, reader):
    with pytest.raises(AutoDLFormatError, match="split directory not found"):
        reader(tmp_path / "nowhere")


def test_corrupted_record(train_dir, reader):
    shard = sorted(train_dir.glob("sample*"))[1]
    raw = bytearray(shard.read_bytes())
    raw[-10] ^= 0xFF  # inside the last record's data
    shard.write_bytes(bytes(raw))
    with pytest.raises(AutoDLFormatError, match=rf"{shard.name}: record 1: data CRC mismatch"):
        reader(train_dir)


def test_truncated_record(train_dir, reader):
    shard = sorted(train_dir.glob("sample*"))[0]
    shard.write_bytes(shard.read_bytes()[:-7])
    with pytest.raises(AutoDLFormatError, match=rf"{shard.name}: record 1: truncated"):
        reader(train_dir)


def test_sample_count_disagreeing_with_records_warns_and_uses_records(train_dir, reader, caplog):
    metadata_path = train_dir / METADATA_FILENAME
    metadata_path.write_text(metadata_path.read_text().replace("sample_count: 4", "sample_count: 9"))
    with caplog.at_level(logging.WARNING, logger="autoclint.autodl"):
        dataset = reader(train_dir)
    assert dataset.get_metadata().size() == 4
    assert "sample_count is 9 but the files hold 4 records" in caplog.text


def test_label_index_outside_output_dim(train_dir, reader):
    label = np.zeros(5, dtype=np.float32)
    label[4] = 1.0  # output_dim is 3
    good = make_record([_png()], np.eye(3)[0], 0)
    shard = _rewrite_shard(train_dir, [good, make_record([_png()], label, 1)])
    expected = rf"{shard.name}: record 1: label index 4 outside \[0, output_dim=3\)"
    with pytest.raises(AutoDLFormatError, match=expected):
        reader(train_dir)


def test_not_an_image(train_dir, reader):
    shard = _rewrite_shard(train_dir, [make_record([b"GIF? no, plain text"], np.eye(3)[0], 0)])
    with pytest.raises(AutoDLFormatError, match=rf"{shard.name}: record 0: time step 0 is not a JPEG/PNG"):
        reader(train_dir)


def test_not_a_sequence_example(train_dir, reader):
    shard = _rewrite_shard(train_dir, [b"\xff\xff\xff garbage"])
    with pytest.raises(AutoDLFormatError, match=rf"{shard.name}: record 0: not a SequenceExample"):
        reader(train_dir)


def test_truncated_image_data_fails_when_decoded():
    broken = _png()[:-30]
    with pytest.raises(AutoDLFormatError, match="shard-x: record 7: undecodable image"):
        decode_image(broken, 3, "shard-x: record 7")


def test_dense_record_of_the_wrong_size(tmp_path, reader):
    x = np.zeros((2, 2, 2, 1), dtype=np.float32)
    train_dir = find_dataset(write_dataset(tmp_path, "ds", x, [0, 1], x, [0, 1]))[1]
    shard = sorted(train_dir.glob("sample*"))[0]
    write_records(shard, [make_record(np.zeros((1, 3, 2, 1), np.float32), np.eye(2)[0], 0)])
    with pytest.raises(AutoDLFormatError, match=r"time step 0 has 6 values, expected row\*col\*channels = 4"):
        reader(train_dir)


def test_metadata_without_matrix_spec(tmp_path):
    path = tmp_path / METADATA_FILENAME
    path.write_text("output_dim: 3\nsample_count: 1\n")
    with pytest.raises(AutoDLFormatError, match="no matrix_spec"):
        AutoDLMetadata.from_textproto(path, "x")


def test_find_dataset_errors(tmp_path):
    with pytest.raises(AutoDLFormatError, match="no '<name>.data' folder"):
        find_dataset(tmp_path)
    (tmp_path / "a.data").mkdir()
    (tmp_path / "b.data").mkdir()
    with pytest.raises(AutoDLFormatError, match="several datasets"):
        find_dataset(tmp_path)
    shutil.rmtree(tmp_path / "b.data")
    with pytest.raises(AutoDLFormatError, match="split directory missing"):
        find_dataset(tmp_path)


def test_find_dataset_accepts_a_root_with_one_dataset(tmp_path):
    x = np.zeros((1, 2, 2, 1), dtype=np.uint8)
    write_dataset(tmp_path, "only", x, [0], x, [0], num_classes=2)
    name, train_dir, test_dir, solution = find_dataset(tmp_path / "only")
    assert name == "only"
    assert (train_dir, solution) == (tmp_path / "only/only.data/train", tmp_path / "only/only.solution")
    (tmp_path / "only").rename(tmp_path / "renamed")  # the folder's own name does not matter
    assert find_dataset(tmp_path / "renamed")[0] == "only"


def test_writer_rejects_bad_input(tmp_path):
    x = np.zeros((2, 2, 2, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="x_train has 2 examples but y_train has 3 labels"):
        write_dataset(tmp_path, "a", x, [0, 1, 0], x, [0, 1])
    with pytest.raises(ValueError, match=r"class indices must be integers in \[0, 2\)"):
        write_dataset(tmp_path, "b", x, [0, 2], x, [0, 1], num_classes=2)
    with pytest.raises(ValueError, match="jpeg stores"):
        rgba = np.zeros((2, 2, 2, 4), np.uint8)
        write_dataset(tmp_path, "c", rgba, [0, 1], rgba, [0, 1], image_format="jpeg")
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        write_dataset(tmp_path, "d", x.astype(np.float32) + 2, [0, 1], x, [0, 1], image_format="png")
    write_dataset(tmp_path, "e", x, [0, 1], x, [0, 1])
    with pytest.raises(FileExistsError, match="already exists"):
        write_dataset(tmp_path, "e", x, [0, 1], x, [0, 1])


def _png():
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
