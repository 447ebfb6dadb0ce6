#!/usr/bin/env python
"""Summarise a benchmark JSONL: `results.md` (dataset × method tables of ALC, final NAUC, time to first
prediction) with box plots per method and learning-curve overlays per dataset, in --output.

Example: python scripts/report.py results.jsonl --output report/
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.experiments.records import read_records  # noqa: E402
from autoclint.experiments.report import write_report  # noqa: E402


def main(argv: list[str]) -> int:
    """Read the records and write the report; exit 2 on a missing, empty or malformed file."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="JSONL written by scripts/benchmark.py")
    parser.add_argument("--output", type=Path, default=Path("report"), help="folder for results.md and PNGs")
    args = parser.parse_args(argv)
    if not args.results.is_file():
        print(f"error: {args.results} not found", file=sys.stderr)
        return 2
    try:
        files = write_report(read_records(args.results), args.output, source=args.results.name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(files.markdown.read_text())
    print(f"report: {files.markdown} and {len(files.figures)} figure(s) in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
