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


def zip_of(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, source in files.items():
            archive.writestr(name, source)
    return path


def test_files_newer_than_the_minimum_python_are_refused_by_the_static_check(load_script, tmp_path):
    make_submission = load_script("make_submission")
    assert make_submission.MIN_PYTHON == (3, 11)
    archive = zip_of(tmp_path / "newer.zip", {
        "model.py": "class Model:\n    pass\n",
        "autoclint/generic.py": "def first[T](items: list[T]) -> T:\n    return items[0]\n",  # 3.12 syntax
        "models/notes.txt": "def broken(:\n",  # not Python: not checked
    })
    problems = make_submission.syntax_problems(make_submission.python_sources(archive))
    assert len(problems) == 1 and problems[0].startswith("autoclint/generic.py:1:")
    assert not make_submission.check_python_version(archive)


@pytest.mark.parametrize("source, oldest", [
    ("if (n := 3):\n    pass\n", (3, 8)),
    ("from __future__ import annotations\nx = 1\n", (3, 7)),
    ("name = 'x'\ngreeting = f'hello {name}'\n", (3, 6)),
    ("x = 1\n", (3, 0)),
])
def test_the_oldest_grammar_that_parses_the_zip_is_found(load_script, tmp_path, source, oldest):
    make_submission = load_script("make_submission")
    found, reason = make_submission.oldest_grammar({"model.py": source})
    assert found == oldest and reason


def test_the_real_zip_parses_as_the_minimum_python_and_its_requirements_are_printed(load_script, tmp_path,
                                                                                      capsys):
    make_submission = load_script("make_submission")
    archive = tmp_path / "submission.zip"
    make_submission.build_zip(archive)
    assert make_submission.check_python_version(archive)
    printed = capsys.readouterr().out
    assert "parse as Python 3.11" in printed and "Python >= 3.11" in printed
    for requirement in ("torch==", "torchvision==", "numpy==", "pillow=="):
        assert f"  {requirement}" in printed
    # the 2019 platform image (Python 3.5.2) cannot even parse it
    assert make_submission.oldest_grammar(make_submission.python_sources(archive))[0] >= (3, 6)
