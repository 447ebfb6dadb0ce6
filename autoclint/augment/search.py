"""Light Fast AutoAugment (the paper's Algorithm 1): with the model frozen, score random sets of C
sub-policies from the archive by the validation metric on augmented validation data, keep those
that beat the unaugmented score, and merge the top N into the training augmentation.

The search knows nothing of training: it calls `evaluate(augment_or_None) -> score`. It is
budget-aware: it times the baseline evaluation, shortens the number of candidates to fit its time
limit (or skips when too few fit) and never starts an evaluation it expects to end past its deadline."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from autoclint.augment.pipeline import Augment, PolicyAugment, sample_sub_policies
from autoclint.augment.policies import SubPolicy

logger = logging.getLogger(__name__)

Evaluate = Callable[[Optional[Augment]], float]


@dataclass(frozen=True)
class CandidateScore:
    """One searched candidate policy (C sub-policies) and its best validation score."""

    sub_policies: tuple[SubPolicy, ...]
    score: float


@dataclass
class SearchResult:
    """What a policy search did and found."""

    baseline_score: float
    candidates: list[CandidateScore] = field(default_factory=list)
    kept: list[CandidateScore] = field(default_factory=list)
    chosen: tuple[SubPolicy, ...] = ()
    elapsed_s: float = 0.0
    planned_candidates: int = 0
    shortened: bool = False
    skipped: bool = False


@dataclass(frozen=True)
class SearchPlan:
    """Whether to search now, with how many candidates and within which time limit."""

    run: bool
    num_candidates: int
    time_limit_s: float
    reason: str


def search_policies(
    evaluate: Evaluate,
    archive: Sequence[SubPolicy],
    *,
    num_policies_per_candidate: int = 3,
    num_candidates: int = 100,
    top_n: int = 5,
    repeats: int = 1,
    deadline: float = math.inf,
    min_candidates: int = 3,
    seed: int = 0,
    baseline: Optional[tuple[float, float]] = None,
    now: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Run Algorithm 1: T = `num_candidates` random candidates of C sub-policies, each scored
    `repeats` times (best kept); candidates strictly above the unaugmented score are kept and the
    top N merged, duplicates removed, into `SearchResult.chosen`. Repeats only differ when
    `evaluate` resamples its augmentation (each candidate's augment has its own seeded generator).

    `baseline` is the unaugmented (score, seconds per evaluation) when already measured; otherwise
    it is measured here. No evaluation starts that is expected to end after `deadline` (on `now`'s clock).
    """
    _check_search_arguments(archive, num_policies_per_candidate, num_candidates, top_n, repeats)
    start = now()
    baseline_score, eval_s = baseline if baseline is not None else _timed(evaluate, None, now)
    logger.info("policy search: unaugmented validation score %.4f (%.2f s per evaluation)", baseline_score, eval_s)

    planned = _affordable_candidates(num_candidates, repeats, eval_s, deadline - now())
    result = SearchResult(baseline_score=baseline_score, planned_candidates=planned,
                          shortened=planned < num_candidates)
    if planned < min(min_candidates, num_candidates):
        logger.info("policy search skipped: only %d of %d candidates fit the time limit", planned, num_candidates)
        result.skipped = True
        result.elapsed_s = now() - start
        return result
    if result.shortened:
        logger.info("policy search shortened to %d of %d candidates to fit the time limit", planned, num_candidates)

    rng = np.random.default_rng(seed)
    for index in range(planned):
        sub_policies = sample_sub_policies(archive, num_policies_per_candidate, rng)
        score, eval_s = _best_of_repeats(evaluate, sub_policies, repeats, eval_s, deadline, seed + index, now)
        if score is None:
            logger.info("policy search stopped at its deadline after %d candidates", index)
            result.shortened = True
            break
        candidate = CandidateScore(sub_policies, score)
        result.candidates.append(candidate)
        kept = score > baseline_score
        if kept:
            result.kept.append(candidate)
        logger.debug("candidate %d: score %.4f (%s) %s", index, score, "kept" if kept else "dropped",
                     describe_sub_policies(sub_policies))

    result.kept.sort(key=lambda candidate: candidate.score, reverse=True)
    result.chosen = merge_top_candidates(result.kept, top_n)
    result.elapsed_s = now() - start
    logger.info("policy search: %d/%d candidates beat %.4f; chose %d sub-policies in %.1f s: %s",
                len(result.kept), len(result.candidates), baseline_score, len(result.chosen), result.elapsed_s,
                describe_sub_policies(result.chosen))
    return result


def _timed(evaluate: Evaluate, augment: Optional[Augment], now: Callable[[], float]) -> tuple[float, float]:
    """The score of one evaluation and the seconds it took."""
    started = now()
    score = float(evaluate(augment))
    return score, now() - started


def merge_top_candidates(kept: Sequence[CandidateScore], top_n: int) -> tuple[SubPolicy, ...]:
    """The sub-policies of the `top_n` best candidates, best first, each sub-policy once."""
    ranked = sorted(kept, key=lambda candidate: candidate.score, reverse=True)[:top_n]
    merged: dict[SubPolicy, None] = {}
    for candidate in ranked:
        for sub_policy in candidate.sub_policies:
            merged.setdefault(sub_policy, None)
    return tuple(merged)


def plan_search_budget(
    per_eval_s: float,
    remaining_budget_s: float,
    retrain_reserve_s: float,
    *,
    num_candidates: int = 100,
    repeats: int = 1,
    min_candidates: int = 3,
    max_search_s: Optional[float] = None,
) -> SearchPlan:
    """Decide whether a search pays: the time left after keeping `retrain_reserve_s` for training
    on the augmented data (capped by `max_search_s`) must fit the baseline evaluation plus at least
    `min_candidates` candidates of `repeats` evaluations of `per_eval_s` each."""
    if per_eval_s <= 0:
        raise ValueError(f"per_eval_s must be positive, got {per_eval_s}")
    available = remaining_budget_s - retrain_reserve_s
    if max_search_s is not None:
        available = min(available, max_search_s)
    affordable = _affordable_candidates(num_candidates, repeats, per_eval_s, available - per_eval_s)
    if affordable < min(min_candidates, num_candidates):
        reason = (f"{max(available, 0.0):.1f} s available fits {affordable} candidates of "
                  f"{per_eval_s * repeats:.2f} s; need {min_candidates}")
        return SearchPlan(run=False, num_candidates=0, time_limit_s=0.0, reason=reason)
    reason = f"{affordable} candidates of {per_eval_s * repeats:.2f} s fit {available:.1f} s"
    return SearchPlan(run=True, num_candidates=affordable, time_limit_s=available, reason=reason)


def _affordable_candidates(num_candidates: int, repeats: int, per_eval_s: float, time_left_s: float) -> int:
    """How many of the wanted candidates fit the time left (all of them without a limit)."""
    if math.isinf(time_left_s):
        return num_candidates
    if time_left_s <= 0:
        return 0
    per_candidate_s = max(per_eval_s, 1e-9) * repeats
    return min(num_candidates, int(time_left_s // per_candidate_s))


def _best_of_repeats(
    evaluate: Evaluate,
    sub_policies: tuple[SubPolicy, ...],
    repeats: int,
    eval_s: float,
    deadline: float,
    seed: int,
    now: Callable[[], float],
) -> tuple[Optional[float], float]:
    """Best score of up to `repeats` evaluations that are expected to end before the deadline
    (None when none fit), and the latest measured evaluation time."""
    best: Optional[float] = None
    augment = PolicyAugment(sub_policies, seed)
    for _ in range(repeats):
        if now() + eval_s > deadline:
            break
        score, eval_s = _timed(evaluate, augment, now)
        if best is None or score > best:
            best = score
    return best, eval_s


def describe_sub_policies(sub_policies: Sequence[SubPolicy]) -> str:
    """Sub-policies as readable text: `Op(p=..., m=...) + Op(...)` joined by semicolons."""
    return "; ".join(
        " + ".join(f"{op.name}(p={op.probability}, m={op.magnitude})" for op in sub_policy.ops)
        for sub_policy in sub_policies
    )


def _check_search_arguments(
    archive: Sequence[SubPolicy], per_candidate: int, num_candidates: int, top_n: int, repeats: int
) -> None:
    if not archive:
        raise ValueError("the policy archive is empty")
    if not 0 < per_candidate <= len(archive):
        raise ValueError(f"cannot draw {per_candidate} sub-policies per candidate from an archive of {len(archive)}")
    for name, value in (("num_candidates", num_candidates), ("top_n", top_n), ("repeats", repeats)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


class ValidationEvaluator:
    """`evaluate` for the search: the metric of a frozen model's predictions on the validation set,
    augmented afresh for each call with the same seed so that candidates are compared fairly
    (with `resample`, each call draws from the augment's own generator instead, so that repeated
    evaluations of a candidate see different augmented sets)."""

    def __init__(
        self,
        predict_fn: Callable[[torch.Tensor], np.ndarray],
        images_uint8: torch.Tensor,
        labels: np.ndarray,
        metric: Callable[[np.ndarray, np.ndarray], float],
        *,
        seed: int = 0,
        batch_size: Optional[int] = None,
        resample: bool = False,
    ) -> None:
        if not isinstance(images_uint8, torch.Tensor) or images_uint8.dtype != torch.uint8:
            raise TypeError("validation images must be a uint8 torch.Tensor [N, C, H, W] or [N, T, C, H, W]")
        if images_uint8.ndim not in (4, 5):
            raise ValueError(f"validation images must be [N, C, H, W] or [N, T, C, H, W], got {tuple(images_uint8.shape)}")
        labels = np.asarray(labels)
        if len(labels) != len(images_uint8):
            raise ValueError(f"{len(images_uint8)} validation images but {len(labels)} label rows")
        self.predict_fn = predict_fn
        self.images = images_uint8
        self.labels = labels
        self.metric = metric
        self.seed = seed
        self.batch_size = batch_size or len(images_uint8)
        self.resample = resample

    def __call__(self, augment: Optional[Augment]) -> float:
        """Score the model on the validation set, augmented by `augment` unless it is None."""
        images = self.images
        if augment is not None:
            rng = None if self.resample else np.random.default_rng(self.seed)
            images = augment.augment_batch(images, rng=rng)
        predictions = np.concatenate([
            np.asarray(self.predict_fn(images[start:start + self.batch_size]))
            for start in range(0, len(images), self.batch_size)
        ])
        return float(self.metric(self.labels, predictions))

