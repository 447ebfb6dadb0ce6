"""Conversion of one decoded example to the planned uint8 tensor [frames, height, width, channels].

Values in [0, 1] are scaled to 0..255, values already in 0..255 are kept, other ranges are mapped
min-max using the probe's range (one mapping for the whole data set, so intensities stay comparable).
Non-finite values (NaN, ±inf) are replaced here, where examples enter the cache, and counted.

Examples of one size are converted many at a time (`convert_batch`, `convert_chunks`): per example, numpy's
call overhead cost more than the arithmetic on small images (66 µs per 32×32×3 image, 0.2 s of a 3,000-image
test set's read), and the arithmetic runs in place, with no temporary per step (a 256×256×3 image took 1.3 ms,
now 0.95 ms).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from autoclint.plan import Plan
from autoclint.probe import Probe

logger = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]

# Examples converted in one call: at most this many, holding at most this many bytes before conversion, so
# that each step's arrays stay in the CPU's cache (a 256×256×3 float32 image is converted alone).
CONVERT_CHUNK = 64
CONVERT_CHUNK_BYTES = 2**19


class NonFiniteCount:
    """Thread-safe count of the NaN/inf values replaced, and of the examples that held them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = 0
        self.examples = 0

    def add(self, values: int) -> int:
        """Count one example holding `values` non-finite values; returns the examples counted so far."""
        with self._lock:
            self.values += values
            self.examples += 1
            return self.examples


@dataclass(frozen=True)
class ExampleConverter:
    """Scales, samples frames and resizes one example to the planned input size, as uint8."""

    frames: int
    height: int
    width: int
    channels: int
    value_low: float
    value_high: float
    nonfinite: NonFiniteCount = field(default_factory=NonFiniteCount, compare=False, repr=False)

    @classmethod
    def from_plan(cls, plan: Plan, probe: Probe) -> "ExampleConverter":
        """Converter for the planned shape and the value range seen by the probe."""
        low, high = value_range(probe.value_min, probe.value_max)
        return cls(plan.frames, plan.height, plan.width, plan.channels, low, high)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """Shape of a converted example: (frames, height, width, channels)."""
        return self.frames, self.height, self.width, self.channels

    def __call__(self, example: np.ndarray) -> np.ndarray:
        """The example [T,H,W,C] (any float or int dtype) as uint8 of `self.shape`."""
        example = np.asarray(example)
        if example.ndim != 4:
            raise ValueError(f"example of shape {example.shape} does not match [T,H,W,{self.channels}]")
        return self.convert_batch(example[np.newaxis])[0]

    def convert_batch(self, examples: np.ndarray) -> np.ndarray:
        """Examples [N,T,H,W,C] of one size (any float or int dtype) as uint8 [N, *self.shape]."""
        examples = np.asarray(examples)
        if examples.ndim != 5 or examples.shape[4] != self.channels:
            raise ValueError(f"example shape {examples.shape[1:]} does not match [T,H,W,{self.channels}]")
        # indexing copies: the arithmetic below may then run in place
        values = examples[:, frame_indices(examples.shape[1], self.frames)].astype(np.float32, copy=False)
        self._replace_nonfinite(values)
        if self.value_low:
            values -= np.float32(self.value_low)
        values *= np.float32(255.0 / (self.value_high - self.value_low))
        values += np.float32(0.5)
        np.clip(values, 0.0, 255.0, out=values)
        scaled = values.astype(np.uint8)
        if scaled.shape[2:4] == (self.height, self.width):
            return scaled
        resized = np.empty((len(scaled), *self.shape), np.uint8)
        for index, example in enumerate(scaled):
            for frame, image in enumerate(example):
                resized[index, frame] = resize_frame(image, self.height, self.width)
        return resized

    def convert_chunks(self, pairs: Iterable[Pair]) -> Iterator[Pair]:
        """(uint8 examples [n, *self.shape], labels [n, K]) for consecutive chunks of `pairs`, in order."""
        for examples, labels in same_size_chunks(pairs):
            yield self.convert_batch(examples), labels

    def _replace_nonfinite(self, values: np.ndarray) -> None:
        """Replace NaN/inf in place (+inf: top of the range, -inf: bottom, NaN: 0 clipped into it), counted per
        example of the batch `values` [N, ...]."""
        if np.isfinite(values.min()) and np.isfinite(values.max()):
            return
        for example in values:
            count = int(example.size - np.count_nonzero(np.isfinite(example)))
            if not count:
                continue
            nan = min(max(0.0, self.value_low), self.value_high)
            np.nan_to_num(example, copy=False, nan=nan, posinf=self.value_high, neginf=self.value_low)
            examples = self.nonfinite.add(count)
            if examples == 1 or _is_power_of_ten(examples):
                logger.warning("non-finite values (NaN/inf) replaced so far: %d in %d example(s)",
                               self.nonfinite.values, examples)

    def log_nonfinite_summary(self) -> tuple[int, int]:
        """Warn how many NaN/inf values were replaced in how many examples; returns (values, examples)."""
        values, examples = self.nonfinite.values, self.nonfinite.examples
        if values:
            logger.warning("%d non-finite value(s) (NaN/inf) in %d example(s) were replaced when cached",
                           values, examples)
        return values, examples


def same_size_chunks(pairs: Iterable[Pair], max_examples: int = CONVERT_CHUNK,
                     max_bytes: int = CONVERT_CHUNK_BYTES) -> Iterator[Pair]:
    """Consecutive pairs stacked into (examples [n,T,H,W,C], labels [n,K]): at most `max_examples`, up to
    `max_bytes` of examples (always at least one), and a new chunk wherever an example's shape changes."""
    examples: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    held = 0
    for example, label in pairs:
        example = np.asarray(example)
        if examples and (example.shape != examples[0].shape or len(examples) == max_examples
                         or held + example.nbytes > max_bytes):
            yield _stacked(examples), _stacked(labels)
            examples, labels, held = [], [], 0
        examples.append(example)
        labels.append(np.asarray(label, dtype=np.float32).reshape(-1))
        held += example.nbytes
    if examples:
        yield _stacked(examples), _stacked(labels)


def _stacked(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays along a new first axis; a lone one as a view (copying a large image costs as much as
    converting it)."""
    return arrays[0][np.newaxis] if len(arrays) == 1 else np.stack(arrays)


def _is_power_of_ten(count: int) -> bool:
    """1, 10, 100, ...: when a running count is worth a log line."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of a uint8 [H,W,C] frame with Pillow (single-threaded, releases the GIL).

    Pillow keeps the decoding thread off torch's CPU thread pool, which the training step uses.
    """
    if frame.shape[2] == 3:
        image = Image.fromarray(frame, mode="RGB").resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image)
    channels = [
        np.asarray(Image.fromarray(frame[:, :, c], mode="L").resize((width, height), Image.Resampling.BILINEAR))
        for c in range(frame.shape[2])
    ]
    return np.stack(channels, axis=2)


def value_range(value_min: float, value_max: float) -> tuple[float, float]:
    """The (low, high) input values mapped to 0 and 255."""
    if value_min >= 0.0 and value_max <= 1.0:
        return 0.0, 1.0
    if value_min >= 0.0 and value_max <= 255.0:
        return 0.0, 255.0
    if value_max <= value_min:
        return value_min, value_min + 1.0
    return value_min, value_max


def frame_indices(available: int, wanted: int) -> np.ndarray:
    """Indices of `wanted` frames spread evenly over `available` ones (repeating frames when too few)."""
    if available <= 0:
        raise ValueError("example has no frames")
    return np.floor(np.arange(wanted) * available / wanted).astype(np.int64)
