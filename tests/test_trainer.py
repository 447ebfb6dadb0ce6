"""The anytime controller: budget safety, best-checkpoint predictions, error fallbacks (augmentation: test_trainer_augmentation)."""

import logging
import time

import numpy as np

import autoclint.evaluate as evaluate_module
import autoclint.loop as loop_module
from autoclint.budget import Kind
from autoclint.config import ModelConfig
from autoclint.metrics import nauc
from autoclint.trainer import Trainer

# one thread: tiny inputs gain nothing from more, and spinning OpenMP threads crawl on a busy CPU
FAST = ModelConfig(pretrained=False, first_slice_s=0.3, safety_margin_s=0.5, num_threads=1)


class Metadata:
    """The two metadata calls the trainer uses."""

    def __init__(self, size, classes):
        self._size, self._classes = size, classes

    def size(self):
        return self._size

    def get_output_size(self):
        return self._classes


def easy_task(count, classes=3, size=16, seed=0):
    """Images whose class is the bright horizontal band; labels one-hot."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    images = rng.random((count, 1, size, size, 3), dtype=np.float32) * 0.3
    band = size // classes
    for index, label in enumerate(labels):
        images[index, 0, label * band : (label + 1) * band] += 0.7
    return list(zip(images, np.eye(classes, dtype=np.float32)[labels])), np.eye(classes, dtype=np.float32)[labels]


def test_trainer_learns_and_predicts_from_the_best_checkpoint():
    train, _ = easy_task(90)
    test, solution = easy_task(30, seed=1)
    trainer = Trainer(Metadata(90, 3), FAST)
    try:
        start = time.monotonic()
        trainer.train(train, remaining_time_budget=8.0)
        assert time.monotonic() - start < 8.0
        prediction = trainer.test([(x, y * 0) for x, y in test])
        assert prediction.shape == (30, 3)
        for _ in range(8):  # a loaded machine may need more calls; an idle one stops after two
            trainer.train(train, remaining_time_budget=10.0)
            prediction = trainer.test([(x, y * 0) for x, y in test])
            if nauc(solution, prediction) > 0.8 and trainer.session.checkpoint_version >= 1:
                break
        assert nauc(solution, prediction) > 0.8
        assert trainer.session.checkpoint_version >= 1 and trainer.history
        # the same checkpoint gives the same (cached) prediction
        assert np.array_equal(trainer.test(test), prediction)
    finally:
        trainer.close()


def test_no_time_left_means_done_without_training():
    train, _ = easy_task(20)
    trainer = Trainer(Metadata(20, 3), FAST)
    trainer.train(train, remaining_time_budget=0.2)
    assert trainer.done_training and trainer.session is None


def test_failures_fall_back_to_priors_then_to_the_last_good_prediction(caplog):
    def broken():
        raise OSError("unreadable record")
        yield  # pragma: no cover

    trainer = Trainer(Metadata(20, 3), FAST)
    with caplog.at_level(logging.ERROR):
        trainer.train(broken(), remaining_time_budget=10.0)
    assert "training call failed" in caplog.text
    priors = trainer.test([(np.zeros((1, 4, 4, 3)), np.zeros(3))] * 4)
    assert priors.shape == (4, 3) and np.allclose(priors.sum(axis=1), 1.0)

    train, _ = easy_task(30)
    trainer.train(train, remaining_time_budget=10.0)
    good = trainer.test(train)
    trainer.fast.version += 1  # force a new prediction, on a test set that now breaks
    trainer._test_set = None
    assert np.array_equal(trainer.test(broken()), good)
    trainer.close()


def test_video_multilabel_with_two_channels_trains_and_predicts():
    rng = np.random.default_rng(0)
    labels = (rng.random((24, 4)) < 0.4).astype(np.float32)
    clips = rng.random((24, 12, 8, 8, 2), dtype=np.float32) * 4.0 - 2.0  # values outside [0, 1]
    trainer = Trainer(Metadata(24, 4), FAST.replace(max_frames=4))
    try:
        trainer.train(list(zip(clips, labels)), remaining_time_budget=10.0)
        state = trainer.session
        assert state.plan.is_multilabel and (state.plan.frames, state.plan.channels) == (4, 2)
        assert state.cache.example_shape == (4, 8, 8, 2)
        prediction = trainer.test(list(zip(clips[:5], labels[:5] * 0)))
        assert prediction.shape == (5, 4) and np.all((prediction > 0) & (prediction < 1))
    finally:
        trainer.close()


def test_too_little_time_repeats_the_last_prediction():
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), FAST)
    trainer.train(train, remaining_time_budget=10.0)
    first = trainer.test(train)
    trainer.fast.version += 1  # a newer fit, but no time to predict with it
    trainer.budget.record(Kind.TEST_PASS, 1.0)  # a test pass takes a second here
    assert np.array_equal(trainer.test(train, remaining_time_budget=0.5), first)
    trainer.close()


def test_checkpoints_not_better_than_chance_predict_constant_priors():
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), FAST.replace(fast_learner=False))
    trainer.train(train, remaining_time_budget=10.0)
    best = trainer.session.best
    best.valid_scores, best.version = np.full_like(best.valid_scores, 1 / 3), best.version + 1  # chance level
    prediction = trainer.test(train)
    trainer.close()
    assert np.allclose(prediction, prediction[0]) and np.isclose(prediction[0].sum(), 1.0)
    assert nauc(np.stack([y for _, y in train]), prediction) == 0.0


def test_a_machine_that_suddenly_slows_down_never_runs_past_the_budget(monkeypatch):
    """Steps and evaluations become many times slower mid-run: training stops early enough to predict in time."""
    train, _ = easy_task(90)
    test, _ = easy_task(30, seed=1)
    config = FAST.replace(steps_per_epoch=50, first_slice_s=1.0)
    trainer = Trainer(Metadata(90, 3), config)
    start = time.monotonic()
    slow_from = start + 2.0
    original_step, original_logits = loop_module.train_step, evaluate_module.logits
    slow_steps = []

    def slow_step(*args):
        if time.monotonic() > slow_from:
            slow_steps.append(time.monotonic())
            time.sleep(1.0)
        return original_step(*args)

    def slow_logits(*args, **kwargs):
        if time.monotonic() > slow_from:
            time.sleep(0.3)
        return original_logits(*args, **kwargs)

    monkeypatch.setattr(loop_module, "train_step", slow_step)
    monkeypatch.setattr(evaluate_module, "logits", slow_logits)
    budget = 9.0
    try:
        calls = 0
        while not trainer.done_training:
            trainer.train(train, remaining_time_budget=budget - (time.monotonic() - start))
            prediction = trainer.test(test, remaining_time_budget=budget - (time.monotonic() - start))
            calls += 1
            assert prediction.shape == (30, 3)
            assert time.monotonic() - start < budget, f"call {calls} ended past the budget"
    finally:
        trainer.close()
    assert slow_steps, "the slowdown came after training ended: nothing was tested"


def test_steps_longer_than_a_slice_are_planned_with_their_measured_duration(monkeypatch):
    """Every step outlasts the slices, so every epoch is one step long, and the loop does not record the run's
    first step (it also builds kernels): the controller still plans with a measured step, and no call ends
    past the budget. The step estimate used to stay 0 here, and each call ran one unplanned step."""
    train, _ = easy_task(90)
    test, _ = easy_task(30, seed=1)
    trainer = Trainer(Metadata(90, 3), FAST.replace(fast_learner=False))
    original_step = loop_module.train_step

    def slow_step(*args):
        time.sleep(1.0)
        return original_step(*args)

    monkeypatch.setattr(loop_module, "train_step", slow_step)
    budget, start = 5.0, time.monotonic()
    try:
        calls = 0
        while not trainer.done_training:
            trainer.train(train, remaining_time_budget=budget - (time.monotonic() - start))
            if calls == 0:
                assert trainer.epochs == 1 and (trainer.budget.measured(Kind.STEP) or 0.0) >= 1.0
            trainer.test(test, remaining_time_budget=budget - (time.monotonic() - start))
            calls += 1
            assert time.monotonic() - start < budget, f"call {calls} ended past the budget"
    finally:
        trainer.close()


def test_without_test_calls_training_keeps_no_test_pass_in_reserve():
    """`ImageClassifier.fit` predicts after its budget: 1.9 s are too little to build the network, train a
    step and keep a test pass (1 s before the test set was read), but enough without the test pass."""
    train, _ = easy_task(30)
    for test_calls, epochs in ((True, 0), (False, 1)):
        trainer = Trainer(Metadata(30, 3), FAST.replace(fast_learner=False), test_calls=test_calls)
        try:
            trainer.train(train, remaining_time_budget=1.9)
            assert trainer.epochs == epochs
        finally:
            trainer.close()


def test_the_first_prediction_comes_from_the_fast_learner_before_any_network_step(caplog):
    train, _ = easy_task(200)
    test, solution = easy_task(60, seed=1)
    trainer = Trainer(Metadata(200, 3), FAST)
    try:
        with caplog.at_level(logging.INFO):
            trainer.train(train, remaining_time_budget=30.0)
            prediction = trainer.test([(x, y * 0) for x, y in test], remaining_time_budget=29.0)
        assert trainer.epochs == 0 and trainer.fast is not None and trainer.fast.version == 1
        assert not trainer.session.has_network, "the network was built before the first prediction"
        assert nauc(solution, prediction) > 0.8
        assert "predicting from the fast learner" in caplog.text
        np.testing.assert_allclose(prediction, trainer.fast.learner.predict(trainer._test_examples), atol=1e-5)
        trainer.train(train, remaining_time_budget=28.0)
        assert trainer.fast.version == 2 and not trainer.session.has_network  # the full fit, predicted at once
        trainer.train(train, remaining_time_budget=27.5)
        assert trainer.fast.with_valid and not trainer.session.has_network  # the validation examples added
        trainer.train(train, remaining_time_budget=27.0)
        assert trainer.session.has_network and trainer.epochs >= 1  # built and trained from the 4th call on
    finally:
        trainer.close()


def test_the_fast_learner_alone_never_trains_the_network():
    train, _ = easy_task(120)
    trainer = Trainer(Metadata(120, 3), FAST.replace(train_network=False))
    try:
        calls = 0
        while not trainer.done_training and calls < 5:
            trainer.train(train, remaining_time_budget=30.0)
            assert trainer.test(train).shape == (120, 3)
            calls += 1
        assert trainer.done_training and trainer.epochs == 0 and trainer.session.loader is None
        assert trainer.fast.with_valid  # it stopped after the last fit, with the validation examples
    finally:
        trainer.close()


def test_a_failing_fast_learner_leaves_the_network_to_predict(monkeypatch, caplog):
    import autoclint.candidates as candidates_module

    def broken(*args, **kwargs):
        raise FloatingPointError("singular system")

    monkeypatch.setattr(candidates_module.FastLearner, "fit", broken)
    train, _ = easy_task(60)
    trainer = Trainer(Metadata(60, 3), FAST)
    try:
        with caplog.at_level(logging.ERROR):
            for _ in range(3):
                trainer.train(train, remaining_time_budget=30.0)
        assert "the fast learner failed" in caplog.text and trainer.fast is None
        assert trainer.epochs >= 1 and trainer.test(train).shape == (60, 3)
    finally:
        trainer.close()


def test_without_weights_the_network_trains_with_the_scratch_settings():
    train, _ = easy_task(40)
    for config, tau in ((FAST, FAST.scratch_tau), (FAST.replace(adapt_to_scratch=False), FAST.tau)):
        trainer = Trainer(Metadata(40, 3), config.replace(fast_learner=False))
        try:
            trainer.train(train, remaining_time_budget=20.0)
            session = trainer.session
            expected = config.for_weights(False)
            assert session.net.tau == tau and not session.weights_loaded
            assert session.schedule.initial_lr == expected.lr_for_batch(session.plan.batch_size)
        finally:
            trainer.close()
