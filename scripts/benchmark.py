#!/usr/bin/env python
"""Run the benchmark grid {dataset} × {method} × {seed} through the local starter kit, a JSONL record per run.

Example (the baselines on BreastMNIST, 20 s each):
    python scripts/benchmark.py --datasets breastmnist --methods zero,linear --seeds 1 --time_budget 20 \
        --output results.jsonl
Raw datasets are converted once into ~/.cache/autoclint/datasets (or --data_cache). Per-run outputs go
to `<output stem>_runs/` beside the JSONL. Re-running skips runs already recorded. Default --workers 1:
on a 2-core machine concurrent runs compete for the CPU and distort each other's timings and scores.

With --backend ray each run is a Ray task on a new local Ray instance, or on a running cluster with
--ray_address auto|ray://host:port; a run reserves one GPU where there are GPUs, else a whole node's
CPUs (--ray_cpus_per_run to change it). See docs/ray.md.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoclint.experiments.datasets import (  # noqa: E402
    KNOWN_DATASETS,
    SHARED_DATASETS,
    check_dataset_names,
    dataset_label,
    prepare_dataset,
)
from autoclint.experiments.methods import METHOD_SYNTAX, parse_method_list  # noqa: E402
from autoclint.experiments.records import RunRecord  # noqa: E402
from autoclint.experiments.ray_backend import DATA_MODES, RaySettings  # noqa: E402
from autoclint.experiments.runner import BACKENDS, make_spec, run_grid, runs_root_for  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", required=True,
                        help=f"comma-separated: {', '.join(KNOWN_DATASETS)}, or AutoDL dataset folders")
    parser.add_argument("--methods", default="autoclint", help=f"comma-separated: {METHOD_SYNTAX}")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds per cell: 0..N-1 (default 1)")
    parser.add_argument("--time_budget", type=float, default=300.0, help="seconds per run (default 300)")
    parser.add_argument("--output", type=Path, default=Path("results.jsonl"), help="JSONL file of records")
    parser.add_argument("--workers", type=int, default=1,
                        help="concurrent runs of the local backend (default 1; Ray decides by resources)")
    parser.add_argument("--backend", choices=BACKENDS, default="local")
    parser.add_argument("--ray_address", default=None,
                        help="a running Ray cluster: auto or ray://host:port (default: a new local instance)")
    parser.add_argument("--ray_cpus_per_run", type=int, default=None,
                        help="CPUs a run reserves (default: a whole node's; on GPU nodes, its CPUs per GPU)")
    parser.add_argument("--ray_gpus_per_run", type=int, default=None,
                        help="GPUs each run reserves (default: 1 when the cluster has GPUs, else 0)")
    parser.add_argument("--ray_data", choices=DATA_MODES, default="ship",
                        help="ship: converted datasets go to the nodes through Ray's object store (default); "
                             "shared: the dataset folders are used where they are, on a disk every node sees")
    parser.add_argument("--data_cache", type=Path, default=None,
                        help="where converted datasets are kept (default ~/.cache/autoclint/datasets)")
    parser.add_argument("--shared_root", type=Path, default=SHARED_DATASETS,
                        help="folder of the raw datasets")
    parser.add_argument("--count_startup", action="store_true", help="the budget includes Model(metadata)")
    parser.add_argument("--retry_failed", action="store_true", help="run again the runs recorded as failed")
    return parser


def print_record(record: RunRecord) -> None:
    """One line per finished run."""
    first = "-" if record.time_to_first_prediction is None else f"{record.time_to_first_prediction:.1f}s"
    alc = "-" if record.alc is None else f"{record.alc:.4f}"
    nauc = "-" if record.final_nauc is None else f"{record.final_nauc:.4f}"
    print(f"[{record.status}] {record.dataset} {record.method} seed {record.seed}: ALC {alc}  "
          f"final NAUC {nauc}  first prediction {first}  {record.n_predictions} prediction(s)  "
          f"({record.wall_time:.0f} s)", flush=True)


def main(argv: list[str]) -> int:
    """Validate the grid, prepare the datasets, run what is not yet recorded; exit 1 if any run failed."""
    args = build_parser().parse_args(argv)
    try:
        methods = parse_method_list(args.methods)
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        check_dataset_names(datasets)
        if args.seeds < 1:
            raise ValueError("--seeds must be at least 1")
        ray_settings = RaySettings(address=args.ray_address, cpus_per_run=args.ray_cpus_per_run,
                                   gpus_per_run=args.ray_gpus_per_run, data=args.ray_data)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    runs_root = runs_root_for(args.output)
    specs, unavailable = [], []
    for dataset in datasets:
        try:
            dataset_dir = prepare_dataset(dataset, args.data_cache, args.shared_root)
        except (FileNotFoundError, ValueError) as error:
            print(f"skipping dataset {dataset}: {error}", file=sys.stderr)
            unavailable.append(dataset)
            continue
        specs += [make_spec(dataset_label(dataset), dataset_dir, method, seed, args.time_budget, runs_root,
                            count_startup=args.count_startup)
                  for method in methods for seed in range(args.seeds)]
    try:
        records = run_grid(specs, args.output, workers=args.workers, backend=args.backend,
                           ray_settings=ray_settings, retry_failed=args.retry_failed,
                           on_record=print_record)
    except (RuntimeError, ConnectionError) as error:  # no ray, no cluster at --ray_address, no room for a run
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{len(records)} run(s) recorded in {args.output} ({len(specs) - len(records)} already there)")
    failed = [r for r in records if r.status == "failed"]
    return 1 if failed or unavailable else 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="[%(levelname)s] %(message)s")
    sys.exit(main(sys.argv[1:]))
