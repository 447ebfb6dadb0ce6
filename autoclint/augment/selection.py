"""Choose the training augmentation once the model is good enough (paper §3.2): no augmentation,
C random archive sub-policies, TrivialAugmentWide, or the light Fast AutoAugment search, which is
planned against the time left so that it never eats the time needed to train on its result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from autoclint.augment.pipeline import Augment, AugmentStrategy, IdentityAugment, PolicyAugment, make_augment
from autoclint.augment.pipeline import sample_sub_policies
from autoclint.augment.policies import CIFAR10_ARCHIVE, SubPolicy
from autoclint.augment.search import (
    SearchPlan,
    SearchResult,
    ValidationEvaluator,
    describe_sub_policies,
    plan_search_budget,
    search_policies,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentSettings:
    """The augmentation strategy and the light Fast AutoAugment search's parameters (paper's C, T, N)."""

    strategy: str = AugmentStrategy.SEARCHED.value
    sub_policies: int = 3  # C: sub-policies per candidate (and drawn by `random`)
    candidates: int = 100  # T: candidates scored on validation
    top_n: int = 5  # N: best candidates merged into the training augmentation
    repeats: int = 1  # evaluations per candidate (best kept)
    min_candidates: int = 3  # fewer affordable candidates than this: skip the search
    max_budget_fraction: float = 0.25  # the search may use this share of the time left
    max_search_s: float = 300.0  # and never more than this
    seed: int = 0


@dataclass
class AugmentSelection:
    """The augmentation to train with from now on (None: keep training unaugmented) and how it was chosen."""

    augment: Optional[Augment]
    reason: str
    plan: Optional[SearchPlan] = None
    search: Optional[SearchResult] = None
    elapsed_s: float = 0.0


def measure_evaluation(evaluate: ValidationEvaluator, archive: Sequence[SubPolicy], per_candidate: int,
                       seed: int, now: Callable[[], float]) -> tuple[float, float]:
    """The unaugmented score (the search's baseline, scored once) and the seconds one candidate
    evaluation takes: that timed pass plus augmenting the validation set once with a random candidate."""
    start = now()
    baseline = float(evaluate(None))
    model_s = now() - start
    rng = np.random.default_rng(seed)
    probe = PolicyAugment(sample_sub_policies(archive, per_candidate, rng), rng)
    start = now()
    probe.augment_batch(evaluate.images, rng=np.random.default_rng(seed))
    return baseline, max(model_s + now() - start, 1e-6)


def select_training_augment(
    settings: AugmentSettings,
    evaluate: Optional[ValidationEvaluator],
    deadline: float,
    *,
    archive: Sequence[SubPolicy] = CIFAR10_ARCHIVE,
    now: Callable[[], float] = time.monotonic,
) -> AugmentSelection:
    """The training augmentation of `settings.strategy`; for `searched`, run Algorithm 1 with the frozen
    model behind `evaluate` within a share of the time left before `deadline` (skipped when it cannot pay)."""
    strategy = AugmentStrategy(settings.strategy)
    start = now()
    if strategy is AugmentStrategy.NONE:
        return AugmentSelection(None, "augmentation disabled")
    if strategy is not AugmentStrategy.SEARCHED:
        augment = make_augment(strategy, archive=archive, num_random=settings.sub_policies, seed=settings.seed)
        return AugmentSelection(augment, f"{strategy.value} augmentation", elapsed_s=now() - start)
    if evaluate is None or len(evaluate.images) == 0:
        return AugmentSelection(None, "no validation set to search augmentation policies on")
    selection = _search(settings, evaluate, deadline, archive, now)
    selection.elapsed_s = now() - start
    return selection


def _search(settings: AugmentSettings, evaluate: ValidationEvaluator, deadline: float,
            archive: Sequence[SubPolicy], now: Callable[[], float]) -> AugmentSelection:
    """Plan the search from a timed evaluation, run it, and turn its top-N into a policy augmentation."""
    baseline, per_eval_s = measure_evaluation(evaluate, archive, settings.sub_policies, settings.seed, now)
    time_left_s = deadline - now()
    plan = plan_search_budget(
        per_eval_s,
        time_left_s,
        retrain_reserve_s=(1.0 - settings.max_budget_fraction) * time_left_s,
        num_candidates=settings.candidates,
        repeats=settings.repeats,
        min_candidates=settings.min_candidates,
        max_search_s=settings.max_search_s,
    )
    logger.info("policy search plan (%.3f s per evaluation, %.1f s left): %s", per_eval_s, time_left_s, plan.reason)
    if not plan.run:
        return AugmentSelection(None, f"policy search skipped: {plan.reason}", plan=plan)
    result = search_policies(
        evaluate,
        archive,
        num_policies_per_candidate=settings.sub_policies,
        num_candidates=plan.num_candidates,
        top_n=settings.top_n,
        repeats=settings.repeats,
        deadline=now() + plan.time_limit_s,
        min_candidates=settings.min_candidates,
        seed=settings.seed,
        baseline=(baseline, per_eval_s),
        now=now,
    )
    if result.skipped:
        return AugmentSelection(None, "policy search skipped: too few candidates fit its time limit",
                                plan=plan, search=result)
    augment = make_augment(AugmentStrategy.SEARCHED, result.chosen, seed=settings.seed)
    if isinstance(augment, IdentityAugment):
        return AugmentSelection(None, f"no candidate beat the unaugmented score {result.baseline_score:.4f}",
                                plan=plan, search=result)
    reason = (f"searched policy: {len(result.chosen)} sub-policies from the top {settings.top_n} of "
              f"{len(result.kept)}/{len(result.candidates)} candidates: {describe_sub_policies(result.chosen)}")
    return AugmentSelection(augment, reason, plan=plan, search=result)
