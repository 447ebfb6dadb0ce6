"""Scoring: reads the solution, `start.txt` and the prediction files of an ingestion run and scores them.

Each prediction gets its NAUC and accuracy; the run gets its ALC (area under the learning curve),
exactly as the AutoDL platform computes them, with `autoclint.metrics`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoclint import metrics

logger = logging.getLogger(__name__)

START_FILE = "start.txt"
END_FILE = "end.txt"
SCORES_FILE = "scores.txt"
_PREDICTION_LINE = re.compile(r"^(\d+)\s*:\s*(\S+)$")


@dataclass(frozen=True)
class StartInfo:
    """What `start.txt` says: the task, its budget, the absolute start time and each prediction's time."""

    task_name: str
    time_budget: float
    start_time: float
    prediction_times: dict[int, float] = field(default_factory=dict)
    ingestion_pid: int | None = None


@dataclass(frozen=True)
class PredictionScore:
    """The score of one prediction file: its order number, seconds since start, NAUC and accuracy."""

    k: int
    elapsed: float
    nauc: float
    accuracy: float


@dataclass(frozen=True)
class RunScores:
    """All predictions of a run, scored, with the run's ALC, last NAUC and duration."""

    task_name: str
    time_budget: float
    predictions: list[PredictionScore]
    alc: float
    final_nauc: float
    duration: float


def read_key_values(path: Path) -> dict[str, str]:
    """Parse a `key: value` file written by ingestion (complete lines only: safe while appended)."""
    text = Path(path).read_text()
    complete = text if text.endswith("\n") else text.rsplit("\n", 1)[0] if "\n" in text else ""
    values: dict[str, str] = {}
    for line in complete.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def read_start_file(output_dir: Path) -> StartInfo | None:
    """Read `start.txt` from an ingestion output folder; None while it does not exist or has no start time."""
    path = Path(output_dir) / START_FILE
    if not path.is_file():
        return None
    values = read_key_values(path)
    if "start_time" not in values:
        return None
    times = {}
    for key, value in values.items():
        match = _PREDICTION_LINE.match(f"{key}:{value}")
        if match:
            times[int(match.group(1))] = float(match.group(2))
    pid = values.get("ingestion_pid")
    return StartInfo(
        task_name=values.get("task_name", ""),
        time_budget=float(values["time_budget"]),
        start_time=float(values["start_time"]),
        prediction_times=times,
        ingestion_pid=int(pid) if pid else None,
    )


def read_end_file(output_dir: Path) -> dict[str, str] | None:
    """Read `end.txt` (ingestion_duration, ingestion_success, end_time), or None when it is absent."""
    path = Path(output_dir) / END_FILE
    return read_key_values(path) if path.is_file() else None


def load_solution(solution_path: Path) -> np.ndarray:
    """Load a `<name>.solution` file as a float matrix [num_test, output_dim]."""
    solution_path = Path(solution_path)
    if not solution_path.is_file():
        raise FileNotFoundError(f"solution file not found: {solution_path}")
    if not solution_path.read_text().strip():  # no test example: nothing to score (ingestion says why)
        return np.zeros((0, 0), dtype=np.float64)
    return np.loadtxt(solution_path, ndmin=2, dtype=np.float64)


def prediction_path(output_dir: Path, task_name: str, k: int) -> Path:
    """Where ingestion writes prediction number `k`: `<output_dir>/<task_name>.predict_<k>`."""
    return Path(output_dir) / f"{task_name}.predict_{k}"


def load_prediction(path: Path, expected_shape: tuple[int, int]) -> np.ndarray:
    """Load one prediction file and check it has the solution's shape (the error names the file)."""
    prediction = np.loadtxt(path, ndmin=2, dtype=np.float64)
    if prediction.shape != expected_shape:
        raise ValueError(f"{path}: prediction has shape {prediction.shape}, solution has {expected_shape}")
    return prediction


def score_prediction(solution: np.ndarray, path: Path, k: int, elapsed: float) -> PredictionScore:
    """Score one prediction file against the solution."""
    prediction = load_prediction(path, solution.shape)
    return PredictionScore(
        k=k,
        elapsed=elapsed,
        nauc=metrics.nauc(solution, prediction),
        accuracy=metrics.accuracy(solution, prediction),
    )


class RunScorer:
    """Scores an ingestion output folder incrementally: each prediction file is read and scored once.

    Call `update()` while ingestion runs (it returns the newly scored predictions) and `result()` at
    the end; both only use predictions recorded in `start.txt`, whose files are written first.
    """

    def __init__(self, solution_path: Path, output_dir: Path):
        self.solution = load_solution(solution_path)
        self.output_dir = Path(output_dir)
        self._scored: dict[int, PredictionScore] = {}
        self._start: StartInfo | None = None

    def update(self) -> list[PredictionScore]:
        """Score predictions that appeared since the last call, in order."""
        self._start = read_start_file(self.output_dir) or self._start
        if self._start is None:
            return []
        new = []
        for k, timestamp in sorted(self._start.prediction_times.items()):
            if k in self._scored:
                continue
            path = prediction_path(self.output_dir, self._start.task_name, k)
            if not path.is_file():
                logger.warning("%s listed in %s but missing", path, START_FILE)
                continue
            score = score_prediction(self.solution, path, k, timestamp - self._start.start_time)
            self._scored[k] = score
            new.append(score)
        return new

    def result(self, time_budget: float | None = None) -> RunScores:
        """The scores of every prediction so far, with ALC over `time_budget` (default: start.txt's)."""
        self.update()
        start = self._start
        budget = time_budget if time_budget is not None else (start.time_budget if start else None)
        if budget is None:
            raise ValueError(f"no time budget given and no {START_FILE} in {self.output_dir}")
        predictions = [self._scored[k] for k in sorted(self._scored)]
        curve = metrics.alc([p.elapsed for p in predictions], [p.nauc for p in predictions], budget)
        in_budget = [p for p in predictions if p.elapsed <= budget]
        return RunScores(
            task_name=start.task_name if start else "",
            time_budget=budget,
            predictions=predictions,
            alc=curve,
            final_nauc=in_budget[-1].nauc if in_budget else 0.0,
            duration=self._duration(),
        )

    def _duration(self) -> float:
        """Ingestion's duration from `end.txt`, else the time of the last prediction."""
        end = read_end_file(self.output_dir)
        if end and "ingestion_duration" in end:
            return float(end["ingestion_duration"])
        if self._scored:
            return max(p.elapsed for p in self._scored.values())
        return 0.0


def write_scores(score_dir: Path, scores: RunScores) -> Path:
    """Write `scores.txt` in the platform's `key: value` style (score = ALC, final NAUC, duration)."""
    score_dir = Path(score_dir)
    score_dir.mkdir(parents=True, exist_ok=True)
    path = score_dir / SCORES_FILE
    path.write_text(
        f"score: {scores.alc:.6f}\n"
        f"nauc: {scores.final_nauc:.6f}\n"
        f"Duration: {scores.duration:.2f}\n"
    )
    return path
