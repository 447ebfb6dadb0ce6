"""The policy archive matches torchvision's AutoAugment CIFAR-10 policy, bins map to its magnitudes."""

import math

import pytest
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

from autoclint.augment.policies import CIFAR10_ARCHIVE, Op, SubPolicy, is_signed, load_archive, op_magnitude


# Sub-policies of AutoAugment's CIFAR-10 policy (Cubuk et al. 2019) by position, written out independently of
# the archive: (name, probability, magnitude bin) pairs, magnitude None for ops without one.
PUBLISHED_CIFAR10 = {
    0: (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    4: (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    9: (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    14: (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    19: (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    24: (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
}


def test_archive_is_autoaugments_cifar10_policy():
    assert len(CIFAR10_ARCHIVE) == 25 and len(set(CIFAR10_ARCHIVE)) == 25
    assert all(isinstance(sp, SubPolicy) for sp in CIFAR10_ARCHIVE)
    for position, (first, second) in PUBLISHED_CIFAR10.items():
        assert CIFAR10_ARCHIVE[position] == SubPolicy(Op(*first), Op(*second)), position
    for sub_policy in CIFAR10_ARCHIVE:
        for op in (sub_policy.first, sub_policy.second):
            assert 0.0 <= op.probability <= 1.0 and round(op.probability * 10) == op.probability * 10
            assert op.magnitude is None or op.magnitude in range(10)
            is_signed(op.name)  # an op of AutoAugment's search space


def test_other_torchvision_policies_load():
    assert len(load_archive(AutoAugmentPolicy.SVHN)) == 25
    assert load_archive(AutoAugmentPolicy.SVHN) != CIFAR10_ARCHIVE


def test_sub_policies_are_hashable_and_compare_by_value():
    first = SubPolicy(Op("Rotate", 0.7, 2), Op("TranslateX", 0.3, 9))
    again = SubPolicy(Op("Rotate", 0.7, 2), Op("TranslateX", 0.3, 9))
    assert first == again and hash(first) == hash(again)
    assert first == CIFAR10_ARCHIVE[1]


@pytest.mark.parametrize(
    "op, height, width, expected",
    [
        (Op("Rotate", 1.0, 9), 32, 32, 30.0),  # AutoAugment: up to 30 degrees
        (Op("Rotate", 1.0, 0), 32, 32, 0.0),
        (Op("TranslateX", 1.0, 9), 10, 331, 150.0),  # 150 pixels of a 331-wide image
        (Op("TranslateY", 1.0, 9), 331, 10, 150.0),
        (Op("ShearX", 1.0, 9), 32, 32, 0.3),
        (Op("Color", 1.0, 9), 32, 32, 0.9),
        (Op("Posterize", 1.0, 0), 32, 32, 8.0),
        (Op("Posterize", 1.0, 9), 32, 32, 4.0),
        (Op("Solarize", 1.0, 0), 32, 32, 1.0),
        (Op("Solarize", 1.0, 9), 32, 32, 0.0),
        (Op("Equalize", 1.0, None), 32, 32, 0.0),
    ],
)
def test_magnitude_bins_follow_autoaugment(op, height, width, expected):
    assert math.isclose(op_magnitude(op, height, width), expected, abs_tol=1e-5)


def test_signed_ops_are_the_geometric_and_enhance_ones():
    assert is_signed("Rotate") and is_signed("ShearX") and is_signed("Color")
    assert not is_signed("Solarize") and not is_signed("Posterize") and not is_signed("Invert")


@pytest.mark.parametrize(
    "args, message",
    [(("Blur", 0.5, 1), "unknown AutoAugment op"), (("Rotate", 1.5, 1), "probability"), (("Rotate", 0.5, 10), "bin")],
)
def test_bad_ops_are_rejected_with_a_clear_message(args, message):
    with pytest.raises(ValueError, match=message):
        Op(*args)
