"""Fast learner: learns from uint8 caches of any layout, gives calibrated probabilities, never fails."""

from dataclasses import replace

import numpy as np
import pytest

from autoclint import early
from autoclint.early import FastLearner, FastLearnerSettings, features
from autoclint.metrics import nauc

SMALL = FastLearnerSettings(random_features=200)


def class_patterns(num_classes, shape, seed=0):
    """One random uint8-range pattern per class, [K, T, H, W, C] floats in [40, 215]."""
    return np.random.default_rng(seed).uniform(40, 215, size=(num_classes, *shape))


def noisy_examples(patterns, weights, noise, rng):
    """uint8 examples: label-weighted mixtures of the class patterns plus Gaussian pixel noise."""
    totals = np.maximum(weights.sum(axis=1), 1)[:, None, None, None, None]
    mixed = np.einsum("nk,k...->n...", weights, patterns) / totals
    return np.clip(mixed + rng.normal(0, noise, mixed.shape), 0, 255).astype(np.uint8)


def multiclass_problem(num, num_classes=4, shape=(1, 12, 12, 1), noise=40.0, seed=0, patterns=None):
    """Examples of a separable multiclass problem and their one-hot labels."""
    rng = np.random.default_rng(seed)
    patterns = class_patterns(num_classes, shape) if patterns is None else patterns
    labels = np.eye(num_classes, dtype=np.float32)[rng.integers(0, num_classes, num)]
    return noisy_examples(patterns, labels, noise, rng), labels


def assert_valid(probabilities, num, num_classes, multilabel=False):
    assert probabilities.shape == (num, num_classes) and probabilities.dtype == np.float32
    assert np.isfinite(probabilities).all()
    assert (probabilities >= 0).all() and (probabilities <= 1).all()
    if not multilabel:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 12, 12, 1), (1, 12, 12, 3), (1, 10, 14, 4), (3, 12, 12, 3)],
                         ids=["grey", "rgb", "four-channel", "video"])
def test_learns_a_separable_multiclass_problem(shape):
    patterns = class_patterns(4, shape)
    x_train, y_train = multiclass_problem(240, shape=shape, patterns=patterns, seed=1)
    x_test, y_test = multiclass_problem(120, shape=shape, patterns=patterns, seed=2)
    learner = FastLearner(SMALL, False, 4).fit(x_train, y_train)
    probabilities = learner.predict(x_test)
    assert_valid(probabilities, 120, 4)
    assert nauc(y_test, probabilities) > 0.95
    assert learner.fit_seconds > 0


def test_learns_a_multilabel_problem_with_per_class_probabilities():
    shape = (1, 12, 12, 3)
    patterns = class_patterns(5, shape)
    rng = np.random.default_rng(3)
    labels = (rng.random((400, 5)) < 0.3).astype(np.float32)
    examples = noisy_examples(patterns, labels, 20.0, rng)
    learner = FastLearner(SMALL, True, 5).fit(examples[:300], labels[:300])
    probabilities = learner.predict(examples[300:])
    assert_valid(probabilities, 100, 5, multilabel=True)
    assert nauc(labels[300:], probabilities) > 0.9
    assert not np.allclose(probabilities.sum(axis=1), 1.0)  # independent per-class probabilities


def test_probabilities_are_calibrated_on_a_noisy_problem():
    """Mean top-class probability close to accuracy: the output can be averaged with the network's."""
    patterns = class_patterns(4, (1, 12, 12, 1))
    x_train, y_train = multiclass_problem(1500, noise=180.0, patterns=patterns, seed=1)
    x_test, y_test = multiclass_problem(1000, noise=180.0, patterns=patterns, seed=2)
    probabilities = FastLearner(SMALL, False, 4).fit(x_train, y_train).predict(x_test)
    accuracy = np.mean(probabilities.argmax(axis=1) == y_test.argmax(axis=1))
    assert 0.4 < accuracy < 0.97  # a problem that is neither trivial nor hopeless
    assert abs(probabilities.max(axis=1).mean() - accuracy) < 0.08


def test_classes_absent_from_training_get_a_column_near_zero():
    x_train, y_train = multiclass_problem(120, num_classes=3)
    labels = np.zeros((120, 5), np.float32)
    labels[:, [0, 2, 4]] = y_train
    probabilities = FastLearner(SMALL, False, 5).fit(x_train, labels).predict(x_train[:30])
    assert_valid(probabilities, 30, 5)
    assert probabilities[:, [1, 3]].max() < 1e-3


def test_subsample_bound_is_honoured(monkeypatch):
    seen = []
    real = early.raw_features
    monkeypatch.setattr(early, "raw_features", lambda x, s: seen.append(len(x)) or real(x, s))
    x_train, y_train = multiclass_problem(500)
    learner = FastLearner(FastLearnerSettings(max_train_examples=100, random_features=50), False, 4)
    learner.fit(x_train, y_train)
    assert learner.num_fitted == 100 and seen == [100]


def test_same_seed_same_predictions_other_seed_other_subsample():
    x_train, y_train = multiclass_problem(300, noise=150.0)
    settings = FastLearnerSettings(max_train_examples=150, random_features=100, seed=7)
    first = FastLearner(settings, False, 4).fit(x_train, y_train).predict(x_train[:50])
    again = FastLearner(settings, False, 4).fit(x_train, y_train).predict(x_train[:50])
    other = FastLearner(FastLearnerSettings(max_train_examples=150, random_features=100, seed=8), False, 4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other.fit(x_train, y_train).predict(x_train[:50]))


def test_prediction_in_chunks_equals_prediction_at_once(monkeypatch):
    x_train, y_train = multiclass_problem(200)
    learner = FastLearner(SMALL, False, 4).fit(x_train, y_train)
    whole = learner.predict(x_train)
    monkeypatch.setattr(early, "FEATURE_CHUNK", 7)
    np.testing.assert_allclose(learner.predict(x_train), whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "num, num_classes, multilabel, label_rule",
    [
        (5, 3, False, "cycle"),  # tiny N: no held-out set, default calibration
        (1, 4, False, "cycle"),
        (40, 3, False, "constant"),  # one class only
        (40, 1, False, "constant"),  # K = 1
        (60, 2, False, "cycle"),
        (50, 100, False, "cycle"),  # more classes than examples
        (60, 6, True, "sparse"),  # multilabel with all-zero and all-one columns
        (5, 6, True, "sparse"),
    ],
)
def test_degenerate_training_sets_give_valid_probabilities(num, num_classes, multilabel, label_rule):
    rng = np.random.default_rng(0)
    examples = rng.integers(0, 256, (num, 1, 8, 8, 1), dtype=np.uint8)
    labels = np.zeros((num, num_classes), np.float32)
    if label_rule == "cycle":
        labels[np.arange(num), np.arange(num) % num_classes] = 1
    elif label_rule == "constant":
        labels[:, 0] = 1
    else:
        labels[:, 1] = rng.random(num) < 0.5
        labels[:, 2] = 1  # all positive; columns 0, 3, 4, 5 all zero
    settings = FastLearnerSettings() if num == 5 else SMALL  # the default settings on a tiny set
    learner = FastLearner(settings, multilabel, num_classes).fit(examples, labels)
    assert_valid(learner.predict(examples[:3]), min(3, num), num_classes, multilabel)
    assert_valid(learner.predict(examples[:0]), 0, num_classes, multilabel)


def test_constant_images_and_a_single_class_give_that_class():
    examples = np.zeros((20, 1, 8, 8, 3), np.uint8)
    labels = np.zeros((20, 3), np.float32)
    labels[:, 1] = 1
    probabilities = FastLearner(SMALL, False, 3).fit(examples, labels).predict(examples[:2])
    assert (probabilities.argmax(axis=1) == 1).all() and probabilities[:, 1].min() > 0.99


def test_features_are_standardised_and_sized_for_the_layout():
    x, _ = multiclass_problem(50, shape=(2, 20, 30, 3))
    values = features(x, SMALL)
    assert values.shape == (50, early.feature_count(x.shape[1:], SMALL)) and values.dtype == np.float32
    np.testing.assert_allclose(values.mean(axis=0), 0.0, atol=1e-4)
    stds = values.std(axis=0)
    assert np.all((np.abs(stds - 1) < 1e-3) | (stds < 1e-6))  # constant features stay at zero


def test_rejects_mismatched_inputs():
    x, y = multiclass_problem(10)
    with pytest.raises(ValueError, match="columns"):
        FastLearner(SMALL, False, 5).fit(x, y)
    with pytest.raises(ValueError, match="as many labels"):
        FastLearner(SMALL, False, 4).fit(x, y[:5])
    with pytest.raises(RuntimeError, match="before fit"):
        FastLearner(SMALL, False, 4).predict(x)


def ramp_image(angle: float, side: int = 24) -> np.ndarray:
    """[1, side, side] grey ramp whose gradient points at `angle` everywhere (radians, x right, y down): a
    step edge would be a staircase of axis-aligned steps."""
    rows, cols = np.mgrid[0:side, 0:side] - (side - 1) / 2
    return (0.5 + 0.02 * (np.cos(angle) * cols + np.sin(angle) * rows)).astype(np.float32)[None]


@pytest.mark.parametrize("bin_index", range(8))
def test_gradient_histograms_put_a_ramp_in_the_bin_of_its_orientation(bin_index):
    """Unsigned orientations over [0, pi) in 8 bins: a ramp at a bin's centre puts most of its mass there,
    the same for either polarity; a flat image has none."""
    angle = (bin_index + 0.5) * np.pi / 8
    for polarity in (0.0, np.pi):
        histogram = early.gradient_histograms(ramp_image(angle + polarity), 1, 8).reshape(8) ** 2
        assert histogram.argmax() == bin_index
        assert histogram[bin_index] > 0.6 * histogram.sum()
    flat = early.gradient_histograms(np.full((1, 24, 24), 0.5, np.float32), 2, 8)
    np.testing.assert_array_equal(flat, 0.0)


def test_gradient_histograms_are_counted_per_cell():
    """A ramp in the left half only shows in the left cells."""
    image = ramp_image(0.0)
    image[:, :, 12:] = image[:, :, 11:12]  # the right half flat
    histogram = early.gradient_histograms(image, 2, 8).reshape(2, 2, 8)
    assert histogram[:, 0].sum() > 0 and np.allclose(histogram[:, 1], 0.0, atol=1e-3)


def test_box_pool_averages_each_bin():
    rng = np.random.default_rng(0)
    images = rng.random((3, 10, 7, 2), dtype=np.float32)
    pooled = early.box_pool(images, 4, 3)
    row_starts, col_starts = early.bin_starts(10, 4), early.bin_starts(7, 3)
    row_ends, col_ends = np.append(row_starts[1:], 10), np.append(col_starts[1:], 7)
    for r in range(4):
        for c in range(3):
            block = images[:, row_starts[r]:row_ends[r], col_starts[c]:col_ends[c]]
            np.testing.assert_allclose(pooled[:, r, c], block.mean(axis=(1, 2)), rtol=1e-5)


@pytest.mark.parametrize("num, num_features", [(120, 300), (300, 120)], ids=["dual", "primal"])
def test_both_forms_of_the_ridge_give_the_same_fit(num, num_features):
    """The kernel form, used when features outnumber examples, is the same regression as the Gram form."""
    rng = np.random.default_rng(0)
    phi = rng.standard_normal((num, num_features)).astype(np.float32)
    targets = rng.standard_normal((num, 3)).astype(np.float32)
    system = early.ridge_system(phi, targets, fitted=num - 30)
    assert isinstance(system, early.DualRidge if num < num_features else early.PrimalRidge)
    other = (early.PrimalRidge if num < num_features else early.DualRidge)(phi, targets, num - 30)
    assert system.mean_eigenvalue == pytest.approx(other.mean_eigenvalue, rel=1e-5)
    np.testing.assert_allclose(system.held_decisions(5.0), other.held_decisions(5.0), atol=1e-3)
    np.testing.assert_allclose(system.weights(5.0), other.weights(5.0), atol=1e-4)


def ridge_decision_without(phi: np.ndarray, targets: np.ndarray, row: int, alpha: float) -> np.ndarray:
    """Row `row`'s decision by the ridge regression with an unpenalised intercept fitted on the other rows."""
    others = np.delete(np.arange(len(phi)), row)
    phi_mean, target_mean = phi[others].mean(axis=0), targets[others].mean(axis=0)
    centred = phi[others] - phi_mean
    gram = centred.T @ centred + alpha * np.eye(phi.shape[1])
    weights = np.linalg.solve(gram, centred.T @ (targets[others] - target_mean))
    return (phi[row] - phi_mean) @ weights + target_mean


@pytest.mark.parametrize("num, num_features", [(40, 90), (90, 40)], ids=["kernel", "gram"])
def test_leave_one_out_decisions_equal_refits_without_each_row(num, num_features):
    rng = np.random.default_rng(1)
    phi = rng.standard_normal((num, num_features)) + 3.0
    targets = (rng.random((num, 3)) < 0.3).astype(np.float64)
    centred_phi, centred_targets = phi - phi.mean(axis=0), targets - targets.mean(axis=0)
    left_out = early.LeaveOneOut(centred_phi.astype(np.float32), centred_targets.astype(np.float32))
    for alpha in (0.5, 20.0):
        decisions = left_out.held_decisions(alpha) + targets.mean(axis=0)
        expected = np.stack([ridge_decision_without(phi, targets, row, alpha) for row in range(num)])
        np.testing.assert_allclose(decisions, expected, atol=2e-3)


def test_platt_scaling_never_reverses_a_class_ranking():
    """A class whose held-out decisions rank backwards keeps a positive slope: its ranking elsewhere stays."""
    rng = np.random.default_rng(0)
    targets = (rng.random((60, 2)) < 0.5).astype(np.float64)
    decisions = np.stack([targets[:, 0] + 0.1 * rng.standard_normal(60),
                          -targets[:, 1] + 0.1 * rng.standard_normal(60)], axis=1)
    slopes, _ = early.fit_platt(decisions, targets)
    assert slopes[0] > 1.0 and slopes[1] == pytest.approx(early.MIN_PLATT_SLOPE)


def test_a_few_hundred_examples_choose_alpha_and_calibration_from_every_example():
    """Up to `max_leave_one_out`, no example is held back from choosing alpha: a learner on 60 examples
    (too few for a held-out part) is calibrated on their left-out decisions instead of the default scale."""
    images, labels = multiclass_problem(60, num_classes=2, seed=2)
    settings = FastLearnerSettings(random_features=64)
    learner = FastLearner(settings, is_multilabel=False, num_classes=2).fit(images, labels)
    assert early.holdout_size(60, settings) == 0
    assert learner.parameters()["temperature_scale"] != settings.default_temperature_scale
    held_out_only = FastLearner(replace(settings, max_leave_one_out=0), False, 2).fit(images, labels)
    assert held_out_only.parameters()["temperature_scale"] == settings.default_temperature_scale
