"""Reports of a scored run: the learning-curve PNG in the platform's style and a detailed HTML page."""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path

import numpy as np

from autoclint import metrics
from autoclint.harness.scoring import RunScores

logger = logging.getLogger(__name__)

CURVE_FILE = "learning-curve.png"
DETAILED_FILE = "detailed_results.html"


def _step_curve(scores: RunScores) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the step learning curve in transformed time, from (0, 0) to t̃ = 1."""
    kept = [p for p in scores.predictions if p.elapsed <= scores.time_budget]
    times = metrics.transform_time(np.array([p.elapsed for p in kept], dtype=float), scores.time_budget)
    values = np.array([p.nauc for p in kept], dtype=float)
    x = np.concatenate([[0.0], np.repeat(times, 2), [1.0]])
    y = np.concatenate([[0.0, 0.0], np.repeat(values, 2)]) if kept else np.zeros(2)
    return x, y


def plot_learning_curve(scores: RunScores, path: Path) -> Path:
    """Draw NAUC against transformed time (seconds on top), area filled, ALC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = _step_curve(scores)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    axis.plot(x, y, drawstyle="default", color="tab:blue", label=f"ALC = {scores.alc:.4f}")
    axis.fill_between(x, y, step=None, alpha=0.3, color="tab:blue")
    kept = [p for p in scores.predictions if p.elapsed <= scores.time_budget]
    if kept:
        marks = metrics.transform_time(np.array([p.elapsed for p in kept]), scores.time_budget)
        axis.plot(marks, [p.nauc for p in kept], "o", color="tab:orange", markersize=4, label="predictions")
    axis.set_xlim(0, 1)
    axis.set_ylim(min(0.0, float(y.min())) - 0.02, 1.02)
    axis.set_xlabel("transformed time t̃ = log(1 + t/t0) / log(1 + T/t0)")
    axis.set_ylabel("NAUC = 2·AUC − 1")
    axis.set_title(f"{scores.task_name}: learning curve (T = {scores.time_budget:g} s)")
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower right")
    _add_seconds_axis(axis, scores.time_budget)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _add_seconds_axis(axis, time_budget: float) -> None:
    """Label the top axis in seconds at the transformed positions of round times."""
    candidates = np.array([0, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200], dtype=float)
    seconds = np.append(candidates[candidates < time_budget * 0.9], time_budget)
    top = axis.twiny()
    top.set_xlim(axis.get_xlim())
    top.set_xticks(metrics.transform_time(seconds, time_budget))
    top.set_xticklabels([f"{s:g}" for s in seconds], fontsize=8)
    top.set_xlabel("time (s)")


def write_detailed_html(scores: RunScores, curve_png: Path, path: Path) -> Path:
    """Write a self-contained HTML page: summary, the curve (embedded PNG) and a table of every prediction."""
    image = base64.b64encode(Path(curve_png).read_bytes()).decode("ascii")
    rows = "\n".join(
        f"<tr><td>{p.k}</td><td>{p.elapsed:.2f}</td>"
        f"<td>{metrics.transform_time(p.elapsed, scores.time_budget):.4f}</td>"
        f"<td>{p.nauc:.4f}</td><td>{p.accuracy:.4f}</td>"
        f"<td>{'' if p.elapsed <= scores.time_budget else 'after budget (ignored)'}</td></tr>"
        for p in scores.predictions
    )
    title = html.escape(f"{scores.task_name}: detailed results")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #aaa;padding:4px 10px;text-align:right}}</style></head>
<body><h1>{title}</h1>
<p>ALC: <b>{scores.alc:.4f}</b> &middot; final NAUC: <b>{scores.final_nauc:.4f}</b> &middot;
duration: {scores.duration:.2f} s &middot; time budget: {scores.time_budget:g} s &middot;
predictions: {len(scores.predictions)}</p>
<img alt="learning curve" src="data:image/png;base64,{image}">
<table><tr><th>k</th><th>t (s)</th><th>t&#771;</th><th>NAUC</th><th>accuracy</th><th></th></tr>
{rows}
</table></body></html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def write_reports(scores: RunScores, score_dir: Path) -> tuple[Path, Path]:
    """Write the learning-curve PNG and the detailed HTML page into `score_dir`; returns their paths."""
    score_dir = Path(score_dir)
    png = plot_learning_curve(scores, score_dir / CURVE_FILE)
    page = write_detailed_html(scores, png, score_dir / DETAILED_FILE)
    return png, page
