"""The platform entry point driven the way AutoDL ingestion does, with plain iterables and tf.data."""

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from autoclint.config import CONFIG_ENV
from autoclint.metrics import nauc
from tests.test_trainer import Metadata, easy_task

REPO = Path(__file__).resolve().parents[1]
# one thread: tiny inputs gain nothing from more, and spinning OpenMP threads crawl on a busy CPU
FAST_CONFIG = json.dumps({"pretrained": False, "first_slice_s": 0.3, "safety_margin_s": 0.5, "num_threads": 1})


def run_ingestion_loop(model, train, test, budget):
    """The ingestion protocol: train/test until done_training or a None prediction; returns predictions."""
    start = time.monotonic()
    predictions = []
    while not model.done_training:
        model.train(train, remaining_time_budget=budget - (time.monotonic() - start))
        prediction = model.test(test, remaining_time_budget=budget - (time.monotonic() - start))
        if prediction is None:
            break
        predictions.append((time.monotonic() - start, prediction))
        assert time.monotonic() - start < budget, "ran past the budget"
    return predictions


def _check_run(predictions, solution, budget):
    assert predictions, "no prediction made"
    assert all(prediction.shape == solution.shape for _, prediction in predictions)
    assert predictions[-1][0] < budget
    assert nauc(solution, predictions[-1][1]) > 0.5


@pytest.fixture
def model_class(monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, FAST_CONFIG)
    from model import Model

    return Model


def test_model_on_plain_iterables(model_class):
    train, _ = easy_task(90)
    test, solution = easy_task(30, seed=1)
    model = model_class(Metadata(90, 3))
    budget = 8.0
    predictions = run_ingestion_loop(model, train, [(x, y * 0) for x, y in test], budget)
    model.close()
    _check_run(predictions, solution, budget)
    assert predictions[0][0] < 5.0  # the first prediction comes early


def test_model_on_eager_tf_datasets(model_class):
    tf = pytest.importorskip("tensorflow")
    train, _ = easy_task(90)
    test, solution = easy_task(30, seed=1)

    def to_tf(pairs):
        return tf.data.Dataset.from_tensor_slices((np.stack([x for x, _ in pairs]), np.stack([y for _, y in pairs])))

    model = model_class(Metadata(90, 3))
    budget = 6.0
    predictions = run_ingestion_loop(model, to_tf(train), to_tf([(x, y * 0) for x, y in test]), budget)
    model.close()
    _check_run(predictions, solution, budget)


def _run_python(script):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "AUTOCLINT_CONFIG": FAST_CONFIG, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


TINY_RUN = """
from tests.test_trainer import Metadata, easy_task
train, _ = easy_task(20)
m = Model(Metadata(20, 3))
m.train(train, remaining_time_budget=5.0)
assert m.test(train).shape == (20, 3)
m.close()
"""


def test_model_imports_after_tensorflow():
    pytest.importorskip("tensorflow")
    _run_python("import tensorflow\nfrom model import Model\n" + TINY_RUN + "print('ok')")


def test_model_runs_without_tensorflow():
    _run_python(
        "import sys\nsys.modules['tensorflow'] = None  # any import of it now fails\n"
        "from model import Model\n" + TINY_RUN + "assert sys.modules['tensorflow'] is None\nprint('ok')"
    )


def test_model_on_the_organizers_miniciao_sample(autodl_samples, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV, FAST_CONFIG)
    from autoclint.autodl import open_dataset
    from model import Model

    root = autodl_samples / "miniciao"
    train = open_dataset(root / "miniciao.data" / "train", backend="python")
    test = open_dataset(root / "miniciao.data" / "test", backend="python")
    solution = np.loadtxt(root / "miniciao.solution")
    model = Model(train.get_metadata())
    predictions = run_ingestion_loop(model, train.get_dataset(), test.get_dataset(), budget=4.0)
    model.close()
    assert predictions and predictions[-1][1].shape == solution.shape
