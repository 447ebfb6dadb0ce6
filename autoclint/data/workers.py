"""Training batches built in worker processes that read the example cache from shared memory.

Worker threads share one interpreter: the per-batch Python work of augmentation (drawing the ops,
grouping the samples, launching a few dozen small kernels) holds the GIL, so a second thread adds
little. Processes each have their own interpreter and scale with cores. The parent keeps the sampler
and the labels and sends a worker the indices of a batch; the worker gathers the examples from the
shared cache, flips and augments them with the same `build_batch` as the threads, and writes the batch
into a shared slot, which the parent copies out.

Starting a process means importing torch (seconds), so the processes are started once per session, in
the background as soon as the data is read, and live until it closes; until the first is ready, batches
are built in the calling thread. Each is a fresh interpreter (not a fork): the parent may hold
TensorFlow's and torch's threads, which a forked child would inherit in an unknown state."""

from __future__ import annotations

import collections
import logging
import os
import pickle
import selectors
import struct
import subprocess
import sys
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from autoclint.data.batches import Batch, BatchTransform, TrainSampler, batch_shape, build_batch
from autoclint.data.cache import ExampleCache
from autoclint.data.shared import SharedFile, map_array

logger = logging.getLogger(__name__)

TASKS_PER_WORKER = 2
"""Batches each worker has in hand: one being built while the parent copies out the other."""

STOP_TIMEOUT_S = 5.0
"""How long closing waits for the workers to finish their batch or to exit before killing them."""

_SERVE = "import sys; from autoclint.data.workers import serve; serve(sys.argv[1:])"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# The messages, as bytes: a batch task is packed by hand (pickling it cost the parent more than copying the
# batch out); the rare control messages are pickled.
_TASK, _CONTROL = b"B", b"C"  # first byte of a message to a worker
_TASK_HEADER = struct.Struct("<iiq")  # generation, slot, cache capacity; then the int64 indices
_REPLY = struct.Struct("<Bii")  # kind, generation, slot; then, for a failure, the traceback (UTF-8)
_READY, _DONE, _FAILED = 0, 1, 2


def worker_environment() -> dict[str, str]:
    """The workers' environment: this package importable, one compute thread, no GPU (CPU batches only)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
    env.update({name: "1" for name in _SINGLE_THREAD_ENV})
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


@dataclass
class _Worker:
    """The parent's view of one worker process."""

    index: int
    process: subprocess.Popen
    connection: Connection
    ready: bool = False
    generation: int = -1  # the loader configuration it was sent
    transform_version: int = -1
    tasks: dict[int, np.ndarray] = field(default_factory=dict)  # slot -> the batch's labels

    def send_control(self, message: tuple) -> None:
        self.connection.send_bytes(_CONTROL + pickle.dumps(message))


@dataclass
class _Reply:
    """A worker's report on a batch: built into its slot, or failed with a traceback."""

    worker: _Worker
    failed: bool
    generation: int
    slot: int
    error: str


class WorkerPool:
    """Batch worker processes over a cache's shared memory: started at once, kept until `close`."""

    def __init__(self, cache: ExampleCache, workers: int) -> None:
        if cache.shared_file is None:
            raise ValueError("worker processes need a cache in shared memory (ExampleCache(shared=True))")
        self.cache = cache
        self.slots = SharedFile("autoclint-batches", 1)
        self.generation = 0
        self._started = time.monotonic()
        self._reaper: Optional[threading.Thread] = None
        self._selector = selectors.DefaultSelector()
        self.workers = [self._spawn(index) for index in range(max(1, workers))]
        # also run at interpreter exit when nobody closed the pool: the closed connections end the workers
        self._finalizer = weakref.finalize(self, _stop_processes, [worker.process for worker in self.workers],
                                           [worker.connection for worker in self.workers])
        logger.info("starting %d batch worker processes", len(self.workers))

    def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = Pipe()
        fds = (child_end.fileno(), self.cache.shared_file.fd, self.slots.fd)
        command = [sys.executable, "-c", _SERVE, *map(str, fds), str(index)]
        process = subprocess.Popen(command, pass_fds=fds, env=worker_environment(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL)
        child_end.close()
        worker = _Worker(index, process, parent_end)
        self._selector.register(parent_end.fileno(), selectors.EVENT_READ, worker)
        return worker

    def __len__(self) -> int:
        return len(self.workers)

    def ready_workers(self) -> list[_Worker]:
        """The workers ready for tasks (start messages that arrived are taken in first)."""
        if not all(worker.ready for worker in self.workers):
            self.receive(0.0)
        return [worker for worker in self.workers if worker.ready]

    def receive(self, timeout: float) -> tuple[list[_Reply], list[_Worker]]:
        """Wait up to `timeout` seconds for messages: the batch reports, and the workers that exited (dropped,
        with the tasks they had). Start messages are taken in here."""
        replies, dropped = [], []
        for key, _ in self._selector.select(timeout):
            worker = key.data
            try:
                message = worker.connection.recv_bytes()
            except (EOFError, OSError):
                self.drop(worker)
                dropped.append(worker)
                continue
            kind, generation, slot = _REPLY.unpack_from(message)
            if kind == _READY:
                worker.ready = True
                logger.info("batch worker %d ready %.1f s after the start", worker.index,
                            time.monotonic() - self._started)
            else:
                error = message[_REPLY.size:].decode("utf-8", "replace")
                replies.append(_Reply(worker, kind == _FAILED, generation, slot, error))
        return replies, dropped

    def wait_ready(self, timeout: float) -> bool:
        """Wait until every worker is ready; False if `timeout` seconds passed first or one exited."""
        deadline = time.monotonic() + timeout
        count = len(self.workers)
        while not all(worker.ready for worker in self.workers):
            left = deadline - time.monotonic()
            if left <= 0 or len(self.workers) < count:
                return False
            self.receive(left)
        return len(self.workers) == count

    def drop(self, worker: _Worker) -> None:
        """Forget a worker whose connection ended (it exited; logged): training goes on with the others, or
        in the training thread, and the session's next loader uses threads if none is left."""
        worker.process.wait()
        logger.error("batch worker process %d exited with code %s%s", worker.index, worker.process.returncode,
                     "" if worker.ready else " before it was ready")
        self._selector.unregister(worker.connection.fileno())
        worker.connection.close()
        self.workers.remove(worker)

    def kill(self, worker: _Worker) -> None:
        """Stop a worker that does not answer, and drop it."""
        worker.process.kill()
        self.drop(worker)

    @property
    def alive(self) -> int:
        """Number of worker processes running."""
        return sum(worker.process.poll() is None for worker in self.workers)

    def close(self, wait: bool = False) -> None:
        """Stop the processes: closing their connections ends them. They are reaped in the background (an
        interpreter exiting takes a second or two, which a training call must not wait for); with `wait`, here.
        One still running after `STOP_TIMEOUT_S` is killed. Safe to call more than once."""
        self._reaper = self._finalizer() or self._reaper
        self._selector.close()
        self.slots.close()
        if wait and self._reaper is not None:
            self._reaper.join()


def _stop_processes(processes: Sequence[subprocess.Popen],
                    connections: Sequence[Connection]) -> Optional[threading.Thread]:
    """Close the connections (a worker ends when its connection does) and reap the processes on a daemon
    thread, killing those still running after `STOP_TIMEOUT_S`; returns that thread (None at interpreter
    exit, where no thread can start: the workers end on their own then)."""
    for connection in connections:
        connection.close()
    reaper = threading.Thread(target=_reap, args=(processes,), name="autoclint-worker-reaper", daemon=True)
    try:
        reaper.start()
    except RuntimeError:
        return None
    return reaper


def _reap(processes: Sequence[subprocess.Popen]) -> None:
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ProcessBatchLoader:
    """The `BatchLoader` interface over a `WorkerPool`: batches of one shape, flip and transform.

    Closing it leaves the processes running (idle) for the next loader of the session."""

    def __init__(
        self,
        pool: WorkerPool,
        sampler: TrainSampler,
        batch_size: int,
        *,
        flip: bool = True,
        queue_size: int = 4,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self._pool = pool
        self._sampler = sampler
        self._batch_size = batch_size
        self._flip = flip
        self._pin_memory = pin_memory
        self._seed = seed
        self._shape = batch_shape(pool.cache.example_shape, batch_size)
        self._slot_count = max(queue_size, TASKS_PER_WORKER * len(pool))
        self._free_slots: list[int] = []
        self._slots: Optional[np.ndarray] = None
        self._built: collections.deque[Batch] = collections.deque()
        self._transform: Optional[BatchTransform] = None
        self._transform_message: tuple = ("transform", None)
        self._transform_version = 0
        self._inline_rng = np.random.default_rng([seed, len(pool)])
        self._inline_logged = False
        self._generation = -1

    def set_transform(self, transform: Optional[BatchTransform]) -> None:
        """Apply `transform` (after the flip, with the worker's generator) to batches built from now on; it
        must pickle, as it is sent to the processes."""
        try:
            payload = None if transform is None else pickle.dumps(transform)
        except Exception as error:
            raise TypeError(f"the batch transform {transform!r} cannot be sent to worker processes: it does "
                            "not pickle") from error
        self._transform, self._transform_message = transform, ("transform", payload)
        self._transform_version += 1

    def start(self) -> "ProcessBatchLoader":
        """Take the pool's batch slots for this loader's batch shape (once)."""
        if self._slots is None:
            pool = self._pool
            pool.generation += 1
            self._generation = pool.generation
            pool.slots.resize(self._slot_count * int(np.prod(self._shape)))
            self._slots = pool.slots.array((self._slot_count, *self._shape), np.uint8)
            self._free_slots = list(range(self._slot_count))
        return self

    def __enter__(self) -> "ProcessBatchLoader":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def next_batch(self, timeout: float = 60.0) -> Batch:
        """The next batch (built in the calling thread while no worker is ready); re-raises a worker's error;
        TimeoutError when none comes in `timeout` seconds. A worker that exits is dropped, with its tasks."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self._built:
            if not self._hand_out_tasks():
                return self._build_inline()
            if not self._collect(max(0.0, deadline - time.monotonic())) and time.monotonic() >= deadline:
                raise TimeoutError(f"no training batch within {timeout} s")
        return self._built.popleft()

    def _hand_out_tasks(self) -> bool:
        """Give every ready worker tasks up to `TASKS_PER_WORKER` while slots are free; whether any has one."""
        busy = False
        for worker in self._pool.ready_workers():
            try:
                while len(worker.tasks) < TASKS_PER_WORKER and self._free_slots:
                    self._send_task(worker, self._free_slots.pop())
            except OSError:  # it exited before its connection showed it
                self._free_slots.extend(worker.tasks)
                worker.tasks.clear()
                self._pool.kill(worker)
                continue
            busy = busy or bool(worker.tasks)
        return busy

    def _send_task(self, worker: _Worker, slot: int) -> None:
        """Send a worker the next batch to build into `slot` (and first the loader's settings it lacks)."""
        indices = np.asarray(self._sampler.next_indices(self._batch_size), dtype=np.int64)
        cache = self._pool.cache
        worker.tasks[slot] = cache.labels_at(indices)  # first: a failed send frees it with the worker's tasks
        if worker.generation != self._generation:
            worker.send_control(("configure", self._generation, self._slot_count, self._shape, self._flip,
                                 self._seed))
            worker.generation, worker.transform_version = self._generation, -1
        if worker.transform_version != self._transform_version:
            worker.send_control(self._transform_message)
            worker.transform_version = self._transform_version
        worker.connection.send_bytes(_TASK + _TASK_HEADER.pack(self._generation, slot, cache.capacity)
                                     + indices.tobytes())

    def _collect(self, timeout: float) -> bool:
        """Take in the workers' reports for up to `timeout` seconds: built batches join the queue, the slots of
        exited workers are freed; raises a worker's error. Whether anything came."""
        replies, dropped = self._pool.receive(timeout)
        for worker in dropped:
            self._free_slots.extend(worker.tasks)
            worker.tasks.clear()
        for reply in replies:
            if reply.generation != self._generation:  # from an earlier loader's slots
                continue
            labels = reply.worker.tasks.pop(reply.slot)
            batch = None if reply.failed else self._copy_out(reply.slot)
            self._free_slots.append(reply.slot)
            if batch is None:
                raise RuntimeError(f"building a training batch failed in worker process {reply.worker.index}:\n"
                                   f"{reply.error}")
            target = torch.from_numpy(labels)
            self._built.append((batch, target.pin_memory()) if self._pin_memory else (batch, target))
        return bool(replies or dropped)

    def _copy_out(self, slot: int) -> torch.Tensor:
        if self._pin_memory:
            batch = torch.empty(self._shape, dtype=torch.uint8, pin_memory=True)
            batch.copy_(torch.from_numpy(self._slots[slot]))
            return batch
        return torch.from_numpy(self._slots[slot].copy())

    def _build_inline(self) -> Batch:
        """A batch built here, as a worker would, while no worker process is ready."""
        if not self._inline_logged:
            logger.info("batch worker processes still starting: building batches in the training thread")
            self._inline_logged = True
        examples, labels = self._pool.cache.gather(self._sampler.next_indices(self._batch_size))
        batch = build_batch(examples, self._inline_rng, self._flip, self._transform)
        target = torch.from_numpy(labels)
        if self._pin_memory:
            batch, target = batch.pin_memory(), target.pin_memory()
        return batch, target

    def close(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Collect the batches still being built, so that the slots can be reused; the processes stay (one
        that does not answer within `timeout` seconds is killed)."""
        deadline = time.monotonic() + timeout
        while any(worker.tasks for worker in self._pool.workers) and time.monotonic() < deadline:
            try:
                self._collect(max(0.0, deadline - time.monotonic()))
            except RuntimeError:
                pass  # an error in a batch nobody waits for any more
        for worker in [worker for worker in self._pool.workers if worker.tasks]:
            self._pool.kill(worker)
        self._built.clear()

    @property
    def alive_workers(self) -> int:
        """Number of worker processes running (they outlive the loader: `WorkerPool.close` stops them)."""
        return self._pool.alive


# ------------------------------------------------------------------------------------------------ the worker


class _WorkerState:
    """A worker process's mappings, flip, transform and generator."""

    def __init__(self, index: int, cache_fd: int, slots_fd: int) -> None:
        self.index = index
        self.cache_fd, self.slots_fd = cache_fd, slots_fd
        self.examples: Optional[np.ndarray] = None
        self.slots: Optional[np.ndarray] = None
        self.example_shape: tuple[int, ...] = ()
        self.flip = True
        self.transform: Optional[BatchTransform] = None
        self.transform_error: Optional[str] = None
        self.rng = np.random.default_rng(index)

    def handle(self, message: bytes) -> Optional[bytes]:
        """Carry out one message; the reply to send, if any."""
        if message[:1] == _TASK:
            generation, slot, capacity = _TASK_HEADER.unpack_from(message, 1)
            indices = np.frombuffer(message, dtype=np.int64, offset=1 + _TASK_HEADER.size)
            try:
                self.slots[slot] = self.build(capacity, indices).numpy()
            except Exception:
                return _REPLY.pack(_FAILED, generation, slot) + traceback.format_exc().encode("utf-8")
            return _REPLY.pack(_DONE, generation, slot)
        control = pickle.loads(message[1:])
        if control[0] == "configure":
            _, generation, slot_count, shape, self.flip, seed = control
            self.slots = map_array(self.slots_fd, (slot_count, *shape), np.uint8)
            self.example_shape = _example_shape(shape)
            self.rng = np.random.default_rng([seed, self.index, generation])
        elif control[0] == "transform":
            self.transform, self.transform_error = None, None
            try:
                self.transform = None if control[1] is None else pickle.loads(control[1])
            except Exception:
                self.transform_error = traceback.format_exc()
        else:
            raise ValueError(f"unknown message {control[0]!r}")
        return None

    def build(self, capacity: int, indices: np.ndarray) -> torch.Tensor:
        if self.transform_error is not None:
            raise RuntimeError(f"the batch transform could not be loaded:\n{self.transform_error}")
        if self.examples is None or len(self.examples) != capacity:  # the cache grew: map all of it
            self.examples = map_array(self.cache_fd, (capacity, *self.example_shape), np.uint8)
        return build_batch(self.examples[indices], self.rng, self.flip, self.transform)


def _example_shape(batch_shape: tuple[int, ...]) -> tuple[int, ...]:
    """[T,H,W,C] of the examples behind a batch shape [N,C,H,W] or [N,T,C,H,W]."""
    if len(batch_shape) == 4:
        _, channels, height, width = batch_shape
        return (1, height, width, channels)
    _, frames, channels, height, width = batch_shape
    return (frames, height, width, channels)


def serve(argv: Sequence[str]) -> None:
    """A worker process's main loop: connection, cache and slot descriptors and its index on the command line;
    ends when the parent closes the connection (or is gone)."""
    connection_fd, cache_fd, slots_fd, index = (int(value) for value in argv)
    torch.set_num_threads(1)
    connection = Connection(connection_fd)
    state = _WorkerState(index, cache_fd, slots_fd)
    connection.send_bytes(_REPLY.pack(_READY, -1, -1))
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return
        reply = state.handle(message)
        if reply is not None:
            connection.send_bytes(reply)
