"""The Ray backend of the grid runner: each run is one Ray task with resources of its own.

Ray is imported inside `run_with_ray` only: this module goes into the submission zip with the rest of
the package, and nothing there may import Ray.

Resources: a run reserves one GPU where the cluster has GPUs (and its share of that node's CPUs), else
one whole node's CPUs, so that two runs never share cores and distort each other's timings.

Datasets: the driver converts each dataset once (as the local backend does), packs the converted
folder into Ray's object store, and each node unpacks it once into a local cache keyed by its content
digest; worker nodes need neither the raw data nor a shared filesystem. With `data="shared"` the
dataset paths are used as they are and must exist on every node (large datasets on a shared disk).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from autoclint.experiments.methods import REPO_ROOT
from autoclint.experiments.records import RunRecord
from autoclint.experiments.runner import LOG_TAIL_CHARS, RunSpec, run_one

logger = logging.getLogger(__name__)

DATA_MODES = ("ship", "shared")
CANCEL_GRACE_S = 30.0  # after an interruption, how long cancelled runs get to stop their processes
NODE_CACHE_ENV = "AUTOCLINT_RAY_DATASETS"


@dataclass(frozen=True)
class RaySettings:
    """How a sweep uses Ray: which cluster, what each run reserves, how datasets reach the nodes."""

    address: str | None = None  # None: a new local instance; "auto" or "ray://host:port": a running cluster
    cpus_per_run: int | None = None  # None: a whole node's CPUs (its CPUs per GPU on GPU nodes)
    gpus_per_run: int | None = None  # None: 1 where the cluster has GPUs, else 0
    num_cpus: int | None = None  # CPUs of a new local instance (None: all of this machine's)
    object_store_memory: int | None = None  # bytes, for a new local instance (None: Ray's default)
    data: str = "ship"  # "ship": through the object store; "shared": paths as they are on every node

    def __post_init__(self) -> None:
        if self.data not in DATA_MODES:
            raise ValueError(f"data must be one of {DATA_MODES}, got {self.data!r}")
        for name in ("cpus_per_run", "num_cpus"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.gpus_per_run is not None and self.gpus_per_run < 0:
            raise ValueError(f"gpus_per_run must be 0 or more, got {self.gpus_per_run}")


@dataclass(frozen=True)
class RunResources:
    """What one run reserves on a node."""

    num_cpus: int
    num_gpus: int


@dataclass(frozen=True)
class ShippedDataset:
    """A converted dataset folder in the object store (the ref nested: a task fetches it only if needed)."""

    folder_name: str
    digest: str
    refs: tuple[Any, ...]


def plan_run_resources(nodes: list[dict[str, float]], cpus_per_run: int | None = None,
                       gpus_per_run: int | None = None) -> RunResources:
    """Each run's reservation, given the alive nodes' resources; raises if no node could ever hold one."""
    workers = [node for node in nodes if node.get("CPU", 0) >= 1]
    if not workers:
        raise RuntimeError("the Ray cluster has no node with CPUs to run on")
    gpu_nodes = [node for node in workers if node.get("GPU", 0) >= 1]
    gpus = gpus_per_run if gpus_per_run is not None else (1 if gpu_nodes else 0)
    if cpus_per_run is not None:
        cpus = cpus_per_run
    elif gpus and gpu_nodes:
        cpus = max(1, min(int(node["CPU"] * gpus // node["GPU"]) for node in gpu_nodes))
    else:
        cpus = int(min(node["CPU"] for node in workers))
    if not any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in workers):
        raise RuntimeError(f"no node of the Ray cluster has {cpus} CPU(s) and {gpus} GPU(s) for one run; "
                           f"nodes: {[_node_summary(node) for node in workers]}")
    return RunResources(num_cpus=cpus, num_gpus=gpus)


def _node_summary(node: dict[str, float]) -> str:
    return f"{node.get('CPU', 0):g} CPU, {node.get('GPU', 0):g} GPU"


def pack_folder(folder: Path) -> bytes:
    """The folder as an uncompressed tar (images are compressed already), identical for identical files."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = archive.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
    return buffer.getvalue()


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def node_cache_dir() -> Path:
    """Where a node keeps unpacked datasets: $AUTOCLINT_RAY_DATASETS or ~/.cache/autoclint/ray_datasets."""
    configured = os.environ.get(NODE_CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "autoclint" / "ray_datasets"


def unpack_once(folder_name: str, digest: str, fetch: Callable[[], bytes], cache_dir: Path) -> Path:
    """`cache_dir/<digest>/<folder_name>`, unpacked from `fetch()` by the first run on this node to need it.

    A file lock makes concurrent runs on one node wait for the first; the folder is renamed into place
    only once complete, so its presence means it is whole.
    """
    target = Path(cache_dir) / digest / folder_name
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_dir():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{folder_name}-", dir=target.parent))
        try:
            with tarfile.open(fileobj=io.BytesIO(fetch()), mode="r") as archive:
                archive.extractall(staging, filter="data")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("unpacked %s into %s", folder_name, target)
    return target


def run_on_node(run: Callable[[RunSpec, str | None], RunRecord], spec: RunSpec, commit: str | None,
                shipped: ShippedDataset | None) -> RunRecord:
    """The body of a Ray task: make the dataset local if it was shipped, then run the grid cell."""
    if shipped is not None:
        import ray

        local = unpack_once(shipped.folder_name, shipped.digest, lambda: ray.get(shipped.refs[0]),
                            node_cache_dir())
        spec = dataclasses.replace(spec, dataset_dir=local)
    return run(spec, commit)


def crashed_record(spec: RunSpec, commit: str | None, error: BaseException) -> RunRecord:
    """The record of a run whose Ray task died or raised: failed, with what Ray reported."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    summary = lines[-1] if lines else ""
    if lines and lines[0] != summary:
        summary = f"{lines[0]} ... {summary}"
    return RunRecord(dataset=spec.dataset, method=spec.method, seed=spec.seed, time_budget=spec.time_budget,
                     status="failed", config=spec.config, run_dir=str(spec.run_dir),
                     count_startup=spec.count_startup, git_commit=commit,
                     error=f"{type(error).__name__}: {summary}"[:LOG_TAIL_CHARS])


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError("--backend ray needs the `ray` package, which is not installed here "
                           "(pip install -e .[ray]), or use the default local backend") from error
    return ray


def init_arguments(settings: RaySettings) -> dict[str, Any]:
    """ray.init's arguments: a new local instance when no address is given, else connect to the cluster."""
    arguments: dict[str, Any] = {"runtime_env": {"env_vars": {"PYTHONPATH": str(REPO_ROOT)}}}
    if settings.address is not None:
        return {"address": settings.address, **arguments}
    local = {"address": "local", "include_dashboard": False, "num_cpus": settings.num_cpus,
             "object_store_memory": settings.object_store_memory}
    return {**local, **arguments}


def ship_datasets(ray: Any, dataset_dirs: Iterable[Path]) -> dict[Path, ShippedDataset]:
    """Each distinct dataset folder put once into the object store, by its path on the driver."""
    shipped = {}
    for folder in sorted({Path(d) for d in dataset_dirs}):
        data = pack_folder(folder)
        shipped[folder] = ShippedDataset(folder.name, content_digest(data), (ray.put(data),))
        logger.info("dataset %s in the object store: %.1f MB", folder.name, len(data) / 1e6)
    return shipped


def run_with_ray(specs: list[RunSpec], commit: str | None, settings: RaySettings,
                 record_run: Callable[[RunRecord], None],
                 run: Callable[[RunSpec, str | None], RunRecord] = run_one) -> None:
    """Run the specs as Ray tasks, recording each as it returns; Ray is shut down again if started here."""
    ray = _import_ray()
    if not specs:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(**init_arguments(settings))
    try:
        alive = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        resources = plan_run_resources(alive, settings.cpus_per_run, settings.gpus_per_run)
        logger.info("Ray: %d node(s); each run reserves %d CPU(s) and %d GPU(s)", len(alive),
                    resources.num_cpus, resources.num_gpus)
        shipped = ship_datasets(ray, (s.dataset_dir for s in specs)) if settings.data == "ship" else {}
        task = ray.remote(run_on_node).options(num_cpus=resources.num_cpus, num_gpus=resources.num_gpus,
                                               max_retries=0)
        refs = {task.remote(run, spec, commit, shipped.get(Path(spec.dataset_dir))): spec for spec in specs}
        _collect(ray, refs, commit, record_run)
    finally:
        if started_here:
            ray.shutdown()


def _collect(ray: Any, refs: dict[Any, RunSpec], commit: str | None,
             record_run: Callable[[RunRecord], None]) -> None:
    """Record each run as it finishes; a task that died is a failed record. Interrupted: cancel the rest."""
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            spec = refs[done[0]]
            try:
                record = ray.get(done[0])
            except ray.exceptions.RayError as error:  # the worker died, the node was lost, or the task raised
                logger.warning("%s/%s seed %d: the Ray task failed: %s", spec.dataset, spec.method, spec.seed,
                               type(error).__name__)
                record = crashed_record(spec, commit, error)
            record_run(record)
    except BaseException:
        for ref in pending:  # not forced: the task's run gets to stop its process group
            ray.cancel(ref)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_GRACE_S)
        raise
