"""SGD with a linear warm-up and a reduce-on-plateau drop on the training loss (paper §3.1.1).

An "epoch" is a fixed number of steps. `restore_initial_lr()` returns to the initial rate without a
new warm-up, as the method does after the augmentation search.
"""

from __future__ import annotations

import logging

from torch import nn, optim
from torch.optim.lr_scheduler import LinearLR, ReduceLROnPlateau

from autoclint.config import ModelConfig

logger = logging.getLogger(__name__)


def make_sgd(model: nn.Module, lr: float, config: ModelConfig) -> optim.SGD:
    """SGD with the configured momentum, nesterov and weight decay."""
    return optim.SGD(
        model.parameters(),
        lr=lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )


class LRSchedule:
    """Warm-up over `warmup_epochs` epochs (per step), then ×`factor` after `patience` epochs of flat loss."""

    def __init__(
        self,
        optimizer: optim.Optimizer,
        steps_per_epoch: int,
        warmup_epochs: int = 5,
        patience: int = 10,
        factor: float = 0.1,
    ) -> None:
        self.optimizer = optimizer
        self.initial_lr = optimizer.param_groups[0]["lr"]
        self._patience = patience
        self._factor = factor
        self._warmup_steps = max(0, warmup_epochs * steps_per_epoch)
        self._warmup: LinearLR | None = None
        if self._warmup_steps > 0:
            self._warmup = LinearLR(optimizer, start_factor=1.0 / self._warmup_steps, total_iters=self._warmup_steps)
        self._steps = 0
        self._plateau = self._new_plateau()

    def _new_plateau(self) -> ReduceLROnPlateau:
        # torch counts the epochs it tolerates; the drop comes on the `patience`-th flat epoch
        return ReduceLROnPlateau(self.optimizer, mode="min", factor=self._factor, patience=max(0, self._patience - 1))

    @property
    def lr(self) -> float:
        """Current learning rate."""
        return self.optimizer.param_groups[0]["lr"]

    @property
    def warming_up(self) -> bool:
        """True during the warm-up steps."""
        return self._warmup is not None and self._steps < self._warmup_steps

    def step(self) -> None:
        """Advance after one optimiser step (drives the warm-up)."""
        self._steps += 1
        if self._warmup is not None and self._steps <= self._warmup_steps:
            self._warmup.step()

    def end_epoch(self, train_loss: float) -> None:
        """Report one epoch's mean training loss (drives the plateau drop once warm-up is over)."""
        if self.warming_up:
            return
        before = self.lr
        self._plateau.step(train_loss)
        if self.lr < before:
            logger.info("training loss plateaued: learning rate %.3g -> %.3g", before, self.lr)

    def restore_initial_lr(self) -> None:
        """Back to the initial learning rate at once (no warm-up) with a fresh plateau tracker."""
        self._warmup = None
        for group in self.optimizer.param_groups:
            group["lr"] = self.initial_lr
        self._plateau = self._new_plateau()
