#!/usr/bin/env python
"""Build the CodaLab AutoDL submission zip, check its Python version statically, then check it by running
the starter kit from it.

The zip holds `model.py` at its root, the `autoclint` package and `models/` (the pretrained
weights, when present), nothing else. Every .py in the zip is parsed with the standard library's
`ast.parse(..., feature_version=MIN_PYTHON)`, the grammar of the oldest Python the submission supports
(docs/platform.md), and the oldest grammar that parses the whole zip is reported; the run-time
requirements are printed. The run check unpacks the zip into a temporary folder and runs the
starter kit there, in a fresh interpreter whose import path holds only the unpacked zip and the
installed packages, so that a file missing from the zip shows up here and not on the platform.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autoclint.harness.scoring import SCORES_FILE, read_key_values  # noqa: E402

PLATFORM_LIMIT_BYTES = 300 * 1000 * 1000  # CodaLab refuses submissions above 300 MB
MIN_PYTHON = (3, 11)
"""The oldest Python the submission runs on (docs/platform.md); every .py in the zip must parse as its grammar."""
OLDEST_AST_GRAMMAR = (3, 7)  # ast.parse's feature_version goes no lower
RUNTIME_PACKAGES = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "pillow": "PIL",
                    "protobuf": "google.protobuf", "scikit-learn": "sklearn"}
"""Pinned packages (requirements.txt) the code in the zip imports, by distribution name -> import name;
scikit-learn brings the scipy and threadpoolctl that the fast learner imports."""
SKIPPED_PARTS = {"__pycache__", ".pytest_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def submission_files(repo: Path = REPO) -> list[Path]:
    """The files that go into the zip, relative to `repo`: model.py, autoclint/**, models/**."""
    files = [Path("model.py")]
    for folder in ("autoclint", "models"):
        for path in sorted((repo / folder).rglob("*")):
            relative = path.relative_to(repo)
            if path.is_file() and not SKIPPED_PARTS.intersection(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
                files.append(relative)
    missing = [str(path) for path in files if not (repo / path).is_file()]
    if missing:
        raise FileNotFoundError(f"cannot build the submission, missing: {', '.join(missing)}")
    return files


def has_weights(files: list[Path]) -> bool:
    return any(path.parts[0] == "models" and path.suffix in {".pth", ".pt"} for path in files)


def build_zip(output: Path, repo: Path = REPO, limit_bytes: int = PLATFORM_LIMIT_BYTES) -> list[Path]:
    """Writes the zip; refuses (and removes it) past the platform's size limit. Returns its files."""
    files = submission_files(repo)
    total = sum((repo / path).stat().st_size for path in files)
    if total > limit_bytes:  # stored size bounds the zip from above only loosely; check both
        raise ValueError(f"the submission's files add up to {total / 1e6:.1f} MB, over the platform's limit "
                         f"of {limit_bytes / 1e6:.0f} MB")
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(repo / path, path.as_posix())
    if output.stat().st_size > limit_bytes:
        output.unlink()
        raise ValueError(f"the zip is over the platform's limit of {limit_bytes / 1e6:.0f} MB")
    return files


def python_sources(archive: Path) -> dict[str, str]:
    """Every .py file of the zip: {path inside the zip: source}."""
    with zipfile.ZipFile(archive) as unpacked:
        return {name: unpacked.read(name).decode("utf-8") for name in unpacked.namelist() if name.endswith(".py")}


def syntax_problems(sources: dict[str, str], version: tuple[int, int] = MIN_PYTHON) -> list[str]:
    """`path:line: message` for each file that does not parse as the grammar of Python `version` (ast's
    feature_version: newer syntax, such as 3.12's type parameter lists, is refused)."""
    problems = []
    for name, source in sorted(sources.items()):
        try:
            ast.parse(source, filename=name, feature_version=version)
        except SyntaxError as error:
            problems.append(f"{name}:{error.lineno}: {error.msg}")
    return problems


def oldest_grammar(sources: dict[str, str]) -> tuple[tuple[int, int], str]:
    """The oldest Python whose grammar parses every file, and why not older: below ast's lowest
    feature_version (3.7) it is 3.7 when a file imports `annotations` from __future__, 3.6 for f-strings
    or variable annotations."""
    for minor in range(OLDEST_AST_GRAMMAR[1], sys.version_info.minor + 1):
        problems = syntax_problems(sources, (3, minor))
        if problems:
            continue
        if minor > OLDEST_AST_GRAMMAR[1]:
            older = syntax_problems(sources, (3, minor - 1))
            return (3, minor), f"{older[0]} (and {len(older) - 1} more)" if len(older) > 1 else older[0]
        return _oldest_below_ast(sources)
    return sys.version_info[:2], "no older grammar parses every file"


def _oldest_below_ast(sources: dict[str, str]) -> tuple[tuple[int, int], str]:
    for name, source in sorted(sources.items()):
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, ast.ImportFrom) and node.module == "__future__" and any(
                    alias.name == "annotations" for alias in node.names):
                return (3, 7), f"{name}:{node.lineno}: from __future__ import annotations needs 3.7"
    for name, source in sorted(sources.items()):
        for node in ast.walk(ast.parse(source, filename=name)):
            if isinstance(node, (ast.JoinedStr, ast.AnnAssign)):
                return (3, 6), f"{name}:{node.lineno}: f-strings and variable annotations need 3.6"
    return (3, 0), "nothing newer than Python 3.0 found"


def runtime_requirements(requirements: Path = REPO / "requirements.txt") -> list[str]:
    """The pinned requirements the submission's code imports (`name==version  (import name)`)."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return [f"{name}=={pins[name]}  (import {module})" for name, module in RUNTIME_PACKAGES.items() if name in pins]


def check_python_version(archive: Path) -> bool:
    """Print the static Python check of the zip and the run-time requirements; False when a file fails."""
    sources = python_sources(archive)
    problems = syntax_problems(sources)
    floor, reason = oldest_grammar(sources)
    minimum = ".".join(map(str, MIN_PYTHON))
    print(f"static check (ast.parse, feature_version={minimum}): {len(sources) - len(problems)} of "
          f"{len(sources)} .py files parse as Python {minimum}")
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    print(f"oldest grammar that parses the whole zip: Python {floor[0]}.{floor[1]} ({reason}); the run time "
          f"needs Python >= {minimum} (docs/platform.md)")
    print(f"requirements of the zip (docs/platform.md): Python >= {minimum}")
    for requirement in runtime_requirements():
        print(f"  {requirement}")
    print("  no TensorFlow: the model never imports it (the platform's ingestion may bring its own)")
    return not problems


def read_scores(score_dir: Path) -> dict[str, float]:
    """`scores.txt` of the starter kit as {key: value}; empty when the run wrote none."""
    path = score_dir / SCORES_FILE
    return {key: float(value) for key, value in read_key_values(path).items()} if path.is_file() else {}


def check_zip(archive: Path, dataset_dir: Path | None, time_budget: float) -> tuple[int, str, dict[str, float]]:
    """Unpacks the zip and runs the starter kit with it as code_dir; returns (exit code, output, scores)."""
    with tempfile.TemporaryDirectory(prefix="autoclint-submission-") as scratch:
        code_dir = Path(scratch) / "code"
        score_dir = Path(scratch) / "scores"
        with zipfile.ZipFile(archive) as unpacked:
            unpacked.extractall(code_dir)
        environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        environment["PYTHONPATH"] = str(code_dir)  # the unpacked zip, nothing from this checkout
        command = [sys.executable, "-m", "autoclint.harness", "--code_dir", str(code_dir),
                   "--time_budget", str(time_budget),
                   "--output_dir", str(Path(scratch) / "predictions"), "--score_dir", str(score_dir)]
        if dataset_dir is not None:
            command += ["--dataset_dir", str(dataset_dir)]
        result = subprocess.run(command, cwd=scratch, env=environment, capture_output=True, text=True)
        return result.returncode, result.stdout + result.stderr, read_scores(score_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "autoclint_submission.zip", help="zip to write")
    parser.add_argument("--dataset_dir", type=Path, help="dataset for the check (default: the digits dataset)")
    parser.add_argument("--time_budget", type=float, default=60.0, help="budget of the check run, seconds")
    parser.add_argument("--no_check", action="store_true", help="build the zip only")
    args = parser.parse_args(argv)

    try:
        files = build_zip(args.output)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    size_mb = args.output.stat().st_size / 1e6
    print(f"wrote {args.output}: {len(files)} files, {size_mb:.1f} MB (platform limit 300 MB)")
    if not check_python_version(args.output):
        print(f"error: files in the zip do not parse as Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}", file=sys.stderr)
        return 1
    if not has_weights(files):
        print("WARNING: no pretrained weights in models/: the submission will train from random "
              "initialisation and score far lower. Run scripts/fetch_weights.py first.", file=sys.stderr)
    if args.no_check:
        return 0

    print(f"checking the zip: starter kit, {args.time_budget:g} s budget, code_dir = the unpacked zip ...")
    code, output, scores = check_zip(args.output, args.dataset_dir, args.time_budget)
    if code != 0 or "score" not in scores:
        print(output[-4000:], file=sys.stderr)
        print(f"check FAILED (exit code {code}); zip size {size_mb:.1f} MB", file=sys.stderr)
        return code or 1
    print(f"check passed: ALC {scores['score']:.4f}, final NAUC {scores.get('nauc', float('nan')):.4f}, "
          f"zip size {size_mb:.1f} MB")
    return 0

if __name__ == "__main__":
    sys.exit(main())
