"""Benchmark datasets: the real raw sets of the shared folder converted once to AutoDL format, in a cache.

`.npz` sets (x_train, y_train, x_test, y_test, classes) and the `ucmerced_a.zip` image-folder tree are
written with the project's writer into `~/.cache/autoclint/datasets/<name>` (outside the repository)
and reused when complete; the organizers' AutoDL samples are used where they are; `digits` comes from
the starter kit. The derived sets (`mnist_video`, video; `cifar_mosaic`, multilabel) are generated from
the raw sets by :mod:`autoclint.experiments.derived` into the same cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from autoclint.harness.sample_data import default_cache_dir, ensure_digits_dataset, is_complete_dataset

logger = logging.getLogger(__name__)

SHARED_DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
NPZ_DATASETS = ("mnist10k", "cifar10_15k", "fer2013_15k", "breastmnist")
FOLDER_DATASETS = ("ucmerced_a",)
AUTODL_SAMPLES = ("miniciao", "Monkeys")
BUILTIN_DATASETS = ("digits",)

DERIVED_SOURCES = {"mnist_video": "mnist10k.npz", "cifar_mosaic": "cifar10_15k.npz"}
DERIVED_DATASETS = tuple(DERIVED_SOURCES)
KNOWN_DATASETS = NPZ_DATASETS + FOLDER_DATASETS + AUTODL_SAMPLES + BUILTIN_DATASETS + DERIVED_DATASETS


def check_dataset_names(names: list[str]) -> None:
    """Raise ValueError naming any dataset that is neither a known name nor an existing folder."""
    unknown = [n for n in names if n not in KNOWN_DATASETS and not Path(n).is_dir()]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(KNOWN_DATASETS)} "
                         "(or give the path of an AutoDL dataset folder)")


def dataset_label(name_or_path: str) -> str:
    """The name a dataset is recorded under: the name itself, or a folder's base name."""
    return name_or_path if name_or_path in KNOWN_DATASETS else Path(name_or_path).name


def prepare_dataset(name: str, cache_dir: Path | None = None, shared_root: Path = SHARED_DATASETS) -> Path:
    """The AutoDL dataset folder for `name`, converting the raw set into the cache on first use."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if name in BUILTIN_DATASETS:
        return ensure_digits_dataset(cache_dir)
    if name in AUTODL_SAMPLES:
        path = Path(shared_root) / "autodl_samples" / name
        if not is_complete_dataset(path, name):
            raise FileNotFoundError(f"AutoDL sample {name!r} not found at {path}")
        return path
    if name in NPZ_DATASETS:
        return _cached(name, cache_dir, _write_npz, Path(shared_root) / f"{name}.npz")
    if name in FOLDER_DATASETS:
        return _cached(name, cache_dir, _write_zip, Path(shared_root) / f"{name}.zip")
    if name in DERIVED_DATASETS:
        return _cached(name, cache_dir, _write_derived, Path(shared_root) / DERIVED_SOURCES[name])
    if Path(name).is_dir():
        return Path(name)
    raise ValueError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")


def _cached(name: str, cache_dir: Path, write: Callable[[Path, Path, str], Path], source: Path) -> Path:
    """Reuse `cache_dir/name` when complete, else `write(source, staging, name)` and rename it into place."""
    target = cache_dir / name
    if is_complete_dataset(target, name):
        return target
    if not source.is_file():
        raise FileNotFoundError(f"raw dataset {name!r} not found: {source}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    try:
        written = write(source, staging, name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %s in AutoDL format to %s", name, target)
    return target


def _write_npz(source: Path, staging: Path, name: str) -> Path:
    """Write an npz set (x_train, y_train, x_test, y_test, classes) as PNG-compressed AutoDL records."""
    from autoclint.autodl.convert import convert_npz

    return convert_npz(source, staging, name, image_format="png")


def _write_zip(source: Path, staging: Path, name: str) -> Path:
    """Write a zipped `{train,test}/<class>/<image>` tree (variable sizes), image files kept as they are."""
    from autoclint.autodl.convert import convert_image_folder

    return convert_image_folder(source, staging, name)


def _write_derived(source: Path, staging: Path, name: str) -> Path:
    """Generate a derived set (video or multilabel) from its raw `.npz`; see autoclint.experiments.derived."""
    from autoclint.experiments.derived import WRITERS

    return WRITERS[name](source, staging, name)
