"""Evaluation: the best-checkpoint record, validation with the flip-TTA decision, forward-pass costs, priors."""

import numpy as np
import pytest
import torch

from autoclint.budget import Budget, Kind
from autoclint.data.device_set import DeviceSet
from autoclint.evaluate import (
    BestCheckpoint,
    EvalSettings,
    ValidationResult,
    class_priors,
    forward_estimate,
    scores,
    validate,
)
from autoclint.hardware import Precision
from autoclint.nn import make_loss

CPU = Precision(torch.device("cpu"))


class LeftHalfBrightness(torch.nn.Module):
    """Class 1 score = brightness of the left half: mirrored images score the right half instead."""

    def forward(self, x):
        left = x[..., : x.shape[-1] // 2].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(left), 20.0 * (left - 0.5)], dim=1)


def half_lit_images(count=40, seed=0):
    """Class-1 images are bright on one side (left or right at random); class 0 dark; one-hot labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, count)
    images = np.zeros((count, 1, 8, 8, 3), dtype=np.uint8)
    for index, label in enumerate(labels):
        if label:
            side = slice(0, 4) if rng.random() < 0.5 else slice(4, 8)
            images[index, 0, :, side] = 255
    return images, np.eye(2, dtype=np.float32)[labels]


def test_flip_tta_is_chosen_when_it_helps_and_allowed():
    images, labels = half_lit_images()
    valid = DeviceSet(images, labels, CPU.device)
    settings = EvalSettings(batch_size=16, multilabel=False, try_tta=True)
    budget = Budget(0.0, 1.0)
    plain = validate(LeftHalfBrightness(), valid, make_loss(False), CPU, EvalSettings(16, False, False),
                     budget, allow_tta=True)
    tta = validate(LeftHalfBrightness(), valid, make_loss(False), CPU, settings, budget, allow_tta=True)
    assert not plain.tta_helps and tta.tta_helps and tta.nauc > plain.nauc
    counted, passes = LeftHalfBrightness(), []
    counted.register_forward_hook(lambda module, inputs, output: passes.append(len(output)))
    refused = validate(counted, valid, make_loss(False), CPU, settings, budget, allow_tta=False)
    assert not refused.tta_helps and refused.nauc == pytest.approx(plain.nauc)
    assert sum(passes) == len(valid)  # not allowed: the mirrored pass is not even run
    assert budget.measured(Kind.FORWARD) is not None and budget.count(Kind.FORWARD) == 3
    test_scores = scores(LeftHalfBrightness(), valid, CPU, settings, tta=True)
    assert test_scores.shape == (40, 2) and np.allclose(test_scores.sum(axis=1), 1.0)
    assert np.allclose(test_scores, tta.scores, atol=1e-6)


def test_the_best_checkpoint_changes_only_on_a_better_score_or_a_surer_tie():
    net = torch.nn.Linear(2, 2)
    best = BestCheckpoint.of(net)
    assert best.offer(net, ValidationResult(0.5, 1.0, tta_helps=False))
    kept = {k: v.clone() for k, v in best.net.state_dict().items()}
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not best.offer(net, ValidationResult(0.49, 0.1, tta_helps=True))  # worse NAUC, even if surer
    assert not best.offer(net, ValidationResult(0.5, 1.5, tta_helps=False))  # tie, less sure
    assert all(torch.equal(v, kept[k]) for k, v in best.net.state_dict().items())
    assert best.version == 1
    assert best.offer(net, ValidationResult(0.5, 0.5, tta_helps=True))  # tie, surer
    assert best.version == 2 and best.use_tta and torch.equal(best.net.weight, net.weight)
    assert best.offer(net, ValidationResult(0.0, 9.0, tta_helps=False), force=True)
    assert best.nauc == 0.5  # forced weights do not lower the best score seen


def test_forward_estimate_scales_the_measured_cost_per_example():
    budget = Budget(0.0, 1.0)
    assert forward_estimate(budget, 1000) is None
    budget.record(Kind.FORWARD, 0.5, units=250)
    assert forward_estimate(budget, 1000) == pytest.approx(2.0)


def test_class_priors_are_smoothed_frequencies():
    assert np.allclose(class_priors(None, 4), 0.25)
    priors = class_priors((3, 0, 1), 3)
    assert np.isclose(priors.sum(), 1.0) and priors[0] > priors[2] > priors[1] > 0
