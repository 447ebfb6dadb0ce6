"""Batch worker processes: batches built from the shared cache equal what was asked for, the transform runs
in the workers, the cache may grow under them, and neither a worker's error nor its death is lost or fatal."""

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from autoclint.augment import PolicyAugment
from autoclint.augment.policies import Op, SubPolicy
import autoclint.session as session_module
from autoclint.data.batches import BatchLoader, TrainSampler
from autoclint.data.cache import ExampleCache
from autoclint.data.shared import SHARED_MEMORY_AVAILABLE
from autoclint.data.workers import TASKS_PER_WORKER, ProcessBatchLoader, WorkerPool
from autoclint.metrics import nauc
from autoclint.trainer import Trainer
from tests.test_trainer import FAST, Metadata, easy_task

pytestmark = pytest.mark.skipif(not SHARED_MEMORY_AVAILABLE, reason="worker processes need os.memfd_create")

CLASSES = 5
START_TIMEOUT_S = 120.0  # a worker imports torch first: seconds on a loaded machine


class WrongShape:
    """A transform that drops a sample: the batch no longer fits its slot (pickles by reference)."""

    def __call__(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        return batch[1:]


def indexed_cache(count: int, capacity: int | None = None, shape=(1, 4, 4, 3)) -> ExampleCache:
    """Example i: every pixel i, label class i % CLASSES (so a batch shows whether pixels and labels match)."""
    cache = ExampleCache(shape, CLASSES, capacity=capacity or count)
    append_indexed(cache, range(count), shape)
    return cache


def append_indexed(cache: ExampleCache, indices, shape=(1, 4, 4, 3)) -> None:
    for index in indices:
        cache.append(np.full(shape, index, np.uint8), np.eye(CLASSES, dtype=np.float32)[index % CLASSES])


def assert_pixels_match_labels(batch: torch.Tensor, labels: torch.Tensor, invert: bool = False) -> np.ndarray:
    """Every sample is one example, whole, with its own label; returns the example indices."""
    values = batch.reshape(len(batch), -1)
    assert (values == values[:, :1]).all(), "a sample mixes examples"
    indices = values[:, 0].numpy().astype(int)
    if invert:
        indices = 255 - indices
    assert np.array_equal(labels.argmax(1).numpy(), indices % CLASSES)
    return indices


@pytest.fixture
def pool_of():
    pools = []

    def make(cache: ExampleCache, workers: int) -> WorkerPool:
        pool = WorkerPool(cache, workers)
        pools.append(pool)
        assert pool.wait_ready(START_TIMEOUT_S), "the worker processes did not start"
        return pool

    yield make
    for pool in pools:
        pool.close(wait=True)
    assert all(pool.alive == 0 for pool in pools)


def test_workers_build_the_asked_examples_with_their_labels_and_apply_the_transform(pool_of):
    cache = indexed_cache(40)
    pool = pool_of(cache, 2)
    sampler = TrainSampler(cache, np.arange(5), seed=0)
    with ProcessBatchLoader(pool, sampler, 8, flip=False) as loader:
        seen = set()
        for _ in range(8):
            batch, labels = loader.next_batch(timeout=30)
            assert batch.shape == (8, 3, 4, 4) and batch.dtype == torch.uint8 and labels.shape == (8, CLASSES)
            seen.update(assert_pixels_match_labels(batch, labels))
        assert seen <= set(range(5, 40)) and len(seen) > 20  # the held-out 0-4 never come
        loader.set_transform(PolicyAugment([SubPolicy(Op("Invert", 1.0, None), Op("Equalize", 0.0, None))],
                                           0).augment_batch)
        batches = [loader.next_batch(timeout=30) for _ in range(2 * len(pool) + 4)]
    batch, labels = batches[-1]  # the first may have been asked for before the transform
    assert set(assert_pixels_match_labels(batch, labels, invert=True)) <= set(range(5, 40))
    assert pool.alive == 2  # closing a loader leaves the processes for the next one


def test_videos_and_a_cache_that_grows_after_the_workers_mapped_it(pool_of):
    shape = (3, 4, 4, 1)
    cache = indexed_cache(8, capacity=8, shape=shape)
    pool = pool_of(cache, 1)
    sampler = TrainSampler(cache, np.empty(0, np.int64), seed=0)
    with ProcessBatchLoader(pool, sampler, 4, flip=False) as loader:
        loader.next_batch(timeout=30)
        append_indexed(cache, range(8, 100), shape)  # grown twice past the mapped capacity
        assert cache.capacity >= 100
        seen = set()
        for _ in range(30):
            batch, labels = loader.next_batch(timeout=30)
            assert batch.shape == (4, 3, 1, 4, 4)
            seen.update(assert_pixels_match_labels(batch, labels))
    assert max(seen) >= 8 and seen <= set(range(100))


def test_a_worker_error_reaches_the_consumer_with_its_traceback(pool_of, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # the workers unpickle WrongShape from here
    cache = indexed_cache(20)
    pool = pool_of(cache, 1)
    with ProcessBatchLoader(pool, TrainSampler(cache, np.empty(0, np.int64), 0), 4) as loader:
        loader.set_transform(WrongShape())
        with pytest.raises(RuntimeError, match="worker process 0:(.|\n)*could not broadcast"):
            loader.next_batch(timeout=30)
        loader.set_transform(None)
        built, late_errors = 0, 0
        while built < 3:
            try:
                assert loader.next_batch(timeout=30)[0].shape == (4, 3, 4, 4)
                built += 1
            except RuntimeError:  # a batch already asked for with the old transform
                late_errors += 1
                assert late_errors < TASKS_PER_WORKER


def test_a_transform_that_cannot_reach_the_workers_is_refused_at_once(pool_of):
    cache = indexed_cache(10)
    loader = ProcessBatchLoader(pool_of(cache, 1), TrainSampler(cache, np.empty(0, np.int64), 0), 2)
    with pytest.raises(TypeError, match="does not pickle"):
        loader.set_transform(lambda batch, rng: batch)


def test_training_goes_on_when_workers_die(pool_of, caplog):
    cache = indexed_cache(30)
    pool = pool_of(cache, 2)
    sampler = TrainSampler(cache, np.empty(0, np.int64), seed=0)
    with caplog.at_level(logging.ERROR, logger="autoclint.data.workers"):
        with ProcessBatchLoader(pool, sampler, 4, flip=False) as loader:
            loader.next_batch(timeout=30)
            os.kill(pool.workers[0].process.pid, signal.SIGKILL)
            pool.workers[0].process.wait()
            for _ in range(6):  # the dead worker's batches are asked of the other
                assert_pixels_match_labels(*loader.next_batch(timeout=30))
            assert len(pool) == 1
            os.kill(pool.workers[0].process.pid, signal.SIGKILL)
            pool.workers[0].process.wait()
            for _ in range(3):  # none left: built in this thread
                assert_pixels_match_labels(*loader.next_batch(timeout=30))
    assert len(pool) == 0 and "exited with code -9" in caplog.text


def test_batches_are_built_here_until_a_worker_is_ready():
    cache = indexed_cache(12)
    pool = WorkerPool(cache, 1)
    try:
        loader = ProcessBatchLoader(pool, TrainSampler(cache, np.empty(0, np.int64), 0), 4, flip=False)
        batch, labels = loader.next_batch(timeout=30)  # the worker is still importing torch
        assert_pixels_match_labels(batch, labels)
        assert not pool.workers[0].ready
    finally:
        pool.close(wait=True)
    assert pool.alive == 0


@pytest.mark.parametrize("shared", [True, False])
def test_the_cache_grows_keeping_its_examples_and_refuses_bad_indices(shared):
    cache = ExampleCache((1, 4, 4, 3), CLASSES, capacity=2, shared=shared)
    append_indexed(cache, range(3))
    assert (cache.shared_file is not None) == shared and cache.capacity == 4
    examples, _ = cache.gather(np.array([2, 0, 1]))
    assert examples[:, 0, 0, 0, 0].tolist() == [2, 0, 1] and cache.labels_at(np.array([2])).argmax() == 2
    with pytest.raises(IndexError):
        cache.labels_at(np.array([3]))


def test_a_network_trains_on_batches_from_worker_processes_which_stop_with_training(caplog):
    train, _ = easy_task(120)
    test, solution = easy_task(30, seed=1)
    config = FAST.replace(fast_learner=False, loader_kind="processes", loader_workers=2)
    trainer = Trainer(Metadata(120, 3), config)
    try:
        with caplog.at_level(logging.INFO):
            trainer.train(train, remaining_time_budget=60.0)
            pool = trainer.session.worker_pool
            assert pool is not None and len(pool) == 2
            assert pool.wait_ready(START_TIMEOUT_S)
            for _ in range(8):
                trainer.train(train, remaining_time_budget=60.0)
                prediction = trainer.test([(x, y * 0) for x, y in test])
                if nauc(solution, prediction) > 0.8:
                    break
        assert nauc(solution, prediction) > 0.8 and "2 batch worker processes" in caplog.text
        assert trainer.epochs > 0 and pool.alive == 2
        for worker in pool.workers:  # both die: the run goes on, on threads
            worker.process.kill()
        epochs = trainer.epochs
        for _ in range(2):
            trainer.train(train, remaining_time_budget=60.0)
        assert trainer.epochs > epochs and isinstance(trainer.session.loader, BatchLoader)
        assert trainer.session.worker_pool is None and not trainer.done_training
    finally:
        trainer.close()
    pool.close(wait=True)  # closed already: this only waits for the processes to be reaped
    assert pool.alive == 0


def test_processes_that_cannot_start_leave_the_run_on_threads(monkeypatch, caplog):
    def forbidden(*args, **kwargs):
        raise PermissionError("starting processes is not allowed here")

    monkeypatch.setattr(session_module, "WorkerPool", forbidden)
    train, _ = easy_task(60)
    trainer = Trainer(Metadata(60, 3), FAST.replace(fast_learner=False, loader_kind="processes"))
    try:
        trainer.train(train, remaining_time_budget=30.0)
        assert trainer.epochs > 0 and isinstance(trainer.session.loader, BatchLoader)
        assert "could not start: using threads" in caplog.text
    finally:
        trainer.close()
