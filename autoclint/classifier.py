"""`ImageClassifier`: the anytime method as a scikit-learn estimator one keeps, saves and loads.

`fit` drives the same trainer as the AutoDL entry point, in process, on numpy examples (no TFRecords,
no TensorFlow): probe, plan, cache, fast learner, network, and the candidate chosen on validation,
under one wall-clock budget for the whole call. What it chose is a `Predictor`; `predict_proba` asks
it. Configuration: a preset name and any `ModelConfig` field as a keyword; every field is a named,
keyword-only parameter of the constructor (default None: the preset's value), so `get_params`,
`set_params` and `clone` see each one like any other scikit-learn parameter.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.utils.validation import check_is_fitted

from autoclint.config import DEFAULT_PRESET, ModelConfig, config_from_preset
from autoclint.inputs import Examples
from autoclint.predictor import Predictor
from autoclint.trainer import Trainer

logger = logging.getLogger(__name__)

CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(ModelConfig))
STALL_CALLS = 2
"""Training calls in a row without a better validation NAUC after which `fit` returns early (a call
without improvement already lasts several time slices)."""
IMPROVEMENT = 1e-4
PERFECT_NAUC = 1.0 - 1e-6


class CurvePoint(NamedTuple):
    """One point of the learning curve: seconds into `fit`, validation NAUC, which candidate predicted."""

    seconds: float
    nauc: float
    source: str


@dataclass(frozen=True)
class FitProgress:
    """Where a running `fit` stands, for a progress display."""

    elapsed: float
    budget: float
    examples_read: int
    nauc: float
    source: str


@dataclass(frozen=True)
class TrainingMetadata:
    """What the trainer asks of a data set: its class count and size (the AutoDL metadata's methods)."""

    output_size: int
    num_examples: int

    def get_output_size(self) -> int:
        return self.output_size

    def size(self) -> int:
        return self.num_examples


class TrainingPairs:
    """(example, label row) pairs in a seeded random order, made as the trainer reads them: the trainer
    probes and validates on the first examples, so a class-sorted input must not arrive sorted."""

    def __init__(self, examples: Examples, labels: np.ndarray, seed: int) -> None:
        self.examples, self.labels = examples, labels
        self.order = np.random.default_rng(seed).permutation(len(labels))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for index in self.order:
            yield self.examples[int(index)], self.labels[index]


def encode_labels(y: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    """(label rows [N,K] float32, classes_, whether y is a multilabel indicator matrix).

    A 1-D y of any sortable labels gives one-hot rows over its sorted distinct values; a 2-D 0/1
    matrix is used as it is, its classes being the column indices."""
    labels = np.asarray(y)
    if labels.ndim == 2:
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("a 2-D y must be a 0/1 indicator matrix (multilabel)")
        return labels.astype(np.float32), np.arange(labels.shape[1]), True
    if labels.ndim != 1:
        raise ValueError(f"y must be 1-D labels or a 2-D 0/1 indicator matrix, got shape {labels.shape}")
    classes, index = np.unique(labels, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"y needs at least two classes, got {len(classes)}")
    return np.eye(len(classes), dtype=np.float32)[index], classes, False


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Image and video classifier trained under a wall-clock budget (seconds) by the AutoCLINT method.

    `ImageClassifier(time_budget=300, preset="autoclint", **config_overrides)`: overrides are
    `autoclint.config.ModelConfig` fields (e.g. `tau=4`, `seed=1`).
    """

    def __init__(self, time_budget: float = 300.0, preset: str = DEFAULT_PRESET, **config_overrides: Any) -> None:
        unknown = sorted(set(config_overrides) - set(CONFIG_FIELDS))
        if unknown:
            raise TypeError(f"ImageClassifier got unknown parameter(s): {', '.join(unknown)}")
        self.time_budget = time_budget
        self.preset = preset
        for name, value in config_overrides.items():
            setattr(self, name, value)

    # ------------------------------------------------------------------ configuration

    def model_config(self) -> ModelConfig:
        """The preset with the fields given as parameters (those not None) replaced."""
        overrides = {name: getattr(self, name) for name in CONFIG_FIELDS if getattr(self, name) is not None}
        return config_from_preset(self.preset, overrides)

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any, progress: Optional[Callable[[FitProgress], None]] = None) -> "ImageClassifier":
        """Train within `time_budget` seconds in all (returns earlier once validation stops improving).

        X: [N,H,W(,C)] or [N,T,H,W,C] array, a list of arrays of any size, or image file paths; y: labels
        of any sortable type, or a 2-D 0/1 matrix for multilabel. `progress` is called after each
        training call."""
        start = time.monotonic()
        if self.time_budget is None or not self.time_budget > 0:
            raise ValueError(f"time_budget must be a positive number of seconds, got {self.time_budget!r}")
        config = self.model_config()
        examples = Examples(X)
        labels, classes, indicator = encode_labels(y)
        if len(labels) != len(examples):
            raise ValueError(f"X has {len(examples)} examples but y has {len(labels)} labels")
        # no test call within the budget: predictions are made after `fit`, so none is kept in reserve
        trainer = Trainer(TrainingMetadata(labels.shape[1], len(labels)), config, test_calls=False)
        pairs = TrainingPairs(examples, labels, config.seed)
        curve: list[CurvePoint] = []
        try:
            self._train(trainer, pairs, start, curve, progress)
        finally:
            trainer.close()
        predictor = trainer.predictor()
        if predictor is None:
            raise RuntimeError(f"nothing could be trained within the time budget of {self.time_budget} s "
                               "(see the log for the errors)")
        self.predictor_, self.classes_, self.multilabel_ = predictor, classes, indicator
        self.config_, self.learning_curve_ = config, curve
        self.description_ = predictor.describe()
        self.fit_seconds_ = time.monotonic() - start
        logger.info("fitted in %.1f s of %.1f: %s", self.fit_seconds_, self.time_budget, self.description_)
        return self

    def _train(self, trainer: Trainer, pairs: TrainingPairs, start: float, curve: list[CurvePoint],
               progress: Optional[Callable[[FitProgress], None]]) -> None:
        """Training calls as the AutoDL ingestion makes them, until done, out of time or stalled."""
        best, stalled = -math.inf, 0
        while not trainer.done_training:
            remaining = self.time_budget - (time.monotonic() - start)
            if remaining <= 0:
                break
            trainer.train(pairs, remaining_time_budget=remaining)
            predictor = trainer.predictor()
            if predictor is None:
                continue
            point = CurvePoint(time.monotonic() - start, predictor.valid_nauc, predictor.source)
            curve.append(point)
            if progress is not None:
                read = 0 if trainer.session is None else len(trainer.session.cache)
                progress(FitProgress(point.seconds, float(self.time_budget), read, point.nauc, point.source))
            if math.isnan(point.nauc):
                continue
            if point.nauc >= PERFECT_NAUC:
                logger.info("validation NAUC is perfect: nothing left to improve")
                return
            improved = point.nauc > best + IMPROVEMENT
            best = max(best, point.nauc)
            stalled = 0 if improved else stalled + 1
            if stalled >= STALL_CALLS and trainer.session.checkpoint_version > 0:
                logger.info("no better validation NAUC in %d training calls: stopping early", stalled)
                return

    # ------------------------------------------------------------------ predicting

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities [N, len(classes_)] in `classes_` order (multilabel: one per class, independent)."""
        check_is_fitted(self, "predictor_")
        return self.predictor_.predict_proba(iter(Examples(X)))

    def predict(self, X: Any) -> np.ndarray:
        """Labels from `classes_`; for a multilabel fit the 0/1 matrix (probabilities at 0.5)."""
        probabilities = self.predict_proba(X)
        if not self.multilabel_:
            return self.classes_[probabilities.argmax(axis=1)]
        if not self.predictor_.multilabel:  # an indicator matrix with one class per example: the top one
            return np.eye(len(self.classes_), dtype=int)[probabilities.argmax(axis=1)]
        return (probabilities >= 0.5).astype(int)

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Accuracy; for a multilabel fit the mean over classes of the ROC AUC (classes present in y)."""
        if getattr(self, "multilabel_", False):
            truth = np.asarray(y)
            scored = truth.min(axis=0) != truth.max(axis=0)
            return float(roc_auc_score(truth[:, scored], self.predict_proba(X)[:, scored], average="macro",
                                       sample_weight=sample_weight))
        return float(accuracy_score(y, self.predict(X), sample_weight=sample_weight))

    # ------------------------------------------------------------------ keeping

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to one file (a zip of a JSON manifest and tensors; no pickle)."""
        from autoclint.archive import save_classifier

        check_is_fitted(self, "predictor_")
        return save_classifier(self, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> "ImageClassifier":
        """A fitted classifier from `save`'s file; `ModelFileError` for anything else (nothing is executed)."""
        from autoclint.archive import load_classifier

        return load_classifier(cls, Path(path))


def _constructor_signature() -> inspect.Signature:
    """`__init__`'s signature with every ModelConfig field as a keyword-only parameter defaulting to None."""
    base = inspect.signature(ImageClassifier.__init__)
    fixed = [p for p in base.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    fields = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in CONFIG_FIELDS]
    return base.replace(parameters=fixed + fields)


def _declare_config_parameters() -> None:
    """Make every ModelConfig field a constructor parameter that reads None (the preset's value) unless given."""
    ImageClassifier.__init__.__signature__ = _constructor_signature()  # type: ignore[attr-defined]
    for name in CONFIG_FIELDS:
        setattr(ImageClassifier, name, None)


_declare_config_parameters()
