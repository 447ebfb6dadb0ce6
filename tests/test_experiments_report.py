"""scripts/report.py turns a hand-written JSONL of benchmark records into tables and PNGs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoclint.experiments.records import RunRecord, read_records

REPORT_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "report.py"


def record(dataset, method, seed, alc, nauc, status="ok", first=1.5):
    """A benchmark record with a two-step learning curve."""
    return RunRecord(dataset=dataset, method=method, seed=seed, time_budget=60.0, status=status, alc=alc,
                     final_nauc=nauc, time_to_first_prediction=first, n_predictions=2, duration=50.0,
                     curve=[[first, nauc / 2], [30.0, nauc]], config={"seed": seed},
                     error="exit status 1: ValueError: bad preset" if status == "failed" else None).to_dict()


@pytest.fixture()
def results_file(tmp_path: Path) -> Path:
    rows = [
        record("mnist10k", "autoclint", 0, 0.90, 0.99),
        record("mnist10k", "autoclint", 1, 0.80, 0.97, first=2.5),
        record("mnist10k", "zero", 0, 0.0, 0.0),
        record("cifar", "autoclint", 0, 0.70, 0.85),
        record("cifar", "zero", 0, 0.0, 0.0, status="failed"),
    ]
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_report_writes_mean_and_std_tables_and_figures(results_file: Path, tmp_path: Path):
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, str(REPORT_SCRIPT), str(results_file), "--output", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = (out / "results.md").read_text()
    assert "| dataset | autoclint | zero |" in text
    # mean ± sample std of 0.90 and 0.80; the failed run is counted apart, not averaged in
    assert "| mnist10k | 0.8500 ± 0.0707 (n=2) | 0.0000 ± 0.0000 |" in text
    assert "| cifar | 0.7000 ± 0.0000 | – (1 failed) |" in text
    assert "| mnist10k | 2.0 (n=2) | 1.5 |" in text
    assert "cifar / zero / seed 0 / 60 s: exit status 1: ValueError: bad preset" in text
    for name in ("alc_boxplot_T60.png", "final_nauc_boxplot_T60.png", "curves_mnist10k_T60.png",
                 "curves_cifar_T60.png"):
        png = out / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text


def test_report_rejects_a_malformed_file_naming_the_line(tmp_path: Path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(record("a", "zero", 0, 0.0, 0.0)) + "\nnot json\n")
    with pytest.raises(ValueError, match="line 2"):
        read_records(path)
    done = subprocess.run([sys.executable, str(REPORT_SCRIPT), str(path), "--output", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "line 2" in done.stderr
