"""Ingestion runs a code directory's model in a child process, as the platform does, surviving bad models."""

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from autoclint.harness.ingestion import IngestionConfig, run_ingestion
from autoclint.harness.scoring import RunScorer, read_end_file, read_start_file

NUM_CLASSES = 3
NUM_TEST = 6

# A model whose behaviour is set by the module-level constants the tests prepend.
MODEL_TEMPLATE = textwrap.dedent(
    """
    import time
    import numpy as np


    class Model:
        def __init__(self, metadata):
            time.sleep(INIT_SLEEP)
            self.output_dim = metadata.get_output_size()
            self.done_training = False
            self.calls = 0

        def train(self, dataset, remaining_time_budget=None):
            if self.calls == RAISE_AT_CALL:
                raise RuntimeError("boom in train")
            time.sleep(TRAIN_SLEEP)

        def test(self, dataset, remaining_time_budget=None):
            num_test = sum(1 for _ in (dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator")
                                       else dataset))
            self.calls += 1
            self.done_training = self.calls >= STOP_AFTER
            return np.random.default_rng(self.calls).random((num_test, self.output_dim + EXTRA_COLUMNS))
    """
)


def write_model(tmp_path: Path, *, init_sleep=0.0, train_sleep=0.0, raise_at_call=-1, stop_after=3,
                extra_columns=0) -> Path:
    """Write a code directory holding a configurable test model."""
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    constants = (f"INIT_SLEEP = {init_sleep}\nTRAIN_SLEEP = {train_sleep}\nRAISE_AT_CALL = {raise_at_call}\n"
                 f"STOP_AFTER = {stop_after}\nEXTRA_COLUMNS = {extra_columns}\n")
    (code_dir / "model.py").write_text(constants + MODEL_TEMPLATE)
    return code_dir


@pytest.fixture(scope="module")
def toy_dataset(tmp_path_factory) -> Path:
    """A tiny 4x4 grayscale AutoDL dataset with three classes, written by the format layer."""
    from autoclint.autodl.writer import write_dataset

    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, size=(12, 4, 4, 1), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(NUM_TEST, 4, 4, 1), dtype=np.uint8)
    y_train, y_test = np.arange(12) % NUM_CLASSES, np.arange(NUM_TEST) % NUM_CLASSES
    return write_dataset(tmp_path_factory.mktemp("data"), "toy", x_train, y_train, x_test, y_test)


def config_for(toy_dataset: Path, code_dir: Path, tmp_path: Path, **overrides) -> IngestionConfig:
    return IngestionConfig(dataset_dir=toy_dataset, code_dir=code_dir, output_dir=tmp_path / "out",
                           **{"time_budget": 60.0, **overrides})


def test_normal_run_writes_every_prediction(toy_dataset, tmp_path):
    config = config_for(toy_dataset, write_model(tmp_path, stop_after=3), tmp_path)
    result = run_ingestion(config)
    assert result.success and not result.killed_at_budget
    start = read_start_file(config.output_dir)
    assert start.task_name == "toy" and start.time_budget == 60.0
    assert sorted(start.prediction_times) == [0, 1, 2]
    for k in range(3):
        assert np.loadtxt(config.output_dir / f"toy.predict_{k}").shape == (NUM_TEST, NUM_CLASSES)
    assert read_end_file(config.output_dir)["ingestion_success"] == "1"


def test_model_raising_after_two_predictions_keeps_them(toy_dataset, tmp_path):
    config = config_for(toy_dataset, write_model(tmp_path, raise_at_call=2), tmp_path)
    result = run_ingestion(config)
    assert not result.success
    assert read_end_file(config.output_dir)["ingestion_success"] == "0"
    solution = toy_dataset / "toy.solution"
    scores = RunScorer(solution, config.output_dir).result()
    assert [p.k for p in scores.predictions] == [0, 1]
    assert not (config.output_dir / "toy.predict_2").exists()


def test_model_sleeping_past_budget_is_killed(toy_dataset, tmp_path):
    config = config_for(toy_dataset, write_model(tmp_path, train_sleep=120.0), tmp_path, time_budget=2.0)
    began = time.time()
    result = run_ingestion(config)
    start = read_start_file(config.output_dir)
    assert result.killed_at_budget
    assert time.time() - start.start_time < config.time_budget + 6.0
    assert time.time() - began < 60.0
    end = read_end_file(config.output_dir)
    assert end["killed_at_time_budget"] == "1" and "ingestion_duration" in end


def test_wrong_shape_is_reported_by_name(toy_dataset, tmp_path, capfd):
    code_dir = write_model(tmp_path, extra_columns=2)
    config = config_for(toy_dataset, code_dir, tmp_path)
    result = run_ingestion(config)
    assert not result.success
    errors = capfd.readouterr().err
    assert str(code_dir / "model.py") in errors
    assert f"({NUM_TEST}, {NUM_CLASSES + 2})" in errors and f"expected ({NUM_TEST}, {NUM_CLASSES})" in errors
    assert not list(config.output_dir.glob("toy.predict_*"))


def test_slow_constructor_hits_startup_limit_outside_budget(toy_dataset, tmp_path):
    config = config_for(toy_dataset, write_model(tmp_path, init_sleep=30.0), tmp_path, startup_limit=1.0)
    result = run_ingestion(config)
    assert not result.success
    assert read_start_file(config.output_dir) is None  # the budget never started
    assert read_end_file(config.output_dir)["ingestion_success"] == "0"
