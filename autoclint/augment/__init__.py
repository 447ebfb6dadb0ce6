"""Training-time augmentation: the AutoAugment op set, the CIFAR-10 policy archive and the light
Fast AutoAugment search that picks sub-policies by their effect on a frozen model's validation NAUC."""

from autoclint.augment.pipeline import (
    Augment,
    AugmentStrategy,
    IdentityAugment,
    PolicyAugment,
    TrivialAugment,
    make_augment,
)
from autoclint.augment.policies import CIFAR10_ARCHIVE, Op, SubPolicy, load_archive
from autoclint.augment.selection import AugmentSelection, AugmentSettings, measure_evaluation, select_training_augment
from autoclint.augment.search import (
    CandidateScore,
    SearchPlan,
    SearchResult,
    ValidationEvaluator,
    plan_search_budget,
    search_policies,
)

__all__ = [
    "Augment",
    "AugmentSelection",
    "AugmentSettings",
    "AugmentStrategy",
    "CIFAR10_ARCHIVE",
    "CandidateScore",
    "IdentityAugment",
    "Op",
    "PolicyAugment",
    "SearchPlan",
    "SearchResult",
    "SubPolicy",
    "TrivialAugment",
    "ValidationEvaluator",
    "measure_evaluation",
    "load_archive",
    "make_augment",
    "plan_search_budget",
    "search_policies",
    "select_training_augment",
]
