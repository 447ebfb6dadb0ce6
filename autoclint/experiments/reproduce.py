"""Reproduction of the published AutoCLINT numbers on the AutoCV public datasets, and the comparison table.

The published numbers: the paper's Table 4 (public datasets, one P40 GPU) and the original code's
README (one V100), as ALC / final NAUC. Both were measured under the platform protocol of the time,
in which the budget counted the model's start-up.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from autoclint.experiments.records import RunRecord
from autoclint.harness.sample_data import is_complete_dataset

logger = logging.getLogger(__name__)

IMAGE_DATASETS = ("Munster", "Chucky", "Pedro", "Decal", "Hammer")
VIDEO_DATASETS = ("Kreatur", "Katze", "Kraut")
PUBLIC_DATASETS = IMAGE_DATASETS + VIDEO_DATASETS


@dataclass(frozen=True)
class PublishedScore:
    """A published (ALC, final NAUC) pair."""

    alc: float
    nauc: float


# AutoCLINT paper, Table 4, public datasets, one NVIDIA P40.
PAPER_P40: dict[str, PublishedScore] = {
    "Munster": PublishedScore(0.9440, 0.9977),
    "Chucky": PublishedScore(0.7835, 0.9353),
    "Pedro": PublishedScore(0.7366, 0.9214),
    "Decal": PublishedScore(0.8353, 0.9347),
    "Hammer": PublishedScore(0.8286, 0.9142),
}
# README of the original AutoCLINT code, one NVIDIA V100.
README_V100: dict[str, PublishedScore] = {
    "Munster": PublishedScore(0.9421, 0.9992),
    "Chucky": PublishedScore(0.8082, 0.9297),
    "Pedro": PublishedScore(0.7948, 0.9241),
    "Decal": PublishedScore(0.8647, 0.9233),
    "Hammer": PublishedScore(0.8147, 0.8863),
    "Kreatur": PublishedScore(0.8677, 0.9613),
    "Katze": PublishedScore(0.8613, 0.9588),
    "Kraut": PublishedScore(0.6678, 0.7365),
}


def find_public_datasets(data_root: Path) -> tuple[dict[str, Path], list[str]]:
    """The public datasets present under `data_root` as `<Name>/` (AutoDL layout), and the names missing."""
    found: dict[str, Path] = {}
    for name in PUBLIC_DATASETS:
        candidates = [Path(data_root) / name, Path(data_root) / name.lower()]
        complete = [path for path in candidates if is_complete_dataset(path, path.name)]
        if complete:
            found[name] = complete[0]
    return found, [name for name in PUBLIC_DATASETS if name not in found]


def missing_datasets_note(missing: list[str], data_root: Path) -> str:
    """Where the missing datasets come from and where to put them."""
    if not missing:
        return ""
    return (f"Not found under {data_root}: {', '.join(missing)}. The AutoDL public datasets are "
            "distributed by the AutoDL challenge organizers (AutoCV/AutoDL challenge public data); "
            "put each one in "
            f"{data_root}/<Name>/ holding <Name>.data/{{train,test}}/ and <Name>.solution, then run again.")


def protocol_note(time_budget: float, count_startup: bool) -> str:
    """The harness protocol used, and how it relates to the one behind the published numbers."""
    if count_startup:
        rule = ("the budget includes the model's start-up (Model(metadata)), as when the published numbers "
                "were measured")
    else:
        rule = ("the budget starts after Model(metadata) returns (start-up excluded); the published numbers "
                "counted start-up, so use --count_startup for a like-for-like comparison")
    return f"Protocol: time budget {time_budget:g} s per dataset; {rule}."


def _pair(score: PublishedScore | None) -> str:
    """`ALC / NAUC` of a published score, `–` when not published."""
    return "–" if score is None else f"{score.alc:.4f} / {score.nauc:.4f}"


def comparison_table(records: dict[str, RunRecord]) -> str:
    """Markdown: our ALC, final NAUC and duration beside the paper's (P40) and the README's (V100) numbers."""
    lines = [
        "| dataset | ours ALC | ours final NAUC | ours duration (s) | status "
        "| paper P40 ALC / NAUC | README V100 ALC / NAUC |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in PUBLIC_DATASETS:
        record = records.get(name)
        if record is None:
            ours = ["missing", "–", "–", "–"]
        else:
            ours = [
                "–" if record.alc is None else f"{record.alc:.4f}",
                "–" if record.final_nauc is None else f"{record.final_nauc:.4f}",
                "–" if record.duration is None else f"{record.duration:.1f}",
                record.status,
            ]
        lines.append(f"| {name} | " + " | ".join(ours) + f" | {_pair(PAPER_P40.get(name))} | "
                     f"{_pair(README_V100.get(name))} |")
    return "\n".join(lines)
