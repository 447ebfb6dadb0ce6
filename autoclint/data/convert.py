"""Conversion of one decoded example to the planned uint8 tensor [frames, height, width, channels].

Values in [0, 1] are scaled to 0..255, values already in 0..255 are kept, other ranges are mapped
min-max using the probe's range (one mapping for the whole data set, so intensities stay comparable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from autoclint.plan import Plan
from autoclint.probe import Probe


@dataclass(frozen=True)
class ExampleConverter:
    """Scales, samples frames and resizes one example to the planned input size, as uint8."""

    frames: int
    height: int
    width: int
    channels: int
    value_low: float
    value_high: float

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
        if example.ndim != 4 or example.shape[3] != self.channels:
            raise ValueError(f"example of shape {example.shape} does not match [T,H,W,{self.channels}]")
        example = example[frame_indices(example.shape[0], self.frames)]
        scale = 255.0 / (self.value_high - self.value_low)
        scaled = np.clip((example.astype(np.float32) - self.value_low) * scale + 0.5, 0.0, 255.0).astype(np.uint8)
        if scaled.shape[1:3] == (self.height, self.width):
            return scaled
        return np.stack([resize_frame(frame, self.height, self.width) for frame in scaled])


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
