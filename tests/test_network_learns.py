"""The ResNet learns on its own through the Trainer: the fast learner off, real handwritten digits, and a
test NAUC that neither class priors nor a barely trained network reach, within a bounded number of optimiser
steps (under a minute on an idle 2-core machine, about four when it is busy with other work)."""

import time

import numpy as np
import pytest
from sklearn.datasets import load_digits

import autoclint.loop as loop_module
from autoclint.config import ModelConfig
from autoclint.metrics import nauc
from autoclint.trainer import Trainer
from tests.test_trainer import Metadata

# The network alone, from scratch (no ImageNet weights in tests), one thread (a busy 2-core machine). The
# scratch rate for 64x64 inputs makes the ResNet collapse for a while on 8x8 digits: a smaller one learns
# steadily, so that the number of steps it needs is a property of learning, not of the machine's load.
# Slices that do not grow keep every call short, so that a prediction comes every few steps on any machine.
NETWORK_ONLY = ModelConfig(pretrained=False, fast_learner=False, scratch_lr_per_64=0.01, first_slice_s=0.3,
                           slice_growth=1.0, safety_margin_s=0.5, num_threads=1)
TARGET_NAUC = 0.9
STEP_LIMIT = 70  # optimiser steps: about 45 are needed; with the rate cut 1,000-fold NAUC is near 0.3 here
WALL_LIMIT_S = 900.0  # a guard only: the test ends by steps (a few minutes on a machine busy with other work)


def digits_split(num_train=1347, seed=0, upsample=1):
    """scikit-learn's 8x8 digits as AutoDL examples (frames, height, width, channels), each pixel repeated
    `upsample` times along both sides: train pairs, unlabelled test pairs and the one-hot test solution."""
    digits = load_digits()
    pixels = np.kron(digits.images, np.ones((upsample, upsample)))
    images = (pixels / 16.0).astype(np.float32)[:, None, :, :, None]
    labels = np.eye(10, dtype=np.float32)[digits.target]
    order = np.random.default_rng(seed).permutation(len(images))
    train, test = order[:num_train], order[num_train:]
    return (list(zip(images[train], labels[train])), [(images[i], labels[i] * 0) for i in test], labels[test])


@pytest.fixture
def step_count(monkeypatch):
    """How many optimiser steps the trainer has taken so far (a one-element list)."""
    count = [0]
    original = loop_module.train_step

    def counting(*args):
        count[0] += 1
        return original(*args)

    monkeypatch.setattr(loop_module, "train_step", counting)
    return count


def test_the_network_alone_learns_digits_and_later_checkpoints_beat_the_first(step_count):
    train, test, solution = digits_split()
    trainer = Trainer(Metadata(len(train), 10), NETWORK_ONLY)
    start = time.monotonic()
    scores = []  # (steps taken by then, checkpoint version, test NAUC) of every new prediction
    try:
        while step_count[0] <= STEP_LIMIT and time.monotonic() - start < WALL_LIMIT_S:
            trainer.train(train, remaining_time_budget=600.0)
            prediction = trainer.test(test, remaining_time_budget=600.0)
            version = trainer.session.best.version
            if version and (not scores or scores[-1][1] != version):
                scores.append((step_count[0], version, nauc(solution, prediction)))
            if scores and scores[-1][2] >= TARGET_NAUC:
                break
        assert trainer.fast is None and not trainer.done_training
    finally:
        trainer.close()
    assert scores, "the network never produced a checkpoint"
    (_, first_version, first), (steps, last_version, last) = scores[0], scores[-1]
    assert last >= TARGET_NAUC and steps <= STEP_LIMIT, f"(steps, version, test NAUC): {scores}"
    assert last_version > first_version and last > first + 0.3, scores
