"""Meta-information probing: shape, channel, value-range and label statistics from a few training examples.

The input plan and the data pipeline are decided from these statistics (paper §3.1.2, "Data Exploration").
"""

from __future__ import annotations

import logging
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
    chance = float(np.sum(frequencies**2))
    return same_as_next > 0.5 * (1.0 + chance) and same_as_next > chance + 0.25


def probe_examples(examples: Sequence[tuple[np.ndarray, np.ndarray]]) -> Probe:
    """Statistics of (example [T,H,W,C], label [K]) pairs; raises ValueError on an empty or malformed sample."""
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
    value_min = min(float(np.min(x)) for x, _ in examples)
    value_max = max(float(np.max(x)) for x, _ in examples)
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
    )
    logger.info("probe: %s", probe)
    return probe
