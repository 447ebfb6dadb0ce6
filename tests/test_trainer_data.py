"""The Trainer on large and odd data: the streaming validation split from the prefix, labels
stored in class order, an unknown data set size, label columns that disagree with the metadata, three
failed calls in a row, no validation set, a learning rate that saturates; flip TTA and the blend at test
time."""

import logging
import threading
import time

import numpy as np
import pytest

from autoclint.budget import Kind
from autoclint.metrics import nauc
from autoclint.trainer import Trainer
from tests.test_network_learns import digits_split
from tests.test_trainer import FAST, Metadata, easy_task

NETWORK_ONLY = FAST.replace(fast_learner=False)
GATE_TIMEOUT_S = 30.0


def tiny_task(count, classes=3, seed=0, sorted_labels=False):
    """Small 8x8 one-channel images, class = bright band; optionally stored in class order."""
    pairs, labels = easy_task(count, classes=classes, size=8, seed=seed)
    pairs = [(image[..., :1], label) for image, label in pairs]
    if sorted_labels:
        order = np.argsort(labels.argmax(axis=1), kind="stable")
        pairs, labels = [pairs[i] for i in order], labels[order]
    return pairs, labels


class GatedSource:
    """Yields the examples, holding after the first `open_count` until `gate` is set (or a timeout, so that a
    trainer that insists on reading everything first fails the test instead of hanging it). Each example
    takes `delay_s` to read, so that reading the rest is measurably slow (else it is read before the split)."""

    def __init__(self, pairs, open_count, delay_s=0.001):
        self.pairs, self.open_count, self.delay_s = pairs, open_count, delay_s
        self.gate = threading.Event()
        self.yielded = 0

    def __iter__(self):
        for index, pair in enumerate(self.pairs):
            if index == self.open_count:
                self.gate.wait(GATE_TIMEOUT_S)
            time.sleep(self.delay_s)
            self.yielded += 1
            yield pair


def valid_classes(session):
    return set(session.valid.labels.argmax(axis=1).tolist())


def test_each_refit_before_the_network_is_predicted_at_once_and_a_near_one_is_awaited():
    """While the training set doubles between calls, each call refits the fast learner and returns for its
    prediction; a call whose refit is a fraction of a second of reading away waits for it rather than
    build the network, and the first call with no refit in reach builds the network."""
    pairs, _ = tiny_task(3000)
    source = GatedSource(pairs, open_count=700)  # 1 ms an example: doubling 700 takes well under a second
    trainer = Trainer(Metadata(3000, 3), FAST)
    try:
        trainer.train(iter(source), remaining_time_budget=60.0)
        trainer.train(iter(source), remaining_time_budget=60.0)
        session, fitted = trainer.session, trainer.fast.fitted_on
        assert trainer.fast.version == 2 and not session.has_network
        source.gate.set()
        trainer.train(iter(source), remaining_time_budget=60.0)  # no refit due yet: it waits for one
        assert trainer.fast.version == 3 and trainer.fast.fitted_on >= 2 * fitted
        assert not session.has_network and trainer.epochs == 0
        for _ in range(6):  # refits while in reach (700 -> 1,400 -> 2,800 -> all at most), then the network
            if session.has_network:
                break
            trainer.train(iter(source), remaining_time_budget=60.0)
        assert session.has_network and trainer.epochs >= 1 and trainer.network_calls == 1
        # the network's slices grow with its own calls from its usual first one (2 growths), whatever the refits
        next_slice = FAST.first_slice_s * FAST.slice_growth ** (2 + trainer.network_calls)
        assert trainer._slice_seconds() == next_slice
    finally:
        source.gate.set()
        trainer.close()


def test_a_refused_refit_is_followed_by_the_next_when_its_examples_arrived_meanwhile(monkeypatch):
    """A refit refused on validation, during which the examples for the next one were read, is followed by
    that next refit in the same call: the network (seconds of a first epoch on a CPU) is not built while a
    refit is due. It was, whenever reading had already reached the next refit's count."""
    from autoclint.candidates import FastCandidate

    pairs, _ = tiny_task(3000)
    source = GatedSource(pairs, open_count=700)
    trainer = Trainer(Metadata(3000, 3), FAST)
    refused = []

    def refuse_the_first_refit(candidate, scores, labels):
        if candidate.version == 1 and not refused:  # reading goes on during this refit, up to the whole set
            refused.append(candidate.fitted_on)
            source.gate.set()
            trainer.session.filler.wait_for(3000, timeout=GATE_TIMEOUT_S)
            return True
        return False

    monkeypatch.setattr(FastCandidate, "_worse_on_validation", refuse_the_first_refit)
    try:
        trainer.train(iter(source), remaining_time_budget=60.0)
        trainer.train(iter(source), remaining_time_budget=60.0)
        assert refused and trainer.fast.version == 2 and trainer.fast.fitted_on >= 2 * refused[0]
        assert not trainer.session.has_network and trainer.epochs == 0
    finally:
        source.gate.set()
        trainer.close()


def test_a_refit_seconds_of_reading_away_is_not_awaited_before_the_network():
    pairs, _ = tiny_task(3000)
    source = GatedSource(pairs, open_count=700, delay_s=0.004)  # doubling the first fit's ~450: ~2 s
    trainer = Trainer(Metadata(3000, 3), FAST)
    try:
        trainer.train(iter(source), remaining_time_budget=60.0)
        trainer.train(iter(source), remaining_time_budget=60.0)
        source.gate.set()
        trainer.train(iter(source), remaining_time_budget=60.0)
        assert trainer.fast.version == 2 and trainer.session.has_network and trainer.epochs >= 1
    finally:
        source.gate.set()
        trainer.close()


@pytest.mark.parametrize("count", [3000, 1000])  # small sets too: reading them whole delayed the first fit
def test_the_validation_set_comes_from_the_prefix_while_the_rest_streams_in(count):
    pairs, _ = tiny_task(count)
    source = GatedSource(pairs, open_count=700)
    trainer = Trainer(Metadata(count, 3), NETWORK_ONLY)
    try:
        trainer.train(iter(source), remaining_time_budget=60.0)
        session = trainer.session
        assert session is not None and trainer.epochs >= 1, "the first call did not train"
        assert source.yielded <= 700 and not session.filler.finished  # training started on the prefix
        assert len(session.valid) == session.plan.num_valid == (256 if count == 3000 else 128)
        assert session.valid_indices.max() < 700 and valid_classes(session) == {0, 1, 2}
        held_out = session.valid_indices.copy()
        source.gate.set()
        session.filler.wait_for(count, timeout=GATE_TIMEOUT_S)
        trainer.train(iter(source), remaining_time_budget=60.0)
        assert len(session.cache) == count and np.array_equal(session.valid_indices, held_out)
        test, _ = tiny_task(20, seed=1)
        assert trainer.test(test).shape == (20, 3)
    finally:
        source.gate.set()
        trainer.close()


def test_a_set_that_reads_fast_is_read_whole_before_the_split():
    """In memory, the rest of 1,000 examples takes far less than READ_ALL_FIRST_S: all of it is read before
    the split, so the validation examples come from all of it and the first fit sees every example."""
    pairs, _ = tiny_task(1000)
    trainer = Trainer(Metadata(1000, 3), FAST)
    try:
        trainer.train(pairs, remaining_time_budget=60.0)
        session = trainer.session
        assert session.filler.finished and len(session.cache) == 1000
        assert session.valid_indices.max() >= 400  # beyond the prefix (128 + 256) that a slow set is split on
        assert trainer.fast.fitted_on == 1000 - len(session.valid)
    finally:
        trainer.close()


def test_the_first_fit_uses_what_was_read_and_waits_for_no_more():
    """The first call fits the fast learner on the prefix read for the split and
    returns: no more examples are awaited, and the network is not built before the first prediction."""
    pairs, _ = tiny_task(3000)
    source = GatedSource(pairs, open_count=700)
    trainer = Trainer(Metadata(3000, 3), FAST)
    try:
        trainer.train(iter(source), remaining_time_budget=60.0)
        session = trainer.session
        assert trainer.fast is not None and trainer.fast.version == 1
        assert trainer.fast.fitted_on <= 700 - len(session.valid) and source.yielded <= 700
        assert not session.has_network and trainer.epochs == 0
        test, solution = tiny_task(60, seed=1)
        assert nauc(solution, trainer.test([(x, y * 0) for x, y in test])) > 0.5
        source.gate.set()
        session.filler.wait_for(3000, timeout=GATE_TIMEOUT_S)
        trainer.train(iter(source), remaining_time_budget=60.0)
        assert trainer.fast.version == 2 and trainer.fast.fitted_on > 700 - len(session.valid)  # more read
        assert not session.has_network
        trainer.train(iter(source), remaining_time_budget=60.0)  # all read: the validation examples added
        assert trainer.fast.version == 3 and trainer.fast.with_valid and not session.has_network
        trainer.train(iter(source), remaining_time_budget=60.0)
        assert session.has_network and trainer.epochs >= 1
    finally:
        source.gate.set()
        trainer.close()


def test_labels_in_class_order_are_all_read_before_the_split():
    pairs, _ = tiny_task(3000, sorted_labels=True)
    trainer = Trainer(Metadata(3000, 3), NETWORK_ONLY)
    try:
        trainer.train(pairs, remaining_time_budget=60.0)
        session = trainer.session
        assert session.probe.labels_look_sorted and session.filler.finished and len(session.cache) == 3000
        assert valid_classes(session) == {0, 1, 2}, "a prefix of sorted labels holds one class"
        assert session.valid_indices.max() >= 2000
    finally:
        trainer.close()


def test_an_unknown_size_reads_everything_before_the_split():
    pairs, _ = tiny_task(1000)
    trainer = Trainer(Metadata(0, 3), NETWORK_ONLY)  # metadata.size() == 0: unknown
    try:
        trainer.train(pairs, remaining_time_budget=60.0)
        session = trainer.session
        assert session.filler.finished and len(session.cache) == 1000
        assert len(session.valid) >= 1 and session.valid_indices.max() >= session.probe.num_examples
        test, _ = tiny_task(10, seed=1)
        assert trainer.test(test).shape == (10, 3)
    finally:
        trainer.close()


def test_label_columns_that_disagree_with_the_metadata_fail_three_calls_then_training_stops(caplog):
    pairs, _ = tiny_task(40, classes=4)
    trainer = Trainer(Metadata(40, 3), FAST)
    try:
        with caplog.at_level(logging.ERROR):
            for call in range(1, 4):
                assert not trainer.done_training, f"stopped after {call - 1} failed call(s)"
                trainer.train(pairs, remaining_time_budget=60.0)
        assert "labels have 4 columns but metadata says 3" in caplog.text
        assert trainer.done_training and "3 training calls failed in a row" in caplog.text
        priors = trainer.test(pairs[:5])
        assert priors.shape == (5, 3) and np.allclose(priors, 1 / 3)
    finally:
        trainer.close()


def test_without_a_validation_set_the_latest_network_is_predicted(caplog):
    pairs, _ = easy_task(1, size=64)  # one example: nothing to hold out (64x64: batch norm needs > 1 value)
    trainer = Trainer(Metadata(1, 3), NETWORK_ONLY)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(3):
                trainer.train(pairs, remaining_time_budget=60.0)
                prediction = trainer.test(pairs * 4)
        session = trainer.session
        assert len(session.valid) == 0 and session.best.version >= 2  # every epoch's weights are kept
        assert prediction.shape == (4, 3) and np.all(np.isfinite(prediction))
        assert "predicting from the network" in caplog.text
    finally:
        trainer.close()


def test_training_stops_once_the_learning_rate_saturates(caplog):
    rng = np.random.default_rng(0)
    pairs = [(rng.random((1, 8, 8, 1), dtype=np.float32), np.eye(3, dtype=np.float32)[rng.integers(3)])
             for _ in range(200)]  # random labels: the training loss soon stops improving
    config = NETWORK_ONLY.replace(warmup_epochs=0, plateau_patience=1, plateau_factor=0.1, min_lr_ratio=0.05,
                                  adapt_to_scratch=False, steps_per_epoch=3)
    trainer = Trainer(Metadata(200, 3), config)
    try:
        with caplog.at_level(logging.INFO):
            for _ in range(30):
                if trainer.done_training:
                    break
                trainer.train(pairs, remaining_time_budget=1000.0)
        schedule = trainer.session.schedule
        assert trainer.done_training and trainer.budget.time_left() > 500.0  # stopped by saturation, not time
        assert schedule.lr < schedule.initial_lr * config.min_lr_ratio
        assert caplog.text.count("training loss plateaued") >= 2
    finally:
        trainer.close()


def test_flip_tta_chosen_for_a_checkpoint_is_used_at_test_time_and_dropped_when_time_is_short(caplog):
    pairs, _ = easy_task(60)
    test, _ = easy_task(20, seed=1)
    trainer = Trainer(Metadata(60, 3), NETWORK_ONLY)
    try:
        for _ in range(10):  # until the network beats chance (else the class priors are predicted)
            trainer.train(pairs, remaining_time_budget=60.0)
            if trainer.session.best.nauc > 0.2:
                break
        best = trainer.session.best
        assert best.nauc > 0.2
        best.use_tta = False
        plain = trainer.test(test, remaining_time_budget=60.0)
        best.use_tta, best.version = True, best.version + 1  # validation found that flip TTA helps
        with caplog.at_level(logging.INFO):
            mirrored = trainer.test(test, remaining_time_budget=60.0)
        assert "test pass with flip TTA" in caplog.text and not np.allclose(mirrored, plain)
        caplog.clear()
        best.version += 1  # the same weights, predicted again with time for one pass but not two
        trainer.budget.record(Kind.TEST_PASS, 1.0)
        with caplog.at_level(logging.INFO):
            short = trainer.test(test, remaining_time_budget=2.5)
        assert "test pass:" in caplog.text and "test pass with flip TTA" not in caplog.text
        np.testing.assert_allclose(short, plain, atol=1e-6)
    finally:
        trainer.close()


def test_the_trainer_chooses_a_blend_when_it_beats_both_on_validation(caplog):
    """Digits with the fast learner fitted on 25 examples: blending in the network's first checkpoints scores
    better on validation than either alone, and the Trainer predicts that blend, better on test too."""
    train, test, solution = digits_split()
    config = NETWORK_ONLY.replace(fast_learner=True, fast_learner_max_examples=25, scratch_lr_per_64=0.01,
                                  slice_growth=1.0)
    trainer = Trainer(Metadata(len(train), 10), config)
    try:
        with caplog.at_level(logging.INFO, logger="autoclint.trainer"):
            for _ in range(12):
                trainer.train(train, remaining_time_budget=600.0)
                prediction = trainer.test(test, remaining_time_budget=600.0)
                if "predicting from the blend" in caplog.text:
                    break
        assert "predicting from the blend (network weight" in caplog.text
        assert trainer.fast is not None and trainer.session.best.version >= 1
        fast_alone = nauc(solution, trainer.fast.test_scores(trainer._test_examples))
        assert nauc(solution, prediction) > max(fast_alone, 0.8)
    finally:
        trainer.close()
