"""Benchmark records: one JSON object per finished run, appended to a JSONL file, and the keys used to resume.

A record holds the run's identity (dataset, method, seed, time budget), its scores (ALC, final NAUC,
time to the first prediction, the learning curve as [[t, nauc], ...]), how it ended (ok, failed,
killed), its configuration, the machine and the code's git commit.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "killed")
RunKey = tuple[str, str, int, float]


@dataclass
class RunRecord:
    """The outcome of one (dataset, method, seed, time budget) run."""

    dataset: str
    method: str
    seed: int
    time_budget: float
    status: str
    alc: float | None = None
    final_nauc: float | None = None
    time_to_first_prediction: float | None = None
    n_predictions: int = 0
    duration: float | None = None
    wall_time: float | None = None
    curve: list[list[float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    run_dir: str | None = None
    count_startup: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    git_commit: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"RunRecord.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def key(self) -> RunKey:
        """What identifies the run for resuming a sweep."""
        return run_key(self.dataset, self.method, self.seed, self.time_budget)

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "RunRecord":
        """Build a record from a parsed JSON object, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def run_key(dataset: str, method: str, seed: int, time_budget: float) -> RunKey:
    """The resume key of a run (the budget as a float, so 20 and 20.0 are the same run)."""
    return (str(dataset), str(method), int(seed), float(time_budget))


def read_records(path: Path) -> list[RunRecord]:
    """All records of a JSONL file (none when it does not exist); a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(RunRecord.from_dict(json.loads(line)))
        except (json.JSONDecodeError, TypeError, ValueError) as error:
            raise ValueError(f"{path}, line {number}: not a benchmark record ({error})") from error
    return records


def append_record(path: Path, record: RunRecord) -> None:
    """Append one record as a single line and flush it, so a sweep stopped later keeps every finished run."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as stream:
        stream.write(json.dumps(record.to_dict(), sort_keys=True) + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def done_keys(records: Iterable[RunRecord], include_failed: bool = True) -> set[RunKey]:
    """Keys of runs already recorded (optionally leaving failed ones out, so that they run again)."""
    return {r.key for r in records if include_failed or r.status != "failed"}


def machine_info() -> dict[str, Any]:
    """Where the run happened: host, OS, Python, CPU count and the GPUs nvidia-smi reports (if any)."""
    info: dict[str, Any] = {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "gpus": [],
    }
    if shutil.which("nvidia-smi"):
        try:
            output = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=10, check=True).stdout
            info["gpus"] = [line.strip() for line in output.splitlines() if line.strip()]
        except (subprocess.SubprocessError, OSError) as error:
            logger.info("nvidia-smi failed: %s", error)
    return info


def git_commit(repo: Path) -> str | None:
    """The checked-out commit of `repo`, with `+dirty` when tracked files have changed; None outside git."""
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (subprocess.SubprocessError, OSError):
        return None
    return commit + ("+dirty" if dirty else "")
