"""AutoDL scores: per-column AUC, NAUC and the area under the learning curve (ALC).

This is the one implementation used both by the local scoring program and by the model's own
validation, so that what the model optimises is exactly what the platform measures.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_T0 = 60.0
"""Time constant (seconds) of the AutoDL logarithmic time transformation."""


def _as_2d(array: np.ndarray | Sequence, name: str) -> np.ndarray:
    """Return `array` as a float64 matrix [rows, columns]; a vector becomes a single column."""
    matrix = np.asarray(array, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a vector or a matrix [examples, classes], got shape {matrix.shape}")
    return matrix


def _check_pair(
    solution: np.ndarray | Sequence, prediction: np.ndarray | Sequence
) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert a (solution, prediction) pair to two float matrices of the same shape."""
    solution = _as_2d(solution, "solution")
    prediction = _as_2d(prediction, "prediction")
    if solution.shape != prediction.shape:
        raise ValueError(f"solution has shape {solution.shape} but prediction has shape {prediction.shape}")
    if not np.isin(solution, (0.0, 1.0)).all():
        raise ValueError("solution must contain only 0/1 values")
    if not np.isfinite(prediction).all():
        raise ValueError("prediction contains NaN or infinite values")
    return solution, prediction


def tied_ranks(values: np.ndarray) -> np.ndarray:
    """Rank each column of `values` from 1 upwards, giving tied entries the average of their ranks."""
    values = _as_2d(values, "values")
    num_rows, num_cols = values.shape
    order = np.argsort(values, axis=0, kind="stable")
    sorted_values = np.take_along_axis(values, order, axis=0)
    positions = np.broadcast_to(np.arange(num_rows)[:, None], (num_rows, num_cols))
    starts_group = np.ones((num_rows, num_cols), dtype=bool)
    starts_group[1:] = sorted_values[1:] != sorted_values[:-1]
    ends_group = np.ones((num_rows, num_cols), dtype=bool)
    ends_group[:-1] = starts_group[1:]
    # First and last sorted position of each entry's tie group, propagated along the column.
    group_first = np.maximum.accumulate(np.where(starts_group, positions, 0), axis=0)
    group_last = np.minimum.accumulate(np.where(ends_group, positions, num_rows)[::-1], axis=0)[::-1]
    average_rank = (group_first + group_last) / 2.0 + 1.0
    ranks = np.empty((num_rows, num_cols), dtype=np.float64)
    np.put_along_axis(ranks, order, average_rank, axis=0)
    return ranks


def auc_per_column(solution: np.ndarray | Sequence, prediction: np.ndarray | Sequence) -> np.ndarray:
    """ROC AUC of each class column (Mann-Whitney with tie-aware ranks); NaN where a column lacks a class.

    `solution` holds 0/1 labels and `prediction` scores, both [examples, classes] (a vector is one
    column). Ties in the scores count one half, as in `sklearn.metrics.roc_auc_score`.
    """
    solution, prediction = _check_pair(solution, prediction)
    positive = solution > 0.5
    num_pos = positive.sum(axis=0).astype(np.float64)
    num_neg = solution.shape[0] - num_pos
    rank_sum_pos = np.where(positive, tied_ranks(prediction), 0.0).sum(axis=0)
    valid = (num_pos > 0) & (num_neg > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum_pos - num_pos * (num_pos + 1) / 2.0) / (num_pos * num_neg)
    return np.where(valid, auc, np.nan)


def nauc(solution: np.ndarray | Sequence, prediction: np.ndarray | Sequence) -> float:
    """Normalised AUC, 2·AUC − 1, averaged over the columns that have both classes in `solution`.

    When no column has both classes the score is undefined; it is then 0.0 (the value of an
    uninformative prediction), with a warning, so that learning curves and comparisons stay finite.
    """
    auc = auc_per_column(solution, prediction)
    valid = ~np.isnan(auc)
    if not valid.any():
        logger.warning("NAUC undefined: no class column has both positive and negative examples; using 0.0")
        return 0.0
    return float(np.mean(2.0 * auc[valid] - 1.0))


def accuracy(solution: np.ndarray | Sequence, prediction: np.ndarray | Sequence) -> float:
    """Fraction of examples whose highest-scoring class is one of their true classes."""
    solution, prediction = _check_pair(solution, prediction)
    if solution.shape[0] == 0:
        return 0.0
    top = np.argmax(prediction, axis=1)
    return float(np.mean(solution[np.arange(solution.shape[0]), top] > 0.5))


def _check_time_constants(time_budget: float, t0: float) -> None:
    """Reject non-positive budgets or time constants, for which the transformation is undefined."""
    if not time_budget > 0:
        raise ValueError(f"time_budget must be positive, got {time_budget}")
    if not t0 > 0:
        raise ValueError(f"t0 must be positive, got {t0}")


def transform_time(t: float | np.ndarray, time_budget: float, t0: float = DEFAULT_T0) -> float | np.ndarray:
    """AutoDL's logarithmic time axis: t̃ = log(1 + t/t0) / log(1 + T/t0), so t = 0 -> 0 and t = T -> 1."""
    _check_time_constants(time_budget, t0)
    transformed = np.log1p(np.asarray(t, dtype=np.float64) / t0) / np.log1p(time_budget / t0)
    return float(transformed) if transformed.ndim == 0 else transformed


def alc(
    timestamps: Sequence[float] | np.ndarray,
    naucs: Sequence[float] | np.ndarray,
    time_budget: float,
    t0: float = DEFAULT_T0,
) -> float:
    """Area under the learning curve: NAUC as a step function of transformed time, from (0, 0) to t̃ = 1.

    `timestamps` are seconds since the start of the budget (non-decreasing); each prediction holds
    its NAUC from its transformed time until the next prediction, the last one until t̃ = 1.
    Predictions made after `time_budget` are ignored.
    """
    _check_time_constants(time_budget, t0)
    times = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    scores = np.asarray(naucs, dtype=np.float64).reshape(-1)
    if times.shape != scores.shape:
        raise ValueError(f"{times.size} timestamps but {scores.size} NAUC values")
    if not (np.isfinite(times).all() and np.isfinite(scores).all()):
        raise ValueError("timestamps and NAUC values must be finite")
    if (times < 0).any():
        raise ValueError("timestamps must be seconds since the start, >= 0")
    if (np.diff(times) < 0).any():
        raise ValueError("timestamps must be non-decreasing (in prediction order)")
    within_budget = times <= time_budget
    times, scores = times[within_budget], scores[within_budget]
    if times.size == 0:
        return 0.0
    steps_start = transform_time(times, time_budget, t0)
    steps_end = np.append(steps_start[1:], 1.0)
    return float(np.sum(scores * (steps_end - steps_start)))
