"""Input shape, batch size, epoch length and split sizes: pure functions of the probe and the data set size.

Rules (paper §3.1.2): keep the aspect ratio, do not exceed an area of 64×64 (a side may reach twice 64
when the aspect ratio exceeds 2), leave images of at most 32×32 as they are, round other sides to
multiples of 16; video keeps at most 8 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoclint.config import ModelConfig
from autoclint.probe import Probe

SIDE_MULTIPLE = 16
SMALL_SIDE = 32
WIDE_ASPECT = 2.0


@dataclass(frozen=True)
class Plan:
    """The decided input tensor shape and training loop sizes."""

    frames: int
    height: int
    width: int
    channels: int
    batch_size: int
    steps_per_epoch: int
    num_valid: int
    num_classes: int
    is_multilabel: bool

    @property
    def is_video(self) -> bool:
        """Whether examples keep a time axis (more than one frame)."""
        return self.frames > 1


def _round_side(side: float) -> int:
    return max(SIDE_MULTIPLE, int(math.floor(side / SIDE_MULTIPLE + 0.5)) * SIDE_MULTIPLE)


def plan_frame_size(height: int, width: int, max_area: int = 64 * 64) -> tuple[int, int]:
    """(height, width) of the network input for a median example of `height` × `width` pixels."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if height <= SMALL_SIDE and width <= SMALL_SIDE:
        return height, width
    aspect = max(height, width) / min(height, width)
    max_side = math.sqrt(max_area) * (2.0 if aspect > WIDE_ASPECT else 1.0)
    scale = min(1.0, max_side / max(height, width), math.sqrt(max_area / (height * width)))
    new_height, new_width = _round_side(height * scale), _round_side(width * scale)
    while new_height * new_width > max_area:  # rounding up may overshoot the area: shrink the longer side
        if new_height >= new_width and new_height > SIDE_MULTIPLE:
            new_height -= SIDE_MULTIPLE
        elif new_width > SIDE_MULTIPLE:
            new_width -= SIDE_MULTIPLE
        else:
            break
    return new_height, new_width


def plan_frames(frames: int, max_frames: int = 8) -> int:
    """Number of frames kept per example (evenly sampled when there are more)."""
    return max(1, min(frames, max_frames))


def plan_batch_size(num_train: int, frames: int, batch_size: int = 64) -> int:
    """Examples per batch: the configured batch of frames, shared among the frames of a clip."""
    clips = max(1, batch_size // max(1, frames)) if frames > 1 else batch_size
    return max(1, min(clips, num_train))


def plan_steps_per_epoch(
    num_train: int, batch_size: int, configured: int = 0, max_steps: int = 30, min_steps: int = 1
) -> int:
    """Steps in one "epoch" of the schedule: a pass over the data, within [`min_steps`, `max_steps`].

    On small sets an epoch of at least `min_steps` keeps warm-up, plateau patience and validation
    spacing from shrinking to a handful of steps (validating that often mostly chases noise).
    """
    if configured > 0:
        return configured
    return max(1, min_steps, min(max_steps, math.ceil(num_train / batch_size)))


def plan_num_valid(
    num_examples: int, valid_ratio: float = 0.1, max_valid: int = 256, min_valid: int = 0, max_valid_ratio: float = 0.2
) -> int:
    """Validation examples held out of the training set (at least one when there are two or more).

    `valid_ratio` of the set, raised towards `min_valid` (but never beyond `max_valid_ratio` of it) so
    that small sets keep enough examples for a validation score that is not mostly noise.
    """
    if num_examples < 2:
        return 0
    wanted = max(int(round(num_examples * valid_ratio)), min(min_valid, int(num_examples * max_valid_ratio)))
    return max(1, min(max_valid, wanted, num_examples - 1))


def make_plan(probe: Probe, num_examples: int, config: ModelConfig) -> Plan:
    """Everything the data pipeline and the network need to know about their input."""
    height, width = plan_frame_size(probe.height, probe.width, config.max_input_area)
    frames = plan_frames(probe.frames, config.max_frames)
    num_valid = plan_num_valid(
        num_examples, config.valid_ratio, config.max_valid, config.min_valid, config.max_valid_ratio
    )
    num_train = max(1, num_examples - num_valid)
    batch_size = plan_batch_size(num_train, frames, config.batch_size)
    return Plan(
        frames=frames,
        height=height,
        width=width,
        channels=probe.channels,
        batch_size=batch_size,
        steps_per_epoch=plan_steps_per_epoch(
            num_train, batch_size, config.steps_per_epoch, config.max_steps_per_epoch, config.min_steps_per_epoch
        ),
        num_valid=num_valid,
        num_classes=probe.num_classes,
        is_multilabel=probe.is_multilabel,
    )
