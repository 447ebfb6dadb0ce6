"""Locate the parts of an AutoDL dataset directory (the harness's view of ``root/name``)."""

from __future__ import annotations

from pathlib import Path

from autoclint.autodl.errors import AutoDLFormatError


def find_dataset(dataset_dir: str | Path) -> tuple[str, Path, Path, Path]:
    """(name, train_dir, test_dir, solution_path) of ``root/name`` or of a root holding one ``*.data``.

    The solution path is returned even when the file is absent (datasets without test labels).
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise AutoDLFormatError(f"{dataset_dir}: dataset directory not found")
    data_dirs = sorted(p for p in dataset_dir.glob("*.data") if p.is_dir())
    if not data_dirs:
        raise AutoDLFormatError(f"{dataset_dir}: no '<name>.data' folder "
                                "(expected <name>.data/train and <name>.data/test)")
    if len(data_dirs) > 1:
        names = ", ".join(p.name for p in data_dirs)
        raise AutoDLFormatError(f"{dataset_dir}: several datasets ({names}); pass one dataset's directory")
    data_dir = data_dirs[0]
    name = data_dir.name[: -len(".data")]
    train_dir, test_dir = data_dir / "train", data_dir / "test"
    for split_dir in (train_dir, test_dir):
        if not split_dir.is_dir():
            raise AutoDLFormatError(f"{split_dir}: split directory missing")
    return name, train_dir, test_dir, dataset_dir / f"{name}.solution"
