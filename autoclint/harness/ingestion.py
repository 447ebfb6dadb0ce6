"""Ingestion, parent side: runs the model in a child process, watches it, and kills it at the time budget.

Running the model in its own process group lets the harness stop it at the budget whatever it is
doing and still score every prediction it wrote; `end.txt` is completed here when the child could not.
The child dies with this process (a parent-death signal on Linux), and an output folder is locked for
the run (`fcntl.flock`, released by the kernel when a run is killed), so two runs never mix outputs.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoclint.harness.ingestion_worker import ERROR_KEY, NO_PREDICTION, write_end_file
from autoclint.harness.scoring import END_FILE, read_end_file, read_start_file

logger = logging.getLogger(__name__)

# Written into every output folder the starter kit uses: only such a folder has its old outputs removed.
OUTPUT_MARKER = ".autoclint_ingestion_output"
LOCK_FILE = ".autoclint_ingestion.lock"  # holds the PID of the run using the folder
PARENT_PID_VARIABLE = "AUTOCLINT_INGESTION_PARENT"  # the child exits at once when this process is gone
_OUTPUT_FILE = re.compile(r"^\.?[^/]+\.predict_\d+(\.tmp)?$|^\.?(start|end)\.txt(\.tmp)?$")


class OutputDirError(ValueError):
    """The output folder holds files the starter kit did not write: it is left alone."""


@dataclass
class IngestionConfig:
    """One ingestion run: which model, which data, where predictions go, and the time limits."""

    dataset_dir: Path
    code_dir: Path
    output_dir: Path
    time_budget: float = 1200.0
    startup_limit: float = 1200.0
    count_startup: bool = False
    kill_grace: float = 2.0
    setup_allowance: float = 120.0
    poll_interval: float = 0.25


@dataclass
class IngestionResult:
    """How an ingestion run ended."""

    success: bool
    duration: float
    killed_at_budget: bool
    returncode: int | None
    error: str = ""  # one line: why ingestion failed or wrote no prediction (empty when it did not)


def worker_command(config: IngestionConfig) -> list[str]:
    """The command line of the child process, with the same interpreter as this one."""
    command = [
        sys.executable, "-m", "autoclint.harness.ingestion_worker",
        "--dataset_dir", str(config.dataset_dir),
        "--code_dir", str(config.code_dir),
        "--output_dir", str(config.output_dir),
        "--time_budget", str(config.time_budget),
        "--startup_limit", str(config.startup_limit),
    ]
    return command + (["--count_startup"] if config.count_startup else [])


def _child_environment() -> dict[str, str]:
    """The child's environment: this one, with the autoclint package importable, this process's PID (the
    child stops when it is gone) and writable configuration folders."""
    environment = with_writable_config_dirs(dict(os.environ))
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p]
    environment["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in paths if p != package_root])
    environment[PARENT_PID_VARIABLE] = str(os.getpid())
    return environment


def with_writable_config_dirs(environment: dict[str, str]) -> dict[str, str]:
    """`environment` with matplotlib's and Keras's configuration folders in a temporary folder when HOME
    cannot be written (they would otherwise try to create folders under it)."""
    home = environment.get("HOME") or os.path.expanduser("~")
    if _writable_folder(home):
        return environment
    scratch = Path(tempfile.gettempdir()) / f"autoclint-config-{os.getuid()}"
    for variable, folder in (("MPLCONFIGDIR", "matplotlib"), ("KERAS_HOME", "keras")):
        if variable not in environment:
            (scratch / folder).mkdir(parents=True, exist_ok=True)
            environment[variable] = str(scratch / folder)
    return environment


def _writable_folder(folder: str) -> bool:
    """Whether a folder can be created in `folder` (tried, since access() says yes to root on any mode)."""
    try:
        tempfile.TemporaryDirectory(dir=folder).cleanup()
    except OSError:
        return False
    return True


class OutputLock:
    """An exclusive lock on an output folder for one run, naming the run's PID; the kernel releases it when
    the process holding it dies, so a killed run never blocks the next."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._descriptor)
            raise OutputDirError(f"output folder {output_dir} is in use by another run (pid {holder}); "
                                 "wait for it to end or give another --output_dir") from None
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, f"{os.getpid()}\n".encode(), 0)

    @property
    def descriptor(self) -> int:
        """The locked file descriptor (passed to the child, so an orphaned child keeps the folder locked)."""
        return self._descriptor

    def release(self) -> None:
        """Unlock the folder (closing the descriptor releases the lock)."""
        if self._descriptor >= 0:
            os.close(self._descriptor)
            self._descriptor = -1


def kill_process_group(process: subprocess.Popen, grace: float = 1.0) -> None:
    """Stop the child and everything it started: SIGTERM to the group, SIGKILL after `grace`."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _deadline(config: IngestionConfig, launch_time: float) -> float:
    """When the child must be gone: the budget after start.txt's start time, else the start-up limit.

    Before the budget starts the child enforces the constructor's limit itself; this backstop adds
    `setup_allowance` for importing TensorFlow and opening the data.
    """
    start = read_start_file(config.output_dir)
    if start is None:
        return launch_time + config.startup_limit + config.setup_allowance + config.kill_grace
    return start.start_time + config.time_budget + config.kill_grace


def prepare_output_dir(output_dir: Path) -> OutputLock:
    """Make `output_dir` ready for a run and lock it: new or empty (then marked), or marked by an earlier run.

    Only from a marked folder are an earlier run's predictions, start.txt and end.txt removed (so that
    they are not scored again); a non-empty folder without the marker is refused and left untouched, and
    so is a folder locked by a live run. The caller releases the returned lock when the run ends.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    marker = output_dir / OUTPUT_MARKER
    if not marker.is_file():
        if any(output_dir.iterdir()):
            raise OutputDirError(f"output folder {output_dir} is not empty and was not written by the "
                                 "starter kit; give an empty or new --output_dir (nothing in it was touched)")
        marker.write_text("ingestion outputs of the autoclint starter kit; its runs replace them\n")
    lock = OutputLock(output_dir)
    _remove_earlier_outputs(output_dir)
    return lock


def _remove_earlier_outputs(output_dir: Path) -> None:
    """Delete the predictions, start.txt and end.txt (and their temporaries) of an earlier or killed run."""
    for path in output_dir.iterdir():
        if path.is_file() and _OUTPUT_FILE.match(path.name):
            path.unlink()


def run_ingestion(config: IngestionConfig, on_poll: Callable[[], None] | None = None) -> IngestionResult:
    """Run the model of `config.code_dir` on `config.dataset_dir`; `on_poll` is called while it runs."""
    output_dir = Path(config.output_dir)
    lock = prepare_output_dir(output_dir)
    try:
        return _run_locked(config, lock, on_poll)
    finally:
        lock.release()


def _run_locked(config: IngestionConfig, lock: OutputLock, on_poll: Callable[[], None] | None) -> IngestionResult:
    """Start the child (it shares the folder's lock), watch it, and kill it at the deadline."""
    launch_time = time.time()
    process = subprocess.Popen(worker_command(config), env=_child_environment(), start_new_session=True,
                               pass_fds=(lock.descriptor,))
    killed = False
    try:
        while process.poll() is None:
            if on_poll is not None:
                on_poll()
            if time.time() > _deadline(config, launch_time):
                logger.warning("time limit reached: stopping the model (pid %d)", process.pid)
                kill_process_group(process)
                killed = True
                break
            time.sleep(config.poll_interval)
    finally:
        if process.poll() is None:  # interrupted (e.g. Ctrl-C): never leave the model running
            kill_process_group(process)
    return _finish(config, process, launch_time, killed)


def _finish(
    config: IngestionConfig, process: subprocess.Popen, launch_time: float, killed: bool
) -> IngestionResult:
    """Complete `end.txt` when the child could not, and summarise how the run ended.

    A run stopped at the budget counts as successful, as on the platform: its predictions are scored.
    """
    end = read_end_file(config.output_dir)
    if end is None or killed:
        start = read_start_file(config.output_dir)
        start_time = start.start_time if start else launch_time
        now = time.time()
        predicted = start is not None and bool(start.prediction_times)
        success = killed and predicted
        if success:
            extra = {}
        elif killed:
            extra = {ERROR_KEY: f"{NO_PREDICTION} before the time limit"}
        else:
            status = process.returncode
            extra = {ERROR_KEY: f"the model process ended (exit status {status}) without {END_FILE}"}
        write_end_file(config.output_dir, now - start_time, success, now, killed_at_time_budget=int(killed),
                       **extra)
        end = read_end_file(config.output_dir)
    return IngestionResult(
        success=end.get("ingestion_success") == "1",
        duration=float(end["ingestion_duration"]),
        killed_at_budget=killed,
        returncode=process.returncode,
        error=end.get(ERROR_KEY, ""),
    )
