"""Write -> read round trips through both readers: formats, channels, videos, multilabel, sizes, shards."""

import io
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl import proto, tf_available
from autoclint.autodl.convert import convert_image_folder, convert_npz
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.metadata import METADATA_FILENAME
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.records import index_split, read_examples
from autoclint.autodl.tfrecord import write_records
from autoclint.autodl.writer import write_dataset

REPO = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


def _pixels(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _smooth(n, h, w, c):
    """Images JPEG can store almost exactly (gradients), unlike noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([yy * 6 + xx * 4 + 30 * k + 10 * i for i in range(n) for k in range(c)])
    return np.clip(base, 0, 255).reshape(n, c, h, w).transpose(0, 2, 3, 1).astype(np.uint8)


def read_split(split_dir):
    """(examples, labels) from the numpy reader, checked equal to the tf.data reader's when TF is here."""
    pairs = list(PyAutoDLDataset(split_dir).get_dataset())
    if not tf_available():
        pytest.skip("TensorFlow is not installed: the tf.data reader cannot cross-check the numpy reader")
    from autoclint.autodl.reader import AutoDLDataset

    tf_pairs = [(x.numpy(), y.numpy()) for x, y in AutoDLDataset(split_dir).get_dataset()]
    assert len(tf_pairs) == len(pairs)
    for (x_py, y_py), (x_tf, y_tf) in zip(pairs, tf_pairs):
        np.testing.assert_array_equal(x_py, x_tf)
        np.testing.assert_array_equal(y_py, y_tf)
    return pairs


def write_and_read(tmp_path, x_train, y_train, x_test, y_test, **kwargs):
    root = write_dataset(tmp_path, "ds", x_train, y_train, x_test, y_test, **kwargs)
    name, train_dir, test_dir, solution = find_dataset(root)
    assert name == "ds"
    return read_split(train_dir), read_split(test_dir), PyAutoDLDataset(train_dir).get_metadata(), solution


@pytest.mark.parametrize("image_format", ["dense", "png"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_lossless_formats_give_the_pixels_back(tmp_path, image_format, channels):
    x, y = _pixels(6, 5, 7, channels), np.array([0, 1, 2, 0, 1, 2])
    train, test, metadata, solution = write_and_read(tmp_path, x, y, x[:4], y[:4], image_format=image_format)
    got = np.stack([e for e, _ in train])
    assert got.shape == (6, 1, 5, 7, channels)
    np.testing.assert_array_equal(np.rint(got[:, 0] * 255), x)
    np.testing.assert_array_equal(np.stack([l for _, l in train]), np.eye(3)[y])
    np.testing.assert_array_equal(np.stack([l for _, l in test]), 0.0)
    np.testing.assert_array_equal(np.loadtxt(solution, ndmin=2), np.eye(3)[y[:4]])
    assert metadata.get_tensor_shape() == (1, 5, 7, channels) and metadata.size() == 6
    assert metadata.is_compressed(0) == (image_format == "png")


def test_dense_and_png_read_back_identically(tmp_path):
    x, y = _pixels(3, 4, 4, 3), np.array([0, 1, 1])
    dense = write_and_read(tmp_path / "a", x, y, x, y, image_format="dense")[0]
    png = write_and_read(tmp_path / "b", x, y, x, y, image_format="png")[0]
    for (a, _), (b, _) in zip(dense, png):
        np.testing.assert_array_equal(a, b)


def test_dense_floats_are_stored_exactly(tmp_path):
    x = RNG.normal(size=(4, 3, 2, 2)).astype(np.float32) * 100
    train = write_and_read(tmp_path, x, [0, 1, 0, 1], x, [1, 1, 0, 0])[0]
    np.testing.assert_array_equal(np.stack([e[0] for e, _ in train]), x)


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_within_compression_error(tmp_path, channels):
    x = _smooth(4, 16, 24, channels)
    train = write_and_read(tmp_path, x, [0, 1, 2, 3], x[:2], [0, 1], image_format="jpeg")[0]
    error = np.abs(np.stack([e[0] for e, _ in train]) * 255 - x)
    assert error.mean() < 2.0 and error.max() <= 16


def test_video_round_trip(tmp_path):
    x = _pixels(3, 4, 6, 5, 3)  # [N, T, H, W, C]
    for image_format in ("dense", "png"):
        train, _, metadata, _ = write_and_read(tmp_path / image_format, x, [0, 1, 0], x[:1], [1],
                                               image_format=image_format)
        np.testing.assert_array_equal(np.rint(np.stack([e for e, _ in train]) * 255), x)
        assert metadata.get_tensor_shape() == (4, 6, 5, 3) and metadata.metadata_.is_sequence


def test_multilabel_round_trip(tmp_path):
    y = np.array([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1], [0, 0, 0, 0]])
    x = _pixels(4, 3, 3, 1)
    train, test, metadata, solution = write_and_read(tmp_path, x, y, x, y, image_format="png")
    np.testing.assert_array_equal(np.stack([l for _, l in train]), y)
    np.testing.assert_array_equal(np.loadtxt(solution, ndmin=2), y)
    assert metadata.get_output_size() == 4


def test_variable_size_images(tmp_path):
    x = [_pixels(h, w, 3) for h, w in ((5, 7), (9, 4), (6, 6))]
    train, test, metadata, _ = write_and_read(tmp_path, x, [0, 1, 2], x[:2], [2, 1], image_format="png",
                                              label_names=["a", "b", "c"])
    assert metadata.get_matrix_size(0) == (-1, -1)
    assert dict(metadata.get_label_to_index_map()) == {"a": 0, "b": 1, "c": 2}
    assert (tmp_path / "ds" / "ds_label.name").read_text().split() == ["a", "b", "c"]
    for (example, _), original in zip(train, x):
        np.testing.assert_array_equal(np.rint(example[0] * 255), original)
    with pytest.raises(ValueError, match="variable-size"):
        write_dataset(tmp_path, "dense_var", x, [0, 1, 2], x, [0, 1, 2], image_format="dense")


def test_sharding_keeps_record_order(tmp_path):
    x, y = _pixels(7, 2, 2, 1), np.arange(7)
    root = write_dataset(tmp_path, "ds", x, y, x[:2], y[:2], image_format="png", examples_per_shard=3)
    _, train_dir, _, _ = find_dataset(root)
    shards = sorted(p.name for p in train_dir.glob("sample*"))
    assert shards == [f"sample-0000{i}-of-00003.tfrecord" for i in range(3)]
    labels = [int(np.argmax(l)) for _, l in read_split(train_dir)]
    assert labels == list(range(7))
    examples = read_examples(index_split(train_dir).locations)
    assert [e.context.feature["id"].int64_list.value[0] for e in examples] == list(range(7))


def test_sparse_records(tmp_path):
    split = tmp_path / "sparse.data" / "train"
    split.mkdir(parents=True)
    spec = proto.DataSpecification(output_dim=3, sample_count=1, sequence_size=2)
    spec.matrix_spec.add(row_count=2, col_count=3, num_channels=2, format=proto.MatrixSpec.SPARSE)
    (split / METADATA_FILENAME).write_text(str(spec))
    example = proto.SequenceExample()
    example.context.feature["label_index"].int64_list.value.append(2)  # no label_score: counts as 1
    lists = example.feature_lists.feature_list
    entries = [[(0, 1, 1, 0.5), (1, 2, 0, -2.0)], [(1, 0, 1, 3.0)]]  # per time step: row, col, channel, value
    for step in entries:
        lists["0_sparse_row_index"].feature.add().int64_list.value.extend([e[0] for e in step])
        lists["0_sparse_col_index"].feature.add().int64_list.value.extend([e[1] for e in step])
        lists["0_sparse_channel_index"].feature.add().int64_list.value.extend([e[2] for e in step])
        lists["0_sparse_value"].feature.add().float_list.value.extend([e[3] for e in step])
    write_records(split / "sample-0.tfrecord", [example.SerializeToString()])
    [(tensor, label)] = read_split(split)
    expected = np.zeros((2, 2, 3, 2), dtype=np.float32)
    for t, step in enumerate(entries):
        for row, col, channel, value in step:
            expected[t, row, col, channel] = value
    np.testing.assert_array_equal(tensor, expected)
    np.testing.assert_array_equal(label, [0, 0, 1])


def test_graph_mode_reading(tmp_path):
    tf = pytest.importorskip("tensorflow")
    from autoclint.autodl import AutoDLDataset

    x = [_pixels(h, 5, 3) for h in (4, 6, 8)]
    root = write_dataset(tmp_path, "ds", x, [0, 1, 1], x, [1, 0, 0], image_format="png")
    expected = [e for e, _ in PyAutoDLDataset(find_dataset(root)[1]).get_dataset()]
    with tf.Graph().as_default():
        dataset = AutoDLDataset(find_dataset(root)[1]).get_dataset()
        next_element = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        got = []
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    got.append(session.run(next_element))
                except tf.errors.OutOfRangeError:
                    break
    assert len(got) == 3
    for (example, label), reference in zip(got, expected):
        np.testing.assert_array_equal(example, reference)
    assert [int(np.argmax(label)) for _, label in got] == [0, 1, 1]


def test_convert_npz(tmp_path):
    npz = tmp_path / "tiny.npz"
    x = _pixels(5, 4, 4, 1)
    np.savez(npz, x_train=x, y_train=np.array([0, 1, 0, 1, 1]), x_test=x[:2], y_test=np.array([1, 0]),
             classes=np.array(["no", "yes"]))
    root = convert_npz(npz, tmp_path / "out")
    name, train_dir, _, solution = find_dataset(root)
    assert name == "tiny"
    np.testing.assert_array_equal(np.rint(np.stack([e[0] for e, _ in read_split(train_dir)]) * 255), x)
    assert dict(PyAutoDLDataset(train_dir).get_metadata().get_label_to_index_map()) == {"no": 0, "yes": 1}
    np.testing.assert_array_equal(np.loadtxt(solution, ndmin=2), [[0, 1], [1, 0]])


def _image_bytes(pixels, fmt):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_convert_image_folder_with_splits_keeps_files_byte_for_byte(tmp_path):
    files = {
        "train/cat/a.jpg": _image_bytes(_smooth(1, 12, 10, 3)[0], "JPEG"),
        "train/cat/b.png": _image_bytes(_pixels(8, 9, 3), "PNG"),
        "train/dog/c.png": _image_bytes(_pixels(8, 8, 3), "PNG"),
        "train/dog/d.bmp": _image_bytes(_pixels(5, 6, 3), "BMP"),
        "test/cat/e.png": _image_bytes(_pixels(7, 7, 3), "PNG"),
        "test/dog/f.png": _image_bytes(_pixels(6, 6, 3), "PNG"),
    }
    for relative, data in files.items():
        (tmp_path / "tree" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tree" / relative).write_bytes(data)
    root = convert_image_folder(tmp_path / "tree", tmp_path / "out", "pets", shuffle=False)
    _, train_dir, test_dir, solution = find_dataset(root)
    stored = [e.feature_lists.feature_list["0_compressed"].feature[0].bytes_list.value[0]
              for e in read_examples(index_split(train_dir).locations)]
    assert stored[:3] == [files["train/cat/a.jpg"], files["train/cat/b.png"], files["train/dog/c.png"]]
    assert stored[3].startswith(b"\x89PNG")  # BMP re-encoded losslessly
    train = read_split(train_dir)
    bmp = np.asarray(Image.open(io.BytesIO(files["train/dog/d.bmp"])))
    np.testing.assert_array_equal(np.rint(train[3][0][0] * 255), bmp)
    assert [int(np.argmax(l)) for _, l in train] == [0, 0, 1, 1]
    np.testing.assert_array_equal(np.loadtxt(solution, ndmin=2), [[1, 0], [0, 1]])
    assert PyAutoDLDataset(test_dir).get_metadata().get_matrix_size(0) == (-1, -1)


def test_convert_zip_of_a_single_tree_split_by_ratio(tmp_path):
    archive = tmp_path / "gray.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for label in ("a", "b"):
            for i in range(5):
                handle.writestr(f"top/{label}/{i}.png", _image_bytes(_pixels(6, 6), "PNG"))
        handle.writestr("__MACOSX/top/a/._0.png", b"junk")
    root = convert_image_folder(archive, tmp_path / "out", test_fraction=0.4)
    _, train_dir, test_dir, _ = find_dataset(root)
    train, test = read_split(train_dir), read_split(test_dir)
    assert (len(train), len(test)) == (6, 4)
    assert train[0][0].shape == (1, 6, 6, 1)  # all grayscale -> 1 channel
    assert np.stack([l for _, l in train]).sum(axis=0).tolist() == [3, 3]


def test_python_reader_and_writer_never_import_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from autoclint.autodl import open_dataset
        from autoclint.autodl.writer import write_dataset
        root = write_dataset({str(tmp_path)!r}, "ds", np.zeros((2, 4, 4, 3), np.uint8), [0, 1],
                             np.ones((1, 4, 4, 3), np.uint8), [1], image_format="jpeg")
        dataset = open_dataset(root / "ds.data" / "train", backend="python")
        assert len(list(dataset.get_dataset())) == 2
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_convert_cli(tmp_path):
    script = REPO / "scripts" / "convert.py"
    help_text = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True,
                               timeout=60)
    assert help_text.returncode == 0 and "npz" in help_text.stdout and "images" in help_text.stdout
    npz = tmp_path / "cli.npz"
    np.savez(npz, x_train=_pixels(3, 4, 4, 3), y_train=np.array([0, 1, 2]), x_test=_pixels(2, 4, 4, 3),
             y_test=np.array([2, 0]))
    command = [sys.executable, str(script), "npz", str(npz), "--out", str(tmp_path / "out")]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert Path(first.stdout.strip()) == tmp_path / "out" / "cli"
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
