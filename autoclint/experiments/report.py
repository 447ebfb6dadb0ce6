"""The benchmark report: `results.md` (tables, figure links) and its PNGs, written from JSONL records."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from autoclint.experiments.plots import plot_curve_overlay, plot_method_boxes, safe_file_name
from autoclint.experiments.records import RunRecord
from autoclint.experiments.tables import markdown_tables, unique_in_order

logger = logging.getLogger(__name__)

REPORT_FILE = "results.md"


@dataclass
class ReportFiles:
    """What a report wrote: the markdown page and its figures."""

    markdown: Path
    figures: list[Path] = field(default_factory=list)


def write_report(records: list[RunRecord], output_dir: Path, source: str = "") -> ReportFiles:
    """Write `results.md`, box plots of ALC and final NAUC per method and a curve overlay per dataset."""
    if not records:
        raise ValueError(f"no benchmark records to report{f' in {source}' if source else ''}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    sections = [f"# Benchmark results{f' ({source})' if source else ''}", "",
                f"{len(records)} run(s). ALC: area under the NAUC learning curve on the platform's "
                "log time axis (t0 = 60 s); statistics over seeds of runs that ended ok or at the budget.",
                "",
                markdown_tables(records), "## Figures", ""]
    for budget in unique_in_order(r.time_budget for r in records):
        here = [r for r in records if r.time_budget == budget]
        for metric in ("alc", "final_nauc"):
            path = plot_method_boxes(here, metric, output_dir / f"{metric}_boxplot_T{budget:g}.png")
            figures.append(path)
            sections.append(f"![{metric} per method, T = {budget:g} s]({path.name})")
        for dataset in unique_in_order(r.dataset for r in here):
            name = f"curves_{safe_file_name(dataset)}_T{budget:g}.png"
            path = plot_curve_overlay([r for r in here if r.dataset == dataset], output_dir / name,
                                      f"{dataset}: learning curves (T = {budget:g} s)")
            figures.append(path)
            sections.append(f"![{dataset} learning curves, T = {budget:g} s]({path.name})")
    markdown = output_dir / REPORT_FILE
    markdown.write_text("\n".join(sections) + "\n")
    return ReportFiles(markdown, figures)
