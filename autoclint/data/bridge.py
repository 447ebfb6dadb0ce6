"""The one model-side door to TensorFlow: iterate any AutoDL dataset as (example, label) numpy pairs.

Handles tf.data datasets in eager mode, tf.data datasets built inside a tf.compat.v1 graph (the
platform's TF1-style ingestion) and plain iterables of numpy pairs (the TF-free reader). TensorFlow is
never imported here unless the dataset is a TensorFlow object, which means it is already imported.

A record whose image fails to decode (a tf.data InvalidArgumentError; TF 2.21's iterators go on with the
next element after one) is skipped, named and counted, so one bad file never costs the rest of the data;
`keep_places` puts a black example in its place instead, for test sets, whose predictions go by position.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from functools import partial
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import numpy as np

logger = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]

# An element whose error says this disagrees with the metadata: a broken dataset, not one bad record.
SIZE_DISAGREES = "image size disagrees"

# Raw examples held for the probe: 256 float32 images of 2000x2000x3 would need 12 GB; this keeps ~5.
DEFAULT_PROBE_BYTES = 256 * 2**20


def is_tf_dataset(dataset: Any) -> bool:
    """Whether `dataset` is a tf.data dataset, decided without importing TensorFlow."""
    if "tensorflow" not in sys.modules:
        return False
    return any(cls.__module__.startswith("tensorflow") for cls in type(dataset).__mro__)


def _tensorflow() -> ModuleType:
    """The TensorFlow module through the format layer's GPU-hiding import (TF is already loaded here)."""
    try:
        from autoclint.autodl import tf_import
    except ImportError:  # format layer absent: the already imported module is all we need
        return sys.modules["tensorflow"]
    return tf_import()


def _dataset_graph(dataset: Any) -> Any | None:
    """The tf.compat.v1 graph a dataset was built in, or None for an eager dataset."""
    variant = getattr(dataset, "_variant_tensor", None)
    try:
        return variant.graph if variant is not None else None
    except AttributeError:  # eager tensors have no graph
        return None


class SkippedRecords:
    """Names and counts the records that failed to decode, as the reader names them when it can."""

    def __init__(self, dataset: Any, keep_places: bool) -> None:
        self.names: tuple[str, ...] = tuple(getattr(dataset, "autodl_record_names", ()) or ())
        self.keep_places = keep_places
        self.skipped: list[str] = []

    def name(self, position: int) -> str:
        """The record's file and number from the reader, else its position in reading order."""
        return self.names[position] if position < len(self.names) else f"record {position} in reading order"

    def add(self, tf: ModuleType, error: Exception, position: int) -> None:
        """Log one undecodable record, or re-raise errors that are not about one record."""
        message = str(getattr(error, "message", error))
        if not isinstance(error, tf.errors.InvalidArgumentError) or SIZE_DISAGREES in message:
            raise error
        name = self.name(position)
        reason = _decode_reason(message) or type(error).__name__
        logger.warning("%s: undecodable (%s): %s", name, reason,
                       "a black example stands in" if self.keep_places else "skipped")
        self.skipped.append(name)

    def report(self) -> None:
        """One summary line once the data set was read through."""
        if self.skipped:
            logger.warning("%d undecodable record(s) %s: %s", len(self.skipped),
                           "replaced by black examples" if self.keep_places else "skipped",
                           "; ".join(self.skipped))


def _decode_reason(message: str) -> str:
    """The decoder's own words in a tf.data error (e.g. "jpeg::Uncompress failed. Invalid JPEG data..."),
    without TensorFlow's function and iterator names."""
    for line in message.splitlines():
        line = re.sub(r"\{\{[^}]*\}\}|\[\[.*?\]\]|\[Op:\w+\]", "", line).strip()
        line = re.sub(r"^.*transformation with iterator: [\w:]+: ", "", line).strip()
        if line and not line.startswith("name:"):
            return line
    return ""


def _blank_like(previous: Pair | None, spec: Any) -> Pair:
    """A black example and a zero label shaped like the last good pair (or the dataset's spec)."""
    if previous is not None:
        return np.zeros_like(previous[0]), np.zeros_like(previous[1])
    example_spec, label_spec = spec
    shape = [1 if size is None else size for size in example_spec.shape.as_list()]
    return np.zeros(shape, np.float32), np.zeros(label_spec.shape.as_list(), np.float32)


def _past_undecodable(tf: ModuleType, next_pair: Callable[[], Pair], end: type[Exception], spec: Any,
                      skipped: SkippedRecords) -> Iterator[Pair]:
    """Pairs from `next_pair` until it raises `end`, going past elements that fail to decode (named, and
    replaced by a black example when places are kept)."""
    position, previous = 0, None
    while True:
        try:
            example, label = next_pair()
        except end:
            break
        except tf.errors.OpError as error:
            skipped.add(tf, error, position)
            position += 1
            if skipped.keep_places:
                yield _blank_like(previous, spec)
            continue
        previous = np.asarray(example), np.asarray(label)
        position += 1
        yield previous
    skipped.report()


def _iterate_eager_dataset(tf: ModuleType, dataset: Any, skipped: SkippedRecords) -> Iterator[Pair]:
    """Iterate an eager tf.data dataset, going past elements that fail to decode."""
    iterator = iter(dataset.as_numpy_iterator())
    yield from _past_undecodable(tf, iterator.__next__, StopIteration, dataset.element_spec, skipped)


def _iterate_graph_dataset(tf: ModuleType, dataset: Any, graph: Any,
                           skipped: SkippedRecords | None = None) -> Iterator[Pair]:
    """Run a one-shot iterator in the dataset's own graph and session until the data ends.

    The session is never entered as a context manager: that would push it (and its graph) on the
    default stacks of the thread that starts the generator and pop them in whichever thread finishes
    it. The trainer reads the first examples in the caller's thread and the rest in a background
    thread, so entering it left the caller's default graph replaced and failed with
    "IndexError: pop from empty list" in the other thread. `Session.run` needs no default session
    and may be called from any thread.
    """
    with graph.as_default():
        next_element = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
    session = tf.compat.v1.Session(graph=graph)
    skipped = skipped or SkippedRecords(dataset, keep_places=False)
    try:
        yield from _past_undecodable(tf, partial(session.run, next_element), tf.errors.OutOfRangeError,
                                     dataset.element_spec, skipped)
    finally:
        session.close()


def iterate_numpy(dataset: Any, keep_places: bool = False) -> Iterator[Pair]:
    """Yield (example [T,H,W,C] float32, label [K] float32) numpy pairs in record order; undecodable records
    are skipped and named, or with `keep_places` (test sets) replaced by a black example with a zero label."""
    if is_tf_dataset(dataset):
        tf = _tensorflow()
        skipped = SkippedRecords(dataset, keep_places)
        graph = _dataset_graph(dataset)
        if graph is not None and not (tf.executing_eagerly() and graph is tf.compat.v1.get_default_graph()):
            logger.debug("reading a tf.data dataset built in a tf.compat.v1 graph")
            yield from _iterate_graph_dataset(tf, dataset, graph, skipped)
            return
        yield from _iterate_eager_dataset(tf, dataset, skipped)
        return
    if keep_places and callable(getattr(dataset, "pairs", None)):  # the TF-free reader keeps places itself
        dataset = dataset.pairs(keep_places=True)
    if not isinstance(dataset, Iterable):
        raise TypeError(f"cannot read a dataset of type {type(dataset).__name__}: expected tf.data or an iterable")
    for item in dataset:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dataset items must be (example, label) pairs, got {type(item).__name__}")
        yield np.asarray(item[0]), np.asarray(item[1])


def take_probe_sample(
    source: Iterator[Pair], max_count: int, max_bytes: int = DEFAULT_PROBE_BYTES
) -> list[Pair]:
    """The first (example, label) pairs of `source` for the probe: `max_count` of them, or fewer once they
    hold `max_bytes`.

    Examples are kept at full resolution (they go into the cache afterwards) and the source goes on
    with the next pair, so nothing is lost; huge examples only make the sample shorter. The sample
    holds at most `max_bytes` plus one example, and at least one example when the source has any.
    """
    if max_count < 1 or max_bytes < 1:
        raise ValueError(f"max_count and max_bytes must be positive, got {max_count} and {max_bytes}")
    sample: list[Pair] = []
    held = 0
    for example, label in itertools.islice(source, max_count):
        sample.append((example, label))
        held += np.asarray(example).nbytes + np.asarray(label).nbytes
        if held >= max_bytes:
            if len(sample) < max_count:
                logger.info("probe: %d example(s) hold %.0f MB; probing those only", len(sample),
                            held / 2**20)
            break
    return sample
