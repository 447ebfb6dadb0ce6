"""scripts/bench_throughput.py --pipeline_only: the standalone batch pipeline, one line per case."""

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_LINE = re.compile(r"^pipeline (\d+)px (none|searched) workers=(\d): (\d+) img/s$")


def test_pipeline_only_prints_one_line_per_augmentation_and_worker_count(tmp_path):
    figures = tmp_path / "pipeline.json"
    done = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "bench_throughput.py"), "--pipeline_only",
                           "--size", "12", "--pipeline_seconds", "0.2", "--json", str(figures)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    matches = [PIPELINE_LINE.match(line) for line in lines]
    assert all(matches), lines
    cases = [(m.group(1), m.group(2), m.group(3)) for m in matches]
    assert cases == [("12", "none", "1"), ("12", "none", "2"), ("12", "searched", "1"), ("12", "searched", "2")]
    assert all(int(m.group(4)) > 0 for m in matches)
    assert '"12px searched workers=2"' in figures.read_text()
