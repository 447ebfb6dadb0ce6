"""Choosing the training augmentation: each strategy's transform, the searched policy, skipping unaffordable searches."""

import dataclasses
import time

import numpy as np
import pytest
import torch

from autoclint.augment import AugmentSettings, IdentityAugment, PolicyAugment, TrivialAugment, select_training_augment
from autoclint.augment.search import ValidationEvaluator

SMALL_SEARCH = AugmentSettings(candidates=8, min_candidates=2)


def within(seconds):
    """The absolute deadline `seconds` from now."""
    return time.monotonic() + seconds


def with_(settings, **changes):
    """A copy of the settings with some fields changed."""
    return dataclasses.replace(settings, **changes)


def brightness_evaluator(count=16):
    """A stand-in for a frozen model whose 'score' is the mean brightness of dark validation images, so
    that brightening candidates (Invert, AutoContrast, Equalize, Brightness...) beat the unaugmented set."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 40, (count, 3, 8, 8), dtype=np.uint8))

    def mean_brightness(batch):
        return batch.float().mean(dim=(1, 2, 3)).numpy()[:, None]

    def score(labels, predictions):
        return float(np.mean(predictions)) / 255.0

    return ValidationEvaluator(mean_brightness, images, np.zeros((count, 1)), score, seed=0)


@pytest.mark.parametrize("strategy, kind", [("random", PolicyAugment), ("trivialaugment", TrivialAugment)])
def test_strategies_without_search_need_no_evaluator(strategy, kind):
    selection = select_training_augment(with_(SMALL_SEARCH, strategy=strategy), None, within(0.0))
    assert isinstance(selection.augment, kind) and selection.search is None
    if strategy == "random":
        assert len(selection.augment.sub_policies) == SMALL_SEARCH.sub_policies


def test_no_augmentation_chooses_nothing():
    selection = select_training_augment(with_(SMALL_SEARCH, strategy="none"), brightness_evaluator(), within(100.0))
    assert selection.augment is None and selection.search is None


def test_searched_merges_the_candidates_that_beat_the_unaugmented_score():
    selection = select_training_augment(SMALL_SEARCH, brightness_evaluator(), within(600.0))
    search = selection.search
    assert selection.plan.run and len(search.candidates) == 8
    assert search.kept and all(candidate.score > search.baseline_score for candidate in search.kept)
    assert isinstance(selection.augment, PolicyAugment)
    assert selection.augment.sub_policies == search.chosen
    top = sorted(search.kept, key=lambda candidate: candidate.score, reverse=True)[: SMALL_SEARCH.top_n]
    assert set(search.chosen) == {sub for candidate in top for sub in candidate.sub_policies}


def test_search_only_uses_its_share_of_the_time_left():
    selection = select_training_augment(with_(SMALL_SEARCH, max_budget_fraction=0.1), brightness_evaluator(), within(5.0))
    assert selection.plan.time_limit_s <= 0.5 + 1e-9


def test_search_is_skipped_when_too_few_candidates_fit():
    selection = select_training_augment(SMALL_SEARCH, brightness_evaluator(), within(1e-3))
    assert selection.augment is None and not selection.plan.run and selection.search is None
    assert "skipped" in selection.reason


def test_no_validation_set_means_no_search():
    selection = select_training_augment(SMALL_SEARCH, None, within(600.0))
    assert selection.augment is None and "no validation set" in selection.reason


def test_no_candidate_better_than_unaugmented_means_no_augmentation():
    evaluate = brightness_evaluator()
    evaluate.images = torch.full_like(evaluate.images, 255)  # already as bright as can be
    selection = select_training_augment(SMALL_SEARCH, evaluate, within(600.0))
    assert selection.search is not None and not selection.search.kept
    assert selection.augment is None and not isinstance(selection.augment, IdentityAugment)


def test_the_unaugmented_baseline_is_scored_once_and_the_deadline_is_absolute(monkeypatch):
    evaluate = brightness_evaluator()
    unaugmented = []
    original = ValidationEvaluator.__call__

    def counting(self, augment):
        if augment is None:
            unaugmented.append(1)
        return original(self, augment)

    clock = [100.0]  # a clock of our own: the deadline is on it, not on time.monotonic

    def now():
        clock[0] += 0.001
        return clock[0]

    monkeypatch.setattr(ValidationEvaluator, "__call__", counting)
    selection = select_training_augment(SMALL_SEARCH, evaluate, deadline=100.0 + 600.0, now=now)
    assert selection.search is not None and len(selection.search.candidates) == SMALL_SEARCH.candidates
    assert len(unaugmented) == 1
    late = select_training_augment(SMALL_SEARCH, evaluate, deadline=clock[0] - 1.0, now=now)
    assert late.augment is None and not late.plan.run
