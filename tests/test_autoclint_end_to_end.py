"""autoclint's own model.py through the starter kit, as the platform runs it, on real AutoDL data (slow)."""

from pathlib import Path

import numpy as np
import pytest

from autoclint.harness.cli import run_local_test
from autoclint.harness.sample_data import ensure_digits_dataset
from autoclint.harness.scoring import read_end_file, read_start_file
from autoclint.metrics import nauc

REPO = Path(__file__).resolve().parents[1]
BUDGET = 40.0  # enough for the mechanism (predictions, done_training, scoring) and digits' ALC (0.93 at 15 s)


def run_autoclint(dataset: Path, tmp_path: Path):
    output, scores = tmp_path / "out", tmp_path / "scores"
    result = run_local_test(dataset, REPO, BUDGET, output, scores)
    return result, read_start_file(output), read_end_file(output), output


def check_run_within_budget(result, start, end):
    """Several predictions, every one inside the budget, ingestion ended by itself (done_training)."""
    assert result.ingestion.success, end
    assert not result.ingestion.killed_at_budget, "the harness had to stop the model at the budget"
    assert len(start.prediction_times) >= 2
    elapsed = [t - start.start_time for t in start.prediction_times.values()]
    assert max(elapsed) < BUDGET
    assert float(end["ingestion_duration"]) < BUDGET


@pytest.mark.slow
def test_autoclint_learns_digits_within_the_budget(tmp_path):
    dataset = ensure_digits_dataset()
    result, start, end, output = run_autoclint(dataset, tmp_path)
    check_run_within_budget(result, start, end)
    last = max(start.prediction_times)
    solution = np.loadtxt(dataset / "digits.solution")
    assert nauc(solution, np.loadtxt(output / f"digits.predict_{last}")) > 0.5
    assert result.scores.alc > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["miniciao", "Monkeys"])
def test_autoclint_on_the_organizers_samples(autodl_samples, tmp_path, name):
    result, start, end, output = run_autoclint(autodl_samples / name, tmp_path)
    check_run_within_budget(result, start, end)
    solution = np.loadtxt(autodl_samples / name / f"{name}.solution", ndmin=2)
    for index in start.prediction_times:
        prediction = np.loadtxt(output / f"{name}.predict_{index}", ndmin=2)
        assert prediction.shape == solution.shape and np.all((prediction >= 0.0) & (prediction <= 1.0))
    if name == "miniciao":  # 18 test images: enough for the score to mean something (Monkeys has 4)
        assert result.scores.alc > 0.0, "no better than the class priors"
