"""Non-finite input values never decide the scaling of the clean ones, are replaced when examples enter the
cache and are counted; the probe's sample holds a bounded number of bytes."""

import logging
import math

import numpy as np
import pytest

from autoclint.data.bridge import take_probe_sample
from autoclint.data.convert import ExampleConverter
from autoclint.probe import finite_range, probe_examples


def _dense_sample(count=50, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.random((1, 6, 6, 1), dtype=np.float32) * 0.9 + 0.05, np.eye(2, dtype=np.float32)[i % 2])
            for i in range(count)]


def _converter_for(sample):
    probe = probe_examples(sample)
    low, high = (0.0, 1.0) if probe.value_max <= 1.0 else (probe.value_min, probe.value_max)
    return probe, ExampleConverter(1, 6, 6, 1, low, high)


def test_one_inf_pixel_leaves_the_probe_range_finite_and_clean_images_unchanged(caplog):
    clean = _dense_sample()
    _, clean_converter = _converter_for(clean)
    dirty = [(x.copy(), y) for x, y in clean]
    dirty[7][0][0, 2, 3, 0] = np.inf
    with caplog.at_level(logging.WARNING):
        probe, converter = _converter_for(dirty)
    assert math.isfinite(probe.value_min) and math.isfinite(probe.value_max) and probe.value_max < 1.0
    assert probe.nonfinite_values == 1 and "1 non-finite value(s)" in caplog.text
    for index, (x, _) in enumerate(dirty):
        if index != 7:
            np.testing.assert_array_equal(converter(x), clean_converter(x))
            assert converter(x).max() > 0
    assert converter(dirty[7][0])[0, 2, 3, 0] == 255  # +inf: the top of the range


def test_nan_in_the_first_example_gives_a_finite_range_and_is_replaced(caplog):
    sample = _dense_sample()
    sample[0][0][0, 0, 0, 0] = np.nan
    sample[3][0][0, 1, 1, 0] = -np.inf
    probe = probe_examples(sample)
    assert 0.0 < probe.value_min < probe.value_max < 1.0 and probe.nonfinite_values == 2
    converter = ExampleConverter(1, 6, 6, 1, 0.0, 1.0)
    with caplog.at_level(logging.WARNING):
        first = converter(sample[0][0])
        third = converter(sample[3][0])
        converter(sample[1][0])
    assert first[0, 0, 0, 0] == 0 and third[0, 1, 1, 0] == 0  # NaN: 0; -inf: the bottom of the range
    np.testing.assert_array_equal(first[0, 1:], np.rint(sample[0][0][0, 1:] * 255).astype(np.uint8))
    assert np.isnan(sample[0][0][0, 0, 0, 0])  # the caller's array is left as it was
    assert converter.log_nonfinite_summary() == (2, 2)
    assert "replaced so far: 1 in 1 example(s)" in caplog.text


def test_values_beyond_255_with_nan_use_the_finite_range():
    sample = [(np.array([[[[0.0], [1000.0]], [[np.nan], [500.0]]]], np.float32), np.ones(1, np.float32))]
    assert finite_range(sample[0][0]) == (0.0, 1000.0, 1)
    probe = probe_examples(sample)
    assert (probe.value_min, probe.value_max) == (0.0, 1000.0)
    assert finite_range(np.full(3, np.nan)) == (math.inf, -math.inf, 3)
    assert (probe_examples([(np.full((1, 2, 2, 1), np.nan), np.ones(1))]).value_max) == 1.0


def test_probe_sample_stops_at_the_byte_bound_and_loses_nothing():
    big = [(np.full((1, 500, 500, 3), i, np.float32), np.ones(2, np.float32)) for i in range(32)]  # 3 MB each
    source = iter(big)
    sample = take_probe_sample(source, max_count=256, max_bytes=10 * 2**20)
    assert len(sample) == 4  # the fourth crosses 10 MB: at most the bound plus one example is held
    assert sum(x.nbytes for x, _ in sample) <= 10 * 2**20 + big[0][0].nbytes
    rest = list(source)
    assert [int(x[0, 0, 0, 0]) for x, _ in sample + rest] == list(range(32))
    small = iter([(np.zeros((1, 2, 2, 1), np.float32), np.ones(2))] * 300)
    assert len(take_probe_sample(small, max_count=256)) == 256 and len(list(small)) == 44
    assert take_probe_sample(iter([]), max_count=8) == []
    with pytest.raises(ValueError):
        take_probe_sample(iter(big), max_count=0)


@pytest.mark.slow
def test_autoclint_learns_a_dense_dataset_holding_one_inf_and_one_nan_pixel(tmp_path):
    from pathlib import Path

    from autoclint.autodl.writer import write_dataset
    from autoclint.harness.cli import run_local_test
    from autoclint.harness.sample_data import digits_arrays

    x_train, y_train, x_test, y_test, names = digits_arrays()
    x_train = x_train.astype(np.float32) / 255.0
    x_train[0, 3, 3, 0] = np.nan  # in the first example: the one the probe reads first
    x_train[25, 4, 4, 0] = np.inf
    dataset = write_dataset(tmp_path / "data", "dirty", x_train, y_train, x_test.astype(np.float32) / 255.0,
                            y_test, label_names=names, image_format="dense")
    repo = Path(__file__).resolve().parents[1]
    result = run_local_test(dataset, repo, 40.0, tmp_path / "out", tmp_path / "scores")
    assert result.ingestion.success and result.scores.predictions
    assert result.scores.final_nauc >= 0.8, result.scores
