"""Tiny budgets end in a finite number of calls with the fast learner tried whenever it fits; handled paths
log no ERROR; once `done_training` is set, later `train` calls return at once.

A ticking clock stands in for the machine's: each reading advances it by a fixed step, so a call's work
takes time in proportion to how often it looks at the clock, the same on a busy or an idle machine.
"""

import logging

import numpy as np
import pytest

from autoclint.config import ModelConfig
from autoclint.trainer import Trainer
from tests.test_trainer import Metadata

# the default safety margin (3 s) on purpose: the runaway came from budgets below and near it
TINY = ModelConfig(pretrained=False, num_threads=1)
MAX_CALLS = 20


class TickingClock:
    """A clock that advances by `tick` seconds at every reading."""

    def __init__(self, tick=0.03):
        self.t, self.tick = 0.0, tick

    def __call__(self):
        self.t += self.tick
        return self.t


def banded(count, classes=3, size=16, seed=0):
    """Images whose class is a bright horizontal band; labels one-hot."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    images = rng.random((count, 1, size, size, 1), dtype=np.float32) * 0.3
    band = size // classes
    for index, label in enumerate(labels):
        images[index, 0, label * band: (label + 1) * band] += 0.7
    return list(zip(images, np.eye(classes, dtype=np.float32)[labels]))


def run_platform_loop(trainer, clock, train, test, budget):
    """The platform's loop over a budget on `clock`; returns the number of test calls."""
    calls = 0
    while not trainer.done_training:
        trainer.train(train, remaining_time_budget=budget - clock.t)
        assert trainer.test(test, remaining_time_budget=budget - clock.t).shape == (len(test), 3)
        calls += 1
        assert calls < MAX_CALLS, f"still training after {calls} calls of a {budget} s budget"
    return calls


# a coarser tick at the larger budgets keeps the network's share of the run to a few steps
@pytest.mark.parametrize("budget, tick", [(5.0, 0.05), (3.0, 0.03), (2.2, 0.01)])
def test_a_budget_near_the_safety_margin_tries_the_fast_learner_then_stops(budget, tick, caplog):
    train, test = banded(150), banded(30, seed=1)
    clock = TickingClock(tick)
    trainer = Trainer(Metadata(150, 3), TINY, now=clock)
    try:
        with caplog.at_level(logging.INFO):
            run_platform_loop(trainer, clock, train, test, budget)
        assert trainer.fast is not None and trainer.fast.version >= 1, "the fast learner was never tried"
        assert "predicting from the fast learner" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        trainer.close()


def test_the_fast_learner_alone_stops_when_nothing_more_fits():
    train, test = banded(150), banded(30, seed=1)
    clock = TickingClock()
    trainer = Trainer(Metadata(150, 3), TINY.replace(train_network=False), now=clock)
    try:
        run_platform_loop(trainer, clock, train, test, 4.0)
        assert trainer.fast.version >= 1
    finally:
        trainer.close()


def test_no_time_at_all_stops_at_once_without_an_error(caplog):
    trainer = Trainer(Metadata(150, 3), TINY, now=TickingClock())
    with caplog.at_level(logging.INFO):
        trainer.train(banded(150), remaining_time_budget=0.0)
        prediction = trainer.test(banded(30, seed=1), remaining_time_budget=0.0)
    assert trainer.done_training and trainer.session is None
    assert prediction.shape == (30, 3) and np.allclose(prediction, 1 / 3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_test_before_train_predicts_priors_without_an_error(caplog):
    trainer = Trainer(Metadata(150, 3), TINY, now=TickingClock())
    with caplog.at_level(logging.INFO):
        prediction = trainer.test(banded(30, seed=1), remaining_time_budget=60.0)
    assert prediction.shape == (30, 3) and np.allclose(prediction, 1 / 3)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.exc_info]


def test_done_training_stays_set_and_later_calls_return_at_once():
    trainer = Trainer(Metadata(150, 3), TINY, now=TickingClock())
    trainer.train(banded(150), remaining_time_budget=0.0)
    assert trainer.done_training
    trainer.train(banded(150), remaining_time_budget=30.0)
    assert trainer.done_training and trainer.session is None and trainer.epochs == 0


def test_done_training_after_training_keeps_the_network_untouched():
    train, test = banded(150), banded(30, seed=1)
    clock = TickingClock(0.05)
    trainer = Trainer(Metadata(150, 3), TINY, now=clock)
    try:
        run_platform_loop(trainer, clock, train, test, 5.0)
        epochs, fitted = trainer.epochs, trainer.fast.version
        trainer.train(train, remaining_time_budget=600.0)
        assert (trainer.epochs, trainer.fast.version) == (epochs, fitted) and trainer.done_training
    finally:
        trainer.close()
