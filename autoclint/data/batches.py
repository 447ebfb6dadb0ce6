"""Training batches built on CPU worker threads into a bounded queue while the model trains (worker
processes, which scale with cores where threads meet the GIL, are in `autoclint.data.workers`).

Each batch: uint8 examples gathered from the cache -> random horizontal flip -> an optional pluggable
transform (the augmentation policies) -> a uint8 tensor [B,C,H,W] (images) or [B,T,C,H,W] (video)
with its float label matrix. The trainer converts to float on the device, which keeps transfers small.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

import numpy as np
import torch

from autoclint.data.cache import ExampleCache

logger = logging.getLogger(__name__)

BatchTransform = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]
"""uint8 batch -> uint8 batch of the same shape, drawing from the worker's generator (`Augment.augment_batch`)."""
Batch = tuple[torch.Tensor, torch.Tensor]


def to_channels_first(examples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """[N,T,H,W,C] uint8 -> [N,C,H,W] when T == 1, else [N,T,C,H,W] (a view: no copy)."""
    tensor = torch.as_tensor(examples)
    if tensor.shape[1] == 1:
        return tensor[:, 0].permute(0, 3, 1, 2)
    return tensor.permute(0, 1, 4, 2, 3)


def random_flips(count: int, rng: np.random.Generator) -> np.ndarray:
    """Which samples of a batch to mirror left-right: each with probability 1/2."""
    return rng.random(count) < 0.5


def to_batch_tensor(examples: np.ndarray, mirror: Optional[np.ndarray] = None) -> torch.Tensor:
    """[N,T,H,W,C] uint8 -> contiguous [N,C,H,W] (T == 1) or [N,T,C,H,W], transposed by numpy, with the
    samples where `mirror` is True mirrored left-right in the same copy.

    numpy keeps batch building off torch's CPU thread pool, which the training step is using. One copy
    per sample mirrors 3-4x faster than a masked copy of the whole batch (measured at 64x64).
    """
    channels_first = np.moveaxis(examples, 4, 2)
    if mirror is None or not mirror.any():
        batch = np.ascontiguousarray(channels_first)
    else:
        batch = np.empty(channels_first.shape, dtype=examples.dtype)
        for index, mirrored in enumerate(mirror):
            batch[index] = channels_first[index, ..., ::-1] if mirrored else channels_first[index]
    tensor = torch.from_numpy(batch)
    return tensor[:, 0] if tensor.shape[1] == 1 else tensor


def build_batch(examples: np.ndarray, rng: np.random.Generator, flip: bool,
                transform: Optional[BatchTransform]) -> torch.Tensor:
    """One training batch from gathered uint8 examples [N,T,H,W,C]: the random flip and channels first in
    one copy, then the transform. The worker threads and the worker processes both build batches here."""
    batch = to_batch_tensor(examples, random_flips(len(examples), rng) if flip else None)
    if transform is not None:
        batch = transform(batch, rng).contiguous()
    return batch


def batch_shape(example_shape: tuple[int, ...], batch_size: int) -> tuple[int, ...]:
    """The shape `build_batch` gives `batch_size` examples of [T,H,W,C]: [N,C,H,W] or [N,T,C,H,W]."""
    frames, height, width, channels = example_shape
    if frames == 1:
        return (batch_size, channels, height, width)
    return (batch_size, frames, channels, height, width)


class TrainSampler:
    """Random passes over the training indices, which may grow while the cache is being filled."""

    def __init__(self, cache: ExampleCache, excluded: np.ndarray, seed: int) -> None:
        self._cache = cache
        self._excluded = np.sort(np.asarray(excluded, dtype=np.int64))
        self._rng = np.random.default_rng(seed)
        self._order = np.empty(0, dtype=np.int64)
        self._position = 0
        self._seen_size = -1
        self._lock = threading.Lock()

    def train_indices(self) -> np.ndarray:
        """All cached indices that are not held out."""
        return np.setdiff1d(np.arange(len(self._cache)), self._excluded, assume_unique=True)

    def next_indices(self, count: int) -> np.ndarray:
        """The next `count` indices of the current random pass (a new pass when the data grew)."""
        with self._lock:
            if self._position + count > len(self._order) or len(self._cache) != self._seen_size:
                self._seen_size = len(self._cache)
                indices = self.train_indices()
                if len(indices) == 0:
                    raise RuntimeError("no training example left after holding out the validation set")
                repeats = -(-count // len(indices))
                self._order = np.concatenate([self._rng.permutation(indices) for _ in range(max(1, repeats))])
                self._position = 0
            chosen = self._order[self._position : self._position + count]
            self._position += count
            return chosen


class BatchLoader:
    """Worker threads filling a bounded queue with training batches; a context manager that always joins them."""

    def __init__(
        self,
        cache: ExampleCache,
        sampler: TrainSampler,
        batch_size: int,
        *,
        flip: bool = True,
        workers: int = 1,
        queue_size: int = 4,
        seed: int = 0,
        pin_memory: bool = False,
    ) -> None:
        self._cache = cache
        self._sampler = sampler
        self._batch_size = batch_size
        self._flip = flip
        self._pin_memory = pin_memory
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._transform: Optional[BatchTransform] = None
        self._seed = seed
        self._threads = [
            threading.Thread(target=self._work, args=(index,), name=f"autoclint-batches-{index}", daemon=True)
            for index in range(max(1, workers))
        ]
        self._started = False

    def set_transform(self, transform: Optional[BatchTransform]) -> None:
        """Apply `transform` (after the flip, with the worker's generator) to batches built from now on."""
        self._transform = transform

    def start(self) -> "BatchLoader":
        """Start the worker threads (once)."""
        if not self._started:
            self._started = True
            for thread in self._threads:
                thread.start()
        return self

    def __enter__(self) -> "BatchLoader":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _build_batch(self, rng: np.random.Generator) -> Batch:
        examples, labels = self._cache.gather(self._sampler.next_indices(self._batch_size))
        batch = build_batch(examples, rng, self._flip, self._transform)
        target = torch.from_numpy(labels)
        if self._pin_memory:
            batch, target = batch.pin_memory(), target.pin_memory()
        return batch, target

    def _work(self, index: int) -> None:
        # One intra-op thread per worker (the setting is per thread): the workers run in parallel with
        # each other and with the training step instead of each starting a team over every core.
        torch.set_num_threads(1)
        rng = np.random.default_rng([self._seed, index])
        while not self._stop.is_set():
            try:
                item: Batch | BaseException = self._build_batch(rng)
            except BaseException as error:  # handed to the consumer, which re-raises it
                item = error
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def next_batch(self, timeout: float = 60.0) -> Batch:
        """The next batch; re-raises a worker's error; TimeoutError when none comes in `timeout` seconds."""
        self.start()
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no training batch within {timeout} s") from None
        if isinstance(item, BaseException):
            raise RuntimeError("building a training batch failed") from item
        return item

    def close(self, timeout: float = 5.0) -> None:
        """Stop and join the workers; safe to call more than once."""
        self._stop.set()
        while True:  # unblock workers waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    @property
    def alive_workers(self) -> int:
        """Number of worker threads still running."""
        return sum(thread.is_alive() for thread in self._threads)
