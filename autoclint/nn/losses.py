"""Training losses: cross-entropy for single-label tasks, positive/negative balanced BCE for multilabel."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class MulticlassLoss(nn.Module):
    """Cross-entropy of the (annealed) logits against the index of each one-hot label row."""

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of a batch."""
        return F.cross_entropy(logits, labels.argmax(dim=1))


class BalancedMultilabelLoss(nn.Module):
    """Sigmoid BCE where positives and negatives weigh equally: their mean losses are averaged.

    Multilabel targets are mostly zeros; plain BCE would learn to predict "absent" everywhere.
    """

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Average of the mean positive and the mean negative BCE terms of a batch."""
        losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
        positive = labels > 0.5
        positive_loss = (losses * positive).sum() / positive.sum().clamp(min=1)
        negative_loss = (losses * ~positive).sum() / (~positive).sum().clamp(min=1)
        return 0.5 * (positive_loss + negative_loss)


def make_loss(is_multilabel: bool) -> nn.Module:
    """The loss for the task type."""
    return BalancedMultilabelLoss() if is_multilabel else MulticlassLoss()


def predict_scores(logits: torch.Tensor, is_multilabel: bool) -> torch.Tensor:
    """Class scores from the annealed logits: sigmoid (multilabel) or softmax (multiclass)."""
    return torch.sigmoid(logits) if is_multilabel else torch.softmax(logits, dim=1)
