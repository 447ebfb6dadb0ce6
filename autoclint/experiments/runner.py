"""The grid runner: each (dataset, method, seed) run goes through the starter kit in its own process.

A run is `scripts/run_local_test.py` in a subprocess (its own process group, so that a watchdog can
stop it and everything it started); its predictions are then scored with the harness's scorer and
summarised as a RunRecord, appended to the JSONL as soon as it finishes. Runs already in the JSONL
are skipped, so an interrupted sweep resumes where it stopped.

Backends: a local pool of `workers` concurrent runs (default 1: on a 2-core machine concurrent runs
compete for the CPU and distort each other's timings), or Ray (ray_backend.py: one task per run, with a
GPU or a whole node's CPUs of its own; records are appended here, by the driver, all the same).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from autoclint.experiments.methods import REPO_ROOT, Method
from autoclint.experiments.records import (
    RunRecord,
    append_record,
    done_keys,
    git_commit,
    machine_info,
    read_records,
    run_key,
)

if TYPE_CHECKING:
    from autoclint.experiments.ray_backend import RaySettings

logger = logging.getLogger(__name__)

RUN_LOCAL_TEST = REPO_ROOT / "scripts" / "run_local_test.py"
CONFIG_ENV = "AUTOCLINT_CONFIG"
BACKENDS = ("local", "ray")
SETUP_ALLOWANCE_S = 180.0  # importing TensorFlow and torch and opening the data, before the budget starts
LOG_TAIL_CHARS = 600
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout|Interrupt|Exit)\b.*")


@dataclass
class RunSpec:
    """One run: the dataset folder, the code directory and its configuration, where the outputs go."""

    dataset: str
    dataset_dir: Path
    method: str
    code_dir: Path
    seed: int
    time_budget: float
    run_dir: Path
    config: dict[str, Any] = field(default_factory=dict)
    config_env: str | None = None
    count_startup: bool = False
    startup_limit: float = 1200.0

    @property
    def key(self) -> tuple[str, str, int, float]:
        """The resume key shared with RunRecord."""
        return run_key(self.dataset, self.method, self.seed, self.time_budget)

    @property
    def watchdog_s(self) -> float:
        """Wall-clock limit of the whole run, past which it is killed and recorded as such."""
        return self.startup_limit + self.time_budget + SETUP_ALLOWANCE_S


def make_spec(dataset: str, dataset_dir: Path, method: Method, seed: int, time_budget: float, runs_root: Path,
              *, count_startup: bool = False, startup_limit: float = 1200.0) -> RunSpec:
    """The RunSpec of `method` on a dataset, its folder `runs_root/<dataset>/<method>/seed<s>_T<budget>`."""
    run_dir = (Path(runs_root) / dataset / method.name / f"seed{seed}_T{time_budget:g}").resolve()
    return RunSpec(dataset=dataset, dataset_dir=Path(dataset_dir), method=method.name,
                   code_dir=method.code_dir, seed=seed, time_budget=float(time_budget), run_dir=run_dir,
                   config=method.config(seed), config_env=method.config_env(seed),
                   count_startup=count_startup, startup_limit=startup_limit)


def runs_root_for(jsonl_path: Path) -> Path:
    """The folder of per-run outputs, next to the JSONL: `<stem>_runs/`."""
    jsonl_path = Path(jsonl_path)
    return jsonl_path.parent / f"{jsonl_path.stem}_runs"


def run_command(spec: RunSpec) -> list[str]:
    """The starter-kit command line of one run."""
    command = [
        sys.executable, str(RUN_LOCAL_TEST),
        "--dataset_dir", str(Path(spec.dataset_dir).resolve()),
        "--code_dir", str(Path(spec.code_dir).resolve()),
        "--time_budget", str(spec.time_budget),
        "--output_dir", str((spec.run_dir / "output").resolve()),
        "--score_dir", str((spec.run_dir / "scores").resolve()),
        "--startup_limit", str(spec.startup_limit),
    ]
    return command + (["--count_startup"] if spec.count_startup else [])


def run_environment(spec: RunSpec) -> dict[str, str]:
    """This environment, with the repository importable and AUTOCLINT_CONFIG set for autoclint methods."""
    environment = dict(os.environ)
    paths = [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
    environment["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + paths)
    environment.pop(CONFIG_ENV, None)
    if spec.config_env is not None:
        environment[CONFIG_ENV] = spec.config_env
    return environment


# SIGINT first: the starter kit then stops the model, which runs in a session of its own that a signal
# to the run's group does not reach; SIGTERM and SIGKILL only if it does not end.
STOP_SIGNALS = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))


def _stop_group(process: subprocess.Popen) -> None:
    """Stop a run and its children: SIGINT to its process group, then SIGTERM, then SIGKILL."""
    for sig, wait in STOP_SIGNALS:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _sigint_unblocked() -> Iterator[None]:
    """Let processes started here receive SIGINT: a Ray worker blocks it, and children inherit the mask."""
    previous = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _execute(spec: RunSpec) -> tuple[int | None, bool]:
    """Run the starter kit for `spec`, output in `run_dir/log.txt`; (return code, killed by the watchdog)."""
    if spec.run_dir.exists():
        shutil.rmtree(spec.run_dir)
    spec.run_dir.mkdir(parents=True)
    with (spec.run_dir / "log.txt").open("w") as log:
        with _sigint_unblocked():
            process = subprocess.Popen(run_command(spec), env=run_environment(spec), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=spec.run_dir)
        try:
            process.wait(timeout=spec.watchdog_s)
            return process.returncode, False
        except subprocess.TimeoutExpired:
            logger.warning("%s/%s seed %d ran past %.0f s: killed", spec.dataset, spec.method, spec.seed,
                           spec.watchdog_s)
            _stop_group(process)
            return process.returncode, True
        finally:
            if process.poll() is None:  # interrupted: never leave a run behind
                _stop_group(process)


def failure_reason(run_dir: Path) -> str:
    """What a failed run's log says went wrong: its last exception line, else the end of the log."""
    path = run_dir / "log.txt"
    if not path.is_file():
        return "no log"
    text = path.read_text(errors="replace")
    exceptions = [line for line in text.splitlines() if _EXCEPTION_LINE.match(line)]
    return exceptions[-1] if exceptions else text[-LOG_TAIL_CHARS:]


def _score(spec: RunSpec, record: RunRecord) -> None:
    """Fill the record's scores from the run's prediction files with the harness's scorer."""
    from autoclint.autodl.layout import find_dataset
    from autoclint.harness.scoring import RunScorer, read_start_file

    output_dir = spec.run_dir / "output"
    if read_start_file(output_dir) is None:
        record.alc, record.final_nauc = 0.0, 0.0
        return
    _, _, _, solution_path = find_dataset(spec.dataset_dir)
    scores = RunScorer(solution_path, output_dir).result(spec.time_budget)
    record.alc, record.final_nauc, record.duration = scores.alc, scores.final_nauc, scores.duration
    record.n_predictions = len(scores.predictions)
    record.curve = [[p.elapsed, p.nauc] for p in scores.predictions]
    record.time_to_first_prediction = scores.predictions[0].elapsed if scores.predictions else None


def _status(returncode: int | None, watchdog_killed: bool, output_dir: Path) -> str:
    """ok, killed (stopped at the budget by the harness or by the watchdog) or failed."""
    from autoclint.harness.scoring import read_end_file

    if watchdog_killed:
        return "killed"
    end = read_end_file(output_dir) or {}
    if end.get("killed_at_time_budget") == "1":
        return "killed"
    return "ok" if returncode == 0 else "failed"


def run_one(spec: RunSpec, commit: str | None = None) -> RunRecord:
    """Run one grid cell in its own process and summarise it; never raises for a failing model."""
    started = time.monotonic()
    record = RunRecord(dataset=spec.dataset, method=spec.method, seed=spec.seed, time_budget=spec.time_budget,
                       status="failed", config=spec.config, run_dir=str(spec.run_dir),
                       count_startup=spec.count_startup, machine=machine_info(), git_commit=commit)
    try:
        returncode, watchdog_killed = _execute(spec)
        record.status = _status(returncode, watchdog_killed, spec.run_dir / "output")
        _score(spec, record)
        if record.status == "failed":
            record.error = f"exit status {returncode}: {failure_reason(spec.run_dir)}"
    except Exception as error:  # a broken run is a result to record, not a reason to stop the sweep
        logger.exception("%s/%s seed %d could not be run or scored", spec.dataset, spec.method, spec.seed)
        record.status = "failed"
        record.error = f"{type(error).__name__}: {error}"
    record.wall_time = time.monotonic() - started
    return record


def pending_specs(specs: Iterable[RunSpec], jsonl_path: Path, retry_failed: bool = False) -> list[RunSpec]:
    """The specs whose (dataset, method, seed, budget) is not yet in the JSONL."""
    done = done_keys(read_records(jsonl_path), include_failed=not retry_failed)
    return [spec for spec in specs if spec.key not in done]


def run_grid(specs: list[RunSpec], jsonl_path: Path, *, workers: int = 1, backend: str = "local",
             ray_settings: RaySettings | None = None, retry_failed: bool = False,
             on_record: Callable[[RunRecord], None] | None = None) -> list[RunRecord]:
    """Run every spec not yet recorded, appending each record to `jsonl_path` as it finishes.

    `workers` sizes the local pool; with the Ray backend, the cluster's resources decide (`ray_settings`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    todo = pending_specs(specs, jsonl_path, retry_failed)
    skipped = len(specs) - len(todo)
    if skipped:
        logger.info("%d run(s) already in %s: skipped", skipped, jsonl_path)
    commit = git_commit(REPO_ROOT)
    finished: list[RunRecord] = []

    def record_run(record: RunRecord) -> None:
        append_record(jsonl_path, record)
        finished.append(record)
        if on_record is not None:
            on_record(record)

    if backend == "ray":
        from autoclint.experiments.ray_backend import RaySettings, run_with_ray

        run_with_ray(todo, commit, ray_settings or RaySettings(), record_run)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_one, spec, commit) for spec in todo]
            for future in as_completed(futures):
                record_run(future.result())
    return finished

