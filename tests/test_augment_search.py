"""The light Fast AutoAugment search: what it keeps, how it merges, how it respects its time."""

import logging
import time

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from autoclint.augment.pipeline import PolicyAugment
from autoclint.augment.policies import CIFAR10_ARCHIVE, Op, SubPolicy
from autoclint.augment.search import (
    CandidateScore,
    ValidationEvaluator,
    merge_top_candidates,
    plan_search_budget,
    search_policies,
)

BASELINE = 0.5


class ScoreBySubPolicy:
    """Fake evaluator: the baseline for None, else the mean of a fixed value per archive sub-policy;
    it records every call."""

    def __init__(self, values, sleep_s=0.0, baseline_sleep_s=None):
        self.values = {sub_policy: value for sub_policy, value in zip(CIFAR10_ARCHIVE, values)}
        self.sleep_s = sleep_s
        self.baseline_sleep_s = sleep_s if baseline_sleep_s is None else baseline_sleep_s
        self.calls = []

    def __call__(self, augment):
        self.calls.append(augment)
        if augment is None:
            time.sleep(self.baseline_sleep_s)
            return BASELINE
        time.sleep(self.sleep_s)
        return float(np.mean([self.values[sp] for sp in augment.sub_policies]))


def values_around_baseline(seed=0):
    """Per-sub-policy values on a grid, so that many candidates score exactly the baseline."""
    return np.random.default_rng(seed).choice([0.3, 0.5, 0.7], size=len(CIFAR10_ARCHIVE))


def test_candidates_are_drawn_from_the_archive_and_all_evaluated():
    evaluate = ScoreBySubPolicy(values_around_baseline())
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=20, seed=1)
    assert evaluate.calls[0] is None and len(evaluate.calls) == 21
    assert len(result.candidates) == 20 and not result.shortened and not result.skipped
    for candidate in result.candidates:
        assert len(candidate.sub_policies) == 3 == len(set(candidate.sub_policies))
        assert set(candidate.sub_policies) <= set(CIFAR10_ARCHIVE)
    assert isinstance(evaluate.calls[1], PolicyAugment)
    assert evaluate.calls[1].sub_policies == result.candidates[0].sub_policies


def test_only_candidates_strictly_above_the_baseline_are_kept():
    evaluate = ScoreBySubPolicy(values_around_baseline())
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=60, seed=2)
    scores = [c.score for c in result.candidates]
    assert any(np.isclose(s, BASELINE) for s in scores) and any(s < BASELINE for s in scores)
    assert all(c.score > BASELINE and not np.isclose(c.score, BASELINE) for c in result.kept)
    assert len(result.kept) == sum(s > BASELINE and not np.isclose(s, BASELINE) for s in scores)
    assert result.baseline_score == BASELINE


def test_nothing_is_kept_when_nothing_beats_the_baseline():
    evaluate = ScoreBySubPolicy([BASELINE] * len(CIFAR10_ARCHIVE))
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=10)
    assert result.kept == [] and result.chosen == ()


def test_chosen_are_the_top_n_kept_candidates_merged_best_first():
    evaluate = ScoreBySubPolicy(np.linspace(0.0, 1.0, len(CIFAR10_ARCHIVE)))
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=40, top_n=5, seed=3)
    kept_scores = [c.score for c in result.kept]
    assert kept_scores == sorted(kept_scores, reverse=True) and len(kept_scores) > 5
    assert result.chosen == merge_top_candidates(result.kept, 5)
    top_policies = {sp for c in result.kept[:5] for sp in c.sub_policies}
    assert set(result.chosen) == top_policies and len(result.chosen) == len(top_policies)


def test_merge_orders_by_score_and_removes_duplicates():
    a, b, c, d = CIFAR10_ARCHIVE[:4]
    kept = [CandidateScore((a, b), 0.6), CandidateScore((c, d), 0.9), CandidateScore((b, c), 0.8),
            CandidateScore((d, a), 0.7)]
    assert merge_top_candidates(kept, 2) == (c, d, b)
    assert merge_top_candidates(kept, 10) == (c, d, b, a)
    assert merge_top_candidates([], 5) == ()


def test_repeats_keep_the_best_score():
    scores = iter([0.5] + [0.2, 0.9, 0.4] * 4)
    calls = []

    def evaluate(augment):
        calls.append(augment)
        return next(scores)

    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=4, repeats=3)
    assert len(calls) == 1 + 4 * 3
    assert [c.score for c in result.candidates] == [0.9] * 4


def test_search_is_deterministic_given_a_seed():
    first = search_policies(ScoreBySubPolicy(values_around_baseline()), CIFAR10_ARCHIVE, num_candidates=15, seed=5)
    again = search_policies(ScoreBySubPolicy(values_around_baseline()), CIFAR10_ARCHIVE, num_candidates=15, seed=5)
    other = search_policies(ScoreBySubPolicy(values_around_baseline()), CIFAR10_ARCHIVE, num_candidates=15, seed=6)
    assert first.candidates == again.candidates and first.chosen == again.chosen
    assert first.candidates != other.candidates


def test_search_is_shortened_to_fit_its_time_limit():
    evaluate = ScoreBySubPolicy(values_around_baseline(), sleep_s=0.02)
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=100, deadline=time.monotonic() + 0.3)
    assert result.shortened and result.planned_candidates < 100
    assert len(result.candidates) <= result.planned_candidates
    assert result.elapsed_s < 0.3 + 0.2


def test_search_stops_at_its_deadline_when_evaluations_slow_down():
    evaluate = ScoreBySubPolicy(values_around_baseline(), sleep_s=0.05, baseline_sleep_s=0.001)
    started = time.monotonic()
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=100, deadline=time.monotonic() + 0.4)
    elapsed = time.monotonic() - started
    assert 0 < len(result.candidates) < 100 and result.shortened
    assert elapsed < 0.4 + 0.2


def test_search_is_skipped_when_not_even_a_few_candidates_fit():
    evaluate = ScoreBySubPolicy(values_around_baseline(), sleep_s=0.05)
    result = search_policies(evaluate, CIFAR10_ARCHIVE, deadline=time.monotonic() + 0.12, min_candidates=3)
    assert result.skipped and result.candidates == [] and result.chosen == ()
    assert evaluate.calls == [None]


def test_search_logs_candidates_and_choice(caplog):
    """Each candidate at DEBUG, the summary with the chosen sub-policies at INFO."""
    with caplog.at_level(logging.DEBUG, logger="autoclint.augment.search"):
        search_policies(ScoreBySubPolicy(values_around_baseline()), CIFAR10_ARCHIVE, num_candidates=3)
    text = caplog.text
    assert "candidate 0: score" in text and "candidate 2: score" in text and "chose" in text
    summaries = [record for record in caplog.records if record.levelno == logging.INFO]
    assert any("chose" in record.getMessage() for record in summaries)
    assert not any("candidate 0: score" in record.getMessage() for record in summaries)


def test_bad_search_arguments_are_rejected():
    with pytest.raises(ValueError, match="archive is empty"):
        search_policies(lambda augment: 0.0, [])
    with pytest.raises(ValueError, match="cannot draw 30"):
        search_policies(lambda augment: 0.0, CIFAR10_ARCHIVE, num_policies_per_candidate=30)
    with pytest.raises(ValueError, match="repeats"):
        search_policies(lambda augment: 0.0, CIFAR10_ARCHIVE, repeats=0)


def test_budget_plan_skips_when_the_search_cannot_pay():
    plan = plan_search_budget(per_eval_s=2.0, remaining_budget_s=100.0, retrain_reserve_s=95.0)
    assert not plan.run and plan.num_candidates == 0 and "need 3" in plan.reason
    assert not plan_search_budget(per_eval_s=1.0, remaining_budget_s=50.0, retrain_reserve_s=80.0).run


def test_budget_plan_shortens_or_keeps_the_full_search():
    shortened = plan_search_budget(per_eval_s=1.0, remaining_budget_s=300.0, retrain_reserve_s=250.0, repeats=2)
    assert shortened.run and shortened.num_candidates == 24 and shortened.time_limit_s == 50.0
    full = plan_search_budget(per_eval_s=0.1, remaining_budget_s=1000.0, retrain_reserve_s=300.0)
    assert full.run and full.num_candidates == 100
    capped = plan_search_budget(per_eval_s=0.1, remaining_budget_s=1000.0, retrain_reserve_s=300.0, max_search_s=5.0)
    assert capped.num_candidates == 49 and capped.time_limit_s == 5.0
    with pytest.raises(ValueError, match="per_eval_s"):
        plan_search_budget(per_eval_s=0.0, remaining_budget_s=10.0, retrain_reserve_s=1.0)


def binary_nauc(solution, prediction):
    """NAUC of one-hot labels against scores, averaged over columns (test stand-in for the metric)."""
    return float(np.mean([2 * roc_auc_score(solution[:, k], prediction[:, k]) - 1 for k in range(solution.shape[1])]))


class BrightnessModel(torch.nn.Module):
    """A tiny frozen model: bright images are class 1, dark ones class 0."""

    def forward(self, images):
        brightness = images.float().mean(dim=(1, 2, 3)) / 255.0 - 0.5
        return torch.stack([-brightness, brightness], dim=1)


def brightness_validation_set():
    generator = torch.Generator().manual_seed(0)
    levels = torch.tensor([40, 90, 160, 210] * 8)
    noise = torch.randint(0, 50, (32, 3, 8, 8), generator=generator)
    images = (levels[:, None, None, None] + noise).clamp(0, 255).to(torch.uint8)
    labels = np.eye(2)[(levels > 128).long().numpy()]
    return images, labels


def predict(images):
    with torch.no_grad():
        return BrightnessModel()(images).numpy()


def test_validation_evaluator_scores_plain_and_augmented_sets():
    images, labels = brightness_validation_set()
    evaluate = ValidationEvaluator(predict, images, labels, binary_nauc, batch_size=5)
    assert evaluate(None) == pytest.approx(binary_nauc(labels, predict(images)))
    assert evaluate(None) == pytest.approx(1.0)
    invert = PolicyAugment([SubPolicy(Op("Invert", 1.0, None), Op("Invert", 0.0, None))], 0)
    assert evaluate(invert) == pytest.approx(-1.0)


def test_validation_evaluator_regenerates_the_same_augmented_set_per_call():
    images, labels = brightness_validation_set()
    evaluate = ValidationEvaluator(predict, images, labels, binary_nauc)
    augment = PolicyAugment(CIFAR10_ARCHIVE, 0)
    assert evaluate(augment) == evaluate(augment) == evaluate(PolicyAugment(CIFAR10_ARCHIVE, 99))
    resampling = ValidationEvaluator(predict, images, labels, binary_nauc, resample=True)
    assert len({resampling(augment) for _ in range(5)}) > 1


def test_validation_evaluator_rejects_mismatched_inputs():
    images, labels = brightness_validation_set()
    with pytest.raises(ValueError, match="32 validation images but 31 label rows"):
        ValidationEvaluator(predict, images, labels[:31], binary_nauc)
    with pytest.raises(TypeError, match="uint8"):
        ValidationEvaluator(predict, images.float(), labels, binary_nauc)


def test_search_with_a_real_evaluator_never_keeps_what_does_not_help():
    images, labels = brightness_validation_set()
    evaluate = ValidationEvaluator(predict, images, labels, binary_nauc)
    result = search_policies(evaluate, CIFAR10_ARCHIVE, num_candidates=8, seed=0)
    assert result.baseline_score == pytest.approx(1.0)
    assert result.kept == [] and result.chosen == ()
    assert any(c.score < 1.0 for c in result.candidates)


def test_the_search_and_the_batch_workers_augment_through_the_same_code(monkeypatch):
    """Candidates are scored on images made by the very ops code that makes the training batches."""
    import threading

    import autoclint.augment.pipeline as pipeline
    from autoclint.data.batches import BatchLoader, TrainSampler
    from autoclint.data.cache import ExampleCache

    applied = []
    original = pipeline.apply_ops_batch

    def recording(batch, draws):
        applied.append(threading.current_thread().name)
        return original(batch, draws)

    monkeypatch.setattr(pipeline, "apply_ops_batch", recording)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8, generator=generator)
    labels = np.eye(2)[np.arange(16) % 2]
    augment = PolicyAugment(CIFAR10_ARCHIVE, 0)
    scored = []
    evaluate = ValidationEvaluator(lambda batch: scored.append(batch) or np.full((len(batch), 2), 0.5), images,
                                   labels, binary_nauc, seed=3)
    evaluate(augment)
    assert applied == ["MainThread"]
    expected = original(images, augment.draw_batch(np.random.default_rng(3), 16, 12, 12))
    assert torch.equal(torch.cat(scored), expected) and not torch.equal(expected, images)

    cache = ExampleCache((1, 12, 12, 3), 2, capacity=16)
    for image, label in zip(images, labels):
        cache.append(image.permute(1, 2, 0)[None].numpy(), label.astype(np.float32))
    loader = BatchLoader(cache, TrainSampler(cache, np.empty(0, np.int64), 0), 16, flip=False)
    loader.set_transform(augment.augment_batch)  # before the workers start, so the first batch has it
    with loader:
        loader.next_batch()
    assert len(applied) >= 2 and applied[1].startswith("autoclint-batches")
