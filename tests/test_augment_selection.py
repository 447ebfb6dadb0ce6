"""Choosing the training augmentation: each strategy's transform, the searched policy, skipping unaffordable searches."""

import numpy as np
import pytest
import torch

from autoclint.augment import IdentityAugment, PolicyAugment, TrivialAugment, select_training_augment
from autoclint.augment.search import make_validation_evaluator
from autoclint.config import ModelConfig

SMALL_SEARCH = ModelConfig(faa_candidates=8, faa_min_candidates=2)


def brightness_evaluator(count=16):
    """A stand-in for a frozen model whose 'score' is the mean brightness of dark validation images, so
    that brightening candidates (Invert, AutoContrast, Equalize, Brightness...) beat the unaugmented set."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 40, (count, 3, 8, 8), dtype=np.uint8))

    def mean_brightness(batch):
        return batch.float().mean(dim=(1, 2, 3)).numpy()[:, None]

    def score(labels, predictions):
        return float(np.mean(predictions)) / 255.0

    return make_validation_evaluator(mean_brightness, images, np.zeros((count, 1)), score, seed=0)


@pytest.mark.parametrize("strategy, kind", [("random", PolicyAugment), ("trivialaugment", TrivialAugment)])
def test_strategies_without_search_need_no_evaluator(strategy, kind):
    selection = select_training_augment(SMALL_SEARCH.replace(augmentation=strategy), None, time_left_s=0.0)
    assert isinstance(selection.augment, kind) and selection.search is None
    if strategy == "random":
        assert len(selection.augment.sub_policies) == SMALL_SEARCH.faa_sub_policies


def test_no_augmentation_chooses_nothing():
    selection = select_training_augment(SMALL_SEARCH.replace(augmentation="none"), brightness_evaluator(), 100.0)
    assert selection.augment is None and selection.search is None


def test_searched_merges_the_candidates_that_beat_the_unaugmented_score():
    selection = select_training_augment(SMALL_SEARCH, brightness_evaluator(), time_left_s=600.0)
    search = selection.search
    assert selection.plan.run and len(search.candidates) == 8
    assert search.kept and all(candidate.score > search.baseline_score for candidate in search.kept)
    assert isinstance(selection.augment, PolicyAugment)
    assert selection.augment.sub_policies == search.chosen
    top = sorted(search.kept, key=lambda candidate: candidate.score, reverse=True)[: SMALL_SEARCH.faa_top_n]
    assert set(search.chosen) == {sub for candidate in top for sub in candidate.sub_policies}


def test_search_only_uses_its_share_of_the_time_left():
    selection = select_training_augment(SMALL_SEARCH.replace(faa_max_budget_fraction=0.1), brightness_evaluator(), 5.0)
    assert selection.plan.time_limit_s <= 0.5 + 1e-9


def test_search_is_skipped_when_too_few_candidates_fit():
    selection = select_training_augment(SMALL_SEARCH, brightness_evaluator(), time_left_s=1e-3)
    assert selection.augment is None and not selection.plan.run and selection.search is None
    assert "skipped" in selection.reason


def test_no_validation_set_means_no_search():
    selection = select_training_augment(SMALL_SEARCH, None, time_left_s=600.0)
    assert selection.augment is None and "no validation set" in selection.reason


def test_no_candidate_better_than_unaugmented_means_no_augmentation():
    evaluate = brightness_evaluator()
    evaluate.images = torch.full_like(evaluate.images, 255)  # already as bright as can be
    selection = select_training_augment(SMALL_SEARCH, evaluate, time_left_s=600.0)
    assert selection.search is not None and not selection.search.kept
    assert selection.augment is None and not isinstance(selection.augment, IdentityAugment)
