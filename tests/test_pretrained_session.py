"""A run with ImageNet weights: a generated file in torchvision's format (right keys and shapes) is found in
each place of the lookup order, loaded by the session, and the paper's settings are kept (τ = 8, five
warm-up epochs, its learning rate); a corrupt or mismatched file gives one warning and the scratch
settings."""

import logging

import pytest
import torch
import torchvision

from autoclint.config import ModelConfig
from autoclint.nn import weights_file_name
from autoclint.nn.weights import WEIGHTS_ENV
from autoclint.session import attach_network
from autoclint.trainer import Trainer
from tests.test_trainer import Metadata, easy_task

# the paper's settings, pretrained
CONFIG = ModelConfig(first_slice_s=0.3, safety_margin_s=0.5, num_threads=1)
FILE_NAME = weights_file_name("resnet18")


def stand_in_weights(seed: int) -> dict[str, torch.Tensor]:
    """A torchvision ResNet18 state dict with seeded random values: what the ImageNet file holds, in shape."""
    torch.manual_seed(seed)
    return torchvision.models.resnet18().state_dict()


@pytest.fixture
def places(tmp_path, monkeypatch):
    """The three places of the lookup order, all empty: $AUTOCLINT_WEIGHTS, models/ beside model.py, and
    the torch hub cache (under a TORCH_HOME of the test's own)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    code_dir = tmp_path / "code"
    paths = {"env": tmp_path / "elsewhere" / FILE_NAME, "models": code_dir / "models" / FILE_NAME,
             "hub": tmp_path / "torch_home" / "hub" / "checkpoints" / FILE_NAME}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    return code_dir, paths


def first_session(code_dir, caplog):
    """A Trainer's first training call with the paper's configuration, then its network built as the second
    call builds it, before any step: (trainer, session)."""
    train, _ = easy_task(60)
    trainer = Trainer(Metadata(60, 3), CONFIG, code_dir=code_dir)
    with caplog.at_level(logging.INFO):
        trainer.train(train, remaining_time_budget=60.0)
        assert not trainer.session.has_network  # the first call fits the fast learner only
        attach_network(trainer.session, trainer.config, trainer.precision, code_dir)
    return trainer, trainer.session


def assert_paper_settings(trainer, session):
    """τ = 8, the paper's learning rate for the batch, and a warm-up over five epochs of steps."""
    batch, steps_per_epoch = session.plan.batch_size, session.plan.steps_per_epoch
    assert session.weights_loaded and session.net.tau == CONFIG.tau == 8.0
    assert session.schedule.initial_lr == pytest.approx(0.025 * batch / 64)
    assert trainer.epochs == 0  # no step yet: the warm-up has not started
    assert session.schedule.lr == pytest.approx(session.schedule.initial_lr / (5 * steps_per_epoch))


@pytest.mark.parametrize("place", ["env", "models", "hub"])
def test_a_session_loads_weights_from_each_place_and_keeps_the_papers_settings(places, place, monkeypatch,
                                                                               caplog):
    code_dir, paths = places
    weights = stand_in_weights(seed=1)
    torch.save(weights, paths[place])
    if place == "env":
        monkeypatch.setenv(WEIGHTS_ENV, str(paths["env"]))
    trainer, session = first_session(code_dir, caplog)
    try:
        assert f"loaded ImageNet weights for resnet18 from {paths[place]}" in caplog.text
        assert_paper_settings(trainer, session)
        backbone = session.net.backbone.state_dict()
        for name in ("conv1.weight", "layer3.1.conv2.weight", "layer4.1.bn2.running_var"):
            assert torch.equal(backbone[name].cpu(), weights[name]), name
        assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    finally:
        trainer.close()


def test_the_lookup_order_is_env_then_models_then_the_hub_cache(places, monkeypatch, caplog):
    code_dir, paths = places
    for seed, place in enumerate(("env", "models", "hub")):
        torch.save(stand_in_weights(seed), paths[place])
    monkeypatch.setenv(WEIGHTS_ENV, str(paths["env"]))
    for seed, place in enumerate(("env", "models", "hub")):
        trainer, session = first_session(code_dir, caplog)
        trainer.close()
        assert f"from {paths[place]}" in caplog.text, place
        loaded = session.net.backbone.conv1.weight.cpu()
        assert torch.equal(loaded, stand_in_weights(seed)["conv1.weight"]), place
        paths[place].unlink()  # gone: the next place is looked in
        caplog.clear()
        caplog.clear()


def corrupt(path):
    path.write_bytes(b"not a torch file" * 64)


def mismatched(path):
    state = stand_in_weights(seed=2)
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)  # wrong shape
    del state["layer4.1.bn2.bias"]  # missing key
    torch.save(state, path)


@pytest.mark.parametrize("spoil", [corrupt, mismatched], ids=["corrupt", "mismatched"])
def test_an_unusable_weights_file_gives_one_warning_and_the_scratch_settings(places, spoil, caplog):
    code_dir, paths = places
    spoil(paths["models"])
    trainer, session = first_session(code_dir, caplog)
    try:
        warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
        assert len(warnings) == 1, [record.getMessage() for record in warnings]
        message = warnings[0].getMessage() + str(warnings[0].exc_info[1] if warnings[0].exc_info else "")
        assert "random initialisation" in message and str(paths["models"]) in message
        scratch = CONFIG.for_weights(False)
        batch, steps_per_epoch = session.plan.batch_size, session.plan.steps_per_epoch
        assert not session.weights_loaded and session.net.tau == scratch.tau == 1.0
        assert session.schedule.initial_lr == pytest.approx(scratch.lr_per_64 * batch / 64)
        assert trainer.epochs == 0
        assert session.schedule.lr == pytest.approx(session.schedule.initial_lr / (scratch.warmup_epochs
                                                                                   * steps_per_epoch))
        assert scratch.warmup_epochs == 1
    finally:
        trainer.close()
