"""What the controller chose, as one object that maps raw examples to class probabilities.

A `Predictor` holds the input plan (the `ExampleConverter`: raw example -> uint8 at the planned shape),
the best checkpoint's network, the fast learner, the network's share of the blend, flip TTA on or off,
and the class priors used when no candidate beats chance. `Model.test` (through the trainer, which keeps
per-version caches of the two score matrices) and `ImageClassifier.predict_proba` both combine scores
here, so a prediction is computed the same way wherever it is made.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np
import torch
from torch import nn

from autoclint.budget import Budget
from autoclint.candidates import BLEND, FAST_LEARNER, NETWORK, blend
from autoclint.data.convert import ExampleConverter
from autoclint.data.device_set import DeviceSet
from autoclint.early import FastLearner
from autoclint.evaluate import EvalSettings, scores, timed_test_pass
from autoclint.hardware import Precision

logger = logging.getLogger(__name__)

PRIORS = "class priors"
PREDICT_CHUNK = 1024
"""Examples converted and scored at once by `predict_proba`: bounds the memory of large inputs."""
NO_LABEL = np.zeros(0, np.float32)


@dataclass
class Predictor:
    """Raw examples -> probabilities: converter, network and/or fast learner, blend weight, TTA, priors.

    `network_weight` is the network's share of the probabilities (1: network alone, 0: fast learner
    alone); None means neither candidate beat chance on validation and the class priors are predicted.
    """

    converter: ExampleConverter
    net: Optional[nn.Module]
    fast: Optional[FastLearner]
    network_weight: Optional[float]
    use_tta: bool
    num_classes: int
    multilabel: bool
    priors: np.ndarray
    precision: Precision
    batch_size: int = 256
    valid_nauc: float = float("nan")

    def __post_init__(self) -> None:
        if self.network_weight is not None:
            if self.network_weight > 0.0 and self.net is None:
                raise ValueError("a predictor with a network share needs the network")
            if self.network_weight < 1.0 and self.fast is None:
                raise ValueError("a predictor with a fast-learner share needs the fast learner")

    @property
    def uses_network(self) -> bool:
        """Whether the network's scores enter the prediction."""
        return self.network_weight is not None and self.network_weight > 0.0

    @property
    def uses_fast(self) -> bool:
        """Whether the fast learner's scores enter the prediction."""
        return self.network_weight is not None and self.network_weight < 1.0

    @property
    def source(self) -> str:
        """Which candidate predicts: the network, the fast learner, their blend or the class priors."""
        if self.network_weight is None:
            return PRIORS
        if self.network_weight >= 1.0:
            return NETWORK
        return FAST_LEARNER if self.network_weight <= 0.0 else BLEND

    def describe(self) -> str:
        """One line: what predicts, at which input shape, with which validation score."""
        what = self.source
        if what == BLEND:
            what += f" (network weight {self.network_weight:.2f})"
        if self.uses_network and self.use_tta:
            what += " with flip TTA"
        frames, height, width, channels = self.converter.shape
        video = f"{frames} frames of " if frames > 1 else ""
        score = "" if np.isnan(self.valid_nauc) else f", validation NAUC {self.valid_nauc:.4f}"
        kind = "multilabel" if self.multilabel else "multiclass"
        return f"{what} on {video}{height}x{width}x{channels} inputs, {self.num_classes} classes ({kind}){score}"

    # ------------------------------------------------------------------ the parts of a prediction

    def eval_settings(self) -> EvalSettings:
        """Evaluation batch size and task type of the network pass."""
        return EvalSettings(self.batch_size, self.multilabel, self.use_tta)

    def network_scores(self, device_set: DeviceSet, budget: Optional[Budget] = None) -> np.ndarray:
        """The network's scores of a converted set; timed (TTA only where the budget leaves time) when a
        budget is given."""
        if budget is not None:
            return timed_test_pass(self.net, device_set, self.precision, self.eval_settings(), budget, self.use_tta)
        return scores(self.net, device_set, self.precision, self.eval_settings(), self.use_tta)

    def fast_scores(self, examples: np.ndarray) -> np.ndarray:
        """The fast learner's probabilities of converted uint8 examples [N,T,H,W,C]."""
        return self.fast.predict(examples)

    def combine(self, network: Optional[np.ndarray], fast: Optional[np.ndarray], count: int) -> np.ndarray:
        """The prediction from the parts' scores: the blend at the chosen weight, or the priors."""
        if self.network_weight is None:
            return np.tile(self.priors.astype(np.float32), (count, 1))
        return blend(network, fast, self.network_weight)

    # ------------------------------------------------------------------ whole predictions

    def convert(self, examples: Iterable[np.ndarray]) -> np.ndarray:
        """Raw examples [T,H,W,C] (any size, any value range the plan knows) -> uint8 [N,T,H,W,C]."""
        pairs = ((example, NO_LABEL) for example in examples)
        converted = [chunk for chunk, _ in self.converter.convert_chunks(pairs)]
        if not converted:
            return np.zeros((0, *self.converter.shape), np.uint8)
        return np.concatenate(converted)

    def predict_converted(self, examples: np.ndarray) -> np.ndarray:
        """Probabilities [N, num_classes] of converted uint8 examples."""
        if len(examples) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        network = fast = None
        if self.uses_network:
            network = self.network_scores(DeviceSet(examples, None, self.precision.device))
        if self.uses_fast:
            fast = self.fast_scores(examples)
        return np.asarray(self.combine(network, fast, len(examples)), dtype=np.float32)

    def predict_proba(self, examples: Iterable[np.ndarray]) -> np.ndarray:
        """Probabilities [N, num_classes] of raw examples [T,H,W,C], converted and scored in chunks."""
        parts, chunk = [], []
        for example in examples:
            chunk.append(example)
            if len(chunk) == PREDICT_CHUNK:
                parts.append(self.predict_converted(self.convert(chunk)))
                chunk = []
        if chunk or not parts:
            parts.append(self.predict_converted(self.convert(chunk)))
        return np.concatenate(parts)

    def to(self, precision: Precision) -> "Predictor":
        """This predictor with its network on another device and precision (for a loaded model)."""
        if self.net is not None:
            memory_format = torch.channels_last if precision.channels_last else torch.contiguous_format
            self.net = self.net.to(precision.device, memory_format=memory_format).eval()
        self.precision = precision
        return self
