"""Ops and augmentation callables: batched per-sample ops equal to torchvision's per-image AutoAugment
ops, one tensor call per op and batch, shape/dtype kept for any channel count, one draw per video, one
per batch sample, deterministic, thread-safe and picklable."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torchvision.transforms.v2 import AutoAugment, InterpolationMode, TrivialAugmentWide
from torchvision.transforms.v2 import functional as F

from autoclint.augment.ops import OP_NAMES, apply_op, apply_ops_batch
from autoclint.augment.pipeline import (
    AugmentStrategy,
    IdentityAugment,
    PolicyAugment,
    TrivialAugment,
    make_augment,
)
from autoclint.augment.policies import CIFAR10_ARCHIVE, Op, SubPolicy

MAGNITUDES = {"Identity": 0.0, "ShearX": 0.2, "ShearY": -0.2, "TranslateX": 3.0, "TranslateY": -3.0,
              "Rotate": 20.0, "Brightness": 0.5, "Color": 0.8, "Contrast": -0.5, "Sharpness": 0.7,
              "Posterize": 3.0, "Solarize": 0.5, "AutoContrast": 0.0, "Equalize": 0.0, "Invert": 0.0}


def smooth_images(*shape: int, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure (a gradient plus noise in a narrow range), so every op changes them."""
    generator = torch.Generator().manual_seed(seed)
    height, width = shape[-2:]
    ramp = torch.linspace(60, 160, width).expand(height, width)
    noise = torch.randint(0, 40, shape, generator=generator)
    return (ramp + noise).clamp(0, 255).to(torch.uint8)


BLEND_OPS = {"Color", "Sharpness"}
"""torchvision blends these with a fused multiply-add; a per-sample factor rounds once more, so a pixel
right at a level's edge may truncate one level lower or higher."""


def torchvision_op(image: torch.Tensor, name: str, magnitude: float) -> torch.Tensor:
    """What torchvision's AutoAugment does to one tensor image (or video) for one op."""
    reference = AutoAugment()
    return reference._apply_image_or_video_transform(
        image, name, magnitude, interpolation=InterpolationMode.NEAREST, fill=reference._fill
    )


def assert_matches_torchvision(out: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    """Equal, or for the blend ops at most one level off on at most 5% of the values."""
    difference = (out.int() - expected.int()).abs()
    if name in BLEND_OPS:
        assert int(difference.max()) <= 1 and float((difference > 0).float().mean()) <= 0.05
    else:
        assert torch.equal(out, expected)


@pytest.mark.parametrize("name", [n for n in OP_NAMES if n != "Identity"])
@pytest.mark.parametrize("channels", [1, 3])
def test_ops_equal_torchvisions_autoaugment_ops(name, channels):
    image = smooth_images(channels, 12, 10)
    assert_matches_torchvision(apply_op(image, name, MAGNITUDES[name]), torchvision_op(image, name, MAGNITUDES[name]),
                               name)


@pytest.mark.parametrize("space", [AutoAugment._AUGMENTATION_SPACE, TrivialAugmentWide._AUGMENTATION_SPACE],
                         ids=["autoaugment", "trivialaugment"])
@pytest.mark.parametrize("shape", [(3, 32, 30), (1, 17, 20), (2, 3, 16, 16)], ids=["rgb", "grey", "video"])
def test_one_call_with_a_magnitude_per_sample_equals_torchvision_on_each_sample(space, shape):
    bins = 10 if space is AutoAugment._AUGMENTATION_SPACE else 31
    for name, (magnitudes_for_bins, signed) in space.items():
        magnitudes = magnitudes_for_bins(bins, shape[-2], shape[-1])
        values = [0.0] if magnitudes is None else [float(m) for m in magnitudes]
        values += [-v for v in values] if signed else []
        batch = smooth_images(len(values), *shape, seed=len(values))
        draws = [((name, value),) for value in values]
        out = apply_ops_batch(batch, draws)
        expected = torch.stack([torchvision_op(sample, name, value) for sample, value in zip(batch, values)])
        assert_matches_torchvision(out, expected, name)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("factory", [lambda: PolicyAugment(CIFAR10_ARCHIVE, 0), lambda: TrivialAugment(0)])
def test_batches_are_augmented_as_torchvision_augments_each_sample_with_its_draw(channels, factory):
    batch = smooth_images(48, channels, 12, 10)
    augment = factory()
    out = augment.augment_batch(batch, rng=np.random.default_rng(5))
    draws = augment.draw_batch(np.random.default_rng(5), len(batch), 12, 10)
    assert sum(bool(draw) for draw in draws) > 12
    for sample, draw, augmented in zip(batch, draws, out):
        expected = sample
        for name, magnitude in draw:
            expected = torchvision_op(expected, name, magnitude)
        blended = any(name in BLEND_OPS for name, _ in draw)
        assert_matches_torchvision(augmented, expected, "Color" if blended else "")


def test_augmenting_leaves_the_input_batch_as_it_was():
    batch = smooth_images(32, 3, 12, 10)
    before = batch.clone()
    out = PolicyAugment(CIFAR10_ARCHIVE, 0).augment_batch(batch)
    assert not torch.equal(out, batch) and torch.equal(batch, before)


class PixelKernelRecorder(TorchDispatchMode):
    """Records the torch ops that compute on a tensor of at least `min_numel` elements (the pixels)."""

    def __init__(self, min_numel: int) -> None:
        super().__init__()
        self.min_numel = min_numel
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        leaves = tree_leaves((args, kwargs or {}))
        if any(isinstance(leaf, torch.Tensor) and leaf.numel() >= self.min_numel for leaf in leaves):
            self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def pixel_kernels(augment, batch_size: int) -> int:
    """How many torch kernels touch pixel-sized tensors while augmenting a batch (once every geometric
    op's pixel map, computed once per size, is cached)."""
    batch = smooth_images(batch_size, 3, 12, 10)
    make_augment("trivialaugment", seed=1).augment_batch(smooth_images(2048, 3, 12, 10))
    with PixelKernelRecorder(min_numel=360) as recorder:
        augment.augment_batch(batch)
    return len(recorder.ops)


@pytest.mark.parametrize("factory", [lambda: make_augment("random", num_random=25, seed=0), lambda: TrivialAugment(0)])
def test_kernel_calls_per_batch_do_not_grow_with_the_batch(factory):
    # one call per op and batch: 8 times the samples, about as many kernels (not 8 times as many)
    small, large = pixel_kernels(factory(), 64), pixel_kernels(factory(), 512)
    assert 0 < large < 1.5 * small
    assert large < 512


@pytest.mark.parametrize("name", OP_NAMES)
@pytest.mark.parametrize("shape", [(1, 12, 10), (3, 12, 10), (4, 12, 10), (2, 3, 9, 9), (5, 4, 8, 8)])
def test_ops_keep_shape_and_dtype_for_any_channel_count_and_video(name, shape):
    images = smooth_images(*shape)
    out = apply_op(images, name, MAGNITUDES[name])
    assert out.shape == images.shape and out.dtype == torch.uint8


@pytest.mark.parametrize("name", ["Brightness", "Sharpness", "AutoContrast", "Posterize", "Rotate"])
def test_ops_on_four_channels_treat_each_channel_like_rgb_does(name):
    image = smooth_images(4, 12, 10)
    out = apply_op(image, name, MAGNITUDES[name])
    assert not torch.equal(out, image)
    assert torch.equal(out[:3], apply_op(image[:3].contiguous(), name, MAGNITUDES[name]))


def test_color_degrades_to_identity_without_rgb_and_contrast_still_works():
    for channels in (2, 4):
        image = smooth_images(channels, 8, 8)
        assert torch.equal(apply_op(image, "Color", 0.9), image)
        assert not torch.equal(apply_op(image, "Contrast", 0.9), image)


def test_bad_input_is_rejected_with_a_clear_message():
    with pytest.raises(TypeError, match="uint8"):
        apply_op(torch.zeros(3, 8, 8), "Invert", 0.0)
    with pytest.raises(ValueError, match="unknown augmentation op 'Blur'"):
        apply_op(torch.zeros(3, 8, 8, dtype=torch.uint8), "Blur", 0.0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        PolicyAugment(CIFAR10_ARCHIVE, 0).augment_batch(torch.zeros(3, 8, 8, dtype=torch.uint8))


ALWAYS_ROTATE = SubPolicy(Op("Rotate", 1.0, 9), Op("Invert", 0.0, None))
ALWAYS_INVERT = SubPolicy(Op("Invert", 1.0, None), Op("Equalize", 0.0, None))


def test_each_op_fires_with_its_probability():
    image = smooth_images(3, 8, 8)
    inverted = PolicyAugment([ALWAYS_INVERT], 0)(image)
    assert torch.equal(inverted, 255 - image)
    never = SubPolicy(Op("Invert", 0.0, None), Op("Rotate", 0.0, 9))
    assert torch.equal(PolicyAugment([never], 0)(image), image)


def test_sub_policy_chosen_uniformly_per_sample():
    image = smooth_images(3, 8, 8)
    batch = image.expand(400, 3, 8, 8).contiguous()
    identity = SubPolicy(Op("Invert", 0.0, None), Op("Invert", 0.0, None))
    out = PolicyAugment([identity, ALWAYS_INVERT], 3).augment_batch(batch)
    inverted = (out == 255 - image).flatten(1).all(dim=1)
    untouched = (out == image).flatten(1).all(dim=1)
    assert bool((inverted | untouched).all())
    assert 150 < int(inverted.sum()) < 250


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_video_frames_share_one_draw(channels):
    frame = smooth_images(channels, 10, 10)
    video = frame.expand(6, channels, 10, 10).contiguous()
    augment = PolicyAugment(CIFAR10_ARCHIVE, 5)
    for _ in range(10):
        out = augment(video)
        assert out.shape == video.shape and out.dtype == torch.uint8
        assert all(torch.equal(out[t], out[0]) for t in range(1, 6))


def test_batch_of_videos_gets_one_draw_per_video():
    frame = smooth_images(3, 10, 10)
    videos = frame.expand(8, 4, 3, 10, 10).contiguous()
    out = PolicyAugment([ALWAYS_ROTATE], 0).augment_batch(videos)
    assert out.shape == videos.shape
    for video in out:
        assert all(torch.equal(video[t], video[0]) for t in range(4))
    rotated_left = [torch.equal(v[0], out[0, 0]) for v in out]
    assert not all(rotated_left)  # the sign is drawn per video


@pytest.mark.parametrize("factory", [lambda seed: PolicyAugment(CIFAR10_ARCHIVE, seed), lambda seed: TrivialAugment(seed)])
def test_same_seed_same_output_other_seed_other_output(factory):
    batch = smooth_images(16, 3, 12, 12)
    first = factory(7).augment_batch(batch)
    assert torch.equal(first, factory(7).augment_batch(batch))
    assert not torch.equal(first, factory(8).augment_batch(batch))
    explicit = factory(1).augment_batch(batch, rng=np.random.default_rng(7))
    assert torch.equal(explicit, factory(2).augment_batch(batch, rng=np.random.default_rng(7)))


def test_pickled_augment_continues_the_same_random_stream():
    batch = smooth_images(8, 3, 12, 12)
    augment = PolicyAugment(CIFAR10_ARCHIVE, 11)
    augment.augment_batch(batch)
    clone = pickle.loads(pickle.dumps(augment))
    assert torch.equal(clone.augment_batch(batch), augment.augment_batch(batch))


@pytest.mark.parametrize("strategy", list(AugmentStrategy))
def test_every_strategy_is_picklable_and_keeps_shape(strategy):
    augment = make_augment(strategy, policies=CIFAR10_ARCHIVE[:2], seed=0)
    clone = pickle.loads(pickle.dumps(augment))
    batch = smooth_images(4, 3, 12, 12)
    out = clone.augment_batch(batch)
    assert out.shape == batch.shape and out.dtype == torch.uint8


def test_concurrent_calls_use_each_draw_once():
    image = smooth_images(3, 12, 12)
    sequential = PolicyAugment(CIFAR10_ARCHIVE, 21)
    expected = sorted(bytes(sequential(image).numpy()) for _ in range(64))
    shared = PolicyAugment(CIFAR10_ARCHIVE, 21)
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda _: bytes(shared(image).numpy()), range(64)))
    assert sorted(outputs) == expected


def test_none_strategy_is_identity():
    batch = smooth_images(4, 3, 8, 8)
    augment = make_augment("none")
    assert isinstance(augment, IdentityAugment)
    sample = batch[0]
    assert augment.augment_batch(batch) is batch and augment(sample) is sample


def test_random_strategy_draws_distinct_sub_policies_from_the_archive():
    augment = make_augment(AugmentStrategy.RANDOM, num_random=3, seed=4)
    assert isinstance(augment, PolicyAugment)
    assert len(set(augment.sub_policies)) == 3
    assert set(augment.sub_policies) <= set(CIFAR10_ARCHIVE)
    assert make_augment("random", seed=4).sub_policies == augment.sub_policies
    assert any(make_augment("random", seed=s).sub_policies != augment.sub_policies for s in range(5, 10))


def test_searched_strategy_uses_exactly_the_given_sub_policies():
    chosen = (CIFAR10_ARCHIVE[3], CIFAR10_ARCHIVE[7])
    augment = make_augment("searched", chosen)
    assert isinstance(augment, PolicyAugment) and augment.sub_policies == chosen
    assert isinstance(make_augment("searched", ()), IdentityAugment)
    with pytest.raises(ValueError, match="searched sub-policies"):
        make_augment("searched", None)


def test_trivialaugment_uses_torchvisions_wide_space_and_changes_images():
    augment = make_augment("trivialaugment", seed=0)
    assert isinstance(augment, TrivialAugment)
    assert set(TrivialAugmentWide._AUGMENTATION_SPACE) <= set(OP_NAMES)
    batch = smooth_images(32, 3, 12, 12)
    out = augment.augment_batch(batch)
    changed = (out != batch).flatten(1).any(dim=1)
    assert int(changed.sum()) > 16  # one op per image, Identity and zero magnitudes only now and then


def test_unknown_strategy_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown augmentation strategy 'autoaugment'"):
        make_augment("autoaugment")
