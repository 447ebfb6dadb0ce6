"""The one model-side door to TensorFlow: iterate any AutoDL dataset as (example, label) numpy pairs.

Handles tf.data datasets in eager mode, tf.data datasets built inside a tf.compat.v1 graph (the
platform's TF1-style ingestion) and plain iterables of numpy pairs (the TF-free reader). TensorFlow is
never imported here unless the dataset is a TensorFlow object, which means it is already imported.

Where every example has the same size, tf.data decodes up to MAX_READ_BATCH of them per call: one call
per element costs more than decoding a small image, so this halves the time to read a test set of small
images (the first prediction waits for it).

A record whose image fails to decode (a tf.data InvalidArgumentError; TF 2.21's iterators go on with the
next element after one) is skipped, named and counted, so one bad file never costs the rest of the data;
`keep_places` puts a black example in its place instead, for test sets, whose predictions go by position.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys
from contextlib import contextmanager
from functools import partial
from types import ModuleType
from typing import Any, Callable, Iterable, Iterator

import numpy as np

logger = logging.getLogger(__name__)

Pair = tuple[np.ndarray, np.ndarray]

# An element whose error says this disagrees with the metadata: a broken dataset, not one bad record.
SIZE_DISAGREES = "image size disagrees"

# Examples decoded per tf.data call where shapes are static, and the most bytes such a batch may hold.
MAX_READ_BATCH = 64
READ_BATCH_BYTES = 16 * 2**20

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


def _graph_to_run_in(tf: ModuleType, dataset: Any) -> Any | None:
    """The tf.compat.v1 graph whose session must run the dataset, or None where it runs eagerly."""
    graph = _dataset_graph(dataset)
    if graph is None or (tf.executing_eagerly() and graph is tf.compat.v1.get_default_graph()):
        return None
    return graph


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
                      skipped: SkippedRecords, position: int = 0) -> Iterator[Pair]:
    """Pairs from `next_pair` until it raises `end`, going past elements that fail to decode (named, and
    replaced by a black example when places are kept); `position` is the first element's place."""
    previous = None
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


def batchable(element_spec: Any) -> bool:
    """Whether elements may be decoded many per call: each example's height, width and channels are fixed
    (only the frame count may be unknown) and so is the label's size."""
    example_spec, label_spec = element_spec
    shape = example_spec.shape
    return (shape.rank is not None and shape.rank >= 3 and all(size is not None for size in shape.as_list()[-3:])
            and label_spec.shape.is_fully_defined())


def read_batch_size(pair_bytes: int, max_examples: int | None = None, max_bytes: int = READ_BATCH_BYTES) -> int:
    """Examples to decode per tf.data call when one (example, label) pair holds `pair_bytes`: up to
    `max_examples` (default MAX_READ_BATCH), fewer for large examples (a batch holds at most `max_bytes`);
    1 means one at a time."""
    max_examples = MAX_READ_BATCH if max_examples is None else max_examples
    return int(max(1, min(max_examples, max_bytes // max(pair_bytes, 1))))


@contextmanager
def _open_reader(tf: ModuleType, dataset: Any, graph: Any) -> Iterator[tuple[Callable[[], Any], type[Exception]]]:
    """(next element, the exception that ends the data) of an eager dataset, or of one built in a
    tf.compat.v1 graph: a one-shot iterator run in the dataset's own graph and session.

    The session is never entered as a context manager: that would push it (and its graph) on the
    default stacks of the thread that starts the generator and pop them in whichever thread finishes
    it. The trainer reads the first examples in the caller's thread and the rest in a background
    thread, so entering it left the caller's default graph replaced and failed with
    "IndexError: pop from empty list" in the other thread. `Session.run` needs no default session
    and may be called from any thread.
    """
    if graph is None:
        yield iter(dataset.as_numpy_iterator()).__next__, StopIteration
        return
    with graph.as_default():
        next_element = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
    session = tf.compat.v1.Session(graph=graph)
    try:
        yield partial(session.run, next_element), tf.errors.OutOfRangeError
    finally:
        session.close()


def _in_graph(graph: Any, build: Callable[[], Any]) -> Any:
    """A dataset transformation built in the dataset's graph (or eagerly)."""
    if graph is None:
        return build()
    with graph.as_default():
        return build()


def _read_tf_dataset(tf: ModuleType, dataset: Any, graph: Any, skipped: SkippedRecords) -> Iterator[Pair]:
    """Pairs of a tf.data dataset in record order: decoded many per call where every example has the first
    one's size (a call per element costs far more than decoding a small image), one at a time otherwise.

    A batch that fails (an undecodable record in it, or examples of different sizes) ends the batched
    reading: from that batch's first record on, elements are read one at a time, so a bad one is named at
    its place and no other is lost.
    """
    spec, position = dataset.element_spec, 0
    if batchable(spec):  # the first record alone: its size bounds a batch's memory
        with _open_reader(tf, _in_graph(graph, partial(dataset.take, 1)), graph) as (next_pair, end):
            first = list(_past_undecodable(tf, next_pair, end, spec, skipped))
        yield from first
        position = 1
        batch = read_batch_size(sum(array.nbytes for array in first[0])) if first else 1
        if batch > 1:
            batches = _in_graph(graph, partial(_skip_then_batch, dataset, position, batch))
            with _open_reader(tf, batches, graph) as (next_batch, end):
                while True:
                    try:
                        examples, labels = next_batch()
                    except end:
                        skipped.report()
                        return
                    except tf.errors.OpError as error:
                        logger.debug("a batch from record %d failed (%s): reading one record at a time",
                                     position, type(error).__name__)
                        break
                    yield from zip(examples, labels)
                    position += len(examples)
    rest = _in_graph(graph, partial(dataset.skip, position)) if position else dataset
    with _open_reader(tf, rest, graph) as (next_pair, end):
        yield from _past_undecodable(tf, next_pair, end, spec, skipped, position)
    skipped.report()


def _skip_then_batch(dataset: Any, count: int, batch: int) -> Any:
    return dataset.skip(count).batch(batch)


def iterate_numpy(dataset: Any, keep_places: bool = False) -> Iterator[Pair]:
    """Yield (example [T,H,W,C] float32, label [K] float32) numpy pairs in record order; undecodable records
    are skipped and named, or with `keep_places` (test sets) replaced by a black example with a zero label."""
    if is_tf_dataset(dataset):
        tf = _tensorflow()
        skipped = SkippedRecords(dataset, keep_places)
        graph = _graph_to_run_in(tf, dataset)
        if graph is not None:
            logger.debug("reading a tf.data dataset built in a tf.compat.v1 graph")
        yield from _read_tf_dataset(tf, dataset, graph, skipped)
        return
    if keep_places and callable(getattr(dataset, "pairs", None)):  # the TF-free reader keeps places itself
        dataset = dataset.pairs(keep_places=True)
    if not isinstance(dataset, Iterable):
        raise TypeError(f"cannot read a dataset of type {type(dataset).__name__}: expected tf.data or an iterable")
    for item in dataset:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dataset items must be (example, label) pairs, got {type(item).__name__}")
        yield np.asarray(item[0]), np.asarray(item[1])


def count_examples(dataset: Any) -> int:
    """How many examples a dataset holds, decoding none where it can: the reader's record names, else the
    undecoded records under a tf.data map, else by reading it through."""
    names = getattr(dataset, "autodl_record_names", None)
    if names:
        return len(names)
    if is_tf_dataset(dataset):
        mapped = getattr(dataset, "_dataset", dataset)  # tf.compat.v1 datasets wrap the dataset they adapt
        raw = getattr(mapped, "_input_dataset", None)  # the records before the decoding map, if it is one
        if raw is not None and type(mapped).__name__.lstrip("_") in ("MapDataset", "ParallelMapDataset"):
            tf = _tensorflow()
            count = 0
            with _open_reader(tf, raw, _graph_to_run_in(tf, raw)) as (next_record, end):
                try:
                    while True:
                        next_record()
                        count += 1
                except end:
                    return count
    return sum(1 for _ in iterate_numpy(dataset, keep_places=True))


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
