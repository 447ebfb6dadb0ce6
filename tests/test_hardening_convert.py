"""The converters never delete or mix up what they were given: sources survive --overwrite, a stray entry
never moves test images into training, unsafe zip entries and non-.npz files are refused, and a failed
write leaves nothing behind."""

import io
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autoclint.autodl.convert import convert_image_folder, convert_npz
from autoclint.autodl.layout import find_dataset
from autoclint.autodl.pyreader import PyAutoDLDataset
from autoclint.autodl.records import COMPRESSED_KEY, read_examples
from autoclint.autodl.writer import DATASET_MARKER, write_dataset

REPO = Path(__file__).resolve().parents[1]
CONVERT = REPO / "scripts" / "convert.py"


def _png(value: int) -> bytes:
    """A distinct small PNG per value, so every source image can be recognised in the records."""
    buffer = io.BytesIO()
    pixels = np.full((4, 4, 3), value % 256, np.uint8)
    pixels[0, 0, 0] = value // 256
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_convert(*args, cwd=None):
    return subprocess.run([sys.executable, str(CONVERT), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def _stored_images(split_dir: Path) -> set[bytes]:
    index = PyAutoDLDataset(split_dir).index
    return {e.feature_lists.feature_list[COMPRESSED_KEY].feature[0].bytes_list.value[0]
            for e in read_examples(index.locations)}


# ----------------------------------------------------------------------------- never delete a source


def test_overwrite_onto_its_own_source_keeps_every_source_image(tmp_path):
    photos = _write_tree(tmp_path / "photos", {f"{c}/{i}.png": _png(10 * k + i)
                                               for k, c in enumerate("ab") for i in range(5)})
    before = _snapshot(photos)
    first = _run_convert("images", "photos", "--out", ".", cwd=tmp_path)
    assert first.returncode == 2 and "source" in first.stderr
    again = _run_convert("images", "photos", "--out", ".", "--overwrite", cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert _snapshot(photos) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing half-written beside it


def test_overwrite_replaces_only_a_folder_this_writer_wrote(tmp_path):
    x = np.zeros((4, 3, 3, 3), np.uint8)
    root = write_dataset(tmp_path, "ds", x, [0, 1, 0, 1], x[:2], [0, 1], image_format="png")
    assert (root / DATASET_MARKER).is_file()
    replaced = write_dataset(tmp_path, "ds", x[:3], [0, 1, 0], x[:2], [0, 1], image_format="png",
                             overwrite=True)
    assert PyAutoDLDataset(find_dataset(replaced)[1]).get_metadata().size() == 3
    (root / "notes.txt").write_text("mine")  # a file added by hand is never deleted
    with pytest.raises(FileExistsError, match="notes.txt"):
        write_dataset(tmp_path, "ds", x, [0, 1, 0, 1], x[:2], [0, 1], overwrite=True)
    assert (root / "notes.txt").read_text() == "mine"
    foreign = _write_tree(tmp_path / "theirs", {"theirs.data/train/x": b"1", "keep.jpg": b"2"})
    with pytest.raises(FileExistsError, match="did not write"):
        write_dataset(tmp_path, "theirs", x, [0, 1, 0, 1], x[:2], [0, 1], overwrite=True)
    assert _snapshot(foreign) == {"theirs.data/train/x": b"1", "keep.jpg": b"2"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "theirs"]


def test_a_failed_write_leaves_nothing_and_the_next_run_succeeds(tmp_path):
    x = np.zeros((3, 3, 3, 3), np.float32)
    bad_test = x[:2] + 2.0  # floats outside [0, 1] cannot be PNG: fails while the test records are written
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        write_dataset(tmp_path / "out", "ds", x, [0, 1, 0], bad_test, [0, 1], image_format="png")
    assert list((tmp_path / "out").iterdir()) == []
    write_dataset(tmp_path / "out", "ds", x, [0, 1, 0], x[:2], [0, 1], image_format="png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ds"]


def test_a_failed_overwrite_keeps_the_previous_dataset_whole(tmp_path):
    x = np.zeros((3, 3, 3, 3), np.float32)
    root = write_dataset(tmp_path, "ds", x, [0, 1, 0], x[:2], [0, 1], image_format="png")
    before = _snapshot(root)
    with pytest.raises(ValueError):
        write_dataset(tmp_path, "ds", x, [0, 1, 0], x[:2] + 2.0, [0, 1], image_format="png", overwrite=True)
    assert _snapshot(root) == before and sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# ----------------------------------------------------------------------------- the user's split is kept


def _split_zip(path: Path, extra: dict[str, bytes]) -> tuple[set[bytes], set[bytes]]:
    train = {f"train/{c}/{i}.png": _png(100 * k + i) for k, c in enumerate("ab") for i in range(10)}
    test = {f"test/{c}/{i}.png": _png(100 * k + 50 + i) for k, c in enumerate("ab") for i in range(5)}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in {**train, **test, **extra}.items():
            archive.writestr(name, data)
    return set(train.values()), set(test.values())


def test_a_stray_top_level_entry_is_an_error_naming_it_and_never_mixes_the_split(tmp_path):
    source = tmp_path / "stray.zip"
    train, test = _split_zip(source, {"samples/preview.png": _png(999)})
    with pytest.raises(ValueError, match="unexpected entries: samples"):
        convert_image_folder(source, tmp_path / "out")
    failed = _run_convert("images", source, "--out", tmp_path / "out")
    assert failed.returncode == 2 and "samples" in failed.stderr
    assert not (tmp_path / "out" / "stray").exists()
    root = convert_image_folder(source, tmp_path / "out", ignore_extra=True)
    _, train_dir, test_dir, _ = find_dataset(root)
    assert _stored_images(train_dir) == train and _stored_images(test_dir) == test
    assert (root / "stray_label.name").read_text().split() == ["a", "b"]


def test_a_split_without_test_images_is_an_error(tmp_path):
    source = _write_tree(tmp_path / "one", {f"train/{c}/0.png": _png(i) for i, c in enumerate("abc")})
    with pytest.raises(ValueError, match="0 images"):
        convert_image_folder(source, tmp_path / "out")
    result = _run_convert("images", source, "--out", tmp_path / "out")
    assert result.returncode == 2 and "test split has 0 images" in result.stderr
    only_test = _write_tree(tmp_path / "half", {"test/a/0.png": _png(1), "other/a/1.png": _png(2)})
    with pytest.raises(ValueError, match="no train/"):
        convert_image_folder(only_test, tmp_path / "out")


def test_every_class_with_two_images_gets_a_test_image_and_single_ones_are_warned_about(tmp_path, caplog):
    files = {f"a/{i}.png": _png(i) for i in range(2)}
    files.update({f"b/{i}.png": _png(10 + i) for i in range(10)})
    files["c/0.png"] = _png(20)
    source = _write_tree(tmp_path / "classes", files)
    with caplog.at_level(logging.WARNING):
        root = convert_image_folder(source, tmp_path / "out", test_fraction=0.2)
    _, train_dir, test_dir, _ = find_dataset(root)
    assert PyAutoDLDataset(test_dir).get_metadata().size() == 1 + 2
    assert PyAutoDLDataset(train_dir).get_metadata().size() == 1 + 8 + 1
    assert "no test image" in caplog.text and ": c" in caplog.text


@pytest.mark.parametrize("entry", ["/tmp/x.png", "../x.png", "a/../../x.png", "C:/x.png"])
def test_zip_entries_outside_the_tree_are_refused(tmp_path, entry):
    source = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for i in range(4):
            archive.writestr(f"a/{i}.png", _png(i))
            archive.writestr(f"b/{i}.png", _png(10 + i))
        archive.writestr(zipfile.ZipInfo(entry), _png(99))
    assert entry in zipfile.ZipFile(source).namelist()
    with pytest.raises(ValueError, match="absolute path or '..'"):
        convert_image_folder(source, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------- .npz that are not


def test_random_bytes_are_not_a_valid_npz_and_unpickling_is_never_suggested(tmp_path):
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="not a valid .npz") as error:
        convert_npz(bogus, tmp_path / "out")
    assert "pickle" not in str(error.value)
    result = _run_convert("npz", bogus, "--out", tmp_path / "out")
    assert result.returncode == 2 and "not a valid .npz" in result.stderr and "pickle" not in result.stderr


def test_an_npz_holding_python_objects_is_refused_without_unpickling(tmp_path):
    objects = tmp_path / "objects.npz"
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.zeros((2, 2)), np.zeros((3, 3))]
    np.savez(objects, x_train=ragged, y_train=[0, 1], x_test=ragged, y_test=[0, 1])
    with pytest.raises(ValueError, match="Python objects") as error:
        convert_npz(objects, tmp_path / "out")
    assert "allow_pickle" not in str(error.value)
