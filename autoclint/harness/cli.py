"""The local starter kit's command line: ingestion of a model on a dataset, live scoring, reports.

Accepts the platform kit's single-dash `-name=value` options as well as `--name value`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from autoclint import metrics
from autoclint.autodl.errors import AutoDLFormatError
from autoclint.harness.ingestion import (
    IngestionConfig,
    IngestionResult,
    OutputDirError,
    run_ingestion,
    with_writable_config_dirs,
)
from autoclint.harness.ingestion_worker import NO_PREDICTION
from autoclint.harness.report import write_reports
from autoclint.harness.scoring import RunScorer, RunScores, write_scores

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINES_DIR = Path(__file__).resolve().parent / "baselines"
BASELINES = ("zero", "linear")
_SINGLE_DASH_OPTION = re.compile(r"^-([A-Za-z][A-Za-z0-9_]+)(=.*)?$")


@dataclass
class LocalTestResult:
    """What a local test produced: ingestion outcome, scores and where the reports are."""

    ingestion: IngestionResult
    scores: RunScores
    scores_file: Path
    curve_png: Path
    detailed_html: Path


def normalise_arguments(argv: list[str]) -> list[str]:
    """Turn the platform kit's `-name=value` options into `--name=value`."""
    return [f"-{arg}" if _SINGLE_DASH_OPTION.match(arg) else arg for arg in argv]


def build_parser() -> argparse.ArgumentParser:
    """Options of `scripts/run_local_test.py`."""
    parser = argparse.ArgumentParser(
        description="Run a model on an AutoDL dataset and score it, as the platform does."
    )
    parser.add_argument("--dataset_dir", type=Path, default=None,
                        help="AutoDL dataset directory (default: scikit-learn digits, cached)")
    parser.add_argument("--code_dir", type=Path, default=None,
                        help="folder holding model.py (default: the repository root)")
    parser.add_argument("--baseline", choices=BASELINES, default=None,
                        help="use a bundled baseline model instead of --code_dir")
    parser.add_argument("--time_budget", type=float, default=1200.0, help="seconds (default 1200)")
    parser.add_argument("--output_dir", type=Path, default=Path("AutoDL_sample_result_submission"))
    parser.add_argument("--score_dir", type=Path, default=Path("AutoDL_scoring_output"))
    parser.add_argument("--startup_limit", type=float, default=1200.0,
                        help="seconds allowed for Model(metadata), not counted in the budget (default 1200)")
    parser.add_argument("--count_startup", action="store_true",
                        help="older protocol: the budget starts before Model(metadata)")
    return parser


def resolve_code_dir(code_dir: Path | None, baseline: str | None) -> Path:
    """The model's folder: a bundled baseline, the given folder, or the repository root."""
    if baseline is not None:
        return BASELINES_DIR / baseline
    return Path(code_dir) if code_dir is not None else REPO_ROOT


def run_local_test(
    dataset_dir: Path,
    code_dir: Path,
    time_budget: float,
    output_dir: Path,
    score_dir: Path,
    *,
    startup_limit: float = 1200.0,
    count_startup: bool = False,
    emit: Callable[[str], None] = logger.info,
) -> LocalTestResult:
    """Run ingestion and scoring together; `emit` receives one progress line per prediction."""
    from autoclint.autodl.layout import find_dataset

    _, _, _, solution_path = find_dataset(dataset_dir)
    output_dir, score_dir = Path(output_dir), Path(score_dir)
    scorer = RunScorer(solution_path, output_dir)
    history: list[tuple[float, float]] = []

    def report_new_predictions() -> None:
        for prediction in scorer.update():
            history.append((prediction.elapsed, prediction.nauc))
            so_far = metrics.alc([t for t, _ in history], [n for _, n in history], time_budget)
            emit(f"prediction {prediction.k}: t = {prediction.elapsed:7.2f} s  NAUC = {prediction.nauc:.4f}  "
                 f"accuracy = {prediction.accuracy:.4f}  ALC so far = {so_far:.4f}")

    config = IngestionConfig(
        dataset_dir=Path(dataset_dir), code_dir=Path(code_dir), output_dir=output_dir,
        time_budget=time_budget, startup_limit=startup_limit, count_startup=count_startup,
    )
    ingestion = run_ingestion(config, on_poll=report_new_predictions)
    report_new_predictions()
    scores = scorer.result(time_budget)
    scores_file = write_scores(score_dir, scores)
    png, page = write_reports(scores, score_dir)
    return LocalTestResult(ingestion, scores, scores_file, png, page)


def failure_reason(result: LocalTestResult) -> str:
    """Why the run is a failure, in one line ("" when it is not): ingestion failed, or nothing to score."""
    if not result.ingestion.success:
        return result.ingestion.error or "ingestion failed (see the log above)"
    if not result.scores.predictions:
        return result.ingestion.error or NO_PREDICTION
    return ""


def main(argv: list[str], emit: Callable[[str], None] = logger.info) -> int:
    """Parse `argv`, run the local test, emit a summary; exit status 1 when ingestion failed.

    A failed run's last line is `error: <reason>`: an unusable dataset, the model's error, or no
    valid prediction. Status 2: the run could not start (no model.py, bad dataset folder, output folder).
    """
    args = build_parser().parse_args(normalise_arguments(argv))
    for variable, value in with_writable_config_dirs(dict(os.environ)).items():  # before matplotlib is imported
        os.environ.setdefault(variable, value)
    dataset_dir = args.dataset_dir
    if dataset_dir is None:
        from autoclint.harness.sample_data import ensure_digits_dataset

        dataset_dir = ensure_digits_dataset()
    code_dir = resolve_code_dir(args.code_dir, args.baseline)
    if not (code_dir / "model.py").is_file():
        emit(f"error: no model.py in {code_dir}")
        return 2
    emit(f"dataset {dataset_dir}, model {code_dir / 'model.py'}, time budget {args.time_budget:g} s")
    try:
        result = run_local_test(
            dataset_dir, code_dir, args.time_budget, args.output_dir, args.score_dir,
            startup_limit=args.startup_limit, count_startup=args.count_startup, emit=emit,
        )
    except (AutoDLFormatError, OutputDirError) as error:
        emit(f"error: {error}")
        return 2
    reason = failure_reason(result)
    outcome = "FAILED" if reason else "succeeded"
    if result.ingestion.killed_at_budget:
        outcome += " (stopped at the time budget)"
    emit(f"ingestion {outcome} after {result.ingestion.duration:.2f} s, "
         f"{len(result.scores.predictions)} prediction(s)")
    emit(f"ALC = {result.scores.alc:.4f}  final NAUC = {result.scores.final_nauc:.4f}")
    emit(f"scores: {result.scores_file}\nlearning curve: {result.curve_png}\ndetails: {result.detailed_html}")
    if reason:
        emit(f"error: {reason}")
        return 1
    return 0
