"""The Ray backend: resources per run, datasets shipped to nodes once, crashes recorded, and a real grid
on a local 2-CPU Ray instance that matches the local backend. Ray stays out of the submission."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoclint.experiments.methods import REPO_ROOT, parse_method
from autoclint.experiments.ray_backend import (
    NODE_CACHE_ENV,
    RaySettings,
    content_digest,
    crashed_record,
    init_arguments,
    pack_folder,
    plan_run_resources,
    run_with_ray,
    unpack_once,
)
from autoclint.experiments.records import RunRecord, read_records
from autoclint.experiments.runner import RunSpec, make_spec, run_grid, runs_root_for

LOCAL_RAY = RaySettings(num_cpus=2, object_store_memory=100 * 1024 * 1024)
LISTS_IMPORTED_MODULES = """
import importlib, json, sys
sys.path.insert(0, "scripts")
import make_submission
names = []
for path in make_submission.submission_files():
    if path.suffix == ".py" and path.name != "__main__.py":
        parts = path.with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
for name in names:
    importlib.import_module(name)
print(json.dumps(names))
print(json.dumps(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))))
"""


def test_model_and_every_packaged_module_import_without_ray():
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", LISTS_IMPORTED_MODULES], cwd=REPO_ROOT, env=environment,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported, ray_modules = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert "model" in imported and "autoclint.experiments.ray_backend" in imported
    assert ray_modules == []


def test_a_run_reserves_a_whole_node_or_one_gpu():
    cpu_nodes = [{"CPU": 16.0, "memory": 1e9}, {"CPU": 8.0}, {"CPU": 0.0, "memory": 1e9}]  # head kept free
    assert plan_run_resources(cpu_nodes) == (whole_node := plan_run_resources([{"CPU": 8.0}]))
    assert (whole_node.num_cpus, whole_node.num_gpus) == (8, 0)
    assert plan_run_resources(cpu_nodes, cpus_per_run=2).num_cpus == 2
    gpu_nodes = [{"CPU": 32.0, "GPU": 4.0}, {"CPU": 12.0, "GPU": 2.0}, {"CPU": 4.0}]
    per_gpu = plan_run_resources(gpu_nodes)
    assert (per_gpu.num_cpus, per_gpu.num_gpus) == (6, 1)
    assert plan_run_resources(gpu_nodes, gpus_per_run=0).num_gpus == 0
    with pytest.raises(RuntimeError, match="no node"):
        plan_run_resources(cpu_nodes, cpus_per_run=32)
    with pytest.raises(RuntimeError, match="no node"):
        plan_run_resources(cpu_nodes, gpus_per_run=1)
    with pytest.raises(ValueError, match="cpus_per_run"):
        RaySettings(cpus_per_run=0)
    with pytest.raises(ValueError, match="data"):
        RaySettings(data="nfs")


def test_no_address_starts_a_local_instance_and_an_address_connects():
    local = init_arguments(LOCAL_RAY)
    assert local["address"] == "local" and local["include_dashboard"] is False and local["num_cpus"] == 2
    cluster = init_arguments(RaySettings(address="ray://head:10001", num_cpus=2))
    assert cluster["address"] == "ray://head:10001" and "num_cpus" not in cluster
    for arguments in (local, cluster):
        assert arguments["runtime_env"]["env_vars"]["PYTHONPATH"] == str(REPO_ROOT)


def test_a_dataset_is_packed_identically_and_unpacked_once_per_node(tmp_path):
    source = tmp_path / "source" / "tiny"
    (source / "tiny.data" / "train").mkdir(parents=True)
    (source / "tiny.data" / "train" / "metadata.textproto").write_text("output_dim: 2\n")
    (source / "tiny.solution").write_text("0 1\n1 0\n")
    data = pack_folder(source)
    os.utime(source / "tiny.solution", (0, 12345))
    assert pack_folder(source) == data  # the digest names the content, not when it was written
    fetches = []

    def fetch() -> bytes:
        fetches.append(1)
        return data

    cache = tmp_path / "node"
    first = unpack_once("tiny", content_digest(data), fetch, cache)
    again = unpack_once("tiny", content_digest(data), fetch, cache)
    assert first == again == cache / content_digest(data) / "tiny" and len(fetches) == 1
    assert (first / "tiny.solution").read_text() == "0 1\n1 0\n"
    assert (first / "tiny.data" / "train" / "metadata.textproto").is_file()


def test_without_ray_the_backend_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(RuntimeError, match="needs the `ray` package"):
        run_grid([], tmp_path / "r.jsonl", backend="ray")


def _spec(tmp_path: Path, dataset_dir: Path, method: str) -> RunSpec:
    return RunSpec(dataset="tiny", dataset_dir=dataset_dir, method=method, code_dir=tmp_path, seed=0,
                   time_budget=10.0, run_dir=tmp_path / "runs" / method, config={"seed": 0})


def test_ray_tasks_get_a_whole_node_each_the_data_once_and_crashes_become_records(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed")

    def fake_run(spec: RunSpec, commit):
        """Stands in for a starter-kit run (defined here so that Ray ships it by value): dies, raises,
        or reports what its Ray task was given."""
        import os
        import time

        import ray

        if spec.method == "dies":
            os._exit(1)
        if spec.method == "raises":
            raise ValueError("broken run")
        started = time.time()
        time.sleep(1.0)
        return RunRecord(spec.dataset, spec.method, spec.seed, spec.time_budget, "ok", git_commit=commit,
                         config={"resources": ray.get_runtime_context().get_assigned_resources(),
                                 "dataset_dir": str(spec.dataset_dir), "span": [started, time.time()],
                                 "solution": (Path(spec.dataset_dir) / "tiny.solution").read_text()})

    monkeypatch.setenv(NODE_CACHE_ENV, str(tmp_path / "node_cache"))  # the local workers inherit it
    dataset = tmp_path / "driver" / "tiny"
    dataset.mkdir(parents=True)
    (dataset / "tiny.solution").write_text("1 0\n")
    specs = [_spec(tmp_path, dataset, method) for method in ("first", "dies", "raises", "second")]
    records = []
    run_with_ray(specs, "abc123", LOCAL_RAY, records.append, run=fake_run)
    import ray

    assert not ray.is_initialized()  # started here, so shut down here
    by_method = {r.method: r for r in records}
    assert sorted(by_method) == ["dies", "first", "raises", "second"]
    assert by_method["dies"].status == "failed" and "WorkerCrashedError" in by_method["dies"].error
    assert by_method["raises"].status == "failed" and "ValueError: broken run" in by_method["raises"].error
    assert by_method["raises"].run_dir == str(tmp_path / "runs" / "raises")
    ok = [by_method["first"], by_method["second"]]
    for record in ok:
        assert record.status == "ok" and record.git_commit == "abc123"
        assert record.config["resources"] == {"CPU": 2.0}
        assert record.config["solution"] == "1 0\n"
        assert Path(record.config["dataset_dir"]).is_relative_to(tmp_path / "node_cache")
    spans = sorted(record.config["span"] for record in ok)
    assert spans[0][1] <= spans[1][0]  # a whole node each: the two runs never overlapped


SLEEPING_MODEL = """
import pathlib, time
class Model:
    def __init__(self, metadata):
        self.done_training = False
        pathlib.Path(__file__).with_name("started").touch()
    def train(self, dataset, remaining_time_budget=None):
        time.sleep(300)
    def test(self, dataset, remaining_time_budget=None):
        return None
"""


def _processes_mentioning(text: str) -> list[int]:
    """Pids of this machine's processes whose command line contains `text`."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:  # the process ended meanwhile
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="needs /proc to look for processes")
def test_an_interrupted_sweep_stops_the_runs_in_flight_and_their_models(tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.setenv(NODE_CACHE_ENV, str(tmp_path / "node_cache"))
    from autoclint.autodl.writer import write_dataset
    from autoclint.experiments.runner import run_one

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, size=(12, 6, 6, 1), dtype=np.uint8), np.arange(12) % 2
    dataset = write_dataset(tmp_path / "data", "tiny", x, y, x[:4], y[:4], image_format="png")
    code_dir = tmp_path / "sleeping_model"
    code_dir.mkdir()
    (code_dir / "model.py").write_text(SLEEPING_MODEL)
    started = code_dir / "started"

    def run(spec: RunSpec, commit):
        """The sleeping model through the starter kit; the other run returns once that model has started."""
        import time

        if spec.method != "quick":
            return run_one(spec, commit)
        deadline = time.monotonic() + 120
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        return RunRecord(spec.dataset, spec.method, spec.seed, spec.time_budget, "ok")

    specs = [_spec(tmp_path, dataset, "quick"), dataclasses.replace(_spec(tmp_path, dataset, "sleeps"),
                                                                    code_dir=code_dir, time_budget=300.0)]

    def record_run(record: RunRecord) -> None:
        raise OSError("disk full")  # the driver fails (or is interrupted) while a run is in flight

    with pytest.raises(OSError, match="disk full"):
        run_with_ray(specs, None, dataclasses.replace(LOCAL_RAY, cpus_per_run=1), record_run, run=run)
    assert started.exists()
    left_behind = _processes_mentioning(str(code_dir))
    for pid in left_behind:  # never leave them running, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left_behind == []  # the starter kit and the model it ran are gone
    assert "KeyboardInterrupt" in (tmp_path / "runs" / "sleeps" / "log.txt").read_text()


def test_a_crashed_task_record_names_the_run():
    spec = RunSpec(dataset="d", dataset_dir=Path("/d"), method="m", code_dir=Path("/c"), seed=2,
                   time_budget=5.0, run_dir=Path("/r"), config={"seed": 2}, count_startup=True)
    record = crashed_record(spec, None, RuntimeError("Traceback:\n  frame\nOSError: disk full"))
    assert (record.dataset, record.method, record.seed, record.time_budget) == ("d", "m", 2, 5.0)
    assert record.status == "failed" and record.count_startup and record.config == {"seed": 2}
    assert record.error == "RuntimeError: Traceback: ... OSError: disk full"


@pytest.mark.slow  # about 40 s here: four starter-kit runs on real data
def test_a_breastmnist_grid_on_a_local_2cpu_ray_matches_the_local_backend(shared_datasets, tmp_path,
                                                                          monkeypatch):
    pytest.importorskip("ray", reason="ray is not installed")
    monkeypatch.setenv(NODE_CACHE_ENV, str(tmp_path / "node_cache"))
    from autoclint.experiments.datasets import prepare_dataset

    dataset_dir = prepare_dataset("breastmnist", tmp_path / "cache", shared_datasets)
    results = {}
    for backend in ("ray", "local"):
        jsonl = tmp_path / f"{backend}.jsonl"
        specs = [make_spec("breastmnist", dataset_dir, parse_method(name), 0, 15.0, runs_root_for(jsonl))
                 for name in ("zero", "linear")]
        records = run_grid(specs, jsonl, backend=backend, ray_settings=LOCAL_RAY)
        assert run_grid(specs, jsonl, backend=backend, ray_settings=LOCAL_RAY) == []  # resumed: nothing left
        assert len(read_records(jsonl)) == 2
        results[backend] = {r.method: r for r in records}
        lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
        results[backend + "_fields"] = [sorted(line) for line in lines]
    assert results["ray_fields"] == results["local_fields"]
    unpacked = sorted(path.name for path in (tmp_path / "node_cache").glob("*/*") if path.is_dir())
    assert unpacked == ["breastmnist"]  # shipped once, unpacked once for both runs on this node
    ray_runs, local_runs = results["ray"], results["local"]
    assert [r.status for r in ray_runs.values()] == ["ok", "ok"]
    assert ray_runs["zero"].alc == 0.0 and ray_runs["zero"].n_predictions >= 1
    assert ray_runs["linear"].alc > 0.1 and ray_runs["linear"].n_predictions >= 1
    assert abs(ray_runs["linear"].alc - local_runs["linear"].alc) < 0.05
    assert ray_runs["linear"].final_nauc == pytest.approx(local_runs["linear"].final_nauc, abs=0.02)
    assert (Path(ray_runs["linear"].run_dir) / "scores" / "scores.txt").is_file()
