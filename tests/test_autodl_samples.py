"""The readers on the organizers' own AutoDL datasets (miniciao: fixed 32x32 JPEGs; Monkeys: variable)."""

import numpy as np
import pytest

from autoclint.autodl import open_dataset
from autoclint.autodl.demo import summarize
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.records import index_split, read_examples, record_id

SAMPLES = {"miniciao": (82, 18, (1, 32, 32, 3)), "Monkeys": (26, 4, (1, -1, -1, 3))}


@pytest.fixture(scope="module", params=sorted(SAMPLES))
def sample(request, autodl_samples):
    name = request.param
    return (name, *find_dataset(autodl_samples / name)[1:], *SAMPLES[name])


def _read(split_dir):
    return list(PyAutoDLDataset(split_dir).get_dataset())


def test_counts_shapes_values_and_one_hot_train_labels(sample):
    name, train_dir, test_dir, _, n_train, n_test, shape = sample
    for split_dir, count in ((train_dir, n_train), (test_dir, n_test)):
        dataset = PyAutoDLDataset(split_dir)
        metadata = dataset.get_metadata()
        assert metadata.size() == count == len(dataset.get_dataset())
        assert metadata.get_tensor_shape() == shape
        examples = list(dataset.get_dataset())
        assert len(examples) == count
        for example, label in examples:
            assert example.dtype == np.float32 and example.ndim == 4 and example.shape[3] == 3
            assert example.shape[0] == 1
            assert shape[1] in (-1, example.shape[1]) and shape[2] in (-1, example.shape[2])
            assert 0.0 <= example.min() and example.max() <= 1.0 and example.max() > 0.5
            assert label.shape == (10,) and label.dtype == np.float32
    train_labels = np.stack([label for _, label in _read(train_dir)])
    np.testing.assert_array_equal(train_labels.sum(axis=1), 1.0)
    assert set(np.unique(train_labels)) == {0.0, 1.0}
    if name == "Monkeys":
        assert len({e.shape for e, _ in _read(train_dir)}) > 1, "Monkeys has variable-size images"


def test_test_records_are_unlabelled_and_solution_matches_them(sample):
    _, _, test_dir, solution_path, _, n_test, _ = sample
    test_labels = np.stack([label for _, label in _read(test_dir)])
    np.testing.assert_array_equal(test_labels, 0.0)  # test records carry empty label lists
    solution = np.loadtxt(solution_path, ndmin=2)
    assert solution.shape == (n_test, 10)
    np.testing.assert_array_equal(solution.sum(axis=1), 1.0)
    index = index_split(test_dir)
    ids = [record_id(example) for example in read_examples(index.locations)]
    # solution row k is the record with id k: the test records carry ids 0 .. n-1, stored in that order
    assert ids == list(range(len(solution))), ids


def test_metadata_api(autodl_samples):
    metadata = PyAutoDLDataset(find_dataset(autodl_samples / "miniciao")[1]).get_metadata()
    assert metadata.is_compressed(0) and not metadata.is_sparse(0)
    assert metadata.get_bundle_size() == 1
    assert metadata.get_matrix_size(0) == (32, 32)
    assert metadata.get_tensor_size(0) == (32, 32, 3)
    assert metadata.get_sequence_size() == 1 and metadata.get_output_size() == 10
    label_map = metadata.get_label_to_index_map()
    assert label_map["airplane"] == 0 and label_map["truck"] == 9 and len(label_map) == 10
    assert len(metadata.get_channel_to_index_map()) == 0 and len(metadata.get_feature_to_index_map()) == 0
    monkeys = PyAutoDLDataset(find_dataset(autodl_samples / "Monkeys")[2]).get_metadata()
    assert monkeys.get_num_channels(0) == 3  # unset (-1) and compressed -> 3
    assert monkeys.get_matrix_size(0) == (-1, -1)


def test_python_dataset_is_re_iterable(autodl_samples):
    dataset = PyAutoDLDataset(find_dataset(autodl_samples / "miniciao")[2]).get_dataset()
    first, second = list(dataset), list(dataset)
    assert len(first) == len(second) == 18
    np.testing.assert_array_equal(first[3][0], second[3][0])


def test_both_readers_agree_exactly(sample):
    pytest.importorskip("tensorflow")
    _, train_dir, test_dir, *_ = sample
    for split_dir in (train_dir, test_dir):
        tf_dataset = open_dataset(split_dir, backend="tf")
        assert type(tf_dataset).__name__ == "AutoDLDataset"
        ours = _read(split_dir)
        theirs = [(x.numpy(), y.numpy()) for x, y in tf_dataset.get_dataset()]
        assert len(ours) == len(theirs) == tf_dataset.get_metadata().size()
        for (x_py, y_py), (x_tf, y_tf) in zip(ours, theirs):
            np.testing.assert_array_equal(x_py, x_tf)  # same libjpeg IDCT: bit-identical
            np.testing.assert_array_equal(y_py, y_tf)


def test_demo_summary(autodl_samples):
    text = summarize(autodl_samples / "miniciao", backend="python")
    assert "82 / 18 examples" in text and "airplane" in text and "(1, 32, 32, 3)" in text
