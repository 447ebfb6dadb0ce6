"""ModelConfig defaults, presets and configuration loading from the environment or a file."""

import json

import pytest

from autoclint.config import CONFIG_ENV, CONFIG_FILE_NAME, PRESETS, ModelConfig, config_from_preset, load_config


def test_defaults_follow_the_paper():
    config = ModelConfig()
    assert (config.arch, config.pretrained, config.tau) == ("resnet18", True, 8.0)
    assert (config.momentum, config.nesterov, config.weight_decay) == (0.9, True, 2.5e-4)
    assert (config.warmup_epochs, config.plateau_patience, config.plateau_factor) == (5, 10, 0.1)
    assert config.max_input_area == 64 * 64 and config.max_frames == 8
    assert config.faa_trigger_nauc == 0.99


def test_learning_rate_scales_linearly_with_batch():
    config = ModelConfig()
    assert config.lr_for_batch(64) == pytest.approx(0.025)
    assert config.lr_for_batch(32) == pytest.approx(0.0125)


def test_presets_change_what_their_name_says():
    assert PRESETS["no_pretrain"].pretrained is False
    assert PRESETS["tau=1"].tau == 1.0
    plain = PRESETS["plain_finetune"]
    assert (plain.pretrained, plain.tau, plain.lr_for_batch(64)) == (False, 1.0, pytest.approx(0.05))


def test_invalid_values_are_rejected_by_name():
    with pytest.raises(ValueError, match="arch"):
        ModelConfig(arch="vgg")
    with pytest.raises(ValueError, match="tau"):
        ModelConfig(tau=0)
    with pytest.raises(ValueError, match="nonsense"):
        ModelConfig().replace(nonsense=1)


def test_load_config_default_env_preset_and_json(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert load_config(tmp_path) == PRESETS["autoclint"]
    monkeypatch.setenv(CONFIG_ENV, "tau=1")
    assert load_config(tmp_path).tau == 1.0
    monkeypatch.setenv(CONFIG_ENV, json.dumps({"preset": "no_pretrain", "batch_size": 32}))
    config = load_config(tmp_path)
    assert (config.pretrained, config.batch_size) == (False, 32)
    monkeypatch.setenv(CONFIG_ENV, "no-such-preset")
    with pytest.raises(ValueError, match="no-such-preset"):
        load_config(tmp_path)


def test_load_config_from_file_beside_model(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (tmp_path / CONFIG_FILE_NAME).write_text(json.dumps({"seed": 7}))
    assert load_config(tmp_path).seed == 7
    (tmp_path / CONFIG_FILE_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=CONFIG_FILE_NAME):
        load_config(tmp_path)


@pytest.mark.parametrize("strategy", ["none", "random", "searched", "trivialaugment"])
def test_every_augmentation_strategy_is_accepted_through_the_benchmark_method(strategy):
    from autoclint.config import parse_config_text
    from autoclint.experiments.methods import parse_method

    config = parse_config_text(parse_method(f"aug={strategy}").config_env(seed=3), "AUTOCLINT_CONFIG")
    assert (config.augmentation, config.seed) == (strategy, 3)


def test_search_knobs_follow_algorithm_1_and_bad_ones_are_named():
    config = ModelConfig()
    assert config.augmentation == "searched"
    assert (config.faa_sub_policies, config.faa_candidates, config.faa_top_n) == (3, 100, 5)
    with pytest.raises(ValueError, match="augmentation"):
        ModelConfig(augmentation="autoaugment")
    with pytest.raises(ValueError, match="faa_candidates"):
        ModelConfig(faa_candidates=0)
    with pytest.raises(ValueError, match="faa_max_budget_fraction"):
        ModelConfig(faa_max_budget_fraction=1.0)


def test_negative_loader_workers_are_refused():
    with pytest.raises(ValueError, match="loader_workers"):
        ModelConfig(loader_workers=-1)


def test_scratch_settings_replace_the_papers_only_without_weights():
    config = ModelConfig()
    assert config.for_weights(True) is config
    scratch = config.for_weights(False)
    assert (scratch.tau, scratch.warmup_epochs, scratch.lr_per_64) == (
        config.scratch_tau, config.scratch_warmup_epochs, config.scratch_lr_per_64)
    assert scratch.arch == config.arch and scratch.fast_learner == config.fast_learner
    plain = config_from_preset("plain_finetune")
    assert plain.for_weights(False) is plain and not plain.fast_learner
    assert ModelConfig(adapt_to_scratch=False).for_weights(False).tau == ModelConfig().tau


def test_batch_worker_kind_is_one_of_the_known_and_a_bad_one_is_named():
    assert ModelConfig().loader_kind == "auto"
    assert ModelConfig(loader_kind="processes").loader_kind == "processes"
    with pytest.raises(ValueError, match="loader_kind"):
        ModelConfig(loader_kind="fork")
