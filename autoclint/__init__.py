"""autoclint: an AutoDL/AutoCV submission that trains an image/video classifier under a time budget."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["ImageClassifier"]


def __getattr__(name: str) -> Any:
    """`autoclint.ImageClassifier`, imported on first use (the AutoDL entry point does not need it)."""
    if name == "ImageClassifier":
        from autoclint.classifier import ImageClassifier

        return ImageClassifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
