"""Evaluation: logits and scores of a network, the validation score with the flip-TTA decision, the
test pass, class priors, and the one record of the best checkpoint so far.

Validation and test sets are uint8 tensors already on the device (`DeviceSet`); every pass is timed
and recorded in the budget, so that the next one can be planned.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from autoclint.budget import Budget, Kind
from autoclint.data.device_set import DeviceSet
from autoclint.hardware import Precision
from autoclint.metrics import nauc
from autoclint.nn import predict_scores

IMPROVEMENT_TOLERANCE = 1e-4
"""A validation NAUC must beat the best by more than this to count as better."""
TTA_PASSES = 2
"""Flip test-time augmentation costs two forward passes: plain and mirrored."""
UNKNOWN_TEST_DURATION_S = 1.0
"""Kept for the first test call, before the test set's size is known."""
PREDICTION_SLACK_S = 0.5
"""A test pass starts only with this much time left beyond its planned duration."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalSettings:
    """What evaluation needs to know: batch size, task type, whether to try flip TTA."""

    batch_size: int
    multilabel: bool
    try_tta: bool


@dataclass
class ValidationResult:
    """Scores of one checkpoint on the validation set."""

    nauc: float
    loss: float
    tta_helps: bool
    scores: Optional[np.ndarray] = None  # validation scores of the chosen variant (plain or TTA)


@torch.inference_mode()
def logits(net: nn.Module, device_set: DeviceSet, precision: Precision, batch_size: int,
           flip: bool = False) -> torch.Tensor:
    """Float logits of the whole set (mirrored left-right when `flip`), in order."""
    net.eval()
    outputs = []
    for batch in device_set.batches(batch_size):
        if flip:
            batch = batch.flip(-1)
        with precision.autocast():
            outputs.append(net(batch).float())
    if not outputs:
        return torch.zeros((0, 0), device=precision.device)
    return torch.cat(outputs)


def scores(net: nn.Module, device_set: DeviceSet, precision: Precision, settings: EvalSettings,
           tta: bool) -> np.ndarray:
    """Class scores (softmax or sigmoid) of the set, averaged with the mirrored pass when `tta`."""
    plain = predict_scores(logits(net, device_set, precision, settings.batch_size), settings.multilabel)
    if tta:
        mirrored = logits(net, device_set, precision, settings.batch_size, flip=True)
        plain = 0.5 * (plain + predict_scores(mirrored, settings.multilabel))
    return plain.cpu().numpy().astype(np.float32)


def validate(net: nn.Module, valid: DeviceSet, loss_fn: nn.Module, precision: Precision,
             settings: EvalSettings, budget: Budget, allow_tta: bool) -> ValidationResult:
    """Validation NAUC and loss of `net`; with flip TTA when it beats the plain pass. Where TTA is not
    allowed (the first checkpoint) the mirrored pass is skipped: it doubled the first validation.

    Records the cost of one forward pass per example in the budget.
    """
    start = budget.now()
    raw = logits(net, valid, precision, settings.batch_size)
    labels = torch.from_numpy(valid.labels).to(precision.device)
    loss = float(loss_fn(raw, labels))
    plain = predict_scores(raw, settings.multilabel).cpu().numpy()
    plain_nauc = nauc(valid.labels, plain)
    passes, result = 1, ValidationResult(plain_nauc, loss, tta_helps=False, scores=plain)
    if settings.try_tta and allow_tta:
        mirrored = logits(net, valid, precision, settings.batch_size, flip=True)
        passes = TTA_PASSES
        averaged = 0.5 * (plain + predict_scores(mirrored, settings.multilabel).cpu().numpy())
        tta_nauc = nauc(valid.labels, averaged)
        if tta_nauc > plain_nauc + IMPROVEMENT_TOLERANCE:
            result = ValidationResult(tta_nauc, loss, tta_helps=True, scores=averaged)
    budget.record(Kind.FORWARD, budget.now() - start, units=passes * len(valid))
    return result


def forward_estimate(budget: Budget, count: int) -> Optional[float]:
    """Seconds of one forward pass over `count` examples from the measured cost per example (measured on
    the validation set, at most one evaluation batch, so it errs on the slow side for larger sets); None
    before any pass was measured."""
    per_example = budget.measured(Kind.FORWARD)
    return None if per_example is None else per_example * count


def test_pass_estimate(budget: Budget, test_size: Optional[int]) -> float:
    """Planned seconds of one test pass: a fixed allowance before the test set was read (the first test call
    is short anyway), then as measured (or estimated from validation passes)."""
    if test_size is None:
        return UNKNOWN_TEST_DURATION_S
    measured = budget.measured(Kind.TEST_PASS) or forward_estimate(budget, test_size) or UNKNOWN_TEST_DURATION_S
    return budget.planned(measured)


def validation_estimate(budget: Budget, valid_size: int, try_tta: bool) -> float:
    """Planned seconds of one validation: the plain pass and, when tried, the mirrored one."""
    passes = TTA_PASSES if try_tta else 1
    return budget.planned(passes * (forward_estimate(budget, valid_size) or 0.0))


def timed_test_pass(net: nn.Module, test_set: DeviceSet, precision: Precision, settings: EvalSettings,
                    budget: Budget, use_tta: bool) -> np.ndarray:
    """Test scores of `net`, with flip TTA when asked and a second pass still fits the budget; records the
    pass and logs its planned against its measured duration, so that the clock's calibration shows."""
    planned = test_pass_estimate(budget, len(test_set))
    tta = use_tta and budget.time_left() > TTA_PASSES * planned + PREDICTION_SLACK_S
    passes, start = TTA_PASSES if tta else 1, budget.now()
    prediction = scores(net, test_set, precision, settings, tta)
    elapsed = budget.now() - start
    budget.record(Kind.TEST_PASS, elapsed, units=passes)
    logger.info("test pass%s: %.2f s measured, %.2f s planned", " with flip TTA" if tta else "", elapsed,
                passes * planned)
    return prediction


@dataclass
class BestCheckpoint:
    """The best network so far by validation score: its weights, scores, version and TTA flag."""

    net: nn.Module
    nauc: float = -math.inf
    loss: float = math.inf
    version: int = 0
    use_tta: bool = False
    valid_scores: Optional[np.ndarray] = None

    @classmethod
    def of(cls, net: nn.Module) -> "BestCheckpoint":
        """An empty record whose weights buffer is a frozen copy of `net`."""
        return cls(copy.deepcopy(net).eval())

    def is_better(self, result: ValidationResult) -> bool:
        """Strictly better NAUC, or a tie with a lower validation loss."""
        better = result.nauc > self.nauc + IMPROVEMENT_TOLERANCE
        tied_but_surer = result.nauc >= self.nauc - IMPROVEMENT_TOLERANCE and result.loss < self.loss
        return better or tied_but_surer

    def offer(self, net: nn.Module, result: ValidationResult, force: bool = False) -> bool:
        """Keep `net`'s weights when `result` is better (or `force`); returns whether they were kept."""
        if not (force or self.is_better(result)):
            return False
        self.nauc, self.loss = max(self.nauc, result.nauc), result.loss
        self.net.load_state_dict(net.state_dict())
        self.use_tta, self.valid_scores = result.tta_helps, result.scores
        self.version += 1
        return True


class FrozenScorer:
    """Scores of a frozen network for uint8 batches on the device: the augmentation search's model."""

    def __init__(self, net: nn.Module, precision: Precision, multilabel: bool) -> None:
        self.net, self.precision, self.multilabel = net, precision, multilabel

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """Class scores (numpy) of one uint8 batch, network in evaluation mode."""
        self.net.eval()
        with self.precision.autocast():
            raw = self.net(self.precision.to_input(images)).float()
        return predict_scores(raw, self.multilabel).cpu().numpy()


def class_priors(label_counts: Optional[tuple[int, ...]], num_classes: int) -> np.ndarray:
    """Class frequencies from label counts, smoothed by one (uniform when none were seen)."""
    if label_counts is None:
        return np.full(num_classes, 1.0 / num_classes, dtype=np.float32)
    counts = np.asarray(label_counts, dtype=np.float32) + 1.0
    return (counts / counts.sum()).astype(np.float32)
