"""The AutoDL dataset format: metadata, readers (tf.data and TensorFlow-free), writer and converters.

TensorFlow is optional and imported only through :func:`tf_import`, which hides every GPU from it so
that the accelerator stays free for the model. ``AutoDLDataset`` (the tf.data reader) is loaded on
first use, so importing this package never imports TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from autoclint.autodl.errors import AutoDLFormatError
from autoclint.autodl.metadata import AutoDLMetadata

if TYPE_CHECKING:
    from autoclint.autodl.pyreader import PyAutoDLDataset
    from autoclint.autodl.reader import AutoDLDataset

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "tf", "python")


def tf_import() -> ModuleType:
    """Import TensorFlow with its C++ logs quiet and no GPU visible to it; the one way the package gets TF.

    Raises ImportError with an explanation when TensorFlow is not installed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        tf = importlib.import_module("tensorflow")
    except ImportError as error:
        raise ImportError(
            "TensorFlow is not installed: the tf.data AutoDL reader needs it "
            "(pip install tensorflow-cpu), or use the TensorFlow-free reader "
            "autoclint.autodl.pyreader.PyAutoDLDataset / open_dataset(path, backend='python')."
        ) from error
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        # Devices were already initialised (TF used before us): it is only safe if TF has no GPU.
        if tf.config.get_visible_devices("GPU"):
            logger.warning("TensorFlow was initialised before autoclint could hide the GPUs from it")
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def tf_available() -> bool:
    """Whether TensorFlow can be imported here (without importing it when it is not yet loaded)."""
    return importlib.util.find_spec("tensorflow") is not None


def open_dataset(path: str | Path, backend: str = "auto") -> AutoDLDataset | PyAutoDLDataset:
    """Open one split directory with the tf.data reader ("tf"), the numpy one ("python") or TF if present."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "tf" or (backend == "auto" and tf_available()):
        from autoclint.autodl.reader import AutoDLDataset

        return AutoDLDataset(path)
    from autoclint.autodl.pyreader import PyAutoDLDataset

    return PyAutoDLDataset(path)


def __getattr__(name: str) -> Any:
    """Load the tf.data reader lazily: ``autoclint.autodl.AutoDLDataset`` imports TensorFlow on first use."""
    if name == "AutoDLDataset":
        from autoclint.autodl.reader import AutoDLDataset

        return AutoDLDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AutoDLDataset",
    "AutoDLFormatError",
    "AutoDLMetadata",
    "open_dataset",
    "tf_available",
    "tf_import",
]
