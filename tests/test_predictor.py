"""The Predictor: one way to turn raw examples into probabilities, for Model.test and the kept model alike."""

import numpy as np
import pytest
import torch

from autoclint.config import ModelConfig
from autoclint.data.convert import ExampleConverter
from autoclint.early import FastLearner, FastLearnerSettings
from autoclint.hardware import Precision
from autoclint.predictor import PRIORS, Predictor
from autoclint.trainer import Trainer
from tests.test_trainer import Metadata


def two_class_pairs(count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[1,12,12,3] float examples in 0..1; class 1 has a bright top half."""
    rng = np.random.default_rng(seed)
    pairs = []
    for index in range(count):
        example = rng.random((1, 12, 12, 3), dtype=np.float32) * 0.3
        if index % 2:
            example[:, :6] += 0.6
        pairs.append((example, np.eye(2, dtype=np.float32)[index % 2]))
    return pairs


def fitted_fast_learner() -> FastLearner:
    pairs = two_class_pairs(60, 3)
    examples = np.stack([(x * 255).astype(np.uint8) for x, _ in pairs])
    return FastLearner(FastLearnerSettings(random_features=16), False, 2).fit(examples, np.stack([y for _, y in pairs]))


def predictor(weight, net=None, fast=None) -> Predictor:
    return Predictor(ExampleConverter(1, 12, 12, 3, 0.0, 1.0), net, fast, weight, False, 2, False,
                     np.array([0.25, 0.75], np.float32), Precision.for_device(torch.device("cpu")))


def test_without_a_candidate_better_than_chance_the_priors_are_predicted():
    chosen = predictor(None)
    assert chosen.source == PRIORS and not chosen.uses_network and not chosen.uses_fast
    raw = [x for x, _ in two_class_pairs(5, 0)]
    np.testing.assert_array_equal(chosen.predict_proba(raw), np.tile([0.25, 0.75], (5, 1)))


def test_blend_weighs_the_network_and_the_fast_learner():
    chosen = predictor(0.25, net=torch.nn.Identity(), fast=fitted_fast_learner())
    network, fast = np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    np.testing.assert_allclose(chosen.combine(network, fast, 1), [[0.25, 0.75]])
    assert "blend (network weight 0.25)" in chosen.describe()


def test_a_share_without_its_model_is_refused():
    with pytest.raises(ValueError, match="network"):
        predictor(1.0)
    with pytest.raises(ValueError, match="fast learner"):
        predictor(0.0)


def test_fast_learner_prediction_converts_raw_examples_in_chunks(monkeypatch):
    import autoclint.predictor as module

    monkeypatch.setattr(module, "PREDICT_CHUNK", 4)
    chosen = predictor(0.0, fast=fitted_fast_learner())
    pairs = two_class_pairs(10, 7)
    probabilities = chosen.predict_proba(x for x, _ in pairs)
    assert probabilities.shape == (10, 2)
    np.testing.assert_allclose(probabilities, chosen.fast.predict(chosen.convert(x for x, _ in pairs)), atol=1e-6)
    assert (probabilities.argmax(axis=1) == np.arange(10) % 2).mean() >= 0.9


def test_model_test_and_the_predictor_give_the_same_probabilities():
    config = ModelConfig(pretrained=False, augmentation="none", num_threads=1, safety_margin_s=0.5)
    train, test = two_class_pairs(200, 1), two_class_pairs(30, 2)
    trainer = Trainer(Metadata(len(train), 2), config)
    try:
        for _ in range(4):  # the fast learner's quick, full and last fits, then the network's checkpoint
            trainer.train(train, remaining_time_budget=60)
        from_test = trainer.test(test, remaining_time_budget=60)
        chosen = trainer.predictor()
    finally:
        trainer.close()
    assert trainer.session.best.version > 0, "the network has a checkpoint"
    np.testing.assert_allclose(chosen.predict_proba(x for x, _ in test), from_test, atol=1e-5)
