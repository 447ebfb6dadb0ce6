"""The prediction candidates: the fast learner over the cache, the choice by validation NAUC, the blend."""

import math

import numpy as np

import autoclint.candidates as candidates_module
from autoclint.candidates import (
    BLEND,
    FAST_LEARNER,
    NETWORK,
    REFIT_TOLERANCE,
    VALID_FIT_MIN_SHARE,
    FastCandidate,
    blend,
    choose_prediction,
)
from autoclint.data.cache import ExampleCache
from autoclint.early import FastLearnerSettings

LABELS = np.eye(2, dtype=np.float32)[[0, 1, 0, 1, 0, 1, 0, 1]]


def scores_with_errors(wrong):
    """Confident scores for LABELS, with the rows in `wrong` swapped."""
    scores = 0.9 * LABELS + 0.05
    scores[wrong] = scores[wrong][:, ::-1]
    return scores


def test_the_best_candidate_on_validation_is_chosen():
    good, poor = scores_with_errors([0]), scores_with_errors([0, 1, 2])
    assert choose_prediction(LABELS, fast=poor, network=good, allow_blend=False).source == NETWORK
    assert choose_prediction(LABELS, fast=good, network=poor, allow_blend=False).source == FAST_LEARNER
    assert choose_prediction(LABELS, fast=poor, network=None, allow_blend=True).source == FAST_LEARNER
    assert choose_prediction(LABELS, fast=None, network=None, allow_blend=True) is None


def test_a_blend_wins_when_the_two_err_independently():
    rng = np.random.default_rng(0)
    labels = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 300)]

    def noisy():
        logits = 2.0 * labels + rng.normal(0.0, 1.5, labels.shape)
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    network, fast = noisy(), noisy()
    choice = choose_prediction(labels, fast=fast, network=network, allow_blend=True)
    alone = max(choose_prediction(labels, fast, None, True).nauc, choose_prediction(labels, None, network, True).nauc)
    assert choice.source == BLEND and 0 < choice.network_weight < 1 and choice.nauc > alone
    mixed = blend(network, fast, choice.network_weight)
    assert np.allclose(mixed, choice.network_weight * network + (1 - choice.network_weight) * fast)
    assert blend(network, None, 1.0) is network and blend(None, fast, 0.0) is fast


def test_ties_prefer_the_network():
    same = scores_with_errors([])
    assert choose_prediction(LABELS, fast=same, network=same.copy(), allow_blend=True).source == NETWORK


def test_without_validation_labels_the_network_is_preferred_once_it_exists():
    empty = np.empty((0, 2), np.float32)
    assert choose_prediction(empty, fast=empty, network=None, allow_blend=True).source == FAST_LEARNER
    choice = choose_prediction(empty, fast=empty, network=empty, allow_blend=True)
    assert choice.source == NETWORK and math.isnan(choice.nauc)


def cache_of(count, seed=0):
    """Grey 8x8 examples whose class is the brighter half; a cache holding them."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    images = rng.integers(0, 60, (count, 1, 8, 8, 1)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, 0, :, 4 * label : 4 * label + 4] += 150
    cache = ExampleCache((1, 8, 8, 1), 2, capacity=count)
    for image, label in zip(images, np.eye(2, dtype=np.float32)[labels]):
        cache.append(image, label)
    return cache


def test_the_fast_learner_is_refitted_as_the_cache_grows_then_once_more_when_all_is_read():
    cache = cache_of(400)
    valid = np.arange(0, 400, 10)
    candidate = FastCandidate(FastLearnerSettings(max_train_examples=300, random_features=64), False, 2)
    assert not candidate.fit_if_grown(cache_of(0), np.empty(0, int), all_read=False)
    assert candidate.fit_if_grown(cache, valid, all_read=False)
    assert candidate.fitted_on == 300 and candidate.valid_scores.shape == (40, 2)
    assert not candidate.fit_if_grown(cache, valid, all_read=True)  # it saw all it would use
    test = cache.gather(np.arange(20))[0]
    first = candidate.test_scores(test)
    assert candidate.test_scores(test) is first  # computed once per fit
    assert np.allclose(first.sum(axis=1), 1.0)


def test_refits_compute_the_features_of_the_validation_and_test_examples_once(monkeypatch):
    """Raw features do not depend on the fit: a refit and its prediction reuse them while the examples
    stay the same, and compute them again for other examples."""
    counted = []
    real = candidates_module.raw_features
    monkeypatch.setattr(candidates_module, "raw_features", lambda x, s: counted.append(len(x)) or real(x, s))
    cache = cache_of(400)
    valid = np.arange(0, 400, 10)
    candidate = FastCandidate(FastLearnerSettings(max_train_examples=150, random_features=64), False, 2)
    test = cache.gather(np.arange(20))[0]
    for fits in (1, 2):
        train = np.setdiff1d(np.arange(150 * fits), valid)
        assert candidate.fit(cache, train, *cache.gather(valid))
        expected = candidate.learner.predict(test)
        np.testing.assert_allclose(candidate.test_scores(test), expected, rtol=1e-5, atol=1e-6)
    assert counted == [40, 20]  # validation once, test once, over two fits
    other = test + 1
    candidate.fit(cache, np.arange(1, 300, 2), *cache.gather(valid))
    np.testing.assert_allclose(candidate.test_scores(other), candidate.learner.predict(other), rtol=1e-5, atol=1e-6)
    assert counted == [40, 20, 20]  # other test examples: their own features


def test_a_partial_cache_is_fitted_again_when_it_doubles_or_is_complete():
    candidate = FastCandidate(FastLearnerSettings(max_train_examples=1000), False, 2)
    candidate.fitted_on = 100
    assert not candidate.wants_fit(150, all_read=False)
    assert candidate.wants_fit(200, all_read=False)
    assert candidate.wants_fit(150, all_read=True)
    candidate.fitted_on = 1000
    assert not candidate.wants_fit(5000, all_read=True)


def test_the_first_fit_is_quick_and_the_next_call_fits_the_full_learner():
    cache = cache_of(200)
    valid = np.arange(0, 200, 10)
    candidate = FastCandidate(FastLearnerSettings(random_features=1000), False, 2)
    assert candidate.fit_if_grown(cache, valid, all_read=True) and candidate.quick
    assert candidate.learner.settings.random_features < 1000
    assert candidate.fit_if_grown(cache, valid, all_read=True) and not candidate.quick
    assert candidate.learner.settings.random_features == 1000 and not candidate.with_valid
    assert candidate.fit_if_grown(cache, valid, all_read=True) and candidate.with_valid  # validation added
    assert not candidate.fit_if_grown(cache, valid, all_read=True)


def cache_with_a_class_only_in(indices, count=300, seed=0):
    """Three classes (a bright band in one of three rows of cells); class 2 only at `indices`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    labels[indices] = 2
    images = rng.integers(0, 60, (count, 1, 9, 9, 1)).astype(np.uint8)
    for index, label in enumerate(labels):
        images[index, 0, 3 * label : 3 * label + 3] += 150
    cache = ExampleCache((1, 9, 9, 1), 3, capacity=count)
    for image, label in zip(images, np.eye(3, dtype=np.float32)[labels]):
        cache.append(image, label)
    return cache, images, labels


def test_once_all_is_read_the_fast_learner_also_learns_the_validation_examples():
    """The last fit adds the held-out examples (a class seen only there is then predicted); its validation
    scores stay those of the fit that never saw them."""
    valid = np.arange(0, 300, 10)
    cache, images, labels = cache_with_a_class_only_in(valid)
    candidate = FastCandidate(FastLearnerSettings(random_features=64), False, 3)
    assert candidate.fit_if_grown(cache, valid, all_read=False) and not candidate.with_valid
    assert not candidate.fit_if_grown(cache, valid, all_read=False)  # validation examples wait for the end
    class_two = images[valid]
    before = candidate.learner.predict(class_two)[:, 2]
    scores, version = candidate.valid_scores, candidate.version
    assert candidate.fit_if_grown(cache, valid, all_read=True) and candidate.with_valid
    assert candidate.version == version + 1 and candidate.learner.num_fitted == 300
    assert candidate.valid_scores is scores
    assert before.max() < 0.01 and candidate.learner.predict(class_two)[:, 2].min() > 0.5
    assert not candidate.fit_if_grown(cache, valid, all_read=True)


def test_the_validation_examples_are_added_only_to_a_full_fit_on_the_whole_training_part():
    valid = np.arange(0, 300, 10)
    cache, _, _ = cache_with_a_class_only_in(valid)
    available = 300 - len(valid)
    candidate = FastCandidate(FastLearnerSettings(random_features=64), False, 3)
    candidate.fitted_on, candidate.accepted = available, True
    assert candidate.wants_valid_fit(available, len(valid))
    assert not candidate.wants_valid_fit(available + 1, len(valid))  # a subsample, or examples not yet fitted
    too_few = int(VALID_FIT_MIN_SHARE * available) - 1
    assert not candidate.wants_valid_fit(available, too_few)
    assert not candidate.wants_valid_fit(available, 0)
    candidate.quick = True  # the quick first fit is followed by the full one first
    assert not candidate.wants_valid_fit(available, len(valid))
    candidate.quick, candidate.accepted = False, False  # the last refit was refused: the fit in use saw fewer
    assert not candidate.wants_valid_fit(available, len(valid))


def test_a_refit_that_scores_lower_on_validation_is_not_used():
    """A refit on examples with wrong labels scores lower on validation: the fit in use stays, and the next
    refit waits for more examples instead of being tried again at once."""
    cache = cache_of(200)
    valid = np.arange(0, 200, 10)
    candidate = FastCandidate(FastLearnerSettings(random_features=64), False, 2)
    assert candidate.fit_if_grown(cache, valid, all_read=False)
    learner, scores = candidate.learner, candidate.valid_scores
    images, labels = cache.gather(np.arange(200))
    for _ in range(2):  # the same images again, each with the other label
        for image, label in zip(images, labels[:, ::-1]):
            cache.append(image, label.copy())
    assert not candidate.fit_if_grown(cache, valid, all_read=False)
    assert candidate.learner is learner and candidate.valid_scores is scores and candidate.version == 1
    assert candidate.fitted_on == 600 - len(valid) and not candidate.wants_fit(600 - len(valid), all_read=False)


def test_a_refit_within_the_tolerance_of_the_fit_in_use_replaces_it(monkeypatch):
    """A refit that scores a little lower on a small, noisy validation set is used (more examples: better in
    expectation); only one lower by more than REFIT_TOLERANCE is refused."""
    cache = cache_of(200)
    valid = np.arange(0, 200, 10)
    candidate = FastCandidate(FastLearnerSettings(random_features=64), False, 2)
    assert candidate.fit_if_grown(cache, valid, all_read=False)
    for shift, used in ((REFIT_TOLERANCE / 2, True), (2 * REFIT_TOLERANCE, False)):
        in_use = candidate.valid_scores

        def scored(labels, scores, in_use=in_use, shift=shift):  # the new fit scores `shift` below the fit in use
            return 0.8 if scores is in_use else 0.8 - shift

        monkeypatch.setattr(candidates_module, "nauc", scored)
        version = candidate.version
        assert candidate.fit(cache, np.setdiff1d(np.arange(200), valid), *cache.gather(valid)) is used
        assert candidate.version == version + used and (candidate.valid_scores is in_use) != used
