"""Input plans for the public datasets' shapes, and the batch/epoch/validation sizes."""

import pytest

from autoclint.config import ModelConfig
from autoclint.plan import make_plan, plan_batch_size, plan_frame_size, plan_num_valid, plan_steps_per_epoch
from autoclint.probe import Probe


@pytest.mark.parametrize(
    "height, width, expected",
    [
        (28, 28, (28, 28)),  # Munster-like digits: small images stay as they are
        (32, 32, (32, 32)),  # CIFAR-like
        (203, 74, (112, 32)),  # aspect 2.7 > 2: the long side may exceed 64, the area stays <= 64²
        (576, 944, (32, 64)),  # large photos: long side 64, short side rounded to 16
        (300, 400, (48, 64)),
        (60, 80, (48, 64)),  # frames of the 46×60×80×3 video set
        (40, 40, (48, 48)),  # between 32 and 64: rounded to a multiple of 16
    ],
)
def test_frame_size_rules(height, width, expected):
    planned = plan_frame_size(height, width)
    assert planned == expected
    assert planned[0] * planned[1] <= 64 * 64 or max(height, width) <= 32


def test_frame_size_rejects_empty_images():
    with pytest.raises(ValueError, match="positive"):
        plan_frame_size(0, 10)


def _probe(frames=1, height=32, width=32, channels=3, classes=10):
    return Probe(100, frames, height, width, channels, 0.0, 1.0, False, frames > 1, classes, (10,) * classes, False)


def test_video_plan_keeps_eight_frames_and_shares_the_batch():
    plan = make_plan(_probe(frames=46, height=60, width=80), 1000, ModelConfig())
    assert (plan.frames, plan.height, plan.width) == (8, 48, 64)
    assert plan.batch_size == 8 and plan.is_video


def test_split_batch_and_epoch_sizes():
    assert plan_num_valid(82) == 8
    assert plan_num_valid(100_000) == 256
    assert plan_num_valid(5) == 1 and plan_num_valid(1) == 0
    assert plan_batch_size(num_train=20, frames=1) == 20
    assert plan_steps_per_epoch(num_train=100, batch_size=64) == 2
    assert plan_steps_per_epoch(num_train=100_000, batch_size=64) == 30
    plan = make_plan(_probe(), 82, ModelConfig(min_valid=0, min_steps_per_epoch=1))
    assert (plan.num_valid, plan.batch_size, plan.steps_per_epoch) == (8, 64, 2)


def test_small_sets_hold_out_more_and_keep_epochs_long_enough():
    assert plan_num_valid(624, min_valid=128) == 124  # 20% rather than 10% of a 624-example set
    assert plan_num_valid(82, min_valid=128) == 16
    assert plan_num_valid(2000, min_valid=128) == 200  # larger sets keep valid_ratio
    assert plan_num_valid(100_000, min_valid=128) == 256
    assert plan_steps_per_epoch(num_train=500, batch_size=64, min_steps=20) == 20
    assert plan_steps_per_epoch(num_train=100_000, batch_size=64, min_steps=20) == 30
    plan = make_plan(_probe(), 624, ModelConfig())
    assert (plan.num_valid, plan.steps_per_epoch) == (124, 20)
