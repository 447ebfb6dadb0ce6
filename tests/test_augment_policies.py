"""The policy archive matches torchvision's AutoAugment CIFAR-10 policy, bins map to its magnitudes."""

import math

import pytest
from torchvision.transforms.v2 import AutoAugment, AutoAugmentPolicy

from autoclint.augment.policies import CIFAR10_ARCHIVE, Op, SubPolicy, is_signed, load_archive, op_magnitude


def test_archive_is_torchvisions_cifar10_policy():
    expected = AutoAugment(AutoAugmentPolicy.CIFAR10)._policies
    assert len(CIFAR10_ARCHIVE) == 25
    as_tuples = [
        ((sp.first.name, sp.first.probability, sp.first.magnitude),
         (sp.second.name, sp.second.probability, sp.second.magnitude))
        for sp in CIFAR10_ARCHIVE
    ]
    assert as_tuples == list(expected)
    assert all(isinstance(sp, SubPolicy) for sp in CIFAR10_ARCHIVE)


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
