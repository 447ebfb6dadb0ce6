"""The trainer's augmentation trigger: once, when validation passes the threshold; the right transform in the
batch workers; the learning rate restored without warm-up; the best checkpoint kept; clean worker shutdown."""

import logging
import threading

import numpy as np
import pytest
import torch

import autoclint.trainer as trainer_module
from autoclint.augment import IdentityAugment, PolicyAugment, TrivialAugment
from autoclint.augment.pipeline import Augment
from autoclint.evaluate import ValidationResult
from autoclint.trainer import Trainer
from tests.test_trainer import FAST, Metadata, easy_task

# the network alone: with the fast learner, the first calls fit it and the network starts two calls later
NETWORK_ONLY = FAST.replace(fast_learner=False, adapt_to_scratch=False)  # the paper's warm-up, as set
TRIGGER_AT_ONCE = NETWORK_ONLY.replace(faa_trigger_nauc=-1.0, faa_candidates=6, faa_min_candidates=2)


def _batch_threads() -> set[str]:
    return {thread.name for thread in threading.enumerate() if thread.name.startswith("autoclint-batches")}


@pytest.fixture
def selection_calls(monkeypatch):
    """Count the calls of the augmentation choice made by the trainer."""
    calls = []
    original = trainer_module.select_training_augment

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "select_training_augment", counting)
    return calls


@pytest.mark.parametrize(
    "strategy, kind",
    [("random", PolicyAugment), ("trivialaugment", TrivialAugment), ("none", type(None))],
)
def test_trigger_fires_once_and_installs_the_strategy_transform(selection_calls, strategy, kind):
    train, _ = easy_task(40)
    trainer = Trainer(Metadata(40, 3), TRIGGER_AT_ONCE.replace(augmentation=strategy))
    try:
        for _ in range(3):
            trainer.train(train, remaining_time_budget=30.0)
        state = trainer.session
        assert len(selection_calls) == (0 if strategy == "none" else 1)
        assert isinstance(state.augment, kind)
        if strategy == "random":
            assert len(state.augment.sub_policies) == TRIGGER_AT_ONCE.faa_sub_policies
        expected = None if state.augment is None else state.augment.augment_batch
        if state.loader is not None:
            assert state.loader._transform == expected
        # a loader restarted after a failure gets the transform back
        state.close_loader()
        assert state.start_loader()._transform == expected
    finally:
        trainer.close()


def test_learning_rate_is_restored_without_warm_up():
    train, _ = easy_task(40)
    trainer = Trainer(Metadata(40, 3), TRIGGER_AT_ONCE.replace(augmentation="random", warmup_epochs=50))
    try:
        trainer.train(train, remaining_time_budget=30.0)
        schedule = trainer.session.schedule
        assert schedule.warming_up and trainer.session.augment is None  # the first call predicts first
        trainer.train(train, remaining_time_budget=30.0)
        # the warm-up (50 epochs) was cut short: the rate is the initial one and stays there
        assert not schedule.warming_up
        assert schedule.lr == pytest.approx(schedule.initial_lr)
        trainer.train(train, remaining_time_budget=30.0)
        assert schedule.lr == pytest.approx(schedule.initial_lr)
    finally:
        trainer.close()


def test_no_trigger_below_the_threshold(selection_calls):
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), NETWORK_ONLY.replace(faa_trigger_nauc=1.5, warmup_epochs=50))  # unreachable
    try:
        trainer.train(train, remaining_time_budget=30.0)
        trainer.train(train, remaining_time_budget=30.0)
        assert not selection_calls and trainer.session.augment is None
        assert trainer.session.schedule.warming_up
    finally:
        trainer.close()


def shift_augmented_scores(monkeypatch, shift):
    """The trainer's validation evaluator, with every augmented score moved by `shift` (the unaugmented one
    as measured): +1 makes every candidate beat it, -1 none."""
    original = trainer_module.ValidationEvaluator

    class Shifted(original):
        def __call__(self, augment):
            score = super().__call__(augment)
            return score if augment is None else score + shift

    monkeypatch.setattr(trainer_module, "ValidationEvaluator", Shifted)


def searched_run(caplog, monkeypatch):
    """Two training calls with the search triggered at once; returns the trainer and the FrozenScorer calls
    (dtype and device of each batch, grad mode and training flag of each forward pass)."""
    train, _ = easy_task(60)
    trainer = Trainer(Metadata(60, 3), TRIGGER_AT_ONCE.replace(augmentation="searched"))
    calls, forwards = [], []
    original = trainer_module.FrozenScorer.__call__

    def record_forward(module, inputs):
        forwards.append((torch.is_grad_enabled(), module.training))

    def recording(scorer, images):
        if not calls:
            scorer.net.register_forward_pre_hook(record_forward)
        calls.append((images.dtype, images.device))
        return original(scorer, images)

    monkeypatch.setattr(trainer_module.FrozenScorer, "__call__", recording)
    with caplog.at_level(logging.INFO):
        trainer.train(train, remaining_time_budget=20.0)
        trainer.train(train, remaining_time_budget=20.0)
    return trainer, calls, forwards


def test_searched_policy_runs_on_the_frozen_best_model_and_is_installed(caplog, monkeypatch):
    shift_augmented_scores(monkeypatch, +1.0)
    trainer, calls, forwards = searched_run(caplog, monkeypatch)
    try:
        selection = trainer.augmentation
        assert selection is not None and selection.search is not None and not selection.search.skipped
        search = selection.search
        assert 2 <= len(search.candidates) <= 6 and len(search.kept) == len(search.candidates)
        assert search.chosen  # the top candidates' sub-policies, merged
        assert isinstance(trainer.session.augment, PolicyAugment)
        assert trainer.session.augment.sub_policies == search.chosen
        # every evaluation: uint8 validation tensor on the device, no grad, network in eval mode
        # (devices compared as tensors know them: torch.device("cuda") is "cuda:0" once something is on it)
        on_device = torch.empty(0, device=trainer.device).device
        assert calls and all(call == (torch.uint8, on_device) for call in calls)
        assert forwards and all(forward == (False, False) for forward in forwards)
        assert "policy search plan" in caplog.text and "training on augmented data from now on" in caplog.text
    finally:
        trainer.close()


def test_a_search_where_no_candidate_beats_the_unaugmented_score_installs_nothing(caplog, monkeypatch):
    shift_augmented_scores(monkeypatch, -1.0)
    trainer, calls, _ = searched_run(caplog, monkeypatch)
    try:
        search = trainer.augmentation.search
        assert search is not None and not search.skipped and len(search.candidates) >= 2
        assert search.kept == [] and search.chosen == () and calls
        assert trainer.session.augment is None and "training continues unaugmented" in caplog.text
    finally:
        trainer.close()


def test_search_is_skipped_when_the_budget_cannot_pay():
    train, _ = easy_task(40)
    config = TRIGGER_AT_ONCE.replace(augmentation="searched", faa_max_search_s=1e-4, warmup_epochs=50)
    trainer = Trainer(Metadata(40, 3), config)
    try:
        for _ in range(2):  # the choice is made at the start of the call after the trigger passed
            trainer.train(train, remaining_time_budget=30.0)
        selection = trainer.augmentation
        assert selection is not None and not selection.plan.run and selection.search is None
        assert "skipped" in selection.reason
        assert trainer.session.augment is None
        assert trainer.session.schedule.warming_up  # nothing restored
    finally:
        trainer.close()


def test_a_worse_augmented_model_never_replaces_the_best_checkpoint(monkeypatch):
    train, _ = easy_task(40)
    test = [(x, y * 0) for x, y in easy_task(12, seed=1)[0]]
    trainer = Trainer(Metadata(40, 3), TRIGGER_AT_ONCE.replace(augmentation="random"))
    try:
        for _ in range(2):  # the choice is made at the start of the call after the trigger passed
            trainer.train(train, remaining_time_budget=30.0)
        assert trainer.session.augment is not None
        before = trainer.test(test)
        best = trainer.session.best
        best_version, best_nauc = best.version, best.nauc
        best_weights = {k: v.clone() for k, v in best.net.state_dict().items()}

        def worse(*args, **kwargs):
            return ValidationResult(best_nauc - 0.05, best.loss + 1.0, tta_helps=False)

        monkeypatch.setattr(trainer_module, "validate", worse)
        epochs = trainer.epochs
        trainer.train(train, remaining_time_budget=30.0)
        assert trainer.epochs > epochs  # the augmented model did train
        assert (best.version, best.nauc) == (best_version, best_nauc)
        for name, value in best.net.state_dict().items():
            assert torch.equal(value, best_weights[name]), name
        assert np.array_equal(trainer.test(test), before)
    finally:
        trainer.close()


class FailingAugment(Augment):
    """An augmentation whose draw always fails."""

    def draw(self, rng, height, width):
        raise ValueError("broken augmentation")


def test_a_failing_transform_ends_the_call_and_joins_the_workers(caplog):
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), NETWORK_ONLY.replace(loader_workers=2, loader_queue=1))
    try:
        trainer.train(train, remaining_time_budget=30.0)
        trainer.session.install_augment(FailingAugment(0))
        with caplog.at_level(logging.ERROR):
            for _ in range(2):  # batches queued before the transform may carry one call through
                trainer.train(train, remaining_time_budget=30.0)
                if "training call failed" in caplog.text:
                    break
        assert "training call failed" in caplog.text
        assert trainer.session.loader is None and not _batch_threads()
        # a working augmentation brings training back on a fresh loader
        trainer.session.install_augment(IdentityAugment(0))
        epochs = trainer.epochs
        trainer.train(train, remaining_time_budget=30.0)
        assert trainer.epochs > epochs
    finally:
        trainer.close()
    assert not _batch_threads()


def test_workers_stop_when_training_is_done():
    train, _ = easy_task(30)
    trainer = Trainer(Metadata(30, 3), NETWORK_ONLY)
    try:
        trainer.train(train, remaining_time_budget=30.0)
        assert _batch_threads()
        trainer.train(train, remaining_time_budget=0.1)  # inside the safety margin: done
        assert trainer.done_training and trainer.session.loader is None and not _batch_threads()
    finally:
        trainer.close()
