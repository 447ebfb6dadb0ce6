"""Train/validation split: which cached examples are held out to score checkpoints.

Labels stored in class order would give a one-class validation prefix, so then (and when the size is
unknown) the whole set is read first and the held-out examples are drawn from all of it; otherwise they
are drawn from the prefix decoded before the first fit, whatever the set's size, and the rest keeps
streaming in. Reading a small set whole first delayed the first prediction by up to 3 s (800 JPEGs).
"""

from __future__ import annotations

import numpy as np

from autoclint.probe import Probe


def must_read_all_first(probe: Probe, num_examples: int) -> bool:
    """Whether to decode the whole training set before choosing the validation examples: when its labels
    look sorted, or its size is unknown (`num_examples` <= 0)."""
    return num_examples <= 0 or probe.labels_look_sorted


def prefix_needed(num_examples: int, num_valid: int, batch_size: int, probe_size: int) -> int:
    """How many examples to decode before the split when the rest may stream in later."""
    return min(num_examples, num_valid + max(probe_size, 4 * batch_size))


def choose_valid_indices(num_available: int, num_valid: int, seed: int) -> np.ndarray:
    """`num_valid` distinct indices drawn at random from the first `num_available`, sorted."""
    if num_valid >= num_available:
        raise ValueError(f"cannot hold out {num_valid} of {num_available} examples and still train")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_available, size=num_valid, replace=False))
