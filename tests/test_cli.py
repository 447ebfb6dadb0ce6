"""`python -m autoclint fit / predict / evaluate` on a small image-folder tree."""

import csv
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclint import ImageClassifier
from autoclint.classifier import FitProgress
from autoclint.cli import ProgressLine, main, write_csv_atomically
from autoclint.sources import read_labelled

REPO = Path(__file__).resolve().parents[1]
FAST_ONLY = json.dumps({"train_network": False})


def make_image(rng: np.random.Generator, bright_left: bool) -> Image.Image:
    pixels = rng.integers(0, 80, size=(24, 30, 3), dtype=np.uint8)
    if bright_left:
        pixels[:, :15] += 150
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """{train,test}/{cats,dogs}/*.png: dogs have a bright left half."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 10)):
        for label in ("cats", "dogs"):
            folder = root / "photos" / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                make_image(rng, label == "dogs").save(folder / f"{index}.png")
    return root / "photos"


@pytest.fixture(scope="module")
def model(tree, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("model") / "pets.autoclint"
    assert main(["fit", str(tree), "--time-budget", "20", "--output", str(output), "--config", FAST_ONLY]) == 0
    return output


def test_fit_writes_the_model_and_its_learning_curve(model):
    assert model.is_file()
    curve = model.with_suffix(".curve.png")
    with Image.open(curve) as image:
        assert image.format == "PNG" and image.width > 100
    clf = ImageClassifier.load(model)
    assert list(clf.classes_) == ["cats", "dogs"]


def test_predict_folder_writes_one_row_per_image_with_probabilities(model, tmp_path):
    rng = np.random.default_rng(5)
    new = tmp_path / "new" / "nested"
    new.mkdir(parents=True)
    for index in range(6):
        make_image(rng, index % 2 == 1).save(new / f"{index}.jpg")
    output = tmp_path / "out" / "predictions.csv"
    assert main(["predict", str(model), str(tmp_path / "new"), "--output", str(output)]) == 0
    with output.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["input"] for row in rows] == [str(new / f"{i}.jpg") for i in range(6)]
    assert list(rows[0]) == ["input", "label", "p_cats", "p_dogs"]
    assert [row["label"] for row in rows] == ["cats", "dogs"] * 3
    for row in rows:
        assert abs(float(row["p_cats"]) + float(row["p_dogs"]) - 1.0) < 1e-3


def test_an_unreadable_image_is_named_or_skipped_and_listed(model, tmp_path, capsys):
    good = tmp_path / "good.png"
    make_image(np.random.default_rng(1), True).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    output = tmp_path / "predictions.csv"
    assert main(["predict", str(model), str(good), str(bad), "--output", str(output)]) == 1
    assert str(bad) in capsys.readouterr().err
    assert not output.exists(), "no CSV when a prediction fails"
    assert main(["predict", str(model), str(good), str(bad), "--output", str(output), "--skip-bad"]) == 0
    assert str(bad) in capsys.readouterr().err
    with output.open() as handle:
        assert [row["input"] for row in csv.DictReader(handle)] == [str(good)]


def test_csv_is_replaced_whole_or_left_as_it_was(tmp_path):
    output = tmp_path / "predictions.csv"
    output.write_text("previous\n")

    class Unwritable:
        def __str__(self):
            raise RuntimeError("fails while writing")

    with pytest.raises(RuntimeError):
        write_csv_atomically(output, ["input"], [["a"], [Unwritable()]])
    assert output.read_text() == "previous\n"
    assert list(tmp_path.iterdir()) == [output], "no temporary file left behind"


def test_evaluate_prints_accuracy_and_nauc_and_writes_a_confusion_matrix(model, tree, tmp_path, capsys):
    confusion = tmp_path / "confusion.png"
    assert main(["evaluate", str(model), str(tree), "--confusion", str(confusion)]) == 0
    out = capsys.readouterr().out
    assert "20 examples" in out and "accuracy 1.0000" in out and "NAUC 1.0000" in out
    with Image.open(confusion) as image:
        assert image.format == "PNG"


def test_a_foreign_model_file_is_a_one_line_error(tmp_path, capsys):
    foreign = tmp_path / "model.autoclint"
    foreign.write_text("not a model")
    assert main(["predict", str(foreign), str(tmp_path), "--output", str(tmp_path / "p.csv")]) == 1
    assert "not an autoclint model" in capsys.readouterr().err


def test_npz_data_reads_named_classes(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.random((6, 8, 8, 1)), y_train=np.eye(3)[[0, 1, 2, 0, 1, 2]],
             x_test=rng.random((3, 8, 8, 1)), y_test=np.array([2, 1, 0]), classes=np.array(["a", "b", "c"]))
    assert list(read_labelled(path, "train").labels) == ["a", "b", "c", "a", "b", "c"]
    assert list(read_labelled(path, "test").labels) == ["c", "b", "a"]


def test_plain_class_tree_is_read_whole(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("x", "y"):
        (tmp_path / label).mkdir()
        for index in range(3):
            make_image(rng, False).save(tmp_path / label / f"{index}.png")
    data = read_labelled(tmp_path, "train")
    assert sorted(data.labels) == ["x"] * 3 + ["y"] * 3


@pytest.mark.slow
def test_module_entry_point_fit_then_predict_in_child_processes(tree, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    model = tmp_path / "m.autoclint"
    fit = subprocess.run([sys.executable, "-m", "autoclint", "fit", str(tree), "--time-budget", "30",
                          "--output", str(model)], capture_output=True, text=True, env=env, timeout=120)
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "validation NAUC" in fit.stderr  # progress as log lines when stdout is not a terminal
    predict = subprocess.run([sys.executable, "-m", "autoclint", "predict", str(model), str(tree / "test"),
                              "--output", str(tmp_path / "p.csv")], capture_output=True, text=True, env=env,
                             timeout=120)
    assert predict.returncode == 0, predict.stderr[-2000:]
    with (tmp_path / "p.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20
    correct = sum(row["label"] == Path(row["input"]).parent.name for row in rows)
    assert correct >= 18


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_one_live_line_on_a_terminal_and_log_lines_otherwise(caplog):
    progress = FitProgress(elapsed=3.0, budget=60.0, examples_read=1200, nauc=0.9871, source="fast learner")
    terminal = Terminal()
    line = ProgressLine(terminal, 60.0)
    line(progress)
    line.close()
    written = terminal.getvalue()
    assert written.startswith("\r") and written.endswith("\n") and written.count("\n") == 1
    assert "/ 60 s" in written and "1200 examples read" in written and "0.9871" in written
    assert "fast learner" in written
    piped = io.StringIO()
    with caplog.at_level(logging.INFO, logger="autoclint.cli"):
        line = ProgressLine(piped, 60.0)
        line(progress)
        line.close()
    assert piped.getvalue() == ""
    assert any("1200 examples read" in record.getMessage() for record in caplog.records)
