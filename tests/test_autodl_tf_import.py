"""TensorFlow is optional, imported only through tf_import, and never sees a GPU."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from autoclint.autodl import open_dataset, tf_available
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.writer import write_dataset

REPO = Path(__file__).resolve().parents[1]


def _run(code):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_importing_the_package_does_not_import_tensorflow():
    result = _run("""
        import sys
        import autoclint.autodl, autoclint.autodl.writer, autoclint.autodl.convert, autoclint.autodl.demo
        assert "tensorflow" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr


def test_clear_import_error_without_tensorflow():
    result = _run("""
        import sys
        sys.modules["tensorflow"] = None  # as if it were not installed
        from autoclint.autodl import tf_import
        try:
            tf_import()
        except ImportError as error:
            assert "TensorFlow is not installed" in str(error) and "PyAutoDLDataset" in str(error), error
        else:
            raise AssertionError("no ImportError")
    """)
    assert result.returncode == 0, result.stderr


def test_tensorflow_sees_no_gpu_and_torchvision_imports_after_it():
    pytest.importorskip("tensorflow")
    result = _run("""
        import tensorflow
        hidden = []  # a CPU build sees no GPU anyway: record that tf_import asks TensorFlow to hide them
        real_set_visible_devices = tensorflow.config.set_visible_devices

        def set_visible_devices(devices, device_type=None):
            hidden.append((list(devices), device_type))
            return real_set_visible_devices(devices, device_type)

        tensorflow.config.set_visible_devices = set_visible_devices
        from autoclint.autodl import tf_import
        tf = tf_import()
        assert hidden == [([], "GPU")], hidden
        assert tf.config.get_visible_devices("GPU") == []
        import torchvision  # the order the AutoDL ingestion uses must not crash
    """)
    assert result.returncode == 0, result.stderr


def test_open_dataset_backends(tmp_path):
    x = np.zeros((2, 3, 3, 1), dtype=np.uint8)
    split = write_dataset(tmp_path, "ds", x, [0, 1], x, [1, 0]) / "ds.data" / "train"
    assert isinstance(open_dataset(split, backend="python"), PyAutoDLDataset)
    expected = "AutoDLDataset" if tf_available() else "PyAutoDLDataset"
    assert type(open_dataset(split)).__name__ == expected
    with pytest.raises(ValueError, match="backend must be one of"):
        open_dataset(split, backend="torch")
