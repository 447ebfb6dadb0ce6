"""Summaries of benchmark records: per (budget, dataset, method) means and spreads, as markdown tables.

Runs that ended `ok` or `killed` (stopped at the budget, predictions scored as on the platform) count
in the statistics; failed runs are counted apart, so a broken configuration shows up without
dragging a mean to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from autoclint.experiments.records import RunRecord

SCORED_STATUSES = ("ok", "killed")
MAX_REASON_CHARS = 300


@dataclass(frozen=True)
class CellSummary:
    """Statistics of one (dataset, method) cell over its seeds."""

    runs: int
    failed: int
    alc_mean: float
    alc_std: float
    nauc_mean: float
    nauc_std: float
    first_prediction_mean: float


def is_scored(record: RunRecord) -> bool:
    """Whether a record counts in the statistics."""
    return record.status in SCORED_STATUSES and record.alc is not None


def unique_in_order(values: Iterable) -> list:
    """The distinct values in order of first appearance."""
    return list(dict.fromkeys(values))


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value, NaN for none)."""
    if not values:
        return math.nan, math.nan
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarise_cell(records: list[RunRecord]) -> CellSummary:
    """Summarise the records of one cell."""
    scored = [r for r in records if is_scored(r)]
    alc = _mean_std([r.alc for r in scored])
    nauc = _mean_std([r.final_nauc for r in scored if r.final_nauc is not None])
    firsts = [r.time_to_first_prediction for r in scored if r.time_to_first_prediction is not None]
    return CellSummary(runs=len(scored), failed=sum(r.status == "failed" for r in records),
                       alc_mean=alc[0], alc_std=alc[1], nauc_mean=nauc[0], nauc_std=nauc[1],
                       first_prediction_mean=_mean_std(firsts)[0])


def summarise(records: list[RunRecord]) -> dict[tuple[float, str, str], CellSummary]:
    """Cells keyed by (time budget, dataset, method), in order of first appearance."""
    groups: dict[tuple[float, str, str], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.time_budget, record.dataset, record.method), []).append(record)
    return {key: summarise_cell(group) for key, group in groups.items()}


def _format(mean: float, std: float | None = None, digits: int = 4, unit: str = "") -> str:
    """`mean ± std` (or `–` when there is no scored run)."""
    if math.isnan(mean):
        return "–"
    text = f"{mean:.{digits}f}{unit}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _alc_text(summary: CellSummary) -> str:
    """ALC mean ± std."""
    return _format(summary.alc_mean, summary.alc_std)


def _nauc_text(summary: CellSummary) -> str:
    """Final NAUC mean ± std."""
    return _format(summary.nauc_mean, summary.nauc_std)


def _first_prediction_text(summary: CellSummary) -> str:
    """Mean seconds to the first prediction."""
    return _format(summary.first_prediction_mean, digits=1)


TABLES = (
    ("ALC (mean ± std over seeds)", _alc_text),
    ("Final NAUC (mean ± std)", _nauc_text),
    ("Time to first prediction (s, mean)", _first_prediction_text),
)


def _cell_text(summary: CellSummary | None, render: Callable[[CellSummary], str]) -> str:
    """A table cell: the rendered statistic, the number of runs when not one, failures when any."""
    if summary is None:
        return "·"
    text = render(summary) + (f" (n={summary.runs})" if summary.runs > 1 else "")
    return text + (f" ({summary.failed} failed)" if summary.failed else "")


def _table(title: str, rows: list[list[str]], methods: list[str]) -> list[str]:
    """One markdown table, dataset rows × method columns."""
    header = "| dataset | " + " | ".join(methods) + " |"
    lines = [f"#### {title}", "", header, "|---|" + "---|" * len(methods)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows] + [""]


def markdown_tables(records: list[RunRecord]) -> str:
    """ALC (mean ± std over seeds), final NAUC and time to first prediction per budget, plus failed runs."""
    cells = summarise(records)
    lines: list[str] = []
    for budget in unique_in_order(r.time_budget for r in records):
        here = [r for r in records if r.time_budget == budget]
        datasets = unique_in_order(r.dataset for r in here)
        methods = unique_in_order(r.method for r in here)
        lines += [f"### Time budget {budget:g} s", ""]
        for title, render in TABLES:
            rows = [[dataset] + [_cell_text(cells.get((budget, dataset, m)), render) for m in methods]
                    for dataset in datasets]
            lines += _table(title, rows, methods)
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines += ["### Failed runs", ""]
        lines += [f"- {r.dataset} / {r.method} / seed {r.seed} / {r.time_budget:g} s: "
                  f"{' '.join((r.error or 'no reason recorded').split())[:MAX_REASON_CHARS]}" for r in failed]
        lines.append("")
    return "\n".join(lines)
