"""scripts/make_submission.py: what goes into the zip, the size limit, and the zip's own check run."""

import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def fake_project(root: Path, weights: bool) -> Path:
    """A project tree with the parts a submission takes and the parts it must leave out."""
    (root / "autoclint" / "nn" / "__pycache__").mkdir(parents=True)
    (root / "model.py").write_text("class Model: pass\n")
    (root / "autoclint" / "__init__.py").write_text("")
    (root / "autoclint" / "nn" / "net.py").write_text("x = 1\n")
    (root / "autoclint" / "nn" / "__pycache__" / "net.cpython-311.pyc").write_bytes(b"\0")
    (root / "tests").mkdir()
    (root / "tests" / "test_x.py").write_text("")
    (root / "models").mkdir()
    if weights:
        (root / "models" / "resnet18-f37072fd.pth").write_bytes(b"w" * 1000)
    return root


def test_zip_holds_model_package_and_weights_only(load_script, tmp_path):
    make_submission = load_script("make_submission")
    project = fake_project(tmp_path / "project", weights=True)
    archive = tmp_path / "out" / "submission.zip"

    files = make_submission.build_zip(archive, repo=project)

    names = sorted(zipfile.ZipFile(archive).namelist())
    assert names == ["autoclint/__init__.py", "autoclint/nn/net.py", "model.py", "models/resnet18-f37072fd.pth"]
    assert make_submission.has_weights(files)


def test_missing_weights_are_noticed(load_script, tmp_path):
    make_submission = load_script("make_submission")
    project = fake_project(tmp_path / "project", weights=False)
    files = make_submission.build_zip(tmp_path / "submission.zip", repo=project)
    assert not make_submission.has_weights(files)


def test_refuses_to_build_past_the_size_limit(load_script, tmp_path):
    make_submission = load_script("make_submission")
    project = fake_project(tmp_path / "project", weights=True)
    archive = tmp_path / "submission.zip"
    with pytest.raises(ValueError, match="over the platform's limit"):
        make_submission.build_zip(archive, repo=project, limit_bytes=500)
    assert not archive.exists()


def test_missing_model_py_is_an_error(load_script, tmp_path):
    make_submission = load_script("make_submission")
    project = fake_project(tmp_path / "project", weights=False)
    (project / "model.py").unlink()
    with pytest.raises(FileNotFoundError, match="model.py"):
        make_submission.build_zip(tmp_path / "submission.zip", repo=project)


def test_the_real_submission_passes_its_own_check(load_script, tmp_path, capsys):
    """The zip of this checkout, unpacked alone, runs through the starter kit and gets scored."""
    make_submission = load_script("make_submission")
    archive = tmp_path / "autoclint.zip"
    code = make_submission.main(["--output", str(archive), "--time_budget", "15"])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "check passed: ALC" in out
    if not any(name.endswith(".pth") for name in zipfile.ZipFile(archive).namelist()):
        assert "WARNING: no pretrained weights" in err
    names = zipfile.ZipFile(archive).namelist()
    assert "model.py" in names and "autoclint/trainer.py" in names
    assert not any(name.startswith(("tests/", "scripts/")) for name in names)
