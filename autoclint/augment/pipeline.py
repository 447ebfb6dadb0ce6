"""Augmentation callables for the training pipeline: no augmentation, a set of AutoAugment
sub-policies (random or searched) and TrivialAugmentWide, chosen by `make_augment`.

Every callable takes one sample (an image [C, H, W] or a video [T, C, H, W], whose frames share one
random draw) or, through `augment_batch`, a batch [N, ...] with an independent draw per sample. The
random draws come from a seeded numpy Generator guarded by a lock (thread-safe, deterministic for a
given seed and call order) or from a generator passed to the call; objects pickle with their state.

Grey and RGB samples on the CPU go through the PIL kernels of the same torchvision ops (as AutoAugment
on PIL images), converted with numpy: the batch workers then never start an OpenMP team of their own
to compete with the training step for the cores. Other channel counts use the tensor kernels."""

from __future__ import annotations

import enum
import logging
import threading
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torchvision.transforms.v2 import TrivialAugmentWide

from autoclint.augment.ops import PIL_CHANNELS, apply_op, apply_ops_with_pil, check_uint8_images
from autoclint.augment.policies import CIFAR10_ARCHIVE, SubPolicy, is_signed, op_magnitude
from autoclint.config import AUGMENTATIONS

logger = logging.getLogger(__name__)

RandomSource = Union[np.random.Generator, int, None]
OpDraw = tuple[str, float]
"""One op to apply: its name and signed magnitude."""

_TRIVIAL_AUGMENT_SPACE = TrivialAugmentWide._AUGMENTATION_SPACE


AugmentStrategy = enum.Enum(  # the names are defined once, in autoclint.config.AUGMENTATIONS
    "AugmentStrategy", {name.upper(): name for name in AUGMENTATIONS}, type=str, module=__name__
)
AugmentStrategy.__doc__ = "How the training data is augmented: none, random, searched or trivialaugment."


def as_generator(rng: RandomSource) -> np.random.Generator:
    """A numpy Generator from a seed, an existing generator (used as is) or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


class Augment:
    """Base of the augmentation callables: draws ops per sample, then applies them with the op set."""

    def __init__(self, rng: RandomSource = None) -> None:
        self._rng = as_generator(rng)
        self._lock = threading.Lock()

    def __call__(self, sample: torch.Tensor, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        """Augment one uint8 image [C, H, W] or video [T, C, H, W] (one draw for all frames);
        `rng` overrides the object's own generator for this call."""
        check_uint8_images(sample)
        height, width = sample.shape[-2:]
        (draw,) = self._draws(1, height, width, rng)
        return self._apply(sample, draw)

    def augment_batch(self, batch: torch.Tensor, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        """Augment each sample of a uint8 batch [N, C, H, W] or [N, T, C, H, W] with its own draw
        (returns the batch itself when no op fires for any sample)."""
        check_uint8_images(batch)
        if batch.ndim < 4:
            raise ValueError(f"augment_batch expects [N, C, H, W] or [N, T, C, H, W], got shape {tuple(batch.shape)}")
        height, width = batch.shape[-2:]
        draws = self._draws(batch.shape[0], height, width, rng)
        if not any(draws):
            return batch
        if takes_pil_path(batch):
            array = batch.numpy()
            result = array.copy()
            for index, draw in enumerate(draws):
                if draw:
                    result[index] = self._apply_with_pil(array[index], draw)
            return torch.from_numpy(result)
        return torch.stack([self._apply(sample, draw) for sample, draw in zip(batch, draws)])

    def _draws(
        self, count: int, height: int, width: int, rng: Optional[np.random.Generator]
    ) -> list[tuple[OpDraw, ...]]:
        """Draw the ops of `count` samples from the given generator, or from our own under the lock."""
        if rng is not None:
            return [self.draw(rng, height, width) for _ in range(count)]
        with self._lock:
            return [self.draw(self._rng, height, width) for _ in range(count)]

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[OpDraw, ...]:
        """The ops (name, signed magnitude) to apply to one sample of the given size."""
        raise NotImplementedError

    def _apply(self, sample: torch.Tensor, draw: tuple[OpDraw, ...]) -> torch.Tensor:
        if draw and takes_pil_path(sample):
            return torch.from_numpy(self._apply_with_pil(sample.numpy(), draw))
        for name, magnitude in draw:
            sample = apply_op(sample, name, magnitude)
        return sample

    def _apply_with_pil(self, sample: np.ndarray, draw: tuple[OpDraw, ...]) -> np.ndarray:
        return apply_ops_with_pil(sample, draw)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def takes_pil_path(images: torch.Tensor) -> bool:
    """Whether uint8 images [..., C, H, W] are augmented as PIL images: grey or RGB, in CPU memory."""
    return images.device.type == "cpu" and images.shape[-3] in PIL_CHANNELS


class IdentityAugment(Augment):
    """No augmentation: returns its input unchanged (the same tensor)."""

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[OpDraw, ...]:
        return ()

    def __repr__(self) -> str:
        return "IdentityAugment()"


class PolicyAugment(Augment):
    """AutoAugment-style policy: per sample, one sub-policy picked uniformly, its two ops applied in
    turn, each with its probability and a random sign for signed magnitudes (as torchvision does)."""

    def __init__(self, sub_policies: Sequence[SubPolicy], rng: RandomSource = None) -> None:
        super().__init__(rng)
        self.sub_policies = tuple(sub_policies)
        if not self.sub_policies:
            raise ValueError("PolicyAugment needs at least one sub-policy")
        for sub_policy in self.sub_policies:
            if not isinstance(sub_policy, SubPolicy):
                raise TypeError(f"PolicyAugment expects SubPolicy items, got {type(sub_policy).__name__}")

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[OpDraw, ...]:
        sub_policy = self.sub_policies[int(rng.integers(len(self.sub_policies)))]
        chosen = []
        for op in sub_policy.ops:
            if not rng.random() < op.probability:
                continue
            magnitude = op_magnitude(op, height, width)
            if is_signed(op.name) and rng.random() < 0.5:
                magnitude = -magnitude
            chosen.append((op.name, magnitude))
        return tuple(chosen)

    def __repr__(self) -> str:
        return f"PolicyAugment({len(self.sub_policies)} sub-policies)"


class TrivialAugment(Augment):
    """TrivialAugmentWide: one op drawn uniformly from torchvision's wide space with a uniform
    magnitude bin, drawn from our seeded generator so that it is reproducible and thread-safe."""

    def __init__(self, rng: RandomSource = None, *, num_magnitude_bins: int = 31) -> None:
        super().__init__(rng)
        self.num_magnitude_bins = num_magnitude_bins

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[OpDraw, ...]:
        names = tuple(_TRIVIAL_AUGMENT_SPACE)
        name = names[int(rng.integers(len(names)))]
        magnitudes_for_bins, signed = _TRIVIAL_AUGMENT_SPACE[name]
        magnitudes = magnitudes_for_bins(self.num_magnitude_bins, height, width)
        if magnitudes is None:
            return ((name, 0.0),)
        magnitude = float(magnitudes[int(rng.integers(self.num_magnitude_bins))])
        if signed and rng.random() < 0.5:
            magnitude = -magnitude
        return ((name, magnitude),)

    def __repr__(self) -> str:
        return "TrivialAugment()"


def make_augment(
    strategy: Union[AugmentStrategy, str],
    policies: Optional[Sequence[SubPolicy]] = None,
    *,
    archive: Sequence[SubPolicy] = CIFAR10_ARCHIVE,
    num_random: int = 3,
    seed: int = 0,
) -> Augment:
    """The augmentation of a strategy: `none`; `random` (`num_random` sub-policies drawn from the
    archive, no search); `searched` (the given sub-policies; none found means no augmentation);
    `trivialaugment` (TrivialAugmentWide)."""
    try:
        strategy = AugmentStrategy(strategy)
    except ValueError:
        known = ", ".join(s.value for s in AugmentStrategy)
        raise ValueError(f"unknown augmentation strategy {strategy!r}; known: {known}") from None
    rng = np.random.default_rng(seed)
    if strategy is AugmentStrategy.NONE:
        return IdentityAugment(rng)
    if strategy is AugmentStrategy.TRIVIALAUGMENT:
        return TrivialAugment(rng)
    if strategy is AugmentStrategy.RANDOM:
        chosen = sample_sub_policies(archive, num_random, rng)
        logger.info("random augmentation with sub-policies %s", chosen)
        return PolicyAugment(chosen, rng)
    if policies is None:
        raise ValueError("the 'searched' augmentation strategy needs the searched sub-policies")
    if not policies:
        logger.info("the policy search kept no sub-policy; training without augmentation")
        return IdentityAugment(rng)
    return PolicyAugment(policies, rng)


def sample_sub_policies(
    archive: Sequence[SubPolicy], count: int, rng: np.random.Generator
) -> tuple[SubPolicy, ...]:
    """`count` distinct sub-policies drawn uniformly from the archive (RandomChoice(S, C))."""
    if not 0 < count <= len(archive):
        raise ValueError(f"cannot draw {count} sub-policies from an archive of {len(archive)}")
    indices = rng.choice(len(archive), size=count, replace=False)
    return tuple(archive[int(i)] for i in indices)
