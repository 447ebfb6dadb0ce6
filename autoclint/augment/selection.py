"""Choose the training augmentation once the model is good enough (paper §3.2): no augmentation,
C random archive sub-policies, TrivialAugmentWide, or the light Fast AutoAugment search, which is
planned against the time left so that it never eats the time needed to train on its result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional, Sequence

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
from autoclint.config import ModelConfig

logger = logging.getLogger(__name__)


@dataclass
class AugmentSelection:
    """The augmentation to train with from now on (None: keep training unaugmented) and how it was chosen."""

    augment: Optional[Augment]
    reason: str
    plan: Optional[SearchPlan] = None
    search: Optional[SearchResult] = None
    elapsed_s: float = 0.0


def estimate_eval_seconds(evaluate: ValidationEvaluator, archive: Sequence[SubPolicy], per_candidate: int,
                          seed: int) -> float:
    """Seconds one candidate evaluation takes: a timed unaugmented pass of the frozen model plus the
    time to augment the validation set once with a random candidate."""
    start = time.monotonic()
    evaluate(None)
    model_s = time.monotonic() - start
    rng = np.random.default_rng(seed)
    probe = PolicyAugment(sample_sub_policies(archive, per_candidate, rng), rng)
    start = time.monotonic()
    probe.augment_batch(evaluate.images, rng=np.random.default_rng(seed))
    augment_s = time.monotonic() - start
    return max(model_s + augment_s, 1e-6)


def select_training_augment(
    config: ModelConfig,
    evaluate: Optional[ValidationEvaluator],
    time_left_s: float,
    *,
    archive: Sequence[SubPolicy] = CIFAR10_ARCHIVE,
    seed: int = 0,
) -> AugmentSelection:
    """The training augmentation of `config.augmentation`; for `searched`, run Algorithm 1 with the
    frozen model behind `evaluate` within a share of `time_left_s` (skipped when it cannot pay)."""
    strategy = AugmentStrategy(config.augmentation)
    start = time.monotonic()
    if strategy is AugmentStrategy.NONE:
        return AugmentSelection(None, "augmentation disabled")
    if strategy is not AugmentStrategy.SEARCHED:
        augment = make_augment(strategy, archive=archive, num_random=config.faa_sub_policies, seed=seed)
        return AugmentSelection(augment, f"{strategy.value} augmentation", elapsed_s=time.monotonic() - start)
    if evaluate is None or len(evaluate.images) == 0:
        return AugmentSelection(None, "no validation set to search augmentation policies on")
    selection = _search(config, evaluate, time_left_s, archive, seed, start)
    selection.elapsed_s = time.monotonic() - start
    return selection


def _search(config: ModelConfig, evaluate: ValidationEvaluator, time_left_s: float,
            archive: Sequence[SubPolicy], seed: int, start: float) -> AugmentSelection:
    """Plan the search from a timed evaluation, run it, and turn its top-N into a policy augmentation."""
    per_eval_s = estimate_eval_seconds(evaluate, archive, config.faa_sub_policies, seed)
    time_left_s -= time.monotonic() - start
    plan = plan_search_budget(
        per_eval_s,
        time_left_s,
        retrain_reserve_s=(1.0 - config.faa_max_budget_fraction) * time_left_s,
        num_candidates=config.faa_candidates,
        repeats=config.faa_repeats,
        min_candidates=config.faa_min_candidates,
        max_search_s=config.faa_max_search_s,
    )
    logger.info("policy search plan (%.3f s per evaluation, %.1f s left): %s", per_eval_s, time_left_s, plan.reason)
    if not plan.run:
        return AugmentSelection(None, f"policy search skipped: {plan.reason}", plan=plan)
    result = search_policies(
        evaluate,
        archive,
        num_policies_per_candidate=config.faa_sub_policies,
        num_candidates=plan.num_candidates,
        top_n=config.faa_top_n,
        repeats=config.faa_repeats,
        time_limit_s=plan.time_limit_s,
        min_candidates=config.faa_min_candidates,
        seed=seed,
    )
    if result.skipped:
        return AugmentSelection(None, "policy search skipped: too few candidates fit its time limit",
                                plan=plan, search=result)
    augment = make_augment(AugmentStrategy.SEARCHED, result.chosen, seed=seed)
    if isinstance(augment, IdentityAugment):
        return AugmentSelection(None, f"no candidate beat the unaugmented score {result.baseline_score:.4f}",
                                plan=plan, search=result)
    reason = (f"searched policy: {len(result.chosen)} sub-policies from the top {config.faa_top_n} of "
              f"{len(result.kept)}/{len(result.candidates)} candidates: {describe_sub_policies(result.chosen)}")
    return AugmentSelection(augment, reason, plan=plan, search=result)
