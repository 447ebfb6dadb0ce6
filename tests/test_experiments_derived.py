"""The derived benchmark sets: moving-digit clips and multilabel mosaics, their labels, seeds and files."""

from functools import partial
from pathlib import Path

import numpy as np
import pytest

from autoclint.autodl import open_dataset, tf_available
from autoclint.autodl.layout import find_dataset
from autoclint.experiments import datasets, derived
from autoclint.experiments.derived import (
    MosaicSpec,
    MovingDigitsSpec,
    RawSplit,
    bounce,
    digit_trajectory,
    make_moving_digit_clip,
    make_moving_digits,
    make_mosaic,
    make_mosaics,
    split_rng,
    write_mosaics,
    write_moving_digits,
)

TINY_VIDEO = MovingDigitsSpec(train_count=20, test_count=20, frames=6, seed=3)
TINY_MOSAIC = MosaicSpec(train_count=20, test_count=20, seed=3)
BACKENDS = ["python", "tf"] if tf_available() else ["python"]


def fake_raw(count: int, side: int, channels: int, num_classes: int = 10) -> RawSplit:
    """Images whose value encodes their index (1 + index) and class labels cycling through the classes."""
    images = np.zeros((count, side, side, channels), dtype=np.uint8)
    images[:, 2:side - 2, 3:side - 3] = (1 + np.arange(count) % 255)[:, None, None, None]
    return RawSplit(images, np.arange(count) % num_classes)


def centroid(frame: np.ndarray) -> np.ndarray:
    """Intensity-weighted (row, col) centre of a [H, W, C] frame."""
    weights = frame.sum(axis=-1).astype(np.float64)
    rows, cols = np.indices(weights.shape)
    return np.array([(rows * weights).sum(), (cols * weights).sum()]) / weights.sum()


@pytest.fixture(scope="module")
def mnist_npz(shared_datasets: Path) -> Path:
    return shared_datasets / "mnist10k.npz"


@pytest.fixture(scope="module")
def cifar_npz(shared_datasets: Path) -> Path:
    return shared_datasets / "cifar10_15k.npz"


# --- trajectories and clips ------------------------------------------------------------------------------


def test_bounce_reflects_at_both_edges():
    positions = np.array([-3.0, 0.0, 4.0, 10.0, 13.0, 20.0, 23.0])
    np.testing.assert_allclose(bounce(positions, 10), [3, 0, 4, 10, 7, 0, 3])


def test_a_trajectory_stays_inside_and_turns_back_at_the_edge():
    trajectory = digit_trajectory(np.array([18.0, 1.0]), np.array([2.0, 0.5]), frames=5, limit=20)
    np.testing.assert_array_equal(trajectory[:, 0], [18, 20, 18, 16, 14])
    np.testing.assert_array_equal(trajectory[:, 1], np.rint([1.0, 1.5, 2.0, 2.5, 3.0]))


def test_a_clip_draws_the_digit_at_each_corner_of_the_trajectory():
    digit = np.arange(1, 13, dtype=np.uint8).reshape(3, 4, 1)
    trajectory = np.array([[0, 0], [2, 5], [6, 6]])
    clip = make_moving_digit_clip(digit, trajectory, canvas=10)
    assert clip.shape == (3, 10, 10, 1) and clip.dtype == np.uint8
    for frame, (row, col) in zip(clip, trajectory):
        np.testing.assert_array_equal(frame[row:row + 3, col:col + 4], digit)
        assert frame.sum() == digit.sum()


def test_generated_clips_move_and_keep_the_whole_digit_in_view():
    raw = fake_raw(50, 28, 1)
    spec = MovingDigitsSpec(frames=10)
    clips, labels = make_moving_digits(raw, 40, spec, 10, np.random.default_rng(0))
    assert clips.shape == (40, 10, 48, 48, 1)
    for clip in clips:
        assert len({int(frame.sum()) for frame in clip}) == 1, "part of the digit left the frame"
        path = np.array([centroid(frame) for frame in clip])
        steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
        # At a bounce the rounded position can repeat once; a clip has at most two bounces per axis.
        assert np.count_nonzero(steps) >= len(steps) - 2, "the digit stood still"
        assert np.linalg.norm(path - path[0], axis=1).max() >= 4


def test_each_clip_shows_a_digit_of_its_label_and_classes_are_balanced():
    raw = fake_raw(50, 28, 1)
    clips, labels = make_moving_digits(raw, 30, MovingDigitsSpec(), 10, np.random.default_rng(1))
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), np.full(10, 3))
    for clip, label in zip(clips, labels):
        source_index = int(clip.max()) - 1
        assert raw.labels[source_index] == label


# --- mosaics ---------------------------------------------------------------------------------------------


def test_a_mosaic_puts_each_item_in_its_cell_and_leaves_the_rest_black():
    items = [np.full((4, 4, 3), value, dtype=np.uint8) for value in (10, 20)]
    mosaic = make_mosaic(items, cells=[3, 0], grid=2)
    assert mosaic.shape == (8, 8, 3)
    assert (mosaic[4:, 4:] == 10).all() and (mosaic[:4, :4] == 20).all()
    assert (mosaic[:4, 4:] == 0).all() and (mosaic[4:, :4] == 0).all()


def test_mosaic_labels_are_the_classes_of_the_items_placed():
    raw = fake_raw(200, 32, 3)
    mosaics, labels = make_mosaics(raw, 60, MosaicSpec(), 10, np.random.default_rng(2))
    assert mosaics.shape == (60, 64, 64, 3) and labels.shape == (60, 10)
    counts = set()
    for mosaic, label in zip(mosaics, labels):
        cells = [mosaic[r:r + 32, c:c + 32] for r in (0, 32) for c in (0, 32)]
        placed = [int(cell.max()) - 1 for cell in cells if cell.any()]
        assert all((cell == 0).all() for cell in cells if not cell.any())
        classes = sorted(int(raw.labels[i]) for i in placed)
        assert classes == np.flatnonzero(label).tolist(), "labels differ from the items placed"
        counts.add(len(placed))
    assert counts == {1, 2, 3}


def test_too_many_items_for_the_grid_are_refused():
    with pytest.raises(ValueError, match="max_items"):
        make_mosaics(fake_raw(20, 8, 3), 5, MosaicSpec(grid=1, max_items=2), 10, np.random.default_rng(0))


def test_a_split_without_a_negative_for_some_class_is_refused():
    with pytest.raises(ValueError, match=r"classes \[1\]"):
        derived.check_label_coverage(np.array([[1, 1], [0, 1]], dtype=np.float32), "test")


# --- whole sets: determinism and round trips ---------------------------------------------------------------


def read_split(split_dir: Path, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """All (examples, labels) of a split read back with one reader."""
    pairs = [(np.asarray(x), np.asarray(y)) for x, y in open_dataset(split_dir, backend).get_dataset()]
    return np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])


def test_the_same_seed_gives_the_same_set_and_another_seed_another():
    raw = fake_raw(100, 28, 1)
    spec = MovingDigitsSpec()
    first = make_moving_digits(raw, 20, spec, 10, split_rng(0, "train"))
    again = make_moving_digits(raw, 20, spec, 10, split_rng(0, "train"))
    other = make_moving_digits(raw, 20, spec, 10, split_rng(1, "train"))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_written_sets_are_identical_for_the_same_seed(tmp_path, cifar_npz):
    a = write_mosaics(cifar_npz, tmp_path / "a", "m", TINY_MOSAIC)
    b = write_mosaics(cifar_npz, tmp_path / "b", "m", TINY_MOSAIC)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for relative in files_a:
        assert (a / relative).read_bytes() == (b / relative).read_bytes(), relative


@pytest.mark.parametrize("backend", BACKENDS)
def test_video_set_reads_back_as_written(tmp_path, mnist_npz, backend):
    root = write_moving_digits(mnist_npz, tmp_path, "vid", TINY_VIDEO)
    raw, _ = derived.load_raw_splits(mnist_npz)
    expected, labels = make_moving_digits(raw["train"], 20, TINY_VIDEO, 10, split_rng(3, "train"))
    name, train_dir, test_dir, solution = find_dataset(root)
    x, y = read_split(train_dir, backend)
    assert x.shape == (20, 6, 48, 48, 1)
    np.testing.assert_array_equal(np.rint(x * 255).astype(np.uint8), expected)
    np.testing.assert_array_equal(y, np.eye(10)[labels])
    x_test, y_test = read_split(test_dir, backend)
    truth = np.loadtxt(solution, ndmin=2)
    assert x_test.shape == (20, 6, 48, 48, 1) and truth.shape == (20, 10)
    assert (truth.sum(axis=1) == 1).all() and (y_test == 0).all()
    metadata = open_dataset(train_dir, backend).get_metadata()
    assert metadata.get_tensor_shape() == (6, 48, 48, 1) and metadata.get_output_size() == 10


@pytest.mark.parametrize("backend", BACKENDS)
def test_mosaic_set_reads_back_with_multi_hot_labels(tmp_path, cifar_npz, backend):
    root = write_mosaics(cifar_npz, tmp_path, "mos", TINY_MOSAIC)
    name, train_dir, test_dir, solution = find_dataset(root)
    x, y = read_split(train_dir, backend)
    assert x.shape == (20, 1, 64, 64, 3)
    assert set(y.sum(axis=1).tolist()) <= {1.0, 2.0, 3.0} and y.sum(axis=1).max() > 1
    truth = np.loadtxt(solution, ndmin=2)
    assert truth.shape == (20, 10)
    assert (truth.sum(axis=0) > 0).all() and (truth.sum(axis=0) < 20).all()


# --- the benchmark's dataset list ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, writer, spec", [
    ("mnist_video", write_moving_digits, TINY_VIDEO),
    ("cifar_mosaic", write_mosaics, TINY_MOSAIC),
])
def test_prepare_dataset_builds_a_derived_set_once_into_the_cache(tmp_path, monkeypatch, shared_datasets,
                                                                    name, writer, spec):
    monkeypatch.setitem(derived.WRITERS, name, partial(writer, spec=spec))
    assert name in datasets.KNOWN_DATASETS
    path = datasets.prepare_dataset(name, cache_dir=tmp_path, shared_root=shared_datasets)
    assert path == tmp_path / name
    assert [p.name for p in tmp_path.iterdir()] == [name], "the staging folder was left behind"
    assert open_dataset(path / f"{name}.data" / "test", "python").get_metadata().size() == 20
    monkeypatch.setitem(derived.WRITERS, name, None)  # a second call must not generate again
    assert datasets.prepare_dataset(name, cache_dir=tmp_path, shared_root=shared_datasets) == path


def test_a_missing_raw_source_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="mnist_video"):
        datasets.prepare_dataset("mnist_video", cache_dir=tmp_path / "cache", shared_root=tmp_path)
