"""Probing shape, value and label statistics from a sample of training examples."""

import numpy as np
import pytest

from autoclint.probe import probe_examples


def _one_hot(index, classes=3):
    return np.eye(classes, dtype=np.float32)[index]


def test_probe_images_take_medians_and_ranges():
    examples = [(np.full((1, h, 20, 3), 0.5, np.float32), _one_hot(i % 3)) for i, h in enumerate([10, 12, 30])]
    examples[0][0][0, 0, 0, 0] = 0.0
    probe = probe_examples(examples)
    assert (probe.frames, probe.height, probe.width, probe.channels) == (1, 12, 20, 3)
    assert (probe.value_min, probe.value_max) == (0.0, 0.5)
    assert not probe.is_video and not probe.is_multilabel
    assert probe.label_counts == (1, 1, 1) and probe.num_classes == 3


def test_probe_detects_video_and_multilabel():
    labels = [np.array([1, 1, 0], np.float32), _one_hot(0)]
    probe = probe_examples([(np.zeros((5, 4, 4, 1), np.float32), y) for y in labels])
    assert probe.is_video and probe.frames == 5
    assert probe.is_multilabel


def test_probe_detects_labels_stored_in_class_order():
    shuffled = np.random.default_rng(0).integers(0, 4, 64)
    sorted_labels = np.sort(shuffled)
    image = np.zeros((1, 2, 2, 1), np.float32)
    assert probe_examples([(image, _one_hot(i, 4)) for i in sorted_labels]).labels_look_sorted
    assert not probe_examples([(image, _one_hot(i, 4)) for i in shuffled]).labels_look_sorted
    # a large first class fills the whole sample: one class of several is what a sorted prefix looks like
    assert probe_examples([(image, _one_hot(0, 4))] * 64).labels_look_sorted


def test_probe_rejects_bad_input():
    with pytest.raises(ValueError, match="empty"):
        probe_examples([])
    with pytest.raises(ValueError, match="example 0"):
        probe_examples([(np.zeros((4, 4)), _one_hot(0))])
