"""Benchmark method names map to configuration switches; bad names are rejected before anything runs."""

import json

import pytest

from autoclint.config import parse_config_text
from autoclint.experiments.methods import BASELINES_DIR, REPO_ROOT, parse_method, parse_method_list


def test_autoclint_ablations_run_the_repository_model_with_a_seeded_config():
    cases = {
        "autoclint": {},
        "no_pretrain": {"pretrained": False},
        "resnet34": {"arch": "resnet34"},
        "tau=0.5": {"tau": 0.5},
        "aug=none": {"augmentation": "none"},
        "aug=trivialaugment": {"augmentation": "trivialaugment"},
        "no_fast_learner+aug=random": {"fast_learner": False, "augmentation": "random"},
        "no_fast_learner + resnet34": {"fast_learner": False, "arch": "resnet34"},
    }
    for name, overrides in cases.items():
        method = parse_method(name)
        assert method.code_dir == REPO_ROOT
        assert json.loads(method.config_env(3)) == {"preset": "autoclint", **overrides, "seed": 3}


def test_configs_of_existing_fields_are_accepted_by_the_model_configuration():
    for name in ("autoclint", "no_pretrain", "resnet34", "tau=2", "aug=none", "plain_finetune"):
        config = parse_config_text(parse_method(name).config_env(7), name)
        assert config.seed == 7
    assert parse_config_text(parse_method("tau=2").config_env(0), "tau").tau == 2.0
    assert parse_config_text(parse_method("plain_finetune").config_env(0), "plain").pretrained is False


def test_baselines_use_the_bundled_code_directories_without_a_config():
    for name in ("zero", "linear"):
        method = parse_method(name)
        assert method.code_dir == BASELINES_DIR / name
        assert (method.code_dir / "model.py").is_file()
        assert method.config_env(0) is None
        assert method.config(1) == {"baseline": name, "seed": 1}


@pytest.mark.parametrize("name, message", [
    ("resnet50", "unknown method"),
    ("tau=abc", "tau must be a number"),
    ("tau=-1", "positive"),
    ("aug=cutout", "augmentation must be one of"),
    ("no_fast_learner+linear", "only ablations of autoclint"),
    ("plain_finetune+resnet34", "only ablations of autoclint"),
    ("resnet34+", "only ablations"),
    ("aug=none+aug=random", "augmentation is set twice"),
])
def test_bad_method_names_are_rejected_with_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        parse_method(name)


def test_method_lists_are_validated_as_a_whole():
    assert [m.name for m in parse_method_list("zero, linear,tau=1")] == ["zero", "linear", "tau=1"]
    with pytest.raises(ValueError, match="twice"):
        parse_method_list("zero,zero")
    with pytest.raises(ValueError, match="unknown method 'bogus'"):
        parse_method_list("zero,bogus")
