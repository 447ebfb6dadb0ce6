"""ResNet classifier of the method: input stem, torchvision ResNet backbone, optional temporal head, logits / τ.

Stem: normalise with mean 0.5 and std 0.25; one channel is copied to three; other channel counts
differing from three go through a 3×3 convolution + BN to three. Video clips [B,T,C,H,W] are folded
into the batch, the per-frame features pass a temporal 1-D convolution and are averaged over time.
"""

from __future__ import annotations

from torch import nn
import torch
from torchvision import models

from autoclint.config import ModelConfig
from autoclint.plan import Plan

INPUT_MEAN = 0.5
INPUT_STD = 0.25


class InputStem(nn.Module):
    """Normalise [0, 1] inputs and bring them to the three channels the backbone expects."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.adapter: nn.Module | None = None
        if in_channels not in (1, 3):
            self.adapter = nn.Sequential(
                nn.Conv2d(in_channels, 3, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(3)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] in [0, 1] -> normalised [B,3,H,W]."""
        x = (x - INPUT_MEAN) / INPUT_STD
        if self.in_channels == 1:
            return x.expand(-1, 3, -1, -1)
        if self.adapter is not None:
            return self.adapter(x)
        return x


class TemporalHead(nn.Module):
    """Per-frame features [B,T,F] -> temporal 1-D convolution -> average over time -> [B,F]."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(features, features, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(features),
            nn.ReLU(inplace=True),
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,T,F] -> [B,F]."""
        return self.conv(frames.transpose(1, 2)).mean(dim=2)


class AutoClintNet(nn.Module):
    """The full classifier: stem, backbone (its `fc` replaced), temporal head for video, `fc`, division by τ."""

    def __init__(self, arch: str, in_channels: int, num_classes: int, tau: float = 8.0, video: bool = False) -> None:
        super().__init__()
        self.stem = InputStem(in_channels)
        self.backbone = models.get_model(arch, weights=None)
        features = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        self.temporal = TemporalHead(features) if video else None
        self.fc = nn.Linear(features, num_classes, bias=False)
        nn.init.xavier_normal_(self.fc.weight)
        self.tau = tau

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Annealed logits [B,K] of images [B,C,H,W] or clips [B,T,C,H,W] in [0, 1]."""
        if self.temporal is not None:
            batch, frames = x.shape[:2]
            features = self.backbone(self.stem(x.flatten(0, 1)))
            features = self.temporal(features.view(batch, frames, -1))
        else:
            features = self.backbone(self.stem(x))
        # The classifier and τ in float32, outside autocast: scores, NAUC and the TTA and blend choices
        # are computed from these logits, which bfloat16 would round to 8 bits of mantissa.
        with torch.autocast(features.device.type, enabled=False):
            return self.fc(features.float()) / self.tau


def build_network(plan: Plan, config: ModelConfig) -> AutoClintNet:
    """The network for a plan (weights not loaded: see autoclint.nn.weights)."""
    return AutoClintNet(config.arch, plan.channels, plan.num_classes, config.tau, video=plan.is_video)
