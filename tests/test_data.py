"""Data pipeline: conversion to uint8, the background-filled cache, split, batch workers, device sets, bridge."""

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autoclint.augment import Op, PolicyAugment, SubPolicy
from autoclint.data.batches import BatchLoader, TrainSampler, build_batch, to_batch_tensor, to_channels_first
from autoclint.data.bridge import is_tf_dataset, iterate_numpy
from autoclint.data.cache import CacheFiller, ExampleCache
from autoclint.data.convert import ExampleConverter, frame_indices, resize_frame, same_size_chunks, value_range
from autoclint.data.device_set import DeviceSet
from autoclint.data.split import choose_valid_indices

REPO = Path(__file__).resolve().parents[1]


def _converter(frames=1, height=8, width=8, channels=3, low=0.0, high=1.0):
    return ExampleConverter(frames, height, width, channels, low, high)


def test_value_ranges():
    assert value_range(0.0, 1.0) == (0.0, 1.0)
    assert value_range(0.0, 200.0) == (0.0, 255.0)
    assert value_range(-3.0, 5.0) == (-3.0, 5.0)


def test_converter_scales_and_resizes_to_uint8():
    example = np.ones((1, 16, 12, 3), np.float32)
    example[0, :, :6] = 0.0
    converted = _converter()(example)
    assert converted.shape == (1, 8, 8, 3) and converted.dtype == np.uint8
    assert converted[0, :, 0].max() == 0 and converted[0, :, -1].min() == 255


def test_converter_maps_other_ranges_min_max_and_checks_channels():
    converted = _converter(height=2, width=2, channels=1, low=-1.0, high=1.0)(np.full((1, 2, 2, 1), 0.0, np.float32))
    assert converted.max() == 128
    with pytest.raises(ValueError, match="does not match"):
        _converter()(np.zeros((1, 8, 8, 1)))


def _converted_one_step_at_a_time(converter, example):
    """The conversion written out plainly (float32, as it always was): frames, scale to 0..255 with rounding,
    clip, resize each frame."""
    frames = example[frame_indices(example.shape[0], converter.frames)].astype(np.float32)
    scale = np.float32(255.0 / (converter.value_high - converter.value_low))
    scaled = np.clip((frames - np.float32(converter.value_low)) * scale + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.stack([resize_frame(frame, converter.height, converter.width) for frame in scaled])


@pytest.mark.parametrize("low, high, shape", [(0.0, 1.0, (3, 20, 12, 3)), (-2.0, 3.0, (1, 8, 8, 1)),
                                              (0.0, 255.0, (5, 16, 16, 2))])
def test_converting_many_examples_at_once_equals_converting_each(low, high, shape):
    rng = np.random.default_rng(0)
    converter = _converter(frames=2, height=8, width=8, channels=shape[3], low=low, high=high)
    examples = rng.uniform(low - 0.5, high + 0.5, (7, *shape)).astype(np.float32)  # some beyond the range
    original = examples.copy()
    batch = converter.convert_batch(examples)
    assert batch.shape == (7, 2, 8, 8, shape[3]) and batch.dtype == np.uint8
    for example, converted in zip(examples, batch):
        np.testing.assert_array_equal(converter(example), converted)
        np.testing.assert_array_equal(converted, _converted_one_step_at_a_time(converter, example))
    np.testing.assert_array_equal(examples, original)  # the caller's arrays are left as they were


def test_non_finite_values_are_counted_per_example_of_a_batch():
    converter = _converter(height=2, width=2, channels=1)
    examples = np.full((4, 1, 2, 2, 1), 0.5, np.float32)
    examples[1, 0, 0, 0, 0] = np.nan
    examples[3, 0, :, :, 0] = np.inf
    converted = converter.convert_batch(examples)
    assert converter.nonfinite.examples == 2 and converter.nonfinite.values == 5
    assert converted[3].min() == 255 and converted[1, 0, 0, 0, 0] == 0 and converted[0].min() == 128


def test_chunks_keep_the_order_and_start_anew_at_a_size_change_or_a_bound():
    sizes = [4, 4, 4, 6, 6, 4, 4, 4, 4, 4]
    pairs = [(np.full((1, size, size, 1), index, np.float32), np.array([index], np.float32))
             for index, size in enumerate(sizes)]
    chunks = list(same_size_chunks(pairs, max_examples=3, max_bytes=10**6))
    assert [len(examples) for examples, _ in chunks] == [3, 2, 3, 2]
    assert [labels[:, 0].tolist() for _, labels in chunks] == [[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]]
    one_each = list(same_size_chunks(pairs[:3], max_examples=3, max_bytes=64))  # one 4x4 float image: 64 bytes
    assert [len(examples) for examples, _ in one_each] == [1, 1, 1]
    converter = _converter(height=4, width=4, channels=1, high=255.0)
    converted = np.concatenate([examples for examples, _ in converter.convert_chunks(pairs)])
    assert converted.shape == (10, 1, 4, 4, 1) and converted[:, 0, 0, 0, 0].tolist() == list(range(10))


def test_frames_are_sampled_evenly_or_repeated():
    assert frame_indices(16, 4).tolist() == [0, 4, 8, 12]
    assert frame_indices(2, 4).tolist() == [0, 0, 1, 1]
    video = np.arange(16, dtype=np.float32).reshape(16, 1, 1, 1) / 15.0
    converted = _converter(frames=4, height=1, width=1, channels=1)(video)
    assert converted.shape == (4, 1, 1, 1) and list(converted.ravel()) == sorted(converted.ravel())


def test_cache_grows_and_gathers():
    cache = ExampleCache((1, 2, 2, 1), num_classes=2, capacity=1)
    for index in range(5):
        cache.append(np.full((1, 2, 2, 1), index, np.uint8), np.eye(2)[index % 2])
    examples, labels = cache.gather(np.array([4, 1]))
    assert len(cache) == 5 and examples[:, 0, 0, 0, 0].tolist() == [4, 1] and labels[1].tolist() == [0, 1]
    with pytest.raises(IndexError):
        cache.gather(np.array([5]))


def _slow_source(count, delay=0.0):
    for index in range(count):
        time.sleep(delay)
        yield np.full((1, 2, 2, 1), index / count, np.float32), np.eye(2, dtype=np.float32)[index % 2]


def test_filler_decodes_in_the_background():
    cache = ExampleCache((1, 2, 2, 1), num_classes=2, capacity=4)
    filler = CacheFiller(_slow_source(40, delay=0.01), cache, _converter(height=2, width=2, channels=1)).start()
    assert filler.wait_for(5) >= 5
    assert not filler.finished  # the rest is still being decoded
    filler.pause()
    time.sleep(0.05)  # the example being decoded when paused may still arrive
    paused_at = len(cache)
    time.sleep(0.1)
    assert len(cache) == paused_at < 40 and not filler.finished
    filler.resume()
    assert filler.wait_for(10**9) == 40 and filler.finished
    filler.stop()


def test_filler_reports_a_failing_source():
    def broken():
        raise OSError("disk gone")
        yield  # pragma: no cover

    filler = CacheFiller(broken(), ExampleCache((1, 2, 2, 1), 2), _converter(height=2, width=2, channels=1)).start()
    with pytest.raises(RuntimeError, match="decoding"):
        filler.wait_for(1, timeout=5)


def test_split_holds_out_distinct_indices():
    indices = choose_valid_indices(100, 10, seed=0)
    assert len(set(indices.tolist())) == 10 and indices.max() < 100
    with pytest.raises(ValueError, match="hold out"):
        choose_valid_indices(5, 5, seed=0)


def _filled_cache(count=12, size=4, channels=3):
    cache = ExampleCache((1, size, size, channels), num_classes=2, capacity=count)
    for index in range(count):
        cache.append(np.full((1, size, size, channels), index, np.uint8), np.eye(2)[index % 2])
    return cache


def test_sampler_never_yields_held_out_examples():
    cache = _filled_cache(12)
    sampler = TrainSampler(cache, np.array([0, 5]), seed=0)
    drawn = np.concatenate([sampler.next_indices(4) for _ in range(30)])
    assert set(drawn.tolist()) == set(range(12)) - {0, 5}


@pytest.mark.parametrize("frames", [1, 3])
def test_flip_mirrors_about_half_of_the_batch_and_nothing_else(frames):
    examples = np.tile(np.arange(4, dtype=np.uint8).reshape(1, 1, 1, 4, 1), (200, frames, 2, 1, 3))
    examples[:, :, :, :, 1] += 10  # channels stay apart
    batch = build_batch(examples.copy(), np.random.default_rng(0), flip=True, transform=None).numpy()
    rows = batch.reshape(200, -1, 4)  # every row of every channel and frame
    mirrored = rows[:, 0, 0] == 3
    assert 60 < int(mirrored.sum()) < 140
    reference = to_batch_tensor(examples).numpy()
    assert np.array_equal(batch[~mirrored], reference[~mirrored])
    assert np.array_equal(batch[mirrored], reference[mirrored][..., ::-1])
    assert np.array_equal(build_batch(examples.copy(), np.random.default_rng(0), False, None).numpy(), reference)


def test_batch_tensor_is_channels_first_and_contiguous():
    examples = np.random.default_rng(0).integers(0, 255, (2, 1, 4, 5, 3), dtype=np.uint8)
    images = to_batch_tensor(examples)
    assert images.shape == (2, 3, 4, 5) and images.is_contiguous()
    assert images[1, 2, 3, 4].item() == examples[1, 0, 3, 4, 2]
    clips = to_batch_tensor(np.zeros((2, 3, 4, 5, 1), np.uint8))
    assert clips.shape == (2, 3, 1, 4, 5)


def test_loader_builds_uint8_batches_applies_the_transform_and_shuts_down():
    cache = _filled_cache(12)
    calls = []

    def invert(batch, rng):
        calls.append(batch.shape)
        return 255 - batch

    with BatchLoader(cache, TrainSampler(cache, np.array([0]), 0), batch_size=4, flip=False) as loader:
        loader.set_transform(invert)
        for _ in range(6):  # batches queued before the transform was set may come first
            examples, labels = loader.next_batch(timeout=10)
        assert examples.shape == (4, 3, 4, 4) and examples.dtype == torch.uint8
        assert labels.shape == (4, 2) and examples.min() >= 255 - 11
        assert calls
    assert loader.alive_workers == 0


@pytest.mark.parametrize("frames, channels", [(1, 3), (1, 1), (1, 4), (3, 3)])
def test_loader_workers_apply_a_policy_augmentation_to_every_sample(frames, channels):
    cache = ExampleCache((frames, 4, 4, channels), num_classes=2, capacity=8)
    for index in range(8):
        cache.append(np.full((frames, 4, 4, channels), 10 + index, np.uint8), np.eye(2)[index % 2])
    always_invert = PolicyAugment([SubPolicy(Op("Invert", 1.0, None), Op("Equalize", 0.0, None))], 0)
    with BatchLoader(cache, TrainSampler(cache, np.array([0]), 0), batch_size=4, queue_size=1) as loader:
        loader.set_transform(always_invert.augment_batch)
        batches = [loader.next_batch(timeout=10)[0] for _ in range(5)]  # the first ones may predate the transform
    examples = batches[-1]
    expected_shape = (4, channels, 4, 4) if frames == 1 else (4, frames, channels, 4, 4)
    assert examples.shape == expected_shape and examples.dtype == torch.uint8 and examples.is_contiguous()
    assert int(examples.min()) >= 255 - 17 and int(examples.max()) <= 255 - 11
    assert loader.alive_workers == 0


def test_loader_hands_worker_errors_to_the_consumer_and_ends():
    cache = _filled_cache(3)
    loader = BatchLoader(cache, TrainSampler(cache, np.arange(3), 0), batch_size=2).start()
    with pytest.raises(RuntimeError, match="training batch"):
        loader.next_batch(timeout=10)
    loader.close()
    assert loader.alive_workers == 0


def test_device_set_keeps_order_and_scales():
    examples = np.stack([np.full((1, 2, 2, 1), value, np.uint8) for value in (0, 255, 51)])
    device_set = DeviceSet(examples, None, torch.device("cpu"))
    batches = list(device_set.batches(2))
    assert [tuple(batch.shape) for batch in batches] == [(2, 1, 2, 2), (1, 1, 2, 2)]
    assert torch.cat(batches)[:, 0, 0, 0].tolist() == pytest.approx([0.0, 1.0, 0.2])
    assert to_channels_first(np.zeros((2, 3, 4, 5, 6))).shape == (2, 3, 6, 4, 5)


def test_bridge_reads_plain_iterables_and_rejects_other_things():
    pairs = [(np.zeros((1, 2, 2, 1)), np.eye(2)[0])] * 3
    assert len(list(iterate_numpy(pairs))) == 3
    assert not is_tf_dataset(pairs)
    with pytest.raises(TypeError, match="int"):
        list(iterate_numpy(5))
    with pytest.raises(ValueError, match="pairs"):
        list(iterate_numpy([np.zeros(3)]))


def test_bridge_reads_eager_and_graph_tf_datasets():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).random((5, 1, 2, 2, 1)).astype(np.float32)
    y = np.eye(5, dtype=np.float32)
    eager = tf.data.Dataset.from_tensor_slices((x, y))
    assert is_tf_dataset(eager)
    assert [label.argmax() for _, label in iterate_numpy(eager)] == list(range(5))
    graph = tf.Graph()
    with graph.as_default():
        in_graph = tf.data.Dataset.from_tensor_slices((x, y))
    pairs = list(iterate_numpy(in_graph))
    assert np.allclose(np.stack([example for example, _ in pairs]), x)


def test_bridge_reads_tf1_style_datasets_with_eager_disabled():
    pytest.importorskip("tensorflow")
    script = textwrap.dedent(
        """
        import numpy as np, tensorflow as tf
        tf.compat.v1.disable_eager_execution()
        from autoclint.data.bridge import iterate_numpy
        x = np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2, 1)
        ds = tf.data.Dataset.from_tensor_slices((x, np.eye(3, dtype=np.float32)))
        pairs = list(iterate_numpy(ds))
        assert len(pairs) == 3 and np.allclose(pairs[2][0], x[2]), pairs
        # the whole model, as the platform's TF1-style ingestion drives it
        from model import Model
        from tests.test_trainer import Metadata, easy_task
        train, _ = easy_task(20)
        def to_tf(pairs):
            return tf.data.Dataset.from_tensor_slices((np.stack([a for a, _ in pairs]), np.stack([b for _, b in pairs])))
        model = Model(Metadata(20, 3))
        model.train(to_tf(train), remaining_time_budget=5.0)
        assert model.test(to_tf(train), remaining_time_budget=5.0).shape == (20, 3)
        model.close()
        print("ok")
        """
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "AUTOCLINT_CONFIG": '{"pretrained": false}'}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


def test_no_thread_left_behind():
    before = {thread.name for thread in threading.enumerate()}
    cache = _filled_cache(12)
    loader = BatchLoader(cache, TrainSampler(cache, np.array([0]), 0), batch_size=4, workers=2).start()
    loader.next_batch(timeout=10)
    loader.close()
    assert {thread.name for thread in threading.enumerate()} - before == set()
