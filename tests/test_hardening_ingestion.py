"""The starter kit's worker dies with its parent; an output folder in use by a live run is refused (naming its
PID) and a killed run's folder is cleaned by the next; --code_dir runs the submission with its own autoclint
package; with HOME unwritable, matplotlib and Keras get configuration folders elsewhere."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from autoclint.autodl.writer import write_dataset
from autoclint.harness.cli import main
from autoclint.harness.ingestion import OutputDirError, prepare_output_dir, with_writable_config_dirs
from autoclint.harness.scoring import read_start_file

REPO = Path(__file__).resolve().parents[1]

# Predicts zeros, then sleeps in train() until killed: a run that is alive for as long as a test needs.
SLEEPY_MODEL = '''
import time
import numpy as np

class Model:
    def __init__(self, metadata):
        self.output_dim, self.done_training = metadata.get_output_size(), False

    def train(self, dataset, remaining_time_budget=None):
        if getattr(self, "predicted", False):
            time.sleep(600)

    def test(self, dataset, remaining_time_budget=None):
        self.predicted = True
        return np.zeros((2, self.output_dim), np.float32)
'''


def _dataset(tmp_path):
    x = np.zeros((4, 4, 4, 1), np.uint8)
    return write_dataset(tmp_path / "data", "tiny", x, [0, 1, 0, 1], x[:2], [0, 1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is dead, only not yet reaped
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _lock_free(output: Path) -> bool:
    """Whether a run may start in `output` (the last threads of a killed process may take a moment to go)."""
    try:
        prepare_output_dir(output).release()
    except OutputDirError:
        return False
    return True


def _start_sleepy_run(tmp_path, output: Path) -> subprocess.Popen:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "model.py").write_text(SLEEPY_MODEL)
    command = [sys.executable, str(REPO / "scripts" / "run_local_test.py"), "--dataset_dir", str(_dataset(tmp_path)),
               "--code_dir", str(code), "--time_budget", "300", "--output_dir", str(output),
               "--score_dir", str(tmp_path / "scores")]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal and /proc are Linux's")
def test_the_worker_dies_with_its_parent_and_the_folder_is_refused_while_a_run_lives(tmp_path):
    output = tmp_path / "out"
    parent = _start_sleepy_run(tmp_path, output)
    try:
        assert _wait(lambda: (s := read_start_file(output)) is not None and s.prediction_times, 120), \
            "the run never predicted"
        worker = int((output / "start.txt").read_text().split("ingestion_pid:")[1].split()[0])
        assert _alive(worker)
        with pytest.raises(OutputDirError, match=rf"in use by another run \(pid {parent.pid}\)"):
            prepare_output_dir(output)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait(lambda: not _alive(worker), 10), "the worker outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
    (output / ".x.predict_3.tmp").write_text("half")  # as a kill mid-write leaves it
    assert _wait(lambda: _lock_free(output), 10), "the killed run's lock was never released"
    assert not [p for p in output.iterdir() if "predict" in p.name or p.name in ("start.txt", "end.txt")]


def test_code_dir_runs_with_its_own_autoclint_package(tmp_path, capfd):
    code = tmp_path / "submission"
    (code / "autoclint").mkdir(parents=True)
    (code / "autoclint" / "__init__.py").write_text('VERSION = "the submission\'s own copy"\n')
    (code / "model.py").write_text(
        "import numpy as np\nimport autoclint\n\n"
        "class Model:\n"
        "    def __init__(self, metadata):\n"
        "        assert autoclint.VERSION == \"the submission's own copy\", autoclint.__file__\n"
        "        self.output_dim, self.done_training = metadata.get_output_size(), False\n\n"
        "    def train(self, dataset, remaining_time_budget=None):\n        pass\n\n"
        "    def test(self, dataset, remaining_time_budget=None):\n"
        "        self.done_training = True\n"
        "        return np.zeros((2, self.output_dim), np.float32)\n")
    lines = []
    code_status = main(["--dataset_dir", str(_dataset(tmp_path)), "--code_dir", str(code), "--time_budget", "60",
                        "--output_dir", str(tmp_path / "out"), "--score_dir", str(tmp_path / "scores")],
                       emit=lambda text: lines.extend(text.splitlines()))
    log = capfd.readouterr()
    assert code_status == 0, lines
    assert f"uses the autoclint package at {(code / 'autoclint').resolve()}" in log.out + log.err


def test_an_unwritable_home_gets_config_folders_elsewhere(tmp_path):
    home = tmp_path / "home"
    home.write_text("a file, so nothing can be created under it (whoever runs the test, root included)")
    environment = with_writable_config_dirs({"HOME": str(home), "PATH": os.environ["PATH"]})
    for variable in ("MPLCONFIGDIR", "KERAS_HOME"):
        assert variable in environment and not environment[variable].startswith(str(home))
        assert os.access(environment[variable], os.W_OK)
    writable = with_writable_config_dirs({"HOME": str(tmp_path)})
    assert "MPLCONFIGDIR" not in writable and "KERAS_HOME" not in writable


def test_a_child_under_an_unwritable_home_imports_matplotlib_without_writing_there(tmp_path):
    home = tmp_path / "home"
    home.write_text("not a folder")
    inherited = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "KERAS_HOME")}
    environment = with_writable_config_dirs({**inherited, "HOME": str(home)})
    result = subprocess.run([sys.executable, "-c", "import matplotlib, sys; print(matplotlib.get_configdir())"],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith(str(home)) and "is not a writable directory" not in result.stderr
