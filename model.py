"""AutoDL entry point: the `Model` class the platform imports; it delegates to autoclint's anytime trainer."""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

import numpy as np

CODE_DIR = os.path.dirname(os.path.abspath(__file__))
if CODE_DIR not in sys.path:  # the platform imports this file from the submission directory
    sys.path.insert(0, CODE_DIR)

from autoclint.config import load_config  # noqa: E402
from autoclint.trainer import Trainer  # noqa: E402


class Model:
    """AutoCLINT: train(dataset, remaining_time_budget), test(dataset, remaining_time_budget), done_training."""

    def __init__(self, metadata: Any) -> None:
        """Build the controller from the training metadata and the configuration found beside this file."""
        self.metadata = metadata
        self._trainer = Trainer(metadata, load_config(CODE_DIR), code_dir=CODE_DIR)

    @property
    def done_training(self) -> bool:
        """True when the model will not improve further within the budget."""
        return self._trainer.done_training

    def train(self, dataset: Any, remaining_time_budget: Optional[float] = None) -> None:
        """Train for one time slice on the training dataset (tf.data or an iterable of numpy pairs)."""
        self._trainer.train(dataset, remaining_time_budget)

    def test(self, dataset: Any, remaining_time_budget: Optional[float] = None) -> Optional[np.ndarray]:
        """Predictions (num_test, output_dim) in test-record order, from the best checkpoint so far."""
        return self._trainer.test(dataset, remaining_time_budget)

    def close(self) -> None:
        """Stop background threads (optional: they are daemons)."""
        self._trainer.close()
