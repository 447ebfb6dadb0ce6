"""The starter kit reports a run that did nothing useful as a failure, with a one-line reason as its last line;
records that disagree with their metadata fail alike in both readers; only its own outputs are ever removed."""

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl.errors import AutoDLFormatError
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.writer import write_dataset, write_encoded_images
from autoclint.harness.cli import main
from autoclint.harness.ingestion import LOCK_FILE, OUTPUT_MARKER, OutputDirError, prepare_output_dir

BASELINES = Path(__file__).resolve().parents[1] / "autoclint" / "harness" / "baselines"


def _png(size: int, value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _mislabelled_sizes(root: Path, sizes: list[int]) -> Path:
    """PNGs of the given sizes (grayscale) under metadata that says 32x32x3."""
    labels = np.eye(2, dtype=np.float32)[np.arange(len(sizes)) % 2]
    images = [_png(size, 10 * i) for i, size in enumerate(sizes)]
    return write_encoded_images(root, "sizes", (images, labels), (images[:2], labels[:2]), row_count=32,
                                col_count=32, num_channels=3, label_names=["a", "b"])


def _tf_reader():
    pytest.importorskip("tensorflow")
    from autoclint.autodl.reader import AutoDLDataset

    return AutoDLDataset


def _run_cli(dataset: Path, tmp_path: Path, baseline: str = "zero", code_dir: Path | None = None):
    lines: list[str] = []
    model = ["--code_dir", str(code_dir)] if code_dir else ["--baseline", baseline]
    code = main(["--dataset_dir", str(dataset), *model, "--time_budget", "60",
                 "--output_dir", str(tmp_path / "out"), "--score_dir", str(tmp_path / "scores")],
                emit=lambda text: lines.extend(text.splitlines()))
    return code, lines


EXPECTED_SIZE = "image is 28x28 pixels but the metadata says 32x32 (row_count x col_count)"


def test_both_readers_refuse_records_whose_size_disagrees_with_the_metadata_when_opened(tmp_path):
    train_dir = find_dataset(_mislabelled_sizes(tmp_path, [28] * 6))[1]
    messages = []
    for reader in (PyAutoDLDataset, _tf_reader()):
        with pytest.raises(AutoDLFormatError, match=re.escape(EXPECTED_SIZE)) as error:
            reader(train_dir)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "record 0" in messages[0]


def test_a_later_record_of_the_wrong_size_fails_in_both_readers_with_the_metadata_size(tmp_path):
    train_dir = find_dataset(_mislabelled_sizes(tmp_path, [32] * 11 + [28]))[1]
    with pytest.raises(AutoDLFormatError, match=re.escape(f"record 11: {EXPECTED_SIZE}")):
        list(PyAutoDLDataset(train_dir).get_dataset())
    tf = pytest.importorskip("tensorflow")
    dataset = _tf_reader()(train_dir).get_dataset()
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"the metadata says 32x32 \(row_count x col_count\)"):
        list(dataset.as_numpy_iterator())


def test_gray_images_under_three_channel_metadata_read_alike_in_both_readers(tmp_path):
    train_dir = find_dataset(_mislabelled_sizes(tmp_path, [32] * 4))[1]
    python = [x for x, _ in PyAutoDLDataset(train_dir).get_dataset()]
    tensorflow = [x for x, _ in _tf_reader()(train_dir).get_dataset().as_numpy_iterator()]
    assert [x.shape for x in python] == [x.shape for x in tensorflow] == [(1, 32, 32, 3)] * 4
    np.testing.assert_array_equal(np.stack(python), np.stack(tensorflow))


def test_cli_fails_with_the_reason_as_last_line_when_records_disagree_with_the_metadata(tmp_path):
    code, lines = _run_cli(_mislabelled_sizes(tmp_path / "data", [28] * 6), tmp_path)
    assert code != 0
    assert lines[-1].startswith("error: ") and EXPECTED_SIZE in lines[-1]


@pytest.mark.parametrize("split", ["train", "test"])
def test_cli_fails_on_an_empty_split_before_running_the_model(tmp_path, split):
    x = np.zeros((4, 4, 4, 1), np.uint8)
    empty = np.zeros((0, 4, 4, 1), np.uint8)
    train, test = (empty, x) if split == "train" else (x, empty)
    dataset = write_dataset(tmp_path / "data", "empty", train, np.arange(len(train)) % 2, test,
                            np.arange(len(test)) % 2, num_classes=2)
    code, lines = _run_cli(dataset, tmp_path)
    assert code == 1
    assert lines[-1] == f"error: the {split} set is empty: 0 records in {dataset}/empty.data/{split}".replace(
        "the train set", "the training set")
    assert not list((tmp_path / "out").glob("*.predict_*"))


def test_cli_fails_when_the_model_never_predicts(tmp_path):
    x = np.zeros((4, 4, 4, 1), np.uint8)
    dataset = write_dataset(tmp_path / "data", "quiet", x, [0, 1, 0, 1], x[:2], [0, 1])
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "model.py").write_text(
        "class Model:\n"
        "    done_training = False\n"
        "    def __init__(self, metadata):\n        pass\n"
        "    def train(self, dataset, remaining_time_budget=None):\n        pass\n"
        "    def test(self, dataset, remaining_time_budget=None):\n        return None\n")
    code, lines = _run_cli(dataset, tmp_path, code_dir=code_dir)
    assert code == 1 and lines[-1] == "error: the model produced no valid prediction"
    assert any("0 prediction(s)" in line and "FAILED" in line for line in lines)


def test_a_good_run_still_succeeds_and_its_folder_can_be_reused(tmp_path):
    x = np.zeros((4, 4, 4, 1), np.uint8)
    dataset = write_dataset(tmp_path / "data", "fine", x, [0, 1, 0, 1], x[:2], [0, 1])
    assert _run_cli(dataset, tmp_path)[0] == 0
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert _run_cli(dataset, tmp_path)[0] == 0
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [OUTPUT_MARKER, LOCK_FILE, "notes.txt", "fine.predict_0", "start.txt", "end.txt"])


def test_a_foreign_output_folder_is_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / "out"
    foreign.mkdir()
    files = {"paper.predict_1": "keep", "start.txt": "keep", "end.txt": "keep", "notes.txt": "keep"}
    for name, text in files.items():
        (foreign / name).write_text(text)
    with pytest.raises(OutputDirError, match="not empty"):
        prepare_output_dir(foreign)
    x = np.zeros((4, 4, 4, 1), np.uint8)
    dataset = write_dataset(tmp_path / "data", "fine", x, [0, 1, 0, 1], x[:2], [0, 1])
    code, lines = _run_cli(dataset, tmp_path)
    assert code == 2 and lines[-1].startswith("error: output folder") and "--output_dir" in lines[-1]
    assert {p.name: p.read_text() for p in foreign.iterdir()} == files


def test_a_marked_output_folder_loses_only_the_previous_run_outputs(tmp_path):
    output = tmp_path / "out"
    prepare_output_dir(output).release()
    for name in ("task.predict_0", "task.predict_12", "start.txt", "end.txt", ".end.txt.tmp", "notes.txt",
                 "predict_notes.md"):
        (output / name).write_text("x")
    prepare_output_dir(output).release()
    assert sorted(p.name for p in output.iterdir()) == sorted([OUTPUT_MARKER, LOCK_FILE, "notes.txt",
                                                                "predict_notes.md"])
