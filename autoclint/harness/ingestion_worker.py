"""The ingestion child process: runs a code directory's `model.py` on a dataset as the AutoDL platform does.

Run as `python -m autoclint.harness.ingestion_worker ...` by `autoclint.harness.ingestion`, which
kills it at the time budget; everything it writes (predictions, start.txt) is written so that a kill
at any moment leaves only complete files behind.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import logging
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from autoclint.harness.scoring import END_FILE, START_FILE, prediction_path

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl option: the signal this process gets when its parent dies
PARENT_PID_VARIABLE = "AUTOCLINT_INGESTION_PARENT"  # set by the starter kit's parent process

# end.txt key holding, in one line, why ingestion failed or why it wrote no prediction.
ERROR_KEY = "ingestion_error"
NO_PREDICTION = "the model produced no valid prediction"


@dataclass
class WorkerConfig:
    """Arguments of one ingestion run inside the child process."""

    dataset_dir: Path
    code_dir: Path
    output_dir: Path
    time_budget: float
    startup_limit: float = 1200.0
    count_startup: bool = False


class StartupTimeout(Exception):
    """Raised when the model's constructor runs past its own time limit."""


class UnusableDataset(ValueError):
    """The dataset cannot be learned or scored (no training or no test example): checked before the model."""


def check_dataset_usable(train_size: int, test_size: int, train_dir: Path, test_dir: Path) -> None:
    """Refuse an empty training set or a test set without examples before any model time is spent."""
    if train_size <= 0:
        raise UnusableDataset(f"the training set is empty: 0 records in {train_dir}")
    if test_size <= 0:
        raise UnusableDataset(f"the test set is empty: 0 records in {test_dir}")


def one_line_reason(error: BaseException) -> str:
    """The first line of an exception's message (its type when it has none), for end.txt and the CLI."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def import_tensorflow_first() -> None:
    """Import TensorFlow before anything else when it is installed, as the platform's ingestion does."""
    try:
        from autoclint.autodl import tf_import

        tf_import()
    except ImportError as error:
        logger.info("TensorFlow not used: %s", error)


def die_with_parent() -> None:
    """Ask Linux to kill this process when the starter kit's process dies, and exit at once when it is
    already gone: an orphan must never go on writing predictions into an output folder."""
    expected = os.environ.get(PARENT_PID_VARIABLE)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError) as error:
            logger.warning("cannot ask to die with the parent process: %s", error)
    if expected is not None and str(os.getppid()) != expected:
        logger.error("the starter kit's process (pid %s) is gone: stopping", expected)
        sys.exit(1)


def load_model_class(code_dir: Path):
    """Import `Model` from `<code_dir>/model.py`, with `code_dir` first on the import path.

    When `code_dir` holds its own `autoclint` package (the submission as shipped), the model gets that
    package, not the one running the starter kit; the package used is logged either way.
    """
    code_dir = Path(code_dir).resolve()
    model_file = code_dir / "model.py"
    if not model_file.is_file():
        raise FileNotFoundError(f"no model.py in the code directory {code_dir}")
    if (code_dir / "autoclint" / "__init__.py").is_file():
        _forget_package("autoclint")
    sys.path.insert(0, str(code_dir))
    module = importlib.import_module("model")
    if not hasattr(module, "Model"):
        raise AttributeError(f"{model_file} defines no class Model")
    package = sys.modules.get("autoclint")
    if package is not None:
        logger.info("%s uses the autoclint package at %s", model_file, Path(package.__file__).parent)
    return module.Model


def _forget_package(name: str) -> None:
    """Drop an imported package and its modules, so that the next import finds it on the path afresh."""
    for module_name in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[module_name]


def _on_startup_alarm(signum, frame) -> None:
    """SIGALRM handler that interrupts a model constructor running past its limit."""
    raise StartupTimeout("Model(metadata) ran past its start-up time limit")


def construct_model(model_class, metadata, time_limit: float):
    """Build `Model(metadata)`, interrupting it after `time_limit` seconds."""
    previous = signal.signal(signal.SIGALRM, _on_startup_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(time_limit, 0.001))
    try:
        return model_class(metadata)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename, so readers never see a partial file."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def format_prediction(prediction: np.ndarray) -> str:
    """One row per example, space-separated values, as the platform writes predictions."""
    return "\n".join(" ".join(f"{value:.9g}" for value in row) for row in prediction) + "\n"


def check_prediction(
    prediction, expected_shape: tuple[int, int], model_file: Path, target: Path
) -> np.ndarray:
    """Check a `test()` result: shape (num_test, output_dim) and finite values; errors name the files."""
    try:
        array = np.asarray(prediction, dtype=np.float64)
    except (TypeError, ValueError) as error:
        message = f"{model_file}: test() returned something that is not a numeric array ({error})"
        raise ValueError(message) from None
    if array.shape != expected_shape:
        raise ValueError(
            f"{model_file}: test() returned shape {array.shape} for {target.name}, "
            f"expected {expected_shape} (num_test, output_dim)"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"{model_file}: test() returned NaN or infinite values for {target.name}")
    return array


def write_start_header(output_dir: Path, task_name: str, time_budget: float, start_time: float) -> Path:
    """Write the first lines of `start.txt`; prediction times are appended to it later."""
    path = Path(output_dir) / START_FILE
    write_atomically(
        path,
        f"ingestion_pid: {os.getpid()}\ntask_name: {task_name}\n"
        f"time_budget: {time_budget}\nstart_time: {start_time}\n",
    )
    return path


def append_prediction_time(start_file: Path, k: int, timestamp: float) -> None:
    """Record prediction `k`'s absolute time as one complete line of `start.txt`."""
    with open(start_file, "a") as handle:
        handle.write(f"{k}: {timestamp}\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_end_file(output_dir: Path, duration: float, success: bool, end_time: float, **extra) -> None:
    """Write `end.txt` (ingestion_duration, ingestion_success, end_time, then any extra keys)."""
    lines = [f"ingestion_duration: {duration}", f"ingestion_success: {int(success)}", f"end_time: {end_time}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    write_atomically(Path(output_dir) / END_FILE, "\n".join(lines) + "\n")


def run(config: WorkerConfig) -> bool:
    """Run the platform's train/test loop; returns True when ingestion wrote at least one prediction.

    On failure `end.txt` says why in one line (ERROR_KEY): an unusable dataset, the model's error, or
    no valid prediction at all.
    """
    launch_time = time.time()
    start_time = launch_time
    success = False
    reason = ""
    try:
        import_tensorflow_first()
        from autoclint.autodl import open_dataset
        from autoclint.autodl.layout import find_dataset

        task_name, train_dir, test_dir, _ = find_dataset(config.dataset_dir)
        train, test = open_dataset(train_dir), open_dataset(test_dir)
        train_metadata = train.get_metadata()
        check_dataset_usable(train_metadata.size(), test.get_metadata().size(), train_dir, test_dir)
        expected_shape = (test.get_metadata().size(), train_metadata.get_output_size())
        model_file = Path(config.code_dir) / "model.py"
        model_class = load_model_class(config.code_dir)
        output_dir = Path(config.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)

        if config.count_startup:
            start_file = write_start_header(output_dir, task_name, config.time_budget, start_time)
        constructing = time.time()
        model = construct_model(model_class, train_metadata, config.startup_limit)
        logger.info("Model constructed in %.2f s", time.time() - constructing)
        if not config.count_startup:
            start_time = time.time()
            start_file = write_start_header(output_dir, task_name, config.time_budget, start_time)

        def remaining() -> float:
            return start_time + config.time_budget - time.time()

        k = 0
        while not model.done_training:
            model.train(train.get_dataset(), remaining_time_budget=remaining())
            prediction = model.test(test.get_dataset(), remaining_time_budget=remaining())
            if prediction is None:
                logger.info("test() returned None: stopping")
                break
            timestamp = time.time()
            if timestamp - start_time > config.time_budget:
                logger.warning("prediction %d came after the time budget; it is discarded", k)
                break
            target = prediction_path(output_dir, task_name, k)
            array = check_prediction(prediction, expected_shape, model_file, target)
            write_atomically(target, format_prediction(array))
            append_prediction_time(start_file, k, timestamp)
            logger.info("prediction %d written at %.2f s", k, timestamp - start_time)
            k += 1
        success = k > 0
        if not success:
            reason = NO_PREDICTION
    except Exception as error:  # the run must end with end.txt whatever the model does
        logger.error("ingestion failed:\n%s", traceback.format_exc())
        reason = one_line_reason(error)
    finally:
        end_time = time.time()
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        extra = {ERROR_KEY: reason.replace("\n", " ")} if reason else {}
        write_end_file(config.output_dir, end_time - start_time, success, end_time, **extra)
    return success


def parse_args(argv: list[str] | None = None) -> WorkerConfig:
    """Parse the child's command line into a WorkerConfig."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset_dir", type=Path, required=True)
    parser.add_argument("--code_dir", type=Path, required=True)
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--time_budget", type=float, required=True)
    parser.add_argument("--startup_limit", type=float, default=1200.0)
    parser.add_argument("--count_startup", action="store_true")
    args = parser.parse_args(argv)
    return WorkerConfig(**vars(args))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process; exit status 0 on success, 1 on failure."""
    logging.basicConfig(level=logging.INFO, format="[ingestion %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    die_with_parent()
    return 0 if run(parse_args(argv)) else 1


if __name__ == "__main__":
    sys.exit(main())
