"""The default local dataset: scikit-learn's digits (8x8 grayscale, 10 classes) in AutoDL format.

It ships with scikit-learn, so the starter kit runs with no download; it is written once into a
cache folder outside the repository (`AUTOCLINT_DATASETS_CACHE`, default
`~/.cache/autoclint/datasets`) and reused afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CACHE_ENV_VAR = "AUTOCLINT_DATASETS_CACHE"
DIGITS_NAME = "digits"
TEST_FRACTION = 0.2
SPLIT_SEED = 0


def default_cache_dir() -> Path:
    """Where converted sample datasets go: `$AUTOCLINT_DATASETS_CACHE` or ~/.cache/autoclint/datasets."""
    configured = os.environ.get(CACHE_ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "autoclint" / "datasets"


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Digits as uint8 images [N,8,8,1] (0..255) split 80/20 (stratified, fixed seed), class names."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=TEST_FRACTION, stratify=digits.target, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test, [str(name) for name in digits.target_names]


def is_complete_dataset(dataset_dir: Path, name: str) -> bool:
    """True when `dataset_dir` holds a written AutoDL dataset `name` (both splits and the solution)."""
    data = dataset_dir / f"{name}.data"
    return (
        (dataset_dir / f"{name}.solution").is_file()
        and (data / "train" / "metadata.textproto").is_file()
        and (data / "test" / "metadata.textproto").is_file()
    )


def ensure_digits_dataset(cache_dir: Path | None = None) -> Path:
    """Return the digits dataset directory in AutoDL format, writing it into the cache on first use."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_dir / DIGITS_NAME
    if is_complete_dataset(target, DIGITS_NAME):
        return target
    from autoclint.autodl.writer import write_dataset

    cache_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test, names = digits_arrays()
    # Written beside the target and renamed, so a crash never leaves a half-written dataset in place.
    staging = Path(tempfile.mkdtemp(prefix=".digits-", dir=cache_dir))
    try:
        written = write_dataset(
            staging, DIGITS_NAME, x_train, y_train, x_test, y_test, label_names=names, image_format="png"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote the digits dataset to %s", target)
    return target
