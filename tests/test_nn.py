"""Network stem, temporal head, τ, losses and ImageNet weight loading (with a generated stand-in file)."""

import logging

import pytest
import torch
import torchvision

from autoclint.nn import AutoClintNet, WeightsError, init_backbone_weights, load_backbone_weights, weights_file_name
from autoclint.nn.losses import BalancedMultilabelLoss, MulticlassLoss, make_loss, predict_scores
from autoclint.nn.weights import WEIGHTS_ENV


@pytest.mark.parametrize("channels", [1, 3, 5])
def test_image_network_output_shape_and_channel_adapter(channels):
    net = AutoClintNet("resnet18", channels, num_classes=4).eval()
    assert net(torch.rand(2, channels, 16, 16)).shape == (2, 4)
    assert (net.stem.adapter is not None) == (channels == 5)


def test_fc_has_no_bias_and_logits_are_divided_by_tau():
    torch.manual_seed(0)
    annealed = AutoClintNet("resnet18", 3, 4, tau=8.0).eval()
    plain = AutoClintNet("resnet18", 3, 4, tau=1.0).eval()
    plain.load_state_dict(annealed.state_dict())
    assert annealed.fc.bias is None
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(annealed(x) * 8.0, plain(x), atol=1e-5)


def test_video_network_folds_frames_into_the_batch():
    net = AutoClintNet("resnet18", 3, num_classes=2, video=True).eval()
    assert net(torch.rand(2, 4, 3, 16, 16)).shape == (2, 2)
    assert net.temporal is not None


def test_losses_and_scores():
    logits = torch.tensor([[4.0, -4.0], [-4.0, 4.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert MulticlassLoss()(logits, labels) < MulticlassLoss()(-logits, labels)
    assert isinstance(make_loss(True), BalancedMultilabelLoss)
    # one rare positive counts as much as all the negatives together
    rare = torch.zeros(1, 20)
    rare[0, 0] = 1.0
    missed = torch.full((1, 20), -3.0)
    assert BalancedMultilabelLoss()(missed, rare) > 1.0
    assert torch.allclose(predict_scores(logits, False).sum(dim=1), torch.ones(2))
    assert predict_scores(logits, True).max() < 1.0


def test_weights_file_name_is_torchvisions():
    assert weights_file_name("resnet18") == "resnet18-f37072fd.pth"


def test_stand_in_weights_load_into_all_but_fc(tmp_path, monkeypatch):
    reference = torchvision.models.resnet18()
    path = tmp_path / weights_file_name("resnet18")
    torch.save(reference.state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    net = AutoClintNet("resnet18", 3, num_classes=7)
    assert init_backbone_weights(net.backbone, "resnet18", code_dir=None) == path
    assert torch.equal(net.backbone.conv1.weight, reference.conv1.weight)
    assert torch.equal(net.backbone.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert net.fc.weight.shape == (7, 512)


def test_weights_are_found_beside_model_py(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    (tmp_path / "models").mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "models" / weights_file_name("resnet18"))
    net = AutoClintNet("resnet18", 3, num_classes=2)
    assert init_backbone_weights(net.backbone, "resnet18", code_dir=tmp_path) is not None


def test_wrong_weights_name_the_file_and_the_keys(tmp_path):
    state = torchvision.models.resnet18().state_dict()
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del state["layer1.0.bn1.bias"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    net = AutoClintNet("resnet18", 3, num_classes=2)
    with pytest.raises(WeightsError) as error:
        load_backbone_weights(net.backbone, path)
    message = str(error.value)
    assert "bad.pth" in message and "conv1.weight" in message and "layer1.0.bn1.bias" in message


def test_missing_weights_warn_once_and_keep_random_init(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    net = AutoClintNet("resnet18", 3, num_classes=2)
    with caplog.at_level(logging.WARNING):
        assert init_backbone_weights(net.backbone, "resnet18", code_dir=tmp_path) is None
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "random" in warnings[0].getMessage()
