"""The image-folder converter stores images as a viewer shows them (16-bit scaled, transparency on black, EXIF
orientation applied; a warning counts them), keeps plain 8-bit JPEG/PNG byte for byte, and refuses an image
that does not decode completely, naming it, or skips and lists it with --skip-bad."""

import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl.convert import convert_image_folder
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.records import COMPRESSED_KEY, read_examples

CONVERT = Path(__file__).resolve().parents[1] / "scripts" / "convert.py"


def _encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _jpeg(value: int) -> bytes:
    return _encoded(np.full((12, 12, 3), value, np.uint8), "JPEG", quality=95)


def _tree(root: Path, extra: dict[str, bytes], per_class: int = 6) -> Path:
    files = {f"train/{c}/{i}.jpg": _jpeg(20 * i + 100 * k) for k, c in enumerate("ab") for i in range(per_class)}
    files.update({f"test/{c}/t.jpg": _jpeg(60) for c in "ab"})
    files.update(extra)
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def _train_arrays(dataset: Path) -> list[np.ndarray]:
    return [x for x, _ in PyAutoDLDataset(find_dataset(dataset)[1]).get_dataset()]


def test_a_truncated_jpeg_is_refused_naming_the_file(tmp_path):
    bad = _jpeg(77)
    tree = _tree(tmp_path / "tree", {"train/a/cut.jpg": bad[: len(bad) // 2]})
    with pytest.raises(ValueError, match=r"train/a/cut\.jpg"):
        convert_image_folder(tree, tmp_path / "out", "cut")
    assert not (tmp_path / "out" / "cut").exists()


def test_skip_bad_leaves_out_and_lists_the_truncated_jpeg(tmp_path):
    bad = _jpeg(77)
    tree = _tree(tmp_path / "tree", {"train/a/cut.jpg": bad[: len(bad) // 2]})
    result = subprocess.run([sys.executable, str(CONVERT), "images", str(tree), "--out", str(tmp_path / "out"),
                             "--name", "cut", "--skip-bad"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "train/a/cut.jpg" in result.stderr and "skipped" in result.stderr
    assert len(_train_arrays(tmp_path / "out" / "cut")) == 12


def test_a_sixteen_bit_gradient_is_scaled_not_clipped_and_counted(tmp_path, caplog):
    gradient = np.tile(np.linspace(0, 65535, 12).round().astype(np.uint16), (12, 1))
    tree = _tree(tmp_path / "tree", {"train/a/deep.png": _encoded(gradient, "PNG")})
    with caplog.at_level(logging.WARNING):
        dataset = convert_image_folder(tree, tmp_path / "out", "deep", shuffle=False)
    arrays = _train_arrays(dataset)
    deep = [x for x in arrays if x.std() > 0.1]
    assert len(deep) == 1
    row = deep[0][0, 0, :, 0]
    assert np.allclose(row, np.linspace(0, 1, 12), atol=1 / 255 + 1e-6)
    assert "1 image(s)" in caplog.text and "scaled to 8 bits" in caplog.text


def test_transparency_is_composited_on_black(tmp_path, caplog):
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[..., :3] = 255  # white colour stored under the transparent half
    rgba[:6, :, 3] = 255
    rgba[:6, :, :3] = (200, 0, 0)
    tree = _tree(tmp_path / "tree", {"train/a/clear.png": _encoded(rgba, "PNG")})
    with caplog.at_level(logging.WARNING):
        dataset = convert_image_folder(tree, tmp_path / "out", "clear")
    red = [x for x in _train_arrays(dataset) if x[0, 0, 0, 0] > 0.7 and x[0, 0, 0, 1] < 0.1]
    assert len(red) == 1
    assert np.all(red[0][0, 6:] == 0.0), "transparent pixels kept their stored colour"
    assert "transparency composited on black" in caplog.text


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((12, 24, 3), np.uint8)  # stored 24 wide, 12 high; the left half bright
    pixels[:, :12] = 250
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: 12 wide, 24 high
    photo = _encoded(pixels, "JPEG", quality=95, exif=exif.tobytes())
    tree = _tree(tmp_path / "tree", {"train/a/turned.jpg": photo})
    arrays = _train_arrays(convert_image_folder(tree, tmp_path / "out", "turned"))
    turned = [x for x in arrays if x.shape[1:3] == (24, 12)]
    assert len(turned) == 1, [x.shape for x in arrays]
    assert turned[0][0, :12].mean() > 0.9 and turned[0][0, 12:].mean() < 0.1  # the bright half on top


def test_plain_eight_bit_jpegs_stay_byte_for_byte(tmp_path):
    tree = _tree(tmp_path / "tree", {})
    dataset = convert_image_folder(tree, tmp_path / "out", "plain")
    index = PyAutoDLDataset(find_dataset(dataset)[1]).index
    stored = {e.feature_lists.feature_list[COMPRESSED_KEY].feature[0].bytes_list.value[0]
              for e in read_examples(index.locations)}
    sources = {p.read_bytes() for p in (tree / "train").rglob("*.jpg")}
    assert stored == sources
