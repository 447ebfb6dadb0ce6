"""A fitted classifier as one file, without pickle: a zip archive of a JSON manifest and a tensor file.

`manifest.json` holds the format name and version, the classes, the input plan, the configuration, the
blend weight, TTA, the network's and fast learner's shapes and the versions that wrote it;
`tensors.pt` holds the network's state dict and the fast learner's arrays as plain tensors, written by
`torch.save` and read back by `torch.load(weights_only=True)`, which refuses any pickled object.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import pickle
import platform
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch

import autoclint
from autoclint.config import ModelConfig
from autoclint.data.convert import ExampleConverter
from autoclint.early import FastLearner, FastLearnerSettings
from autoclint.hardware import Precision, pick_device
from autoclint.nn.network import AutoClintNet
from autoclint.predictor import Predictor

if TYPE_CHECKING:
    from autoclint.classifier import ImageClassifier

logger = logging.getLogger(__name__)

FORMAT_NAME = "autoclint-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TENSORS = "tensors.pt"
NETWORK_PREFIX = "network."
FAST_PREFIX = "fast."
MAX_MANIFEST_BYTES = 16 * 2**20


class ModelFileError(ValueError):
    """A file that is not a readable autoclint model: foreign, truncated, tampered with or of another version."""


# ---------------------------------------------------------------------------------------------------------
# Writing


def save_classifier(classifier: "ImageClassifier", path: Path) -> Path:
    """Write `classifier` (fitted) to `path` as one zip file; returns the path."""
    predictor: Predictor = classifier.predictor_
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "written_by": {"autoclint": autoclint.__version__, "torch": torch.__version__,
                       "numpy": np.__version__, "python": platform.python_version()},
        "classes": classes_to_json(classifier.classes_),
        "multilabel_indicator": bool(classifier.multilabel_),
        "params": {name: value for name, value in classifier.get_params().items() if value is not None},
        "config": dataclasses.asdict(classifier.config_),
        "learning_curve": [list(point) for point in classifier.learning_curve_],
        "description": classifier.description_,
        "predictor": predictor_manifest(predictor),
    }
    buffer = io.BytesIO()
    torch.save(predictor_tensors(predictor), buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, json.dumps(manifest, indent=1, allow_nan=True))
        archive.writestr(TENSORS, buffer.getvalue())
    logger.info("model saved to %s", path)
    return path


def classes_to_json(classes: np.ndarray) -> list[Any]:
    """The classes as JSON values (strings, integers, floats or booleans)."""
    values = np.asarray(classes).tolist()
    if not all(isinstance(value, (str, int, float, bool)) for value in values):
        raise TypeError("only string, integer, float or boolean class labels can be saved")
    return values


def predictor_manifest(predictor: Predictor) -> dict[str, Any]:
    """The predictor's non-tensor description."""
    net, fast = predictor.net, predictor.fast
    return {
        "converter": {"frames": predictor.converter.frames, "height": predictor.converter.height,
                      "width": predictor.converter.width, "channels": predictor.converter.channels,
                      "value_low": predictor.converter.value_low, "value_high": predictor.converter.value_high},
        "network_weight": predictor.network_weight,
        "use_tta": predictor.use_tta,
        "num_classes": predictor.num_classes,
        "multilabel": predictor.multilabel,
        "priors": [float(p) for p in predictor.priors],
        "batch_size": predictor.batch_size,
        "valid_nauc": predictor.valid_nauc,
        "network": None if net is None else {
            "arch": network_arch(net), "in_channels": net.stem.in_channels, "num_classes": net.fc.out_features,
            "tau": float(net.tau), "video": net.temporal is not None},
        "fast_learner": None if fast is None else {
            "settings": dataclasses.asdict(fast.settings), "multilabel": fast.is_multilabel,
            "num_classes": fast.num_classes},
    }


def network_arch(net: AutoClintNet) -> str:
    """The torchvision architecture name of the network's backbone (resnet18 or resnet34)."""
    blocks = sum(len(getattr(net.backbone, f"layer{i}")) for i in range(1, 5))
    return {8: "resnet18", 16: "resnet34"}[blocks]


def predictor_tensors(predictor: Predictor) -> dict[str, torch.Tensor]:
    """Every array of the predictor as a named CPU tensor."""
    tensors: dict[str, torch.Tensor] = {}
    if predictor.net is not None:
        for name, value in predictor.net.state_dict().items():
            tensors[NETWORK_PREFIX + name] = value.detach().cpu().contiguous()
    if predictor.fast is not None:
        for name, value in predictor.fast.parameters().items():
            tensors[FAST_PREFIX + name] = torch.from_numpy(np.ascontiguousarray(value))
    return tensors


# ---------------------------------------------------------------------------------------------------------
# Reading


def load_classifier(cls: type, path: Path) -> "ImageClassifier":
    """The classifier saved at `path`, its network on this machine's device."""
    manifest, tensors = read_archive(path)
    try:
        classifier = cls(**manifest["params"])
        classifier.config_ = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v
                                            for k, v in manifest["config"].items()})
        classifier.predictor_ = build_predictor(manifest["predictor"], tensors)
        classifier.classes_ = np.asarray(manifest["classes"])
        classifier.multilabel_ = bool(manifest["multilabel_indicator"])
        classifier.learning_curve_ = [tuple(point) for point in manifest["learning_curve"]]
        classifier.description_ = str(manifest["description"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelFileError(f"{path}: the model file is inconsistent ({type(error).__name__}: {error})") from error
    if len(classifier.classes_) != classifier.predictor_.num_classes:
        raise ModelFileError(f"{path}: {len(classifier.classes_)} classes for a predictor of "
                             f"{classifier.predictor_.num_classes}")
    return classifier


def read_archive(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest and the tensors of a model file, checked; nothing in it is executed."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if MANIFEST not in names or TENSORS not in names:
                raise ModelFileError(f"{path}: not an autoclint model (no {MANIFEST} and {TENSORS})")
            if archive.getinfo(MANIFEST).file_size > MAX_MANIFEST_BYTES:
                raise ModelFileError(f"{path}: its manifest is implausibly large")
            manifest_bytes = archive.read(MANIFEST)
            tensor_bytes = archive.read(TENSORS)
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
        raise ModelFileError(f"{path}: not an autoclint model, or a truncated one ({error})") from error
    manifest = parse_manifest(path, manifest_bytes)
    return manifest, load_tensors(path, tensor_bytes)


def parse_manifest(path: Path, data: bytes) -> dict[str, Any]:
    """The manifest, with its format name and version checked."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: the manifest is not valid JSON ({error})") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not an autoclint model (format is not {FORMAT_NAME!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {manifest.get('format_version')!r}; this autoclint "
                             f"{autoclint.__version__} reads version {FORMAT_VERSION}")
    return manifest


def load_tensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """The named tensors, read with `weights_only=True`: a pickled object is refused, never built."""
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise ModelFileError(f"{path}: the tensor file is refused: it is damaged or holds more than plain "
                             f"tensors ({type(error).__name__}: {str(error).splitlines()[0][:200]})") from error
    if not isinstance(tensors, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in tensors.items()
    ):
        raise ModelFileError(f"{path}: the tensor file must hold a mapping of names to tensors")
    return tensors


def build_predictor(manifest: dict[str, Any], tensors: dict[str, torch.Tensor],
                    precision: Optional[Precision] = None) -> Predictor:
    """The predictor described by `manifest`, with its tensors, on `precision`'s device (this machine's)."""
    converter = ExampleConverter(**manifest["converter"])
    net = None
    if manifest["network"] is not None:
        spec = manifest["network"]
        net = AutoClintNet(spec["arch"], spec["in_channels"], spec["num_classes"], spec["tau"], spec["video"])
        state = {name[len(NETWORK_PREFIX):]: value for name, value in tensors.items()
                 if name.startswith(NETWORK_PREFIX)}
        net.load_state_dict(state, strict=True)
        net.eval()
    fast = None
    if manifest["fast_learner"] is not None:
        spec = manifest["fast_learner"]
        # files written before the harmonic orientation histograms name no method: theirs was the binning
        settings = FastLearnerSettings(**{"orientation_histograms": "binned",
                                          **{k: tuple(v) if isinstance(v, list) else v
                                             for k, v in spec["settings"].items()}})
        parameters = {name[len(FAST_PREFIX):]: value.numpy() for name, value in tensors.items()
                      if name.startswith(FAST_PREFIX)}
        fast = FastLearner.from_parameters(settings, spec["multilabel"], spec["num_classes"], parameters)
    precision = precision or Precision.for_device(pick_device())
    predictor = Predictor(converter, net, fast, manifest["network_weight"], bool(manifest["use_tta"]),
                          int(manifest["num_classes"]), bool(manifest["multilabel"]),
                          np.asarray(manifest["priors"], dtype=np.float32), precision,
                          int(manifest["batch_size"]), float(manifest["valid_nauc"]))
    return predictor.to(precision)
