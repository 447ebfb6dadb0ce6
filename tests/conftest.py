"""Shared test fixtures: where the real datasets are, skipping cleanly when they are absent (failing in
CI)."""

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def in_ci() -> bool:
    """Whether the tests run in CI (CI=true, as CI services set it), where every test must run."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it in CI, where missing data must not pass unnoticed."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: tests needing it fail instead of skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The folder of real datasets beside the checkout; skips the test when it is not there."""
    if not SHARED_DATASETS.is_dir():
        skip_or_fail(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def autodl_samples(shared_datasets: Path) -> Path:
    """The organizers' AutoDL sample datasets (miniciao, Monkeys)."""
    path = shared_datasets / "autodl_samples"
    if not path.is_dir():
        skip_or_fail(f"AutoDL samples not found at {path}")
    return path


@pytest.fixture
def load_script():
    """Imports a file of scripts/ as a module (scripts/ is not a package): load_script("make_submission")."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
