"""The prediction candidates and the choice between them: the fast learner, the best network checkpoint,
and their blend (a probability average), each scored on the same validation examples.

The fast learner is fitted on the training examples already in the uint8 cache, and fitted again as more
arrive (each time on at least twice as many), so that its predictions are ready in the first seconds and
keep up while the rest of the data is decoded. Once all are read, it is fitted once more with the validation
examples added; its validation scores stay those of the fit before, which never saw them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from autoclint.data.cache import ExampleCache
from autoclint.early import FastLearner, FastLearnerSettings, blas_controller, raw_features
from autoclint.metrics import nauc

logger = logging.getLogger(__name__)

BLEND_WEIGHTS = (0.25, 0.5, 0.75)
"""Network weights tried for the blend (the fast learner gets the rest)."""
REFIT_GROWTH = 2.0
"""The fast learner is fitted again once this many times more training examples are cached."""
QUICK_RANDOM_FEATURES = 256
"""Random features of the very first fit: a smaller ridge system, so the first prediction comes sooner;
the next call fits the full learner."""
REFIT_TOLERANCE = 0.01
"""How much lower a refit may score on validation and still replace the fit in use: a fit on more examples
is better in expectation, and a small validation set (124 examples on breastmnist) is noisy; a refit that
overfits (0.6008 -> 0.5792 on cifar10_15k) is still refused."""
VALID_FIT_MIN_SHARE = 0.05
"""Once the whole training part is fitted, the fast learner is fitted once more with the validation examples
added, where they are at least this share of it: mean test NAUC +0.023 and +0.024 at 320 examples (64 held
out) on fer2013 and cifar10, +0.008 and +0.004 at 3,000 (256 held out); never lower on average."""
FAST_LEARNER = "fast learner"
NETWORK = "network"
BLEND = "blend"


@dataclass(frozen=True)
class Choice:
    """What is predicted: the network's share of the probabilities (1: network alone, 0: fast learner alone)."""

    source: str
    network_weight: float
    nauc: float

    def describe(self) -> str:
        """For the log."""
        weight = f" (network weight {self.network_weight:.2f})" if self.source == BLEND else ""
        return f"{self.source}{weight}, valid NAUC {self.nauc:.4f}"


def blend(network: Optional[np.ndarray], fast: Optional[np.ndarray], network_weight: float) -> np.ndarray:
    """The weighted average of the two probability matrices (either alone at weight 1 or 0)."""
    if network_weight >= 1.0:
        return network
    if network_weight <= 0.0:
        return fast
    return (network_weight * network + (1.0 - network_weight) * fast).astype(np.float32)


def choose_prediction(labels: Optional[np.ndarray], fast: Optional[np.ndarray], network: Optional[np.ndarray],
                      allow_blend: bool) -> Optional[Choice]:
    """The candidate with the best validation NAUC among those available; on a tie the network, then the
    blend (they keep improving), before the fast learner. None when there is no candidate.

    Without validation labels nothing can be compared: the network once it has a checkpoint, else the
    fast learner (scores unknown: NaN)."""
    if labels is None or len(labels) == 0:
        if network is not None:
            return Choice(NETWORK, 1.0, math.nan)
        return None if fast is None else Choice(FAST_LEARNER, 0.0, math.nan)
    candidates = []
    if network is not None:
        candidates.append(Choice(NETWORK, 1.0, nauc(labels, network)))
    if network is not None and fast is not None and allow_blend:
        candidates += [Choice(BLEND, w, nauc(labels, blend(network, fast, w))) for w in BLEND_WEIGHTS]
    if fast is not None:
        candidates.append(Choice(FAST_LEARNER, 0.0, nauc(labels, fast)))
    return max(candidates, key=lambda choice: choice.nauc, default=None)


class FastCandidate:
    """The fast learner over the cache: fitted, refitted as data arrives, its validation and test scores."""

    def __init__(self, settings: FastLearnerSettings, is_multilabel: bool, num_classes: int) -> None:
        self.settings, self.is_multilabel, self.num_classes = settings, is_multilabel, num_classes
        self.learner: Optional[FastLearner] = None
        self.version = 0
        self.fitted_on = 0
        self.quick = False  # the last fit was the quick first one
        self.accepted = False  # the last fit replaced the one before (validation did not refuse it)
        self.with_valid = False  # the fit in use also learned from the validation examples
        self.valid_scores: Optional[np.ndarray] = None
        self._test_scores: Optional[np.ndarray] = None
        self._test_version = -1
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # "valid"/"test": (examples, raw features)

    def complete(self, available: int) -> bool:
        """Whether the last fit was a full one and saw all the training examples it would use of `available`."""
        return not self.quick and self.fitted_on >= min(available, self.settings.max_train_examples)

    def wants_fit(self, available: int, all_read: bool) -> bool:
        """Whether to fit again: enough new training examples arrived since the last fit, or the training set
        is now read in full and the last fit did not see all it would use."""
        if self.complete(available):
            return False
        return self.fitted_on == 0 or self.quick or available >= self.refit_target() or all_read

    def refit_target(self) -> int:
        """How many training examples make a refit due (`wants_fit`), short of the whole set being read."""
        return max(1, math.ceil(REFIT_GROWTH * self.fitted_on))

    def wants_valid_fit(self, available: int, num_valid: int) -> bool:
        """Whether to fit once more with the `num_valid` validation examples added: the fit in use is a full
        one on all `available` training examples, and they add at least `VALID_FIT_MIN_SHARE` of them."""
        return (not self.with_valid and self.accepted and not self.quick and self.fitted_on >= available
                and num_valid >= max(1.0, VALID_FIT_MIN_SHARE * available))

    def fit_if_grown(self, cache: ExampleCache, valid_indices: np.ndarray, all_read: bool) -> bool:
        """Fit again when `wants_fit` says so, or, once everything is read, with the validation examples
        added when `wants_valid_fit` says so; returns whether a new fit is now in use."""
        available = len(cache) - len(valid_indices)
        if self.wants_fit(available, all_read):
            train_indices = np.setdiff1d(np.arange(len(cache)), valid_indices)
            return self.fit(cache, train_indices, *cache.gather(valid_indices))
        if all_read and self.wants_valid_fit(available, len(valid_indices)):
            self.fit_with_valid(cache)
            return True
        return False

    def fit_with_valid(self, cache: ExampleCache) -> None:
        """Fit on every cached example, the validation ones included, and use that fit from now on. Its
        validation scores stay those of the fit before, which never saw those examples: the choice between
        candidates stays honest, and errs against this fit."""
        start = time.monotonic()
        examples, labels = cache.gather(np.arange(len(cache)))
        self.learner = FastLearner(self.settings, self.is_multilabel, self.num_classes).fit(examples, labels)
        self.with_valid = True
        self.version += 1
        logger.info("fast learner fitted on all %d examples, the validation ones included, in %.2f s",
                    len(examples), time.monotonic() - start)

    def fit(self, cache: ExampleCache, train_indices: np.ndarray, valid_examples: np.ndarray,
            valid_labels: Optional[np.ndarray] = None) -> bool:
        """Fit on (a seeded subsample of) the cached training examples and score the validation examples.

        The new fit replaces the last unless it scores more than `REFIT_TOLERANCE` lower on validation (with
        `valid_labels`): a refit on barely more examples, with more random features, can overfit. Returns
        whether it replaced it."""
        start = time.monotonic()
        rng = np.random.default_rng(self.settings.seed + self.version)
        if len(train_indices) > self.settings.max_train_examples:
            train_indices = np.sort(rng.choice(train_indices, self.settings.max_train_examples, replace=False))
        examples, labels = cache.gather(train_indices)
        quick = self.version == 0 and self.settings.random_features > QUICK_RANDOM_FEATURES
        settings = replace(self.settings, random_features=QUICK_RANDOM_FEATURES) if quick else self.settings
        learner = FastLearner(settings, self.is_multilabel, self.num_classes).fit(examples, labels)
        valid_scores = None
        if len(valid_examples):
            valid_scores = learner.predict_features(self._raw_features("valid", valid_examples))
        self.fitted_on, self.quick = len(train_indices), quick  # tried on these: the next refit waits for more
        self.accepted = not self._worse_on_validation(valid_scores, valid_labels)
        if not self.accepted:
            logger.info("fast learner refitted on %d examples scores lower on validation (%.4f, %.4f before): kept "
                        "the last fit", len(train_indices), nauc(valid_labels, valid_scores),
                        nauc(valid_labels, self.valid_scores))
            return False
        self.learner, self.valid_scores = learner, valid_scores
        self.version += 1
        logger.info("fast learner%s fitted on %d examples in %.2f s (%.2f s with its validation scores)",
                    " (quick first fit)" if quick else "", len(train_indices), learner.fit_seconds,
                    time.monotonic() - start)
        return True

    def _worse_on_validation(self, scores: Optional[np.ndarray], labels: Optional[np.ndarray]) -> bool:
        """Whether new validation scores are below those of the fit in use by more than `REFIT_TOLERANCE`
        (never without labels or a fit)."""
        if self.learner is None or scores is None or self.valid_scores is None or labels is None or not len(labels):
            return False
        return nauc(labels, scores) < nauc(labels, self.valid_scores) - REFIT_TOLERANCE

    def test_scores(self, test_examples: np.ndarray) -> np.ndarray:
        """Scores of the latest fit on the test examples (computed once per fit)."""
        if self._test_version != self.version:
            self._test_scores = self.learner.predict_features(self._raw_features("test", test_examples))
            self._test_version = self.version
        return self._test_scores

    def _raw_features(self, kind: str, examples: np.ndarray) -> np.ndarray:
        """The raw features of the validation or test examples, computed once while they stay the same: every
        refit and its prediction would otherwise compute them again (the most costly part of a prediction)."""
        known = self._features.get(kind)
        if known is None or not (known[0] is examples or np.array_equal(known[0], examples)):
            with blas_controller().limit(limits=self.settings.blas_threads):
                known = (examples, raw_features(examples, self.settings))
            self._features[kind] = known
        return known[1]
