"""Linear baseline: logistic regression (SGD) on 8x8 per-channel thumbnails, an anytime learner.

Examples are frame-averaged and box-downsampled to 8x8 per channel, standardised, and learned by
scikit-learn's SGDClassifier with `partial_fit`; each `train` call runs more passes than the last,
each `test` predicts. Multilabel tasks get one binary classifier per class (one-vs-rest).
A code directory of its own: it uses only the AutoDL API, numpy and scikit-learn, never autoclint.
"""

import logging
import time

import numpy as np
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

logger = logging.getLogger(__name__)

THUMBNAIL_SIDE = 8
MAX_PASSES = 16
MAX_TRAIN_EXAMPLES = 50000
SAFETY_SECONDS = 5.0


def iterate_numpy(dataset):
    """Yield (example, label) numpy pairs from a tf.data dataset (eager or graph) or a plain iterable."""
    if hasattr(dataset, "as_numpy_iterator"):
        import tensorflow as tf

        if tf.executing_eagerly():
            yield from dataset.as_numpy_iterator()
            return
        next_element = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        with tf.compat.v1.Session() as session:
            while True:
                try:
                    yield session.run(next_element)
                except tf.errors.OutOfRangeError:
                    return
    else:
        yield from iter(dataset)


def _bin_starts(length, bins):
    """Start index of each of `bins` near-equal bins over `length` (repeated when length < bins)."""
    return np.linspace(0, length, bins + 1)[:-1].astype(int)


def thumbnail(example):
    """[T,H,W,C] example -> flat features: frames averaged, then 8x8 box averages per channel."""
    image = np.asarray(example, dtype=np.float32).mean(axis=0)  # [H, W, C]
    height, width = image.shape[:2]
    rows, cols = _bin_starts(height, THUMBNAIL_SIDE), _bin_starts(width, THUMBNAIL_SIDE)
    row_counts = np.maximum(np.diff(np.append(rows, height)), 1)
    col_counts = np.maximum(np.diff(np.append(cols, width)), 1)
    pooled = np.add.reduceat(np.add.reduceat(image, rows, axis=0), cols, axis=1)
    pooled /= row_counts[:, None, None] * col_counts[None, :, None]
    return pooled.reshape(-1)


def extract(dataset, deadline=None, limit=None):
    """Thumbnails and labels of a dataset, in order, up to `deadline` (time.time()) or `limit` examples."""
    features, labels = [], []
    for example, label in iterate_numpy(dataset):
        features.append(thumbnail(example))
        labels.append(np.asarray(label, dtype=np.float32))
        if (limit and len(features) >= limit) or (deadline and time.time() > deadline):
            break
    return np.stack(features), np.stack(labels)


class Model:
    """Anytime linear classifier on thumbnails: growing rounds of SGD passes, a prediction after each."""

    def __init__(self, metadata):
        self.output_dim = metadata.get_output_size()
        self.done_training = False
        self.rng = np.random.default_rng(0)
        self.scaler = StandardScaler()
        self.x_train = self.y_train = self.x_test = None
        self.multilabel = False
        self.classifiers = []
        self.passes_done = 0
        self.round = 0
        self.seconds_per_pass = 0.0

    def train(self, dataset, remaining_time_budget=None):
        """Read the data on the first call, then run 1, 1, 2, 4, ... passes of SGD within the budget."""
        started = time.time()
        budget = float("inf") if remaining_time_budget is None else remaining_time_budget
        if self.x_train is None:
            self._load_training_data(dataset, started + budget / 4)
        passes = min(2 ** max(self.round - 1, 0), MAX_PASSES - self.passes_done)
        for _ in range(passes):
            time_left = started + budget - time.time()
            if self.passes_done and 2 * self.seconds_per_pass > time_left - SAFETY_SECONDS:
                break
            pass_started = time.time()
            self._one_pass()
            self.seconds_per_pass = time.time() - pass_started
        self.round += 1
        left = budget - (time.time() - started)
        if self.passes_done >= MAX_PASSES or left < SAFETY_SECONDS + 4 * self.seconds_per_pass:
            self.done_training = True

    def test(self, dataset, remaining_time_budget=None):
        """Class scores (num_test, output_dim): probabilities (multiclass) or per-class decision values."""
        if self.x_test is None:
            features, _ = extract(dataset)
            self.x_test = self.scaler.transform(features)
        if self.multilabel:
            return np.stack([c.decision_function(self.x_test) for c in self.classifiers], axis=1)
        probabilities = np.zeros((len(self.x_test), self.output_dim))
        probabilities[:, self.classifiers[0].classes_] = self.classifiers[0].predict_proba(self.x_test)
        return probabilities

    def _load_training_data(self, dataset, deadline):
        """Thumbnail the training set once, fit the standardiser, and set up the classifiers."""
        features, labels = extract(dataset, deadline=deadline, limit=MAX_TRAIN_EXAMPLES)
        self.x_train = self.scaler.fit_transform(features)
        self.y_train = labels > 0.5
        self.multilabel = bool((self.y_train.sum(axis=1) != 1).any())
        count = self.output_dim if self.multilabel else 1
        self.classifiers = [SGDClassifier(loss="log_loss", alpha=1e-4, random_state=k) for k in range(count)]
        logger.info("linear baseline: %d training examples, %d features", *self.x_train.shape)

    def _one_pass(self):
        """One shuffled pass of partial_fit over the training thumbnails."""
        order = self.rng.permutation(len(self.x_train))
        x, y = self.x_train[order], self.y_train[order]
        if self.multilabel:
            for k, classifier in enumerate(self.classifiers):
                classifier.partial_fit(x, y[:, k].astype(int), classes=[0, 1])
        else:
            self.classifiers[0].partial_fit(x, y.argmax(axis=1), classes=np.arange(self.output_dim))
        self.passes_done += 1
