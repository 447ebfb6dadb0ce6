"""Validation and test sets prepared once as uint8 tensors on the device, read in float batches."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from autoclint.data.batches import to_channels_first


class DeviceSet:
    """A fixed set of examples kept on the device (uint8, channels first) with optional labels."""

    def __init__(self, examples: np.ndarray, labels: np.ndarray | None, device: torch.device) -> None:
        tensor = to_channels_first(np.ascontiguousarray(examples))
        memory_format = torch.channels_last if device.type == "cuda" and tensor.dim() == 4 else torch.contiguous_format
        self.examples = tensor.to(device).contiguous(memory_format=memory_format)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)

    def __len__(self) -> int:
        return self.examples.shape[0]

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """Float batches in [0, 1], in order."""
        for start in range(0, len(self), batch_size):
            yield to_float(self.examples[start : start + batch_size])


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> float32 in [0, 1] on the same device, keeping its memory format."""
    return batch.float().div_(255.0)
