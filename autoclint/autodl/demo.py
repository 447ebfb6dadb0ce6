"""Summarize an AutoDL dataset with the readers: ``python -m autoclint.autodl.demo [DATASET_DIR]``.

Without an argument it shows the organizers' ``miniciao`` sample from the shared datasets folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from itertools import islice
from operator import itemgetter
from pathlib import Path

import numpy as np

from autoclint.autodl import BACKENDS, open_dataset
from autoclint.autodl.layout import find_dataset

DEFAULT_DATASET = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "autodl_samples" / "miniciao"
FIRST_LABELS = 5


def _example_shapes(dataset, limit: int = 64) -> tuple[str, float, float]:  # noqa: ANN001 - either reader
    """Shapes seen over the first examples, and their value range."""
    shapes, low, high = set(), np.inf, -np.inf
    for example, _ in islice(_as_numpy(dataset.get_dataset()), limit):
        shapes.add(example.shape)
        low, high = min(low, float(example.min())), max(high, float(example.max()))
    text = ", ".join(str(s) for s in sorted(shapes)[:4]) + (" ..." if len(shapes) > 4 else "")
    return text, low, high


def _as_numpy(dataset):  # noqa: ANN001, ANN202 - tf.data.Dataset or the numpy reader's sequence
    """Iterate either reader's dataset as numpy (example, label) pairs."""
    if hasattr(dataset, "as_numpy_iterator"):
        return dataset.as_numpy_iterator()
    return iter(dataset)


def summarize(dataset_dir: str | Path, backend: str = "auto") -> str:
    """A human-readable summary of a dataset directory: sizes, shapes, classes, first labels."""
    name, train_dir, test_dir, solution_path = find_dataset(dataset_dir)
    train, test = open_dataset(train_dir, backend), open_dataset(test_dir, backend)
    metadata = train.get_metadata()
    label_map = dict(metadata.get_label_to_index_map())
    classes = [k for k, _ in sorted(label_map.items(), key=itemgetter(1))]
    shapes, low, high = _example_shapes(train)
    first_pairs = islice(_as_numpy(train.get_dataset()), FIRST_LABELS)
    first = [np.flatnonzero(label).tolist() for _, label in first_pairs]
    lines = [
        f"dataset      {name} ({Path(dataset_dir)})",
        f"reader       {type(train).__module__}.{type(train).__name__}",
        f"train/test   {metadata.size()} / {test.get_metadata().size()} examples",
        f"tensor shape {metadata.get_tensor_shape()} (T, H, W, C; -1 = variable), "
        f"{'compressed' if metadata.is_compressed(0) else 'sparse' if metadata.is_sparse(0) else 'dense'}",
        f"seen shapes  {shapes}; values in [{low:.3f}, {high:.3f}]",
        f"classes      {metadata.get_output_size()}" + (f": {', '.join(classes)}" if classes else ""),
        f"first labels {first} (label indices of the first {FIRST_LABELS} training examples)",
        f"solution     {solution_path if solution_path.exists() else 'absent'}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m autoclint.autodl.demo",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir", nargs="?", default=str(DEFAULT_DATASET),
                        help="dataset directory root/name (default: the miniciao sample)")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help="reader to use (default: auto)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.stdout.write(summarize(args.dataset_dir, args.backend) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
