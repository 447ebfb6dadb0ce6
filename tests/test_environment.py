"""The environment must survive the AutoDL ingestion's import order: TensorFlow first, then torch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_fresh_python(code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a new interpreter of this environment, from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_triton_is_absent():
    # triton's bundled LLVM clashes with TensorFlow's; its presence is what makes the order crash.
    assert importlib.util.find_spec("triton") is None


def test_tensorflow_then_torchvision_in_a_fresh_process():
    result = run_fresh_python(
        "import tensorflow as tf\n"
        "import torchvision, torch\n"
        "x = torch.ones(2, 3, 8, 8)\n"
        "print(torchvision.models.resnet18(num_classes=2)(x).shape, tf.constant(1).numpy())\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch.Size([2, 2]) 1" in result.stdout


def test_tensorflow_then_model_in_a_fresh_process():
    if not (REPO / "model.py").is_file():
        pytest.fail("model.py is missing at the repository root")
    result = run_fresh_python("import tensorflow\nimport model\nprint(model.Model.__name__)\n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Model")
