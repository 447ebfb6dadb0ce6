"""AUC/NAUC agree with scikit-learn; ALC and the time transformation match hand-computed values."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from autoclint.metrics import accuracy, alc, auc_per_column, nauc, tied_ranks, transform_time


def _random_multilabel(rng: np.random.Generator, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Random 0/1 labels and coarse (heavily tied) scores."""
    solution = (rng.random((rows, cols)) < 0.3).astype(float)
    prediction = np.round(rng.random((rows, cols)) * 4) / 4  # five distinct values: many ties
    return solution, prediction


def test_tied_ranks_average_ties_per_column():
    values = np.array([[3.0, 1.0], [1.0, 1.0], [3.0, 2.0], [2.0, 1.0]])
    expected = np.array([[3.5, 2.0], [1.0, 2.0], [3.5, 4.0], [2.0, 2.0]])
    np.testing.assert_allclose(tied_ranks(values), expected)


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    solution, prediction = _random_multilabel(rng, rows=57, cols=6)
    solution[0], solution[1] = 1, 0  # make sure every column has both classes
    expected = [roc_auc_score(solution[:, k], prediction[:, k]) for k in range(6)]
    np.testing.assert_allclose(auc_per_column(solution, prediction), expected, rtol=1e-12)
    np.testing.assert_allclose(nauc(solution, prediction), 2 * np.mean(expected) - 1, rtol=1e-12)


def test_auc_matches_sklearn_multiclass_one_hot_continuous_scores():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 4, size=200)
    labels[:4] = np.arange(4)
    solution = np.eye(4)[labels]
    prediction = rng.random((200, 4)) + 0.5 * solution
    expected = roc_auc_score(solution, prediction, average=None)
    np.testing.assert_allclose(auc_per_column(solution, prediction), expected, rtol=1e-12)


def test_single_class_columns_are_nan_and_skipped_by_nauc():
    solution = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]], dtype=float)
    prediction = np.array([[0.9, 0.1, 0.3], [0.2, 0.5, 0.2], [0.8, 0.4, 0.9], [0.1, 0.3, 0.1]])
    auc = auc_per_column(solution, prediction)
    assert auc[0] == 1.0
    assert np.isnan(auc[1]) and np.isnan(auc[2])
    assert nauc(solution, prediction) == 1.0


def test_nauc_is_zero_when_no_column_is_valid():
    solution = np.ones((5, 2))
    assert nauc(solution, np.random.default_rng(0).random((5, 2))) == 0.0


def test_perfect_inverse_and_constant_predictions():
    solution = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    assert nauc(solution, solution) == 1.0
    assert nauc(solution, 1 - solution) == -1.0
    assert nauc(solution, np.zeros_like(solution)) == 0.0


def test_shape_mismatch_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4, 3\)"):
        nauc(np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        nauc(np.eye(2), np.array([[np.nan, 0], [0, 1]]))
    with pytest.raises(ValueError, match="0/1"):
        nauc(np.full((2, 2), 0.5), np.eye(2))


def test_accuracy_counts_top_class_hits():
    solution = np.eye(3)[[0, 1, 2, 2]]
    prediction = np.array([[0.9, 0.1, 0], [0.1, 0.8, 0.1], [0.5, 0.2, 0.3], [0, 0, 1]])
    assert accuracy(solution, prediction) == 0.75


def test_transform_time_endpoints_and_midpoint():
    assert transform_time(0.0, 1200) == 0.0
    assert transform_time(1200.0, 1200) == pytest.approx(1.0)
    assert transform_time(60.0, 1200) == pytest.approx(math.log(2) / math.log(21))
    np.testing.assert_allclose(transform_time(np.array([0.0, 1200.0]), 1200), [0.0, 1.0])


def test_alc_single_perfect_prediction_at_start_is_one():
    assert alc([0.0], [1.0], time_budget=1200) == pytest.approx(1.0)


def test_alc_half_score_from_one_minute():
    expected = 0.5 * (1 - math.log(2) / math.log(21))
    assert alc([60.0], [0.5], time_budget=1200) == pytest.approx(expected)


def test_alc_steps_and_ignores_predictions_after_budget():
    budget, t0 = 100.0, 10.0
    tt = [math.log1p(t / t0) / math.log1p(budget / t0) for t in (5.0, 40.0)]
    expected = 0.2 * (tt[1] - tt[0]) + 0.8 * (1 - tt[1])
    assert alc([5.0, 40.0, 150.0], [0.2, 0.8, 1.0], budget, t0=t0) == pytest.approx(expected)


def test_alc_without_predictions_is_zero_and_bad_input_is_rejected():
    assert alc([], [], 1200) == 0.0
    assert alc([1300.0], [1.0], 1200) == 0.0
    with pytest.raises(ValueError, match="non-decreasing"):
        alc([10.0, 5.0], [0.1, 0.2], 1200)
    with pytest.raises(ValueError, match="2 timestamps but 1"):
        alc([1.0, 2.0], [0.1], 1200)
    with pytest.raises(ValueError, match="time_budget"):
        alc([1.0], [0.1], 0)
