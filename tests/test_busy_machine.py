"""Short budgets are used, also when another process keeps a core busy (slow: two 20-40 s starter-kit runs).

On a shared machine a team of spinning OpenMP threads crawls when one of its cores is taken; the
model must notice (thread tuner), plan from what it measures, and still use its budget."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoclint.autodl.writer import write_dataset
from autoclint.harness.cli import run_local_test
from autoclint.harness.scoring import read_end_file, read_start_file
from autoclint.metrics import nauc

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mnist3k(shared_datasets, tmp_path_factory):
    """A 3,000-image MNIST training subset (1,000 test images) in AutoDL format."""
    with np.load(shared_datasets / "mnist10k.npz") as arrays:
        x_train, y_train = arrays["x_train"][:3000], arrays["y_train"][:3000]
        x_test, y_test = arrays["x_test"][:1000], arrays["y_test"][:1000]
    root = tmp_path_factory.mktemp("mnist3k")
    return write_dataset(root, "mnist3k", x_train, y_train, x_test, y_test, image_format="png", num_classes=10)


@pytest.fixture
def busy_core():
    """Another process spinning on one core for the whole test."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield spinner
    finally:
        spinner.kill()
        spinner.wait()


def run_kit(dataset: Path, tmp_path: Path, budget: float):
    output = tmp_path / "out"
    result = run_local_test(dataset, REPO, budget, output, tmp_path / "scores")
    start, end = read_start_file(output), read_end_file(output)
    elapsed = sorted(t - start.start_time for t in start.prediction_times.values())
    last = max(start.prediction_times)
    solution = np.loadtxt(dataset / "mnist3k.solution")
    final = nauc(solution, np.loadtxt(output / f"mnist3k.predict_{last}"))
    return result, end, elapsed, final


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second core for the busy process")
def test_a_40_second_budget_is_used_with_one_core_busy(mnist3k, tmp_path, busy_core):
    result, end, elapsed, final = run_kit(mnist3k, tmp_path, 40.0)
    assert result.ingestion.success and not result.ingestion.killed_at_budget, end
    assert float(end["ingestion_duration"]) < 40.0
    assert len(elapsed) >= 3, elapsed
    assert elapsed[-1] > 0.6 * 40.0, elapsed
    assert final >= 0.9


@pytest.mark.slow
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs a second core for the busy process")
def test_a_20_second_budget_gives_several_predictions_with_one_core_busy(mnist3k, tmp_path, busy_core):
    result, end, elapsed, _ = run_kit(mnist3k, tmp_path, 20.0)
    assert result.ingestion.success and not result.ingestion.killed_at_budget, end
    assert float(end["ingestion_duration"]) < 20.0
    assert len(elapsed) >= 2, elapsed
