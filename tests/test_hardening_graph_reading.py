"""tf.compat.v1 graph datasets read as the platform's ingestion drives them: a probe in the caller's thread,
then background decoding of the same generator in the cache filler's thread, with nothing logged."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: eager execution off for the whole process, as in the organizers' ingestion.
SCRIPT = textwrap.dedent(
    """
    import logging, sys, tempfile, threading
    import numpy as np
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()

    from autoclint.autodl.layout import find_dataset
    from autoclint.autodl.reader import AutoDLDataset
    from autoclint.autodl.writer import write_dataset
    from autoclint.data.bridge import iterate_numpy, take_probe_sample
    from autoclint.data.cache import CacheFiller, ExampleCache

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records = []
        def emit(self, record):
            self.records.append(self.format(record))

    collected = Collect()
    logging.getLogger().addHandler(collected)
    errors_in_threads = []
    threading.excepthook = lambda args: errors_in_threads.append(repr(args.exc_value))

    n = 40
    x = np.zeros((n, 3, 3, 1), np.float32)
    x[:, 0, 0, 0] = np.arange(n)  # record i carries i in its first pixel
    root = write_dataset(tempfile.mkdtemp(), "graph", x, np.arange(n) % 4, x[:5], np.arange(5) % 4)
    dataset = AutoDLDataset(find_dataset(root)[1]).get_dataset()
    graph_before = tf.compat.v1.get_default_graph()

    source = iterate_numpy(dataset)
    sample = take_probe_sample(source, max_count=7, max_bytes=1 << 20)
    assert tf.compat.v1.get_default_graph() is graph_before, "the probe changed the caller's default graph"
    assert tf.compat.v1.get_default_session() is None, "the probe left a default session behind"

    seen = [int(example[0, 0, 0, 0]) for example, _ in sample]
    cache = ExampleCache((1, 1, 1, 1), 4, capacity=n)
    def convert(example):
        seen.append(int(example[0, 0, 0, 0]))
        return np.zeros((1, 1, 1, 1), np.uint8)
    filler = CacheFiller(source, cache, convert).start()
    filler.wait_for(10**9, timeout=60)
    filler.stop()
    assert filler.finished and filler.error is None, filler.error
    assert len(sample) == 7 and sorted(seen) == list(range(n)), seen
    assert not collected.records, collected.records
    assert not errors_in_threads, errors_in_threads
    print("ok")
    """
)


def test_graph_dataset_probe_then_background_decoding_logs_nothing_and_reads_each_record_once():
    pytest.importorskip("tensorflow")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180,
                            cwd=REPO, env=env)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
    assert "pop from empty list" not in result.stderr
