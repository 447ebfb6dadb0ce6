"""Network of the method (ResNet + stem adapters + temporal head + τ), its losses and weight loading."""

from autoclint.nn.losses import make_loss, predict_scores
from autoclint.nn.network import AutoClintNet, build_network
from autoclint.nn.weights import WeightsError, init_backbone_weights, load_backbone_weights, weights_file_name

__all__ = [
    "AutoClintNet",
    "WeightsError",
    "build_network",
    "init_backbone_weights",
    "load_backbone_weights",
    "make_loss",
    "predict_scores",
    "weights_file_name",
]
