#!/usr/bin/env python
"""Run AutoCLINT on each AutoCV public dataset found under --data_root; compare with the published numbers.

Datasets: Munster, Chucky, Pedro, Decal, Hammer (images), Kreatur, Katze, Kraut (videos), each as
`<data_root>/<Name>/` in AutoDL format. Missing ones are listed with where to get them. Prints a
markdown table (ours beside the paper's Table 4 on a P40 and the original README's V100 numbers),
writes it to `<output>/reproduce.md` with a learning-curve overlay, and keeps each run's outputs.

Example: python scripts/reproduce.py --data_root ~/autodl_public --time_budget 1200 --count_startup
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.experiments.methods import METHOD_SYNTAX, parse_method  # noqa: E402
from autoclint.experiments.plots import plot_curve_overlay  # noqa: E402
from autoclint.experiments.records import read_records, run_key  # noqa: E402
from autoclint.experiments.reproduce import (  # noqa: E402
    comparison_table,
    find_public_datasets,
    missing_datasets_note,
    protocol_note,
)
from autoclint.experiments.runner import make_spec, run_grid, runs_root_for  # noqa: E402

CURVES_FILE = "reproduce_curves.png"
TABLE_FILE = "reproduce.md"


def build_parser() -> argparse.ArgumentParser:
    """The reproduction's options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", type=Path, required=True, help="folder holding the public datasets")
    parser.add_argument("--time_budget", type=float, default=1200.0,
                        help="seconds per dataset (default 1200)")
    parser.add_argument("--output", type=Path, default=Path("reproduce_results"), help="results folder")
    parser.add_argument("--count_startup", action="store_true",
                        help="count Model(metadata) in the budget, as the published numbers did")
    parser.add_argument("--method", default="autoclint",
                        help=f"method to run (default autoclint): {METHOD_SYNTAX}")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str]) -> int:
    """Run the found datasets (resuming earlier runs), then print and write the comparison."""
    args = build_parser().parse_args(argv)
    try:
        method = parse_method(args.method)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not args.data_root.is_dir():
        print(f"error: --data_root {args.data_root} is not a folder", file=sys.stderr)
        return 2
    found, missing = find_public_datasets(args.data_root)
    # Separate files per protocol: the resume key (dataset, method, seed, budget) does not hold it.
    jsonl = args.output / ("results_count_startup.jsonl" if args.count_startup else "results.jsonl")
    specs = [make_spec(name, path, method, args.seed, args.time_budget, runs_root_for(jsonl),
                       count_startup=args.count_startup) for name, path in found.items()]
    run_grid(specs, jsonl)
    wanted = {spec.key for spec in specs}
    latest = {r.dataset: r for r in read_records(jsonl)
              if run_key(r.dataset, r.method, r.seed, r.time_budget) in wanted}
    table = comparison_table(latest)
    notes = [protocol_note(args.time_budget, args.count_startup),
             f"Method: {method.name}, seed {args.seed}. Published numbers: ALC / final NAUC, "
             "measured on one GPU (P40 for the paper, V100 for the README).",
             missing_datasets_note(missing, args.data_root)]
    text = "\n\n".join(["# AutoCLINT on the AutoCV public datasets", table] + [n for n in notes if n]) + "\n"
    if latest:
        curves = plot_curve_overlay(list(latest.values()), args.output / CURVES_FILE,
                                    f"Learning curves (T = {args.time_budget:g} s)", group_by="dataset")
        text += f"\n![learning curves]({curves.name})\n"
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / TABLE_FILE).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    sys.exit(main(sys.argv[1:]))
