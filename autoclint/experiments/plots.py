"""Plots of benchmark records (matplotlib, Agg): box plots per method across datasets, learning curves.

The box plots follow the paper's Figures 3–8: one box per method over the datasets, each point a
dataset's mean over seeds. Learning curves are NAUC against the platform's transformed time
t̃ = log(1 + t/t0) / log(1 + T/t0), as steps from (0, 0) to t̃ = 1, like the starter kit's curve.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from autoclint import metrics
from autoclint.experiments.records import RunRecord
from autoclint.experiments.tables import is_scored, unique_in_order

logger = logging.getLogger(__name__)

METRICS = {"alc": "ALC", "final_nauc": "final NAUC"}


def _pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def safe_file_name(text: str) -> str:
    """A file-name-safe version of a dataset or method name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def per_dataset_means(records: list[RunRecord], metric: str) -> dict[str, list[float]]:
    """For each method, the mean of `metric` over seeds on each dataset that has a scored run."""
    values: dict[str, list[float]] = {}
    for method in unique_in_order(r.method for r in records):
        values[method] = []
        for dataset in unique_in_order(r.dataset for r in records):
            cell = [r for r in records if r.method == method and r.dataset == dataset and is_scored(r)]
            scores = [getattr(r, metric) for r in cell if getattr(r, metric) is not None]
            if scores:
                values[method].append(float(np.mean(scores)))
    return values


def plot_method_boxes(records: list[RunRecord], metric: str, path: Path) -> Path:
    """Box plot of `metric` ("alc" or "final_nauc") per method across datasets, with the points."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
    plt = _pyplot()
    values = per_dataset_means(records, metric)
    methods = list(values)
    figure, axis = plt.subplots(figsize=(max(4.0, 1.3 * len(methods) + 2), 4.5))
    axis.boxplot([values[m] if values[m] else [np.nan] for m in methods], tick_labels=methods)
    for position, method in enumerate(methods, start=1):
        jitter = np.linspace(-0.08, 0.08, len(values[method])) if len(values[method]) > 1 else np.zeros(1)
        if values[method]:
            axis.plot(position + jitter, values[method], "o", alpha=0.6, markersize=4)
    axis.set_ylabel(METRICS[metric])
    axis.set_title(f"{METRICS[metric]} per method across datasets (mean over seeds)")
    axis.grid(True, axis="y", alpha=0.3)
    figure.tight_layout()
    return _save(figure, path, plt)


def step_curve(curve: list[list[float]], time_budget: float) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of a learning curve [[t, nauc], ...] as steps in transformed time, from (0, 0) to t̃ = 1."""
    kept = [(t, n) for t, n in curve if t <= time_budget]
    times = metrics.transform_time(np.array([t for t, _ in kept], dtype=float), time_budget)
    values = np.array([n for _, n in kept], dtype=float)
    x = np.concatenate([[0.0], np.repeat(times, 2), [1.0]])
    y = np.concatenate([[0.0, 0.0], np.repeat(values, 2)]) if kept else np.zeros(2)
    return x, y


def plot_curve_overlay(records: list[RunRecord], path: Path, title: str, group_by: str = "method") -> Path:
    """Overlay the learning curves of the scored `records`: a colour per `group_by` value ("method" or
    "dataset"), a line per run, ALC in the legend."""
    if group_by not in ("method", "dataset"):
        raise ValueError(f"group_by must be 'method' or 'dataset', got {group_by!r}")
    records = [r for r in records if is_scored(r)]
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups = unique_in_order(getattr(r, group_by) for r in records)
    for index, group in enumerate(groups):
        for record in (r for r in records if getattr(r, group_by) == group):
            x, y = step_curve(record.curve, record.time_budget)
            axis.plot(x, y, color=colours[index % len(colours)], alpha=0.8,
                      label=f"{group} seed {record.seed} (ALC {record.alc:.4f}, {record.status})")
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.02, 1.02)
    axis.set_xlabel("transformed time t̃ = log(1 + t/t0) / log(1 + T/t0)")
    axis.set_ylabel("NAUC = 2·AUC − 1")
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return _save(figure, path, plt)


def _save(figure, path: Path, plt) -> Path:
    """Write a figure as PNG and release it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
