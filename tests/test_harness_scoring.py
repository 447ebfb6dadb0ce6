"""Scoring of a hand-written ingestion output: NAUC per prediction, ALC, scores.txt and the reports."""

import math
from pathlib import Path

import numpy as np
import pytest

from autoclint.harness.report import write_reports
from autoclint.harness.scoring import RunScorer, read_key_values, write_scores

BUDGET = 100.0
START = 1_000_000.0
SOLUTION = np.eye(3)[[0, 1, 2, 0, 1, 2]]
# Prediction 0 is uninformative (NAUC 0), prediction 1 perfect (NAUC 1), prediction 2 comes too late.
PREDICTIONS = [(10.0, np.full((6, 3), 0.3)), (40.0, SOLUTION * 0.9 + 0.05), (150.0, 1 - SOLUTION)]


def _write_run(tmp_path: Path, predictions=PREDICTIONS, complete_last_line=True) -> tuple[Path, Path]:
    """Write a solution, prediction files and start.txt the way ingestion does."""
    solution = tmp_path / "toy.solution"
    np.savetxt(solution, SOLUTION, fmt="%d")
    output = tmp_path / "out"
    output.mkdir()
    lines = ["ingestion_pid: 1", "task_name: toy", f"time_budget: {BUDGET}", f"start_time: {START}"]
    for k, (elapsed, prediction) in enumerate(predictions):
        np.savetxt(output / f"toy.predict_{k}", prediction)
        lines.append(f"{k}: {START + elapsed}")
    text = "\n".join(lines) + ("\n" if complete_last_line else "")
    (output / "start.txt").write_text(text)
    return solution, output


def _transformed(t: float) -> float:
    return math.log(1 + t / 60) / math.log(1 + BUDGET / 60)


def test_alc_of_hand_written_learning_curve(tmp_path):
    solution, output = _write_run(tmp_path)
    scores = RunScorer(solution, output).result()
    assert [p.k for p in scores.predictions] == [0, 1, 2]
    assert [p.nauc for p in scores.predictions] == pytest.approx([0.0, 1.0, -1.0])
    assert scores.predictions[1].accuracy == 1.0
    assert scores.alc == pytest.approx(1.0 - _transformed(40.0))  # NAUC 0 until t=40, then 1; t=150 ignored
    assert scores.final_nauc == pytest.approx(1.0)

    scores_file = write_scores(tmp_path / "scores", scores)
    values = read_key_values(scores_file)
    assert float(values["score"]) == pytest.approx(scores.alc, abs=1e-6)
    assert float(values["nauc"]) == pytest.approx(1.0)


def test_incremental_updates_score_each_prediction_once(tmp_path):
    solution, output = _write_run(tmp_path, PREDICTIONS[:1])
    scorer = RunScorer(solution, output)
    assert [p.k for p in scorer.update()] == [0]
    assert scorer.update() == []
    np.savetxt(output / "toy.predict_1", PREDICTIONS[1][1])
    with open(output / "start.txt", "a") as handle:
        handle.write(f"1: {START + 40.0}\n")
    assert [p.k for p in scorer.update()] == [1]


def test_partial_start_line_is_not_read_yet(tmp_path):
    solution, output = _write_run(tmp_path, PREDICTIONS[:2], complete_last_line=False)
    assert [p.k for p in RunScorer(solution, output).update()] == [0]


def test_wrong_shape_prediction_file_is_named(tmp_path):
    solution, output = _write_run(tmp_path, [(5.0, np.zeros((6, 2)))])
    with pytest.raises(ValueError, match=r"toy\.predict_0.*\(6, 2\).*\(6, 3\)"):
        RunScorer(solution, output).update()


def test_reports_are_written(tmp_path):
    solution, output = _write_run(tmp_path)
    scores = RunScorer(solution, output).result()
    png, page = write_reports(scores, tmp_path / "scores")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "data:image/png;base64," in text
    assert text.count("<tr><td>") == 3 and "after budget" in text
