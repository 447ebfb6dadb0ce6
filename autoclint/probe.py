"""Meta-information probing: shape, channel, value-range and label statistics from a few training examples.

The input plan and the data pipeline are decided from these statistics (paper §3.1.2, "Data Exploration").
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """What a sample of the training set says about the whole of it."""

    num_examples: int
    frames: int  # median time steps
    height: int  # median height
    width: int  # median width
    channels: int
    value_min: float
    value_max: float
    is_multilabel: bool
    is_video: bool
    num_classes: int
    label_counts: tuple[int, ...]  # positives per class in the sample
    labels_look_sorted: bool  # consecutive examples share their class far more often than chance
    nonfinite_values: int = 0  # NaN/inf values in the sample, left out of value_min/value_max

    @property
    def aspect_ratio(self) -> float:
        """Width over height of the median example."""
        return self.width / self.height


def _median_int(values: Sequence[int]) -> int:
    return int(round(float(np.median(np.asarray(values, dtype=np.float64)))))


def _labels_look_sorted(labels: np.ndarray) -> bool:
    """True when neighbours repeat their top class much more often than random order would give."""
    if len(labels) < 8:
        return False
    top = labels.argmax(axis=1)
    same_as_next = float(np.mean(top[1:] == top[:-1]))
    frequencies = np.bincount(top, minlength=labels.shape[1]) / len(top)
    if labels.shape[1] > 1 and np.count_nonzero(frequencies) == 1:
        return True  # one class throughout: a prefix of a set stored in class order (chance gives no contrast)
    chance = float(np.sum(frequencies**2))
    return same_as_next > 0.5 * (1.0 + chance) and same_as_next > chance + 0.25


def finite_range(x: np.ndarray) -> tuple[float, float, int]:
    """(min, max) of the finite values of `x` and the count of the others (NaN, ±inf).

    (inf, -inf, n) when no value is finite. The mask is only built for arrays that hold a
    non-finite value, so clean examples cost two reductions and no temporary array.
    """
    x = np.asarray(x)
    if x.size == 0:
        return math.inf, -math.inf, 0
    low, high = float(np.min(x)), float(np.max(x))
    if math.isfinite(low) and math.isfinite(high):
        return low, high, 0
    finite = np.isfinite(x)
    count = int(x.size - np.count_nonzero(finite))
    if count == x.size:
        return math.inf, -math.inf, count
    values = x[finite]
    return float(values.min()), float(values.max()), count


def _value_range(examples: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, int]:
    """The finite value range of the sample and its count of non-finite values, warned about."""
    ranges = [finite_range(x) for x, _ in examples]
    value_min = min(low for low, _, _ in ranges)
    value_max = max(high for _, high, _ in ranges)
    nonfinite = sum(count for _, _, count in ranges)
    if nonfinite:
        affected = sum(1 for _, _, count in ranges if count)
        logger.warning("probe: %d non-finite value(s) (NaN/inf) in %d of %d examples are left out of the "
                       "value range; they are replaced when examples are cached", nonfinite, affected,
                       len(examples))
    if value_min > value_max:  # nothing finite at all: any range will do, every value gets replaced
        return 0.0, 1.0, nonfinite
    return value_min, value_max, nonfinite


def probe_examples(examples: Sequence[tuple[np.ndarray, np.ndarray]]) -> Probe:
    """Statistics of (example [T,H,W,C], label [K]) pairs; raises ValueError on an empty or malformed sample.

    The value range is that of the finite values: one NaN or inf must not decide the scaling of all.
    Take the sample with `autoclint.data.bridge.take_probe_sample` to bound the memory it holds.
    """
    if len(examples) == 0:
        raise ValueError("cannot probe an empty training set")
    shapes = []
    for index, (x, _) in enumerate(examples):
        if np.ndim(x) != 4:
            raise ValueError(f"training example {index} has shape {np.shape(x)}; expected [time, height, width, channels]")
        shapes.append(np.shape(x))
    channels = {shape[3] for shape in shapes}
    if len(channels) != 1:
        raise ValueError(f"training examples disagree on the channel count: {sorted(channels)}")
    labels = np.stack([np.asarray(y, dtype=np.float32).reshape(-1) for _, y in examples])
    positives = (labels > 0.5).sum(axis=1)
    value_min, value_max, nonfinite = _value_range(examples)
    frames = _median_int([shape[0] for shape in shapes])
    probe = Probe(
        num_examples=len(examples),
        frames=frames,
        height=_median_int([shape[1] for shape in shapes]),
        width=_median_int([shape[2] for shape in shapes]),
        channels=int(channels.pop()),
        value_min=value_min,
        value_max=value_max,
        is_multilabel=bool(np.any(positives != 1)),
        is_video=frames > 1,
        num_classes=int(labels.shape[1]),
        label_counts=tuple(int(count) for count in (labels > 0.5).sum(axis=0)),
        labels_look_sorted=_labels_look_sorted(labels),
        nonfinite_values=nonfinite,
    )
    logger.info("probe: %s", probe)
    return probe
