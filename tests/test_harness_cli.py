"""The starter kit end to end: CLI options, the digits sample dataset, baselines on real AutoDL data."""

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from autoclint.harness.cli import main, normalise_arguments, run_local_test
from autoclint.harness.report import CURVE_FILE, DETAILED_FILE
from autoclint.harness.sample_data import digits_arrays
from autoclint.harness.scoring import read_end_file, read_key_values, read_start_file

BASELINES = Path(__file__).resolve().parents[1] / "autoclint" / "harness" / "baselines"


def test_platform_single_dash_options_are_accepted():
    argv = ["-dataset_dir=/d", "-time_budget=30", "--code_dir", "/c", "-h", "-1"]
    expected = ["--dataset_dir=/d", "--time_budget=30", "--code_dir", "/c", "-h", "-1"]
    assert normalise_arguments(argv) == expected


def test_digits_split_is_stratified_and_fixed():
    x_train, y_train, x_test, y_test, names = digits_arrays()
    assert x_train.shape[1:] == (8, 8, 1) and x_train.dtype == np.uint8 and x_train.max() == 255
    assert len(x_test) == pytest.approx(0.2 * (len(x_train) + len(x_test)), abs=1)
    train_share = np.bincount(y_train) / len(y_train)
    test_share = np.bincount(y_test) / len(y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)
    np.testing.assert_array_equal(digits_arrays()[3], y_test)
    assert names == [str(d) for d in range(10)]


def test_linear_baseline_on_miniciao_runs_to_completion(autodl_samples, tmp_path):
    dataset = autodl_samples / "miniciao"
    output, score_dir = tmp_path / "out", tmp_path / "scores"
    result = run_local_test(dataset, BASELINES / "linear", 120.0, output, score_dir)

    assert result.ingestion.success and not result.ingestion.killed_at_budget
    start = read_start_file(output)
    assert start.task_name == "miniciao" and len(start.prediction_times) >= 2
    assert read_end_file(output)["ingestion_success"] == "1"
    for name in (CURVE_FILE, DETAILED_FILE, "scores.txt"):
        assert (score_dir / name).is_file(), name
    scores = read_key_values(score_dir / "scores.txt")
    assert 0.0 <= float(scores["score"]) <= 1.0

    last = max(start.prediction_times)
    prediction = np.loadtxt(output / f"miniciao.predict_{last}")
    solution = np.loadtxt(dataset / "miniciao.solution")
    valid = [k for k in range(solution.shape[1]) if 0 < solution[:, k].sum() < len(solution)]
    expected = np.mean([2 * roc_auc_score(solution[:, k], prediction[:, k]) - 1 for k in valid])
    assert float(scores["nauc"]) == pytest.approx(expected, abs=1e-6)


def test_cli_zero_baseline_scores_zero_and_exits_cleanly(autodl_samples, tmp_path):
    code = main([f"-dataset_dir={autodl_samples / 'Monkeys'}", "-baseline=zero", "-time_budget=60",
                 f"--output_dir={tmp_path / 'out'}", f"--score_dir={tmp_path / 'scores'}"])
    assert code == 0
    scores = read_key_values(tmp_path / "scores" / "scores.txt")
    assert float(scores["score"]) == 0.0 and float(scores["nauc"]) == 0.0
    assert (tmp_path / "out" / "Monkeys.predict_0").is_file()


def test_cli_exits_non_zero_when_ingestion_fails(autodl_samples, tmp_path):
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "model.py").write_text(
        "class Model:\n    def __init__(self, metadata):\n        raise ValueError\n")
    code = main(["--dataset_dir", str(autodl_samples / "miniciao"), "--code_dir", str(code_dir),
                 "--time_budget", "30", "--output_dir", str(tmp_path / "out"),
                 "--score_dir", str(tmp_path / "s")])
    assert code == 1
    assert (tmp_path / "s" / "scores.txt").is_file()


def test_digits_dataset_is_written_once_into_the_cache(tmp_path, monkeypatch):
    from autoclint.autodl import open_dataset
    from autoclint.harness.sample_data import CACHE_ENV_VAR, default_cache_dir, ensure_digits_dataset

    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    dataset = ensure_digits_dataset()
    assert dataset == tmp_path / "cache" / "digits"
    solution = dataset / "digits.solution"
    assert np.loadtxt(solution).shape == (360, 10)
    train = open_dataset(dataset / "digits.data" / "train", backend="python")
    assert train.get_metadata().size() == 1437 and train.get_metadata().get_output_size() == 10
    example, label = next(iter(train.get_dataset()))
    assert example.shape == (1, 8, 8, 1) and label.sum() == 1
    written = solution.stat().st_mtime_ns
    assert ensure_digits_dataset() == dataset and solution.stat().st_mtime_ns == written
