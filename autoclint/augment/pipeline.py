"""Augmentation callables for the training pipeline: no augmentation, a set of AutoAugment
sub-policies (random or searched) and TrivialAugmentWide, chosen by `make_augment`.

Every callable takes one sample (an image [C, H, W] or a video [T, C, H, W], whose frames share one
random draw) or, through `augment_batch`, a batch [N, ...] with an independent draw per sample. The
random draws come from a seeded numpy Generator guarded by a lock (thread-safe, deterministic for a
given seed and call order) or from a generator passed to the call; objects pickle with their state.

The draws are applied by `apply_ops_batch`: one tensor call per op and batch, on whatever device the
batch is, so that the batch workers (CPU) and the policy search (CPU or GPU) run the same code."""

from __future__ import annotations

import enum
import functools
import logging
import threading
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torchvision.transforms.v2 import TrivialAugmentWide

from autoclint.augment.ops import OpDraw, apply_ops_batch, check_uint8_images
from autoclint.augment.policies import CIFAR10_ARCHIVE, SubPolicy, is_signed, op_magnitude
from autoclint.config import AUGMENTATIONS

logger = logging.getLogger(__name__)

RandomSource = Union[np.random.Generator, int, None]
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
        batch = sample.unsqueeze(0)
        augmented = self.augment_batch(batch, rng)
        return sample if augmented is batch else augmented[0]

    def augment_batch(self, batch: torch.Tensor, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        """Augment each sample of a uint8 batch [N, C, H, W] or [N, T, C, H, W] with its own draw, one
        tensor call per op (returns the batch itself when no op fires for any sample)."""
        check_uint8_images(batch)
        if batch.ndim < 4:
            raise ValueError(f"augment_batch expects [N, C, H, W] or [N, T, C, H, W], got shape {tuple(batch.shape)}")
        height, width = batch.shape[-2:]
        return apply_ops_batch(batch, self._draws(batch.shape[0], height, width, rng))

    def _draws(
        self, count: int, height: int, width: int, rng: Optional[np.random.Generator]
    ) -> list[tuple[OpDraw, ...]]:
        """Draw the ops of `count` samples from the given generator, or from our own under the lock."""
        if rng is not None:
            return self.draw_batch(rng, count, height, width)
        with self._lock:
            return self.draw_batch(self._rng, count, height, width)

    def draw_batch(self, rng: np.random.Generator, count: int, height: int, width: int) -> list[tuple[OpDraw, ...]]:
        """The ops of `count` samples of the given size (one `draw` each unless a subclass draws them at once)."""
        return [self.draw(rng, height, width) for _ in range(count)]

    def draw(self, rng: np.random.Generator, height: int, width: int) -> tuple[OpDraw, ...]:
        """The ops (name, signed magnitude) to apply to one sample of the given size."""
        raise NotImplementedError

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


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
        return self.draw_batch(rng, 1, height, width)[0]

    def draw_batch(self, rng: np.random.Generator, count: int, height: int, width: int) -> list[tuple[OpDraw, ...]]:
        """Per sample: a sub-policy, whether each of its ops fires and each op's sign, drawn for the
        whole batch in three generator calls."""
        chosen = rng.integers(len(self.sub_policies), size=count)
        fires = rng.random((count, 2))
        negative = rng.random((count, 2)) < 0.5
        table = _signed_op_table(self.sub_policies, height, width)
        draws = []
        for sample in range(count):
            ops = table[chosen[sample]]
            draws.append(tuple(
                (name, -magnitude if signed and negative[sample, slot] else magnitude)
                for slot, (name, magnitude, signed, probability) in enumerate(ops)
                if fires[sample, slot] < probability
            ))
        return draws

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
        signed = _TRIVIAL_AUGMENT_SPACE[name][1]
        magnitudes = _trivial_magnitudes(name, self.num_magnitude_bins, height, width)
        if magnitudes is None:
            return ((name, 0.0),)
        magnitude = magnitudes[int(rng.integers(self.num_magnitude_bins))]
        if signed and rng.random() < 0.5:
            magnitude = -magnitude
        return ((name, magnitude),)

    def __repr__(self) -> str:
        return "TrivialAugment()"


@functools.lru_cache(maxsize=256)
def _trivial_magnitudes(name: str, bins: int, height: int, width: int) -> Optional[tuple[float, ...]]:
    """TrivialAugmentWide's unsigned magnitude per bin of an op for an image size (None: no magnitude)."""
    magnitudes = _TRIVIAL_AUGMENT_SPACE[name][0](bins, height, width)
    return None if magnitudes is None else tuple(float(m) for m in magnitudes)


@functools.lru_cache(maxsize=256)
def _signed_op_table(
    sub_policies: tuple[SubPolicy, ...], height: int, width: int
) -> tuple[tuple[tuple[str, float, bool, float], ...], ...]:
    """Per sub-policy, its ops as (name, unsigned magnitude, signed, probability) for an image size."""
    return tuple(
        tuple((op.name, op_magnitude(op, height, width), is_signed(op.name), op.probability) for op in sub_policy.ops)
        for sub_policy in sub_policies
    )


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
