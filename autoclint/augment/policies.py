"""The policy archive S: AutoAugment's sub-policies found on CIFAR-10, read from torchvision, and the
mapping from a magnitude bin to an op's magnitude exactly as torchvision's AutoAugment does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

NUM_MAGNITUDE_BINS = 10
"""AutoAugment discretises every magnitude range into this many bins (0 = weakest)."""

_AUTOAUGMENT_SPACE = AutoAugment._AUGMENTATION_SPACE


@dataclass(frozen=True)
class Op:
    """One image operation of a sub-policy: its AutoAugment name, the probability of applying it and
    its magnitude bin (0..9, None for ops without a magnitude such as Equalize)."""

    name: str
    probability: float
    magnitude: Optional[int]

    def __post_init__(self) -> None:
        if self.name not in _AUTOAUGMENT_SPACE:
            raise ValueError(f"unknown AutoAugment op {self.name!r}; known: {sorted(_AUTOAUGMENT_SPACE)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"op {self.name}: probability {self.probability} is outside [0, 1]")
        if self.magnitude is not None and not 0 <= self.magnitude < NUM_MAGNITUDE_BINS:
            raise ValueError(f"op {self.name}: magnitude bin {self.magnitude} is outside 0..{NUM_MAGNITUDE_BINS - 1}")


@dataclass(frozen=True)
class SubPolicy:
    """Two ops applied in turn, each with its own probability (AutoAugment's unit of policy)."""

    first: Op
    second: Op

    @property
    def ops(self) -> tuple[Op, Op]:
        """Both ops in the order they are applied."""
        return (self.first, self.second)


def load_archive(policy: AutoAugmentPolicy = AutoAugmentPolicy.CIFAR10) -> tuple[SubPolicy, ...]:
    """Read the sub-policies that torchvision ships for an AutoAugment policy (25 for CIFAR-10)."""
    pairs = AutoAugment(policy)._policies
    return tuple(SubPolicy(Op(*first), Op(*second)) for first, second in pairs)


CIFAR10_ARCHIVE: tuple[SubPolicy, ...] = load_archive(AutoAugmentPolicy.CIFAR10)
"""The archive S of the paper: AutoAugment's policies searched on CIFAR-10."""


def is_signed(op_name: str) -> bool:
    """Whether AutoAugment flips the op's magnitude to negative half of the time (shear, rotate...)."""
    return _AUTOAUGMENT_SPACE[op_name][1]


def op_magnitude(op: Op, height: int, width: int) -> float:
    """The unsigned magnitude of an op for an image of the given size (translations scale with it);
    0.0 for ops without a magnitude."""
    magnitudes_for_bins = _AUTOAUGMENT_SPACE[op.name][0]
    magnitudes = magnitudes_for_bins(NUM_MAGNITUDE_BINS, height, width)
    if magnitudes is None or op.magnitude is None:
        return 0.0
    return float(magnitudes[op.magnitude])
