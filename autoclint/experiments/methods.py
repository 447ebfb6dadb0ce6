"""Benchmark methods as configuration switches: each name maps to a code directory and an AUTOCLINT_CONFIG.

`autoclint` and its ablations run the repository's `model.py` with a different configuration; the
`zero` and `linear` baselines are the starter kit's bundled code directories. This is the one place
where method names are defined and checked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoclint.config import AUGMENTATIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINES_DIR = REPO_ROOT / "autoclint" / "harness" / "baselines"
BASELINES = ("zero", "linear")
# Ablations that change one or a few fields of the default preset, and the one that is a preset of its own.
FIXED_ABLATIONS: dict[str, dict[str, Any]] = {
    "autoclint": {},
    "no_pretrain": {"pretrained": False},
    "resnet34": {"arch": "resnet34"},
    "no_fast_learner": {"fast_learner": False},
    "fast_learner_only": {"train_network": False},
    "no_scratch_settings": {"adapt_to_scratch": False},
}
PRESET_METHODS = ("plain_finetune",)
DEFAULT_PRESET = "autoclint"
METHOD_SYNTAX = (
    "autoclint, no_pretrain, tau=<x>, resnet34, no_fast_learner, fast_learner_only, no_scratch_settings, "
    "aug=none|random|searched|trivialaugment, plain_finetune, "
    "zero, linear; autoclint ablations join with + (no_fast_learner+aug=none)"
)


@dataclass(frozen=True)
class Method:
    """A benchmark method: which code directory runs, and with which configuration overrides."""

    name: str
    baseline: str | None = None
    preset: str = DEFAULT_PRESET
    overrides: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def code_dir(self) -> Path:
        """The folder holding the `model.py` that the starter kit runs."""
        return BASELINES_DIR / self.baseline if self.baseline else REPO_ROOT

    def config(self, seed: int) -> dict[str, Any]:
        """The configuration of one run, as recorded: the AUTOCLINT_CONFIG object, or the baseline's name."""
        if self.baseline:
            return {"baseline": self.baseline, "seed": seed}
        return {"preset": self.preset, **self.overrides, "seed": seed}

    def config_env(self, seed: int) -> str | None:
        """The AUTOCLINT_CONFIG value for the run's process (None for baselines, which ignore it)."""
        if self.baseline:
            return None
        return json.dumps(self.config(seed), sort_keys=True)


def _parse_tau(name: str, text: str) -> float:
    """The τ of a `tau=<x>` method name; positive and finite."""
    try:
        tau = float(text)
    except ValueError:
        raise ValueError(f"method {name!r}: tau must be a number, got {text!r}") from None
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"method {name!r}: tau must be positive and finite, got {text!r}")
    return tau


def parse_method(name: str) -> Method:
    """Turn a method name into a Method; unknown names raise ValueError listing the accepted syntax.

    Ablations of the default preset join with `+` (`no_fast_learner+resnet34`): their overrides are merged,
    and two parts that set one field differently are refused."""
    name = name.strip()
    if "+" in name:
        return combined_method(name)
    if name in BASELINES:
        return Method(name, baseline=name)
    if name in FIXED_ABLATIONS:
        return Method(name, overrides=dict(FIXED_ABLATIONS[name]))
    if name in PRESET_METHODS:
        return Method(name, preset=name)
    key, sep, value = name.partition("=")
    if sep and key == "tau":
        return Method(name, overrides={"tau": _parse_tau(name, value)})
    if sep and key == "aug":
        if value not in AUGMENTATIONS:
            choices = ", ".join(AUGMENTATIONS)
            raise ValueError(f"method {name!r}: augmentation must be one of {choices}")
        return Method(name, overrides={"augmentation": value})
    raise ValueError(f"unknown method {name!r}; accepted: {METHOD_SYNTAX}")


def combined_method(name: str) -> Method:
    """The ablations of the default preset named by `a+b+…`, applied together."""
    overrides: dict[str, Any] = {}
    for part in (piece.strip() for piece in name.split("+")):
        method = parse_method(part) if part else None
        if method is None or method.baseline or method.preset != DEFAULT_PRESET:
            raise ValueError(f"method {name!r}: only ablations of {DEFAULT_PRESET} can be joined with +, "
                             f"not {part!r}")
        for key, value in method.overrides.items():
            if overrides.get(key, value) != value:
                raise ValueError(f"method {name!r}: {key} is set twice, to {overrides[key]!r} and {value!r}")
            overrides[key] = value
    return Method(name, overrides=overrides)


def parse_method_list(text: str) -> list[Method]:
    """Parse a comma-separated method list (all names are checked before anything runs); no duplicates."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ValueError("no method given")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"method(s) listed twice: {', '.join(duplicates)}")
    return [parse_method(name) for name in names]
