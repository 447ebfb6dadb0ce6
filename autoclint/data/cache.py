"""In-memory uint8 cache of converted examples, filled in the background while training reads it.

The disk and the decoder are touched once per example; the cache holds uint8 at the planned input
size (never float copies), so a 175k-image set planned at 64×64×3 needs about 2 GB. On Linux the
examples live in shared memory, which batch worker processes map without copying.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterator, Optional

import numpy as np

from autoclint.data.shared import SHARED_MEMORY_AVAILABLE, SharedFile

logger = logging.getLogger(__name__)


class ExampleCache:
    """A growable array of uint8 examples and float32 labels: one writer appends, readers gather.

    The examples are kept in a `SharedFile` where the system has one (`shared`), so that worker processes
    can read them; growing then extends the file instead of copying."""

    def __init__(self, example_shape: tuple[int, ...], num_classes: int, capacity: int = 256, *,
                 shared: bool = SHARED_MEMORY_AVAILABLE) -> None:
        capacity = max(1, capacity)
        self._file = SharedFile("autoclint-cache", self._nbytes(capacity, example_shape)) if shared else None
        self._examples = self._new_examples(capacity, example_shape)
        self._labels = np.zeros((capacity, num_classes), dtype=np.float32)
        self._size = 0
        self._lock = threading.Lock()

    @staticmethod
    def _nbytes(capacity: int, example_shape: tuple[int, ...]) -> int:
        return capacity * int(np.prod(example_shape, dtype=np.int64))

    def _new_examples(self, capacity: int, example_shape: tuple[int, ...]) -> np.ndarray:
        """Room for `capacity` examples: the shared file grown to fit (its data stays), or a new array."""
        if self._file is None:
            return np.empty((capacity, *example_shape), dtype=np.uint8)
        self._file.resize(self._nbytes(capacity, example_shape))
        return self._file.array((capacity, *example_shape), np.uint8)

    @property
    def shared_file(self) -> Optional[SharedFile]:
        """The shared memory holding the examples (row i at offset i * example bytes), or None."""
        return self._file

    @property
    def capacity(self) -> int:
        """How many examples fit before the next growth."""
        return len(self._examples)

    def __len__(self) -> int:
        return self._size

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one cached example."""
        return self._examples.shape[1:]

    def append(self, example: np.ndarray, label: np.ndarray) -> None:
        """Store one converted example and its label vector."""
        if self._size == len(self._examples):
            self._grow()
        self._examples[self._size] = example
        self._labels[self._size] = np.asarray(label, dtype=np.float32).reshape(-1)
        with self._lock:
            self._size += 1

    def _grow(self) -> None:
        """Double the capacity; readers holding the old arrays keep valid data."""
        capacity = 2 * len(self._examples)
        examples = self._new_examples(capacity, self._examples.shape[1:])
        labels = np.zeros((capacity, self._labels.shape[1]), dtype=np.float32)
        if self._file is None:  # a shared file kept its bytes in place
            examples[: self._size] = self._examples[: self._size]
        labels[: self._size] = self._labels[: self._size]
        with self._lock:
            self._examples, self._labels = examples, labels

    def gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the examples and labels at `indices` (all below `len(self)`)."""
        with self._lock:
            examples, labels, size = self._examples, self._labels, self._size
        indices = checked_indices(indices, size)
        return examples[indices], labels[indices]

    def labels_at(self, indices: np.ndarray) -> np.ndarray:
        """Copies of the labels at `indices` (all below `len(self)`)."""
        with self._lock:
            labels, size = self._labels, self._size
        return labels[checked_indices(indices, size)]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Views of everything cached so far (examples, labels)."""
        with self._lock:
            return self._examples[: self._size], self._labels[: self._size]


def checked_indices(indices: np.ndarray, size: int) -> np.ndarray:
    """`indices` as int64, all in [0, size) (IndexError otherwise)."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= size):
        raise IndexError(f"cache index out of range [0, {size})")
    return indices


class CacheFiller:
    """A daemon thread that converts examples from an iterator into a cache until it ends or is stopped;
    `on_finish` is called once the whole source was read (e.g. to report what conversion replaced)."""

    def __init__(
        self,
        source: Iterator[tuple[np.ndarray, np.ndarray]],
        cache: ExampleCache,
        convert: Callable[[np.ndarray], np.ndarray],
        on_finish: Optional[Callable[[], object]] = None,
    ) -> None:
        self._source = source
        self._on_finish = on_finish
        self._cache = cache
        self._convert = convert
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._finished = threading.Event()
        self._grew = threading.Condition()
        self.error: BaseException | None = None
        self._busy_seconds = 0.0
        self._converted = 0
        self._thread = threading.Thread(target=self._run, name="autoclint-cache-filler", daemon=True)

    def start(self) -> "CacheFiller":
        """Begin decoding in the background."""
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        """True once the source is exhausted, failed or the filler was stopped."""
        return self._finished.is_set()

    @property
    def seconds_per_example(self) -> float | None:
        """Mean seconds spent reading and converting one example so far (None before the first)."""
        return self._busy_seconds / self._converted if self._converted else None

    def _run(self) -> None:
        try:
            read_start = time.monotonic()
            for example, label in self._source:
                if not self._running.is_set():  # paused time is not decoding time
                    paused_at = time.monotonic()
                    self._running.wait()
                    read_start += time.monotonic() - paused_at
                if self._stop.is_set():
                    break
                self._cache.append(self._convert(example), label)
                now = time.monotonic()
                self._busy_seconds += now - read_start
                self._converted += 1
                read_start = now
                with self._grew:
                    self._grew.notify_all()
            if self._on_finish is not None and not self._stop.is_set():
                self._on_finish()
        except BaseException as error:  # reported to the reader through `wait_for`
            logger.exception("decoding the data set into the cache failed")
            self.error = error
        finally:
            self._close_source()
            self._finished.set()
            with self._grew:
                self._grew.notify_all()

    def _close_source(self) -> None:
        """End the source in this thread, so that no reader (a tf.data iterator) is left half-way through a
        batch: at interpreter exit such an iterator can hold the process up."""
        close = getattr(self._source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.debug("closing the data source failed", exc_info=True)

    def wait_for(self, count: int, timeout: float | None = None) -> int:
        """Block until the cache holds `count` examples or decoding ended; returns the cache size."""
        with self._grew:
            self._grew.wait_for(lambda: len(self._cache) >= count or self.finished, timeout=timeout)
        if self.error is not None and len(self._cache) == 0:
            raise RuntimeError("decoding the data set failed before any example was read") from self.error
        return len(self._cache)

    def pause(self) -> None:
        """Hold decoding after the current example (to give the CPU to more urgent work)."""
        self._running.clear()

    def resume(self) -> None:
        """Continue decoding after `pause`."""
        self._running.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to end and wait for it (it ends after the example being decoded)."""
        self._stop.set()
        self._running.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
