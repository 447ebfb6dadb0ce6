"""Every knob of the AutoCLINT model in one frozen dataclass, with named presets for ablations.

The defaults follow the paper (§3.1): ResNet18 with ImageNet weights, softmax annealing τ = 8, SGD with
nesterov momentum, a 5-epoch warm-up and a ×0.1 learning-rate drop when the training loss plateaus.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_ENV = "AUTOCLINT_CONFIG"
CONFIG_FILE_NAME = "autoclint_config.json"
DEFAULT_PRESET = "autoclint"
ARCHITECTURES = ("resnet18", "resnet34")
AUGMENTATIONS = ("none", "random", "searched", "trivialaugment")
LOADER_KINDS = ("auto", "threads", "processes")


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of the model and of its anytime controller (times in seconds)."""

    # network
    arch: str = "resnet18"
    pretrained: bool = True
    tau: float = 8.0
    # optimiser: the learning rate follows the linear scaling rule (Goyal et al., the warm-up paper the
    # method cites): lr_per_64 at a batch of 64, scaled with the planned batch size.
    lr_per_64: float = 0.025
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 2.5e-4
    warmup_epochs: int = 5
    plateau_patience: int = 10
    plateau_factor: float = 0.1
    min_lr_ratio: float = 1e-3
    # From scratch (no ImageNet weights found, or pretrained=False) the paper's τ, warm-up and rate, chosen
    # for pretrained weights on a GPU, learn slowly: these replace them then (see `for_weights`).
    adapt_to_scratch: bool = True
    scratch_tau: float = 1.0
    scratch_warmup_epochs: int = 1
    scratch_lr_per_64: float = 0.05
    # input plan
    max_input_area: int = 64 * 64
    max_frames: int = 8
    batch_size: int = 64
    steps_per_epoch: int = 0  # 0: planned from the data set size (at most max_steps_per_epoch)
    max_steps_per_epoch: int = 30
    min_steps_per_epoch: int = 20  # small sets: an epoch repeats the data rather than validating every few steps
    valid_ratio: float = 0.1
    max_valid: int = 256
    min_valid: int = 128  # small sets hold out more than valid_ratio (up to max_valid_ratio) for a steadier score
    max_valid_ratio: float = 0.2
    probe_size: int = 256
    # data pipeline
    loader_workers: int = 0  # 0: one per spare CPU core, 1 to 4 threads or 8 processes (hardware.worker_count)
    loader_kind: str = "auto"  # threads | processes | auto: processes on CUDA (hardware.use_worker_processes)
    loader_queue: int = 4
    flip: bool = True
    # evaluation and anytime control
    tta_flip: bool = True
    first_slice_s: float = 1.0
    slice_growth: float = 2.0
    max_slice_s: float = 120.0
    slice_patience: float = 4.0  # a call without improvement ends after this many slices
    safety_margin_s: float = 3.0
    duration_margin: float = 1.5  # a step, evaluation or test pass is planned as this many times its measured time
    eval_batch_size: int = 256
    # training augmentation, installed once validation NAUC passes `faa_trigger_nauc` (paper §3.2):
    # none | random (C archive sub-policies, no search) | searched (Algorithm 1) | trivialaugment
    augmentation: str = "searched"
    faa_trigger_nauc: float = 0.99
    faa_sub_policies: int = 3  # C: sub-policies per candidate (and drawn by `random`)
    faa_candidates: int = 100  # T: candidates scored on validation
    faa_top_n: int = 5  # N: best candidates merged into the training augmentation
    faa_repeats: int = 1  # evaluations per candidate (best kept; > 1 resamples the augmentation)
    faa_min_candidates: int = 3  # fewer affordable candidates than this: skip the search
    faa_max_budget_fraction: float = 0.25  # the search may use this share of the remaining time
    faa_max_search_s: float = 300.0  # and never more than this
    # the fast learner (early.py): predicts within the first seconds, then competes on validation with
    # the best network checkpoint and their blend
    fast_learner: bool = True
    blend: bool = True
    train_network: bool = True  # False: the fast learner alone (an ablation)
    fast_learner_max_examples: int = 8000  # training subsample bound: keeps its fit near a second
    # reproducibility and hardware
    seed: int = 0
    num_threads: int = 0  # 0: all CPU cores available to this process

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"ModelConfig.arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.loader_kind not in LOADER_KINDS:
            raise ValueError(f"ModelConfig.loader_kind must be one of {LOADER_KINDS}, got {self.loader_kind!r}")
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"ModelConfig.augmentation must be one of {AUGMENTATIONS}, got {self.augmentation!r}")
        positive = (
            "tau", "lr_per_64", "scratch_tau", "scratch_lr_per_64", "max_input_area", "max_frames", "batch_size", "max_valid", "probe_size",
            "faa_sub_policies", "faa_candidates", "faa_top_n", "faa_repeats", "faa_max_search_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.duration_margin < 1.0:
            raise ValueError(f"ModelConfig.duration_margin must be at least 1, got {self.duration_margin!r}")
        if not self.valid_ratio <= self.max_valid_ratio < 1.0:
            raise ValueError(
                f"ModelConfig.max_valid_ratio must be in [valid_ratio, 1), got {self.max_valid_ratio!r}"
            )
        if self.min_valid < 0 or self.min_steps_per_epoch < 1:
            raise ValueError("ModelConfig.min_valid must be >= 0 and min_steps_per_epoch >= 1, got "
                             f"{self.min_valid!r} and {self.min_steps_per_epoch!r}")
        if not 0.0 < self.valid_ratio < 1.0:
            raise ValueError(f"ModelConfig.valid_ratio must be in (0, 1), got {self.valid_ratio!r}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise ValueError(f"ModelConfig.plateau_factor must be in (0, 1), got {self.plateau_factor!r}")
        if not 0.0 < self.faa_max_budget_fraction < 1.0:
            raise ValueError(
                f"ModelConfig.faa_max_budget_fraction must be in (0, 1), got {self.faa_max_budget_fraction!r}"
            )
        if not (self.fast_learner or self.train_network):
            raise ValueError("ModelConfig: fast_learner and train_network cannot both be off")
        if self.fast_learner_max_examples < 1:
            raise ValueError(f"ModelConfig.fast_learner_max_examples must be positive, got "
                             f"{self.fast_learner_max_examples!r}")
        if self.loader_workers < 0:
            raise ValueError(f"ModelConfig.loader_workers must be >= 0 (0: automatic), got {self.loader_workers!r}")

    def for_weights(self, weights_loaded: bool) -> "ModelConfig":
        """The configuration to train with: as it is with ImageNet weights, else with the scratch settings."""
        if weights_loaded or not self.adapt_to_scratch:
            return self
        return dataclasses.replace(self, tau=self.scratch_tau, warmup_epochs=self.scratch_warmup_epochs,
                                   lr_per_64=self.scratch_lr_per_64)

    def lr_for_batch(self, batch_size: int) -> float:
        """Initial learning rate for a batch size (linear scaling from a batch of 64)."""
        return self.lr_per_64 * batch_size / 64.0

    def replace(self, **overrides: Any) -> "ModelConfig":
        """A copy with some fields changed; unknown field names are an error that names them."""
        known = {field.name for field in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **overrides)


PRESETS: dict[str, ModelConfig] = {
    "autoclint": ModelConfig(),
    "no_pretrain": ModelConfig(pretrained=False),
    "tau=1": ModelConfig(tau=1.0),
    "no_tta": ModelConfig(tta_flip=False),
    "no_augment": ModelConfig(augmentation="none"),
    "random_augment": ModelConfig(augmentation="random"),
    "trivialaugment": ModelConfig(augmentation="trivialaugment"),
    "resnet34": ModelConfig(arch="resnet34"),
    "no_fast_learner": ModelConfig(fast_learner=False),
    "fast_learner_only": ModelConfig(train_network=False),
    # The baseline the method is compared with: random init, SGD 0.05 at batch 64, flip, τ = 1.
    "plain_finetune": ModelConfig(
        pretrained=False,
        adapt_to_scratch=False,
        fast_learner=False,
        tau=1.0,
        lr_per_64=0.05,
        nesterov=False,
        warmup_epochs=0,
        augmentation="none",
        tta_flip=False,
    ),
}


def config_from_preset(name: str, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The named preset with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown autoclint preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**(overrides or {}))


def parse_config_text(text: str, origin: str) -> ModelConfig:
    """A preset name, or a JSON object of overrides (optionally with a "preset" key) -> ModelConfig."""
    text = text.strip()
    if not text.startswith("{"):
        return config_from_preset(text)
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{origin}: not a preset name nor valid JSON: {error}") from error
    if not isinstance(overrides, dict):
        raise ValueError(f"{origin}: expected a JSON object of ModelConfig overrides")
    preset = overrides.pop("preset", DEFAULT_PRESET)
    try:
        return config_from_preset(preset, overrides)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{origin}: {error}") from error


def load_config(code_dir: str | Path | None = None) -> ModelConfig:
    """Configuration from $AUTOCLINT_CONFIG, else `autoclint_config.json` in `code_dir`, else the default."""
    text = os.environ.get(CONFIG_ENV)
    if text:
        config = parse_config_text(text, f"${CONFIG_ENV}")
        logger.info("configuration from $%s: %s", CONFIG_ENV, config)
        return config
    if code_dir is not None:
        path = Path(code_dir) / CONFIG_FILE_NAME
        if path.is_file():
            config = parse_config_text(path.read_text(), str(path))
            logger.info("configuration from %s: %s", path, config)
            return config
    return PRESETS[DEFAULT_PRESET]
