"""`python -m autoclint fit | predict | evaluate`: a classifier one keeps, from the command line.

    fit DATA --time-budget 600 --output model.autoclint    (and model.curve.png beside it)
    predict model.autoclint INPUT... --output predictions.csv [--skip-bad]
    evaluate model.autoclint DATA [--confusion confusion.png]

DATA: an image-folder tree or zip (class sub-folders), an .npz, or an AutoDL dataset folder.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import numpy as np

from autoclint.autodl.images import UnreadableImageError
from autoclint.inputs import as_example

logger = logging.getLogger(__name__)

PREDICT_CHUNK = 256
"""Inputs read and predicted at once: bounds the memory of a large folder of photos."""
MULTILABEL_SEPARATOR = ";"


# ---------------------------------------------------------------------------------------------------------
# Progress


class ProgressLine:
    """On a terminal one line rewritten in place every second (elapsed / budget, examples read,
    validation NAUC, what predicts); plain log lines after each training call otherwise."""

    def __init__(self, stream: TextIO, budget: float) -> None:
        self.stream, self.budget = stream, budget
        self.live = stream.isatty()
        self.started = time.monotonic()
        self.latest: Optional[Any] = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, name="autoclint-progress", daemon=True)
        if self.live:
            self._ticker.start()

    def __call__(self, progress: Any) -> None:
        """Record the state after a training call (and log it when not on a terminal)."""
        self.latest = progress
        if self.live:
            self._draw()
        else:
            logger.info("%s", self.text())

    def text(self) -> str:
        """The progress line now."""
        elapsed = time.monotonic() - self.started
        if self.latest is None:
            return f"{elapsed:6.1f} / {self.budget:.0f} s   reading and planning"
        latest = self.latest
        return (f"{elapsed:6.1f} / {self.budget:.0f} s   {latest.examples_read} examples read   "
                f"validation NAUC {latest.nauc:.4f}   predicting: {latest.source}")

    def _draw(self) -> None:
        with self._lock:
            self.stream.write("\r" + self.text() + "\x1b[K")
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def close(self) -> None:
        """Stop redrawing; end the line."""
        self._stop.set()
        if self.live:
            self._ticker.join()
            self.stream.write("\n")


# ---------------------------------------------------------------------------------------------------------
# Commands


def fit_command(args: argparse.Namespace) -> int:
    """Fit on DATA within the budget; write the model and its learning curve beside it."""
    from autoclint.classifier import ImageClassifier
    from autoclint.sources import TRAIN, read_labelled

    data = read_labelled(args.data, TRAIN)
    overrides = parse_overrides(args.config)
    logger.info("fitting on %d examples of %s within %g s", len(data.examples), args.data, args.time_budget)
    progress = ProgressLine(sys.stdout, args.time_budget)
    try:
        clf = ImageClassifier(time_budget=args.time_budget, preset=args.preset, **overrides)
        clf.fit(data.examples, data.labels, progress=progress)
    finally:
        progress.close()
    output = clf.save(args.output)
    curve = write_curve_png(clf.learning_curve_, args.time_budget, curve_path(output))
    print(f"model: {output}\nlearning curve: {curve}\npredicting: {clf.description_}")
    return 0


def predict_command(args: argparse.Namespace) -> int:
    """Predict every input; write the CSV atomically. An unreadable image stops with its name (or is
    skipped and listed with --skip-bad)."""
    from autoclint.classifier import ImageClassifier
    from autoclint.sources import prediction_inputs

    clf = ImageClassifier.load(args.model)
    rows, skipped, chunk = [], [], []
    for name, item in prediction_inputs(args.inputs):
        try:
            chunk.append((name, as_example(item)))
        except UnreadableImageError as error:
            if not args.skip_bad:
                raise
            skipped.append(str(error))
        if len(chunk) == PREDICT_CHUNK:
            rows += predicted_rows(clf, chunk)
            chunk = []
    if chunk:
        rows += predicted_rows(clf, chunk)
    if not rows:
        raise ValueError("nothing to predict: no readable inputs")
    header = ["input", "label"] + [f"p_{label}" for label in clf.classes_]
    write_csv_atomically(Path(args.output), header, rows)
    print(f"{len(rows)} prediction(s) written to {args.output}")
    if skipped:
        print(f"{len(skipped)} unreadable input(s) skipped:", *skipped, sep="\n  ", file=sys.stderr)
    return 0


def evaluate_command(args: argparse.Namespace) -> int:
    """Accuracy and NAUC on DATA's test part (or the whole of a plain tree); a confusion-matrix PNG."""
    from autoclint.classifier import ImageClassifier
    from autoclint.metrics import nauc
    from autoclint.sources import TEST, read_labelled

    clf = ImageClassifier.load(args.model)
    data = read_labelled(args.data, TEST)
    probabilities = clf.predict_proba(data.examples)
    truth = indicator_rows(clf, data.labels)
    score = nauc(truth, probabilities)
    accuracy = clf.score(data.examples, data.labels) if not clf.multilabel_ else None
    print(f"{len(data.examples)} examples   NAUC {score:.4f}"
          + ("" if accuracy is None else f"   accuracy {accuracy:.4f}"))
    if not clf.multilabel_:
        output = Path(args.confusion) if args.confusion else Path(args.model).with_suffix(".confusion.png")
        write_confusion_png(data.labels, clf.classes_[probabilities.argmax(axis=1)], clf.classes_, output)
        print(f"confusion matrix: {output}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# Helpers


def parse_overrides(text: Optional[str]) -> dict[str, Any]:
    """--config '{"tau": 4}' as a dict of ModelConfig fields."""
    import json

    if not text:
        return {}
    overrides = json.loads(text)
    if not isinstance(overrides, dict):
        raise ValueError("--config must be a JSON object of configuration fields")
    return overrides


def predicted_rows(clf: Any, chunk: list[tuple[str, np.ndarray]]) -> list[list[Any]]:
    """CSV rows (input, label, probabilities) of one chunk of examples."""
    probabilities = clf.predict_proba([example for _, example in chunk])
    rows = []
    for (name, _), p in zip(chunk, probabilities):
        if clf.multilabel_:
            label = MULTILABEL_SEPARATOR.join(str(c) for c, q in zip(clf.classes_, p) if q >= 0.5)
        else:
            label = clf.classes_[int(p.argmax())]
        rows.append([name, label] + [f"{q:.6g}" for q in p])
    return rows


def write_csv_atomically(output: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Write a temporary file beside `output`, then rename it over: never half a file."""
    output.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", newline="", dir=output.parent, prefix=f".{output.name}.",
                                         suffix=".tmp", delete=False)
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(handle.name, output)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def indicator_rows(clf: Any, labels: np.ndarray) -> np.ndarray:
    """0/1 rows [N, classes] of labels in the model's class order (labels it does not know are an error)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return labels.astype(np.float32)
    index = {label: i for i, label in enumerate(clf.classes_.tolist())}
    unknown = sorted({str(label) for label in labels.tolist() if label not in index})
    if unknown:
        raise ValueError(f"labels the model does not know: {', '.join(unknown[:10])}")
    return np.eye(len(index), dtype=np.float32)[[index[label] for label in labels.tolist()]]


def curve_path(model: Path) -> Path:
    """Where the learning curve of a model file goes: beside it, model.curve.png."""
    return model.with_suffix(".curve.png")


def write_curve_png(curve: Sequence[Any], budget: float, output: Path) -> Path:
    """Validation NAUC over the seconds of the fit, one marker colour per predicting candidate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    seconds = [point[0] for point in curve]
    naucs = [point[1] for point in curve]
    axes.plot(seconds, naucs, color="0.6", linewidth=1)
    for source in dict.fromkeys(point[2] for point in curve):
        chosen = [point for point in curve if point[2] == source]
        axes.scatter([p[0] for p in chosen], [p[1] for p in chosen], label=source, zorder=3)
    axes.set(xlabel="seconds of fit", ylabel="validation NAUC", xlim=(0, budget), title="learning curve")
    axes.grid(alpha=0.3)
    if curve:
        axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


def write_confusion_png(truth: np.ndarray, predicted: np.ndarray, classes: np.ndarray, output: Path) -> Path:
    """The confusion matrix (rows: true class, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    side = min(20.0, 3.0 + 0.4 * len(classes))
    figure, axes = plt.subplots(figsize=(side, side))
    ConfusionMatrixDisplay.from_predictions(truth, predicted, labels=classes, ax=axes, colorbar=False,
                                            xticks_rotation="vertical")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output


# ---------------------------------------------------------------------------------------------------------
# Entry point


def build_parser() -> argparse.ArgumentParser:
    """The three commands and their options."""
    parser = argparse.ArgumentParser(prog="autoclint", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log every step (also on a terminal)")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit", help="train a classifier on DATA within a time budget")
    fit.add_argument("data", help="image folder or zip (class sub-folders), .npz, or AutoDL dataset folder")
    fit.add_argument("--time-budget", type=float, default=600.0, help="seconds for the whole fit (600)")
    fit.add_argument("--output", default="model.autoclint", help="model file to write (model.autoclint)")
    fit.add_argument("--preset", default="autoclint", help="configuration preset (autoclint)")
    fit.add_argument("--config", help='JSON object of configuration fields, e.g. \'{"seed": 1}\'')
    fit.set_defaults(run=fit_command)
    predict = commands.add_parser("predict", help="predict image files, folders or an .npz")
    predict.add_argument("model", help="model file written by fit")
    predict.add_argument("inputs", nargs="+", help="image files, folders (read recursively) or .npz files")
    predict.add_argument("--output", default="predictions.csv", help="CSV to write (predictions.csv)")
    predict.add_argument("--skip-bad", action="store_true", help="skip unreadable images and list them")
    predict.set_defaults(run=predict_command)
    evaluate = commands.add_parser("evaluate", help="accuracy, NAUC and a confusion matrix on labelled DATA")
    evaluate.add_argument("model", help="model file written by fit")
    evaluate.add_argument("data", help="labelled data, as for fit (its test part when it has one)")
    evaluate.add_argument("--confusion", help="confusion-matrix PNG (default: beside the model)")
    evaluate.set_defaults(run=evaluate_command)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; errors are one line on stderr and exit status 1."""
    args = build_parser().parse_args(argv)
    quiet = sys.stdout.isatty() and args.command == "fit" and not args.verbose
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from autoclint.archive import ModelFileError

    try:
        return args.run(args)
    except (ModelFileError, UnreadableImageError, ValueError, FileNotFoundError) as error:
        print(f"autoclint {args.command}: error: {error}", file=sys.stderr)
        return 1
