"""The grid runner: one process per run, records appended as runs finish, crashes recorded, resume skips."""

import json
from pathlib import Path

import numpy as np
import pytest

from autoclint.experiments.methods import parse_method
from autoclint.experiments.records import RunRecord, append_record, read_records
from autoclint.experiments.runner import RunSpec, make_spec, pending_specs, run_grid, runs_root_for

BUDGET = 10.0


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """A 3-class 6x6 grayscale AutoDL dataset written by the project's writer."""
    from autoclint.autodl.writer import write_dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(18, 6, 6, 1), dtype=np.uint8)
    y = np.arange(18) % 3
    return write_dataset(tmp_path_factory.mktemp("data"), "tiny", x, y, x[:9], y[:9], image_format="png")


@pytest.fixture()
def crashing_code_dir(tmp_path: Path) -> Path:
    code_dir = tmp_path / "crashing"
    code_dir.mkdir()
    (code_dir / "model.py").write_text(
        "class Model:\n    def __init__(self, metadata):\n        raise RuntimeError('model cannot start')\n")
    return code_dir


def test_a_crash_is_recorded_and_the_sweep_goes_on(tiny_dataset, crashing_code_dir, tmp_path):
    jsonl = tmp_path / "results.jsonl"
    runs_root = runs_root_for(jsonl)
    crashing = RunSpec(dataset="tiny", dataset_dir=tiny_dataset, method="crashing",
                       code_dir=crashing_code_dir, seed=0, time_budget=BUDGET,
                       run_dir=runs_root / "tiny" / "crashing", config={"seed": 0})
    zero = make_spec("tiny", tiny_dataset, parse_method("zero"), 0, BUDGET, runs_root)
    seen = []
    records = run_grid([crashing, zero], jsonl, on_record=seen.append)
    by_method = {r.method: r for r in records}
    assert [r.method for r in seen] == [r.method for r in records]
    assert by_method["crashing"].status == "failed"
    assert "RuntimeError: model cannot start" in by_method["crashing"].error
    assert by_method["crashing"].n_predictions == 0
    ok = by_method["zero"]
    assert ok.status == "ok" and ok.n_predictions == 1 and ok.alc == 0.0
    assert len(ok.curve) == 1 and ok.curve[0][1] == 0.0 and ok.time_to_first_prediction == ok.curve[0][0]
    assert ok.config == {"baseline": "zero", "seed": 0} and ok.machine["cpu_count"]
    assert (Path(ok.run_dir) / "scores" / "scores.txt").is_file()
    assert Path(ok.run_dir).is_relative_to(runs_root)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert sorted(line["method"] for line in lines) == ["crashing", "zero"]


def test_resume_skips_recorded_runs_and_can_retry_the_failed_ones(tmp_path):
    jsonl = tmp_path / "results.jsonl"
    specs = [make_spec("tiny", tmp_path, parse_method(name), seed, BUDGET, runs_root_for(jsonl))
             for name in ("zero", "linear") for seed in (0, 1)]
    append_record(jsonl, RunRecord("tiny", "zero", 0, BUDGET, "ok", alc=0.0))
    append_record(jsonl, RunRecord("tiny", "linear", 1, int(BUDGET), "failed", error="boom"))
    append_record(jsonl, RunRecord("tiny", "linear", 0, 2 * BUDGET, "ok"))  # another budget: not this run
    todo = pending_specs(specs, jsonl)
    assert [(s.method, s.seed) for s in todo] == [("zero", 1), ("linear", 0)]
    retried = pending_specs(specs, jsonl, retry_failed=True)
    assert [(s.method, s.seed) for s in retried] == [("zero", 1), ("linear", 0), ("linear", 1)]
    assert run_grid(specs[:1], jsonl) == []  # already recorded: nothing runs, nothing is appended
    assert len(read_records(jsonl)) == 3


def test_grid_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        run_grid([], tmp_path / "r.jsonl", backend="slurm")
    with pytest.raises(ValueError, match="workers"):
        run_grid([], tmp_path / "r.jsonl", workers=0)

