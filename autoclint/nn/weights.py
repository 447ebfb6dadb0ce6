"""ImageNet weights for the ResNet backbone, from a local file only (never downloaded).

Looked up, in order: $AUTOCLINT_WEIGHTS, `models/<torchvision file name>` beside model.py, and the
torch hub cache (`<torch.hub.get_dir()>/checkpoints/<same name>`). Keys and shapes are validated; the
new `fc` layer is never loaded. No file -> random initialisation with one warning.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn
from torchvision import models

logger = logging.getLogger(__name__)

WEIGHTS_ENV = "AUTOCLINT_WEIGHTS"
HEAD_PREFIX = "fc."


class WeightsError(ValueError):
    """A weights file that does not fit the backbone (wrong keys or shapes, or unreadable)."""


def weights_file_name(arch: str) -> str:
    """torchvision's file name of the ImageNet weights for `arch`, e.g. resnet18-f37072fd.pth."""
    weights = models.get_model_weights(arch).IMAGENET1K_V1
    return Path(weights.url).name


def candidate_weight_paths(arch: str, code_dir: str | Path | None) -> list[Path]:
    """Where the weights file is looked for, in order."""
    name = weights_file_name(arch)
    paths = []
    if os.environ.get(WEIGHTS_ENV):
        paths.append(Path(os.environ[WEIGHTS_ENV]))
    if code_dir is not None:
        paths.append(Path(code_dir) / "models" / name)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / name)
    return paths


def find_weights_file(arch: str, code_dir: str | Path | None) -> Path | None:
    """The first existing weights file, or None."""
    for path in candidate_weight_paths(arch, code_dir):
        if path.is_file():
            return path
    return None


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load all but the `fc` weights from `path` into `backbone`; WeightsError names the file and bad keys."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: cannot read weights file: {error}") from error
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    expected = {key: value for key, value in backbone.state_dict().items() if not key.startswith(HEAD_PREFIX)}
    given = {key: value for key, value in state.items() if not key.startswith(HEAD_PREFIX)}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    wrong_shape = sorted(
        f"{key} {tuple(given[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(expected) & set(given)
        if tuple(given[key].shape) != tuple(expected[key].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
    if wrong_shape:
        problems.append(f"wrong shapes: {', '.join(wrong_shape[:8])}")
    if problems:
        raise WeightsError(f"{path}: weights do not fit the backbone; " + "; ".join(problems))
    backbone.load_state_dict(given, strict=False)


def init_backbone_weights(backbone: nn.Module, arch: str, code_dir: str | Path | None) -> Path | None:
    """Load ImageNet weights when a file is found (returns its path); otherwise warn once and keep random init."""
    path = find_weights_file(arch, code_dir)
    if path is None:
        searched = ", ".join(str(p) for p in candidate_weight_paths(arch, code_dir))
        logger.warning("no ImageNet weights for %s found (looked in %s): training from random initialisation", arch, searched)
        return None
    load_backbone_weights(backbone, path)
    logger.info("loaded ImageNet weights for %s from %s", arch, path)
    return path
