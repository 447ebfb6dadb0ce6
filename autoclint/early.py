"""The fast learner: calibrated class probabilities within a second or two, before the network has learned.

ALC weighs the first seconds most (log time, t0 = 60 s), so a cheap model predicts first. Features are
computed from the uint8 cache: frames averaged, per-channel thumbnails, per-channel intensity statistics
and histograms, and gradient-orientation histograms of the grey image; they are standardised and
extended by random ReLU features (a cheap non-linear kernel approximation). A ridge regression onto the
label matrix is solved in closed form; its regularisation is chosen on a held-out part of the training
subsample (on exact leave-one-out decisions of every example, up to a few hundred), where a softmax
temperature (multiclass) or per-class Platt scaling (multilabel) is also fitted, so that the output can be
averaged with the network's probabilities.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.optimize import minimize_scalar
from threadpoolctl import ThreadpoolController

logger = logging.getLogger(__name__)

FEATURE_CHUNK = 128  # examples converted to float at once: their intermediate arrays stay in the CPU's cache
# (about twice as fast as chunks of 2,048, whose every intermediate array is a fresh allocation)
DECISION_CHUNK = 2048  # examples whose random features are held at once when predicting
PROBABILITY_FLOOR = 1e-4  # mixed-in uniform mass, so that no probability is exactly 0 or 1
# A class whose held-out decisions rank its examples backwards (a few held-out positives, or leave-one-out
# decisions, which lean against each example's own label when the signal is weak) got a negative Platt
# slope, which reverses its ranking on every other example: a multilabel cifar mosaic's test NAUC at 260
# examples was 0.32 ± 0.05 over draws, 0.36 ± 0.01 with slopes kept positive.
MIN_PLATT_SLOPE = 0.1


@dataclass(frozen=True)
class FastLearnerSettings:
    """What the fast learner needs: its subsample bound, feature sizes, regularisation and seed."""

    max_train_examples: int = 8000  # a seeded subsample above this keeps the fit near one second
    thumbnail_side: int = 8  # per-channel box-averaged thumbnail of side × side
    grey_thumbnail_side: int = 16  # a finer thumbnail when there is a single channel
    histogram_bins: int = 8  # per-channel intensity histogram
    gradient_cells: int = 4  # gradient-orientation histograms on a cells × cells grid
    gradient_orientations: int = 8
    gradient_max_side: int = 64  # larger grey images are box-averaged down before their gradients
    orientation_histograms: str = "harmonic"  # or "binned": the per-pixel binning of earlier saved models
    random_features: int = 1500  # random ReLU features on top of the standardised features (0: linear)
    # relative to the mean eigenvalue of the Gram matrix; 10 is chosen on a few hundred examples (test NAUC
    # +0.05 to +0.09 on cifar10, fer2013, breastmnist and a multilabel cifar mosaic at 300 examples)
    ridge_alphas: tuple[float, ...] = (0.1, 1.0, 10.0)
    holdout_fraction: float = 0.2  # of the subsample, to choose alpha and fit the calibration
    max_holdout: int = 2000
    min_holdout: int = 30  # below this many examples (held out or left out) the default calibration is used
    # up to this many examples, alpha and the calibration come from exact leave-one-out decisions on all of
    # them instead of a held-out fifth (52 examples at 260: too few to choose alpha or scale ten classes);
    # at 500 it is as often worse as better (breastmnist's full fit -0.02 test NAUC, mnist_video +0.02)
    max_leave_one_out: int = 400
    default_temperature_scale: float = 4.0  # softmax(scale · decision) without a held-out set
    seed: int = 0
    blas_threads: int = 1  # more BLAS threads only help on idle cores; on shared ones they stall each other

    def __post_init__(self) -> None:
        if self.max_train_examples < 1:
            raise ValueError(f"max_train_examples must be positive, got {self.max_train_examples}")
        if not self.ridge_alphas or min(self.ridge_alphas) <= 0:
            raise ValueError(f"ridge_alphas must be positive values, got {self.ridge_alphas}")
        if self.orientation_histograms not in ORIENTATION_HISTOGRAMS:
            raise ValueError(f"orientation_histograms must be one of {sorted(ORIENTATION_HISTOGRAMS)}, "
                             f"got {self.orientation_histograms!r}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")


# ---------------------------------------------------------------------------------------------------------
# Features


def bin_starts(length: int, bins: int) -> np.ndarray:
    """Start index of each of `bins` near-equal bins over `length` (indices repeat when length < bins)."""
    return np.linspace(0, length, bins + 1)[:-1].astype(np.int64)


@functools.lru_cache(maxsize=64)
def averaging_matrix(length: int, bins: int) -> np.ndarray:
    """[bins, length]: row k averages the positions of bin k of `bin_starts` (an empty bin gives 0)."""
    starts = bin_starts(length, bins)
    ends = np.append(starts[1:], length)
    matrix = np.zeros((bins, length), dtype=np.float32)
    for row, (start, end) in enumerate(zip(starts, ends)):
        matrix[row, start:end] = 1.0 / max(end - start, 1)
    return matrix


def box_pool(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """[N,H,W,C] float images -> [N,rows,cols,C] box averages over near-equal bins (two small matrix
    products: far cheaper than summing slices)."""
    height, width = images.shape[1:3]
    num, channels = images.shape[0], images.shape[3]
    across = np.matmul(averaging_matrix(width, cols), images)  # [N,H,cols,C]
    down = np.matmul(averaging_matrix(height, rows), across.reshape(num, height, cols * channels))
    return down.reshape(num, rows, cols, channels)


def bin_index(length: int, bins: int) -> np.ndarray:
    """Bin of each of `length` positions for `bins` near-equal bins."""
    return np.minimum((np.arange(length) * bins) // max(length, 1), bins - 1)


@functools.lru_cache(maxsize=64)
def cell_matrix(length: int, cells: int) -> np.ndarray:
    """[cells, length]: row k is 1 at the positions of cell k of `bin_index`."""
    matrix = np.zeros((cells, length), dtype=np.float32)
    matrix[bin_index(length, cells), np.arange(length)] = 1.0
    return matrix


def channel_histograms(images: np.ndarray, bins: int) -> np.ndarray:
    """[N,H,W,C] images in [0,1] -> [N, C·bins] fraction of pixels per intensity bin and channel."""
    num, height, width, channels = images.shape
    level = np.minimum((images * bins).astype(np.int32), bins - 1)
    example_index = np.arange(num, dtype=np.int32)[:, None, None, None]
    offsets = example_index * channels + np.arange(channels, dtype=np.int32)
    counts = np.bincount((level + offsets * bins).ravel(), minlength=num * channels * bins).astype(np.float32)
    return counts.reshape(num, channels * bins) / np.float32(height * width)


def channel_moments(images: np.ndarray) -> np.ndarray:
    """[N,H,W,C] -> [N, 2C]: per-channel mean and standard deviation over the pixels."""
    num, height, width, channels = images.shape
    pixels = images.reshape(num, height * width, channels)
    mean = np.einsum("npc->nc", pixels) / np.float32(height * width)
    mean_square = np.einsum("npc,npc->nc", pixels, pixels) / np.float32(height * width)
    return np.concatenate([mean, np.sqrt(np.maximum(mean_square - mean * mean, 0.0))], axis=1)


@functools.lru_cache(maxsize=8)
def harmonic_synthesis(orientations: int) -> np.ndarray:
    """[orientations, orientations]: circular harmonics (C0, C1, S1, C2, S2, ...) of the doubled gradient
    angle -> the orientation histogram at the bin centres, each gradient spread by a triangle of one bin's
    half-width (linear interpolation between the two nearest bins), band-limited to the harmonics kept."""
    centres = 2 * np.pi * (np.arange(orientations) + 0.5) / orientations
    rows = [np.ones(orientations)]
    for k in range(1, orientations // 2 + 1):
        weight = np.sinc(k / orientations) ** 2  # the triangle's Fourier coefficient
        nyquist = 2 * k == orientations  # its cosine is 0 at every bin centre; it is counted once
        if not nyquist:
            rows.append(2 * weight * np.cos(k * centres))
        rows.append((1 if nyquist else 2) * weight * np.sin(k * centres))
    return (np.stack(rows) / orientations).astype(np.float32)


def gradient_histograms(grey: np.ndarray, cells: int, orientations: int) -> np.ndarray:
    """[N,H,W] grey images -> [N, cells²·orientations] square roots of magnitude-weighted orientation sums.

    Unsigned orientations (edges, not their polarity), each gradient shared between its nearest bins; a
    crude HOG without block normalisation. Computed from circular harmonics of the doubled angle, which
    are products of the gradient's components (no arctangent, no scattered adds), summed per cell by two
    small matrix products: several times cheaper than binning every pixel."""
    num, height, width = grey.shape
    if height < 3 or width < 3:
        return np.zeros((num, cells * cells * orientations), dtype=np.float32)
    gx = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2]
    gy = grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
    rows, cols = cell_matrix(height - 2, cells), cell_matrix(width - 2, cells).T

    def cell_sums(values: np.ndarray) -> np.ndarray:  # [N, H-2, W-2] -> [N, cells·cells]
        return np.matmul(rows, np.matmul(values, cols)).reshape(num, cells * cells)

    gx_squared, gy_squared = gx * gx, gy * gy
    magnitude = np.sqrt(gx_squared + gy_squared)
    inverse = np.float32(1.0) / np.maximum(magnitude, np.float32(1e-12))
    # magnitude · (cos, sin) of k times the doubled angle, for k = 1, 2, ...: complex powers of the gradient
    cos_k, sin_k = (gx_squared - gy_squared) * inverse, (gx + gx) * gy * inverse
    unit_cos, unit_sin = cos_k * inverse, sin_k * inverse
    sums = [cell_sums(magnitude)]
    for k in range(1, orientations // 2 + 1):
        if 2 * k != orientations:
            sums.append(cell_sums(cos_k))
        sums.append(cell_sums(sin_k))
        if k < orientations // 2:
            cos_k, sin_k = cos_k * unit_cos - sin_k * unit_sin, cos_k * unit_sin + sin_k * unit_cos
    histograms = np.maximum(np.stack(sums, axis=-1) @ harmonic_synthesis(orientations), 0.0)
    scale = np.float32(cells * cells / ((height - 2) * (width - 2)))
    return np.sqrt(histograms * scale).reshape(num, -1)


def binned_gradient_histograms(grey: np.ndarray, cells: int, orientations: int) -> np.ndarray:
    """[N,H,W] grey images -> [N, cells²·orientations] square roots of magnitude-weighted orientation sums.

    Each pixel's gradient binned at its arctangent and shared linearly between its two nearest bins: the
    features of models saved before `gradient_histograms` (which approximates these several times faster),
    kept so that those models predict as they did.
    """
    num, height, width = grey.shape
    if height < 3 or width < 3:
        return np.zeros((num, cells * cells * orientations), dtype=np.float32)
    gx = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2]
    gy = grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
    magnitude = np.sqrt(gx * gx + gy * gy)
    # Signed angle in bin units, in [-orientations - 0.5, orientations - 0.5]: pixels are counted in
    # 2·orientations + 2 unwrapped slots (no per-pixel modulo), folded onto the orientations afterwards.
    position = np.arctan2(gy, gx) * np.float32(orientations / np.pi) - np.float32(0.5)
    lower = np.floor(position)
    upper_share = position - lower
    slots = 2 * orientations + 2
    cell = bin_index(height - 2, cells)[:, None] * cells + bin_index(width - 2, cells)[None, :]
    base = (np.arange(num)[:, None, None] * (cells * cells) + cell[None]) * slots + orientations + 1
    index = (base + lower.astype(np.int64)).ravel()
    length = num * cells * cells * slots
    lower_sums = np.bincount(index, (magnitude - upper_share * magnitude).ravel(), minlength=length)
    upper_sums = np.bincount(index, (upper_share * magnitude).ravel(), minlength=length)
    unwrapped = lower_sums.reshape(num, cells * cells, slots)
    unwrapped[:, :, 1:] += upper_sums.reshape(num, cells * cells, slots)[:, :, :-1]
    folded = np.zeros((num, cells * cells, orientations))
    for slot in range(slots):
        folded[:, :, (slot - orientations - 1) % orientations] += unwrapped[:, :, slot]
    scale = cells * cells / ((height - 2) * (width - 2))
    return np.sqrt(folded * scale).astype(np.float32).reshape(num, -1)


def shrink(grey: np.ndarray, max_side: int) -> np.ndarray:
    """[N,H,W] -> box-averaged by the smallest integer factor that brings both sides to at most `max_side`."""
    factor = -(-max(grey.shape[1:]) // max(max_side, 1))
    if factor <= 1:
        return grey
    num, height, width = grey.shape
    height, width = height // factor, width // factor
    cropped = grey[:, : height * factor, : width * factor]
    return cropped.reshape(num, height, factor, width, factor).mean(axis=(2, 4))


ORIENTATION_HISTOGRAMS = {"harmonic": gradient_histograms, "binned": binned_gradient_histograms}


def chunked(examples: np.ndarray) -> list[np.ndarray]:
    """Consecutive slices of at most FEATURE_CHUNK examples."""
    return [examples[start : start + FEATURE_CHUNK] for start in range(0, len(examples), FEATURE_CHUNK)]


def raw_features(examples: np.ndarray, settings: FastLearnerSettings) -> np.ndarray:
    """Unstandardised features [N, F] of uint8 examples [N,T,H,W,C] (see the module docstring)."""
    examples = np.asarray(examples)
    if examples.ndim != 5:
        raise ValueError(f"examples must be [N, T, H, W, C], got shape {examples.shape}")
    chunks = [_chunk_features(chunk, settings) for chunk in chunked(examples)]
    if not chunks:
        return np.zeros((0, feature_count(examples.shape[1:], settings)), dtype=np.float32)
    return np.concatenate(chunks, axis=0)


def _chunk_features(examples: np.ndarray, settings: FastLearnerSettings) -> np.ndarray:
    """Features of one chunk of examples."""
    images = frames_averaged(examples)
    num, channels = len(images), images.shape[3]
    rows, cols = thumbnail_grid(images.shape[1:3], channels, settings)
    thumbnails = box_pool(images, rows, cols)
    parts = [thumbnails.reshape(num, -1), channel_moments(images)]
    if settings.histogram_bins > 0:  # of the thumbnail's pixels: a colour distribution, cheaply
        # (measured: about as informative as the histogram of every pixel)
        parts.append(channel_histograms(thumbnails, settings.histogram_bins))
    if settings.gradient_cells > 0 and settings.gradient_orientations > 0:
        grey = shrink(channels_averaged(images), settings.gradient_max_side)
        histograms = ORIENTATION_HISTOGRAMS[settings.orientation_histograms]
        parts.append(histograms(grey, settings.gradient_cells, settings.gradient_orientations))
    return np.concatenate(parts, axis=1).astype(np.float32)


def frames_averaged(examples: np.ndarray) -> np.ndarray:
    """uint8 [N,T,H,W,C] -> float32 [N,H,W,C] in [0, 1], the frames averaged."""
    if examples.shape[1] == 1:  # a plain conversion: a mean over one frame costs a reduction
        return examples[:, 0].astype(np.float32) * np.float32(1.0 / 255.0)
    return examples.mean(axis=1, dtype=np.float32) * np.float32(1.0 / 255.0)


def channels_averaged(images: np.ndarray) -> np.ndarray:
    """[N,H,W,C] -> [N,H,W]: the mean over channels, summed slice by slice (numpy reduces a short last
    axis slowly)."""
    total = images[..., 0].copy()
    for channel in range(1, images.shape[3]):
        total += images[..., channel]
    return total * np.float32(1.0 / images.shape[3]) if images.shape[3] > 1 else total


def thumbnail_grid(size: tuple[int, ...], channels: int, settings: FastLearnerSettings) -> tuple[int, int]:
    """Thumbnail (rows, cols): the configured side, never more than the image has pixels."""
    side = settings.grey_thumbnail_side if channels == 1 else settings.thumbnail_side
    return min(side, size[0]), min(side, size[1])


def feature_count(example_shape: tuple[int, ...], settings: FastLearnerSettings) -> int:
    """Number of raw features of an example of shape (T, H, W, C)."""
    channels = example_shape[-1]
    rows, cols = thumbnail_grid(example_shape[1:3], channels, settings)
    count = rows * cols * channels + 2 * channels + settings.histogram_bins * channels
    if settings.gradient_cells > 0 and settings.gradient_orientations > 0:
        count += settings.gradient_cells**2 * settings.gradient_orientations
    return count


@dataclass(frozen=True)
class Standardiser:
    """Per-feature mean and scale learned on training features (constant features keep scale 1)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> "Standardiser":
        mean = values.mean(axis=0, dtype=np.float64).astype(np.float32)
        std = values.std(axis=0, dtype=np.float64).astype(np.float32)
        return cls(mean, np.where(std > 1e-6, std, 1.0).astype(np.float32))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.scale


def features(examples: np.ndarray, settings: FastLearnerSettings | None = None) -> np.ndarray:
    """Standardised cheap features [N, F] of uint8 examples [N,T,H,W,C], standardised over these examples."""
    settings = settings or FastLearnerSettings()
    values = raw_features(examples, settings)
    return Standardiser.fit(values)(values)


# ---------------------------------------------------------------------------------------------------------
# Ridge regression on random features


@dataclass(frozen=True)
class RandomRelu:
    """x -> [x, relu(x·W + b)]: the standardised features and random ReLU features of them."""

    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def draw(cls, num_inputs: int, num_outputs: int, rng: np.random.Generator) -> "RandomRelu":
        scale = np.float32(1.0 / np.sqrt(max(num_inputs, 1)))
        weights = rng.standard_normal((num_inputs, num_outputs), dtype=np.float32) * scale
        bias = rng.standard_normal(num_outputs, dtype=np.float32) * 0.5
        return cls(weights.astype(np.float32), bias.astype(np.float32))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.weights.shape[1] == 0:
            return values
        return np.concatenate([values, np.maximum(values @ self.weights + self.bias, 0.0)], axis=1)


@dataclass(frozen=True)
class RidgeFit:
    """Linear map from expanded features to label scores: scores = (phi - phi_mean) @ weights + label_mean."""

    phi_mean: np.ndarray
    label_mean: np.ndarray
    weights: np.ndarray

    def decision(self, phi: np.ndarray) -> np.ndarray:
        return (phi - self.phi_mean) @ self.weights + self.label_mean


def ridge_solve(gram: np.ndarray, cross: np.ndarray, alpha: float) -> np.ndarray:
    """Solve (gram + alpha·I) W = cross by Cholesky, with a least-squares fallback.

    Float32 is enough: alpha is at least a percent of the mean eigenvalue, which bounds the conditioning.
    """
    regularised = gram + np.float32(alpha) * np.eye(len(gram), dtype=gram.dtype)
    try:
        return cho_solve(cho_factor(regularised, check_finite=False), cross, check_finite=False)
    except LinAlgError:
        return np.linalg.lstsq(regularised, cross, rcond=None)[0]


# ---------------------------------------------------------------------------------------------------------
# Calibration


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax; -inf logits get probability 0."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * values))


def fit_temperature(decisions: np.ndarray, classes: np.ndarray, present: np.ndarray) -> float:
    """Scale s minimising the held-out log loss of softmax(s · decision) over the present classes."""
    masked = np.where(present, decisions, -np.inf)
    rows = np.arange(len(classes))

    def loss(log_scale: float) -> float:
        logits = np.exp(log_scale) * masked
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        return float(np.mean(log_norm - shifted[rows, classes]))

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(200.0)), method="bounded",
                             options={"xatol": 1e-3})
    return float(np.exp(result.x))


def fit_platt(
    decisions: np.ndarray, targets: np.ndarray, iterations: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (a, b) of sigmoid(a·d + b) by Newton's method on Platt's smoothed targets.

    Platt's targets ((n+ + 1)/(n+ + 2) for positives, 1/(n- + 2) for negatives) keep all-zero or
    all-one columns finite: they get their smoothed prior. Slopes stay at least `MIN_PLATT_SLOPE`, so
    that calibration never reverses a class's ranking.
    """
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    soft = np.where(targets > 0.5, (positives + 1) / (positives + 2), 1.0 / (negatives + 2))
    a = np.zeros(targets.shape[1])
    b = np.log((positives + 1) / (negatives + 1))
    for _ in range(iterations):
        p = sigmoid(a * decisions + b)
        residual, weight = p - soft, np.maximum(p * (1 - p), 1e-12)
        g_a, g_b = (residual * decisions).sum(axis=0), residual.sum(axis=0)
        h_aa = (weight * decisions * decisions).sum(axis=0) + 1e-6
        h_ab = (weight * decisions).sum(axis=0)
        h_bb = weight.sum(axis=0) + 1e-6
        det = h_aa * h_bb - h_ab * h_ab
        step_a = (h_bb * g_a - h_ab * g_b) / det
        step_b = (h_aa * g_b - h_ab * g_a) / det
        a, b = np.maximum(a - np.clip(step_a, -10, 10), MIN_PLATT_SLOPE), b - np.clip(step_b, -10, 10)
    return a, b


# ---------------------------------------------------------------------------------------------------------
# The learner


@functools.lru_cache(maxsize=1)
def blas_controller() -> ThreadpoolController:
    """The thread pools of the BLAS and OpenMP libraries loaded in this process, found once: finding them
    reads every loaded library's path (about 50 ms), which a fit and each prediction would pay again."""
    return ThreadpoolController()


class FastLearner:
    """Standardised cheap features -> random ReLU features -> ridge -> calibrated probabilities."""

    def __init__(self, settings: FastLearnerSettings, is_multilabel: bool, num_classes: int) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.settings = settings
        self.is_multilabel = is_multilabel
        self.num_classes = num_classes
        self.fit_seconds = 0.0
        self.num_fitted = 0
        self._standardiser: Standardiser | None = None
        self._expand: RandomRelu | None = None
        self._ridge: RidgeFit | None = None
        self._present = np.ones(num_classes, dtype=bool)
        self._scale = settings.default_temperature_scale
        self._platt = (np.full(num_classes, settings.default_temperature_scale),
                       np.full(num_classes, -0.5 * settings.default_temperature_scale))

    @property
    def is_fitted(self) -> bool:
        return self._ridge is not None

    def fit(self, examples: np.ndarray, labels: np.ndarray) -> "FastLearner":
        """Learn from uint8 examples [N,T,H,W,C] and 0/1 labels [N,K] (a seeded subsample above the bound)."""
        started = time.perf_counter()
        labels = np.asarray(labels, dtype=np.float32).reshape(len(labels), -1)
        if len(examples) != len(labels) or len(examples) == 0:
            raise ValueError(
                f"need as many labels as examples (at least one): {len(examples)} vs {len(labels)}"
            )
        if labels.shape[1] != self.num_classes:
            raise ValueError(f"labels have {labels.shape[1]} columns, expected {self.num_classes}")
        rng = np.random.default_rng(self.settings.seed)
        chosen = subsample_indices(len(examples), self.settings.max_train_examples, rng)
        with blas_controller().limit(limits=self.settings.blas_threads):
            self._fit_subsample(np.asarray(examples)[chosen], labels[chosen] > 0.5, rng)
        self.num_fitted = len(chosen)
        self.fit_seconds = time.perf_counter() - started
        logger.info("fast learner: fitted on %d of %d examples in %.2f s", len(chosen), len(examples),
                    self.fit_seconds)
        return self

    def predict(self, examples: np.ndarray) -> np.ndarray:
        """Float32 [N,K] probabilities: rows sum to 1 (multiclass), per-class probabilities (multilabel)."""
        if self._ridge is None:
            raise RuntimeError("FastLearner.predict called before fit")
        with blas_controller().limit(limits=self.settings.blas_threads):
            values = raw_features(examples, self.settings)
        return self.predict_features(values)

    def predict_features(self, values: np.ndarray) -> np.ndarray:
        """`predict` from the examples' raw features [N,F] (`raw_features`): they depend on the settings'
        feature sizes only, not on the fit, so a caller that refits may compute them once."""
        if self._ridge is None:
            raise RuntimeError("FastLearner.predict_features called before fit")
        with blas_controller().limit(limits=self.settings.blas_threads):
            chunks = [self._calibrated(self._decisions(values[start : start + DECISION_CHUNK]))
                      for start in range(0, len(values), DECISION_CHUNK)]
        if not chunks:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        return np.concatenate(chunks, axis=0).astype(np.float32)

    def parameters(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (standardiser, random features, ridge, calibration), for saving."""
        if self._standardiser is None or self._expand is None or self._ridge is None:
            raise RuntimeError("FastLearner.parameters called before fit")
        return {
            "standardiser_mean": self._standardiser.mean, "standardiser_scale": self._standardiser.scale,
            "relu_weights": self._expand.weights, "relu_bias": self._expand.bias,
            "ridge_phi_mean": self._ridge.phi_mean, "ridge_label_mean": self._ridge.label_mean,
            "ridge_weights": self._ridge.weights, "present": self._present,
            "temperature_scale": np.asarray(self._scale, dtype=np.float64),
            "platt_a": np.asarray(self._platt[0]), "platt_b": np.asarray(self._platt[1]),
        }

    @classmethod
    def from_parameters(cls, settings: FastLearnerSettings, is_multilabel: bool, num_classes: int,
                        parameters: dict[str, np.ndarray]) -> "FastLearner":
        """A fitted learner from `parameters()` of another (KeyError names a missing array)."""
        learner = cls(settings, is_multilabel, num_classes)
        learner._standardiser = Standardiser(parameters["standardiser_mean"], parameters["standardiser_scale"])
        learner._expand = RandomRelu(parameters["relu_weights"], parameters["relu_bias"])
        learner._ridge = RidgeFit(parameters["ridge_phi_mean"], parameters["ridge_label_mean"],
                                  parameters["ridge_weights"])
        learner._present = np.asarray(parameters["present"], dtype=bool)
        learner._scale = float(np.asarray(parameters["temperature_scale"]).reshape(()))
        learner._platt = (np.asarray(parameters["platt_a"]), np.asarray(parameters["platt_b"]))
        return learner

    def _fit_subsample(self, examples: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> None:
        """Features, alpha choice and calibration on a held-out part (on leave-one-out decisions of every
        example, up to `max_leave_one_out`), then the ridge on everything."""
        values = raw_features(examples, self.settings)
        self._standardiser = Standardiser.fit(values)
        self._expand = RandomRelu.draw(values.shape[1], self.settings.random_features, rng)
        phi = self._expand(self._standardiser(values))
        if not self.is_multilabel:
            self._present = targets.any(axis=0)
        # Centred features and labels; the held-out rows are a random set of them, moved to the end.
        order = rng.permutation(len(phi))
        phi, targets = phi[order], targets[order]
        phi_mean = phi.mean(axis=0, dtype=np.float64).astype(np.float32)
        phi -= phi_mean
        label_mean = targets.mean(axis=0, dtype=np.float64).astype(np.float32)
        centred_targets = targets.astype(np.float32) - label_mean
        leave_one_out = self.settings.min_holdout <= len(phi) <= self.settings.max_leave_one_out
        fitted = len(phi) if leave_one_out else len(phi) - holdout_size(len(phi), self.settings)
        system = ridge_system(phi, centred_targets, fitted)
        alphas = [relative * system.mean_eigenvalue for relative in self.settings.ridge_alphas]
        alpha = alphas[len(alphas) // 2]
        if leave_one_out:
            alpha, held_decisions = choose_alpha(LeaveOneOut(phi, centred_targets), centred_targets, alphas)
            self._fit_calibration(held_decisions + label_mean, targets)
        elif fitted < len(phi):
            alpha, held_decisions = choose_alpha(system, centred_targets[fitted:], alphas)
            self._fit_calibration(held_decisions + label_mean, targets[fitted:])
        weights = system.weights(alpha)
        self._ridge = RidgeFit(phi_mean, label_mean, weights)

    def _fit_calibration(self, decisions: np.ndarray, targets: np.ndarray) -> None:
        """Temperature (multiclass) or per-class Platt scaling (multilabel) on held-out decisions."""
        if self.is_multilabel:
            self._platt = fit_platt(decisions.astype(np.float64), targets.astype(np.float64))
        else:
            self._scale = fit_temperature(decisions.astype(np.float64), targets.argmax(axis=1), self._present)
            logger.debug("fast learner: softmax scale %.3g", self._scale)

    def _decisions(self, values: np.ndarray) -> np.ndarray:
        """Ridge scores [N,K] of raw features."""
        assert self._standardiser is not None and self._expand is not None and self._ridge is not None
        return self._ridge.decision(self._expand(self._standardiser(values)))

    def _calibrated(self, decisions: np.ndarray) -> np.ndarray:
        """Probabilities from ridge scores, with a small uniform floor."""
        decisions = decisions.astype(np.float64)
        if self.is_multilabel:
            a, b = self._platt
            probabilities = sigmoid(a * decisions + b)
            return PROBABILITY_FLOOR / 2 + (1 - PROBABILITY_FLOOR) * probabilities
        probabilities = softmax(np.where(self._present, self._scale * decisions, -np.inf))
        return PROBABILITY_FLOOR / self.num_classes + (1 - PROBABILITY_FLOOR) * probabilities


class PrimalRidge:
    """Ridge regression through the features' Gram matrix [F,F]: cheaper when examples outnumber features.
    The first `fitted` rows fit, the rest are held out; `weights` uses all of them."""

    def __init__(self, phi: np.ndarray, targets: np.ndarray, fitted: int) -> None:
        self.gram, self.cross = phi[:fitted].T @ phi[:fitted], phi[:fitted].T @ targets[:fitted]
        self.gram_held, self.cross_held = phi[fitted:].T @ phi[fitted:], phi[fitted:].T @ targets[fitted:]
        self.held_phi = phi[fitted:]
        self.mean_eigenvalue = max(float(np.trace(self.gram) + np.trace(self.gram_held)) / len(self.gram), 1e-12)

    def held_decisions(self, alpha: float) -> np.ndarray:
        return self.held_phi @ ridge_solve(self.gram, self.cross, alpha)

    def weights(self, alpha: float) -> np.ndarray:
        return ridge_solve(self.gram + self.gram_held, self.cross + self.cross_held, alpha)


class DualRidge:
    """The same ridge regression through the examples' kernel matrix [N,N]: cheaper when features outnumber
    examples (a first fit on a few hundred examples solves a system of that size, not of 1,800 features).
    Equal to the primal form: (ΦᵀΦ + αI)⁻¹ΦᵀY = Φᵀ(ΦΦᵀ + αI)⁻¹Y."""

    def __init__(self, phi: np.ndarray, targets: np.ndarray, fitted: int) -> None:
        self.phi, self.targets, self.fitted = phi, targets, fitted
        self.kernel = phi @ phi.T
        # the Gram matrix's mean eigenvalue: trace(ΦᵀΦ) = trace(ΦΦᵀ), over the number of features
        self.mean_eigenvalue = max(float(np.trace(self.kernel)) / phi.shape[1], 1e-12)

    def held_decisions(self, alpha: float) -> np.ndarray:
        fitted = self.fitted
        coefficients = ridge_solve(self.kernel[:fitted, :fitted], self.targets[:fitted], alpha)
        return self.kernel[fitted:, :fitted] @ coefficients

    def weights(self, alpha: float) -> np.ndarray:
        return self.phi.T @ ridge_solve(self.kernel, self.targets, alpha)


class LeaveOneOut:
    """Exact leave-one-out decisions of the ridge regression on all rows, for any alpha, from one
    eigendecomposition of the smaller of the kernel [N,N] and Gram [F,F] matrices: each row's decision by
    the fit on the others is y - (y - ŷ) / (1 - h), with h the row's leverage (the fitted intercept adds
    1/N to it; the rows are centred)."""

    def __init__(self, phi: np.ndarray, targets: np.ndarray) -> None:
        phi = phi.astype(np.float64)
        if len(phi) <= phi.shape[1]:
            eigenvalues, basis = np.linalg.eigh(phi @ phi.T)
        else:  # the left singular vectors from the Gram matrix's eigenvectors
            eigenvalues, vectors = np.linalg.eigh(phi.T @ phi)
            kept = eigenvalues > 1e-9 * max(float(eigenvalues[-1]), 1e-30)
            eigenvalues = eigenvalues[kept]
            basis = (phi @ vectors[:, kept]) / np.sqrt(eigenvalues)
        self.eigenvalues = np.maximum(eigenvalues, 0.0)
        self.basis, self.squared_basis = basis, basis * basis
        self.targets = targets.astype(np.float64)
        self.projected = basis.T @ self.targets

    def held_decisions(self, alpha: float) -> np.ndarray:
        """Every row's decision by the fit (at `alpha`) on all the other rows."""
        shrink = self.eigenvalues / (self.eigenvalues + alpha)
        fitted = self.basis @ (shrink[:, None] * self.projected)
        leverage = self.squared_basis @ shrink + 1.0 / len(self.targets)
        residuals = (self.targets - fitted) / np.maximum(1.0 - leverage, 1e-9)[:, None]
        return (self.targets - residuals).astype(np.float32)


def ridge_system(phi: np.ndarray, targets: np.ndarray, fitted: int) -> PrimalRidge | DualRidge:
    """The cheaper form of the ridge regression of `targets` on `phi` [N,F] for its shape."""
    return DualRidge(phi, targets, fitted) if len(phi) < phi.shape[1] else PrimalRidge(phi, targets, fitted)


def choose_alpha(system: PrimalRidge | DualRidge | LeaveOneOut, held_targets: np.ndarray,
                 alphas: list[float]) -> tuple[float, np.ndarray]:
    """The alpha with the lowest held-out (or left-out) squared error, and its decisions (centred)."""
    best = (np.inf, alphas[0], held_targets)
    for alpha in alphas:
        decisions = system.held_decisions(alpha)
        error = float(np.mean((decisions - held_targets) ** 2))
        logger.debug("fast learner: alpha %.3g held-out squared error %.5f", alpha, error)
        if error < best[0]:
            best = (error, alpha, decisions)
    return best[1], best[2]


def subsample_indices(count: int, bound: int, rng: np.random.Generator) -> np.ndarray:
    """All indices when `count` ≤ `bound`, else a sorted seeded sample of `bound` of them."""
    if count <= bound:
        return np.arange(count)
    return np.sort(rng.choice(count, size=bound, replace=False))


def holdout_size(count: int, settings: FastLearnerSettings) -> int:
    """Examples held out to choose alpha and fit the calibration (none when too few)."""
    size = min(int(count * settings.holdout_fraction), settings.max_holdout)
    return size if size >= settings.min_holdout and count - size >= 2 else 0
