"""What a person hands the classifier, as examples the trainer reads: float32 [T,H,W,C] arrays.

Accepted: one array [N,H,W] (grey), [N,H,W,C] (images) or [N,T,H,W,C] (video); or a list whose items
are arrays ([H,W], [H,W,C] or [T,H,W,C], sizes may differ) or image file paths. uint8 pixels and image
files are scaled to 0..1; other values are kept as they are (the input plan maps their range). Examples
are made one at a time, when read, so that a large folder of photos is never decoded all at once.
"""

from __future__ import annotations

import os
from typing import Any, Iterator, Sequence

import numpy as np

from autoclint.autodl.images import read_image_array, read_image_file

IMAGE_RANKS = {2: "[H,W]", 3: "[H,W,C]", 4: "[T,H,W,C]"}


class StoredImage:
    """An image file inside a folder or zip tree, decoded when its pixels are asked for."""

    def __init__(self, tree: Any, path: str) -> None:
        self.tree, self.path = tree, path

    def pixels(self) -> np.ndarray:
        """uint8 [H,W,C] pixels as a viewer shows them."""
        return read_image_array(self.tree.read(self.path), f"{self.tree.source}: {self.path}")

    def __str__(self) -> str:
        return self.path


def as_example(item: Any) -> np.ndarray:
    """One item (array, image file path or stored image) as a float32 example [T,H,W,C]."""
    if isinstance(item, (str, os.PathLike)):
        return to_float(read_image_file(item))[None]
    if isinstance(item, StoredImage):
        return to_float(item.pixels())[None]
    array = np.asarray(item)
    if array.ndim not in IMAGE_RANKS:
        raise ValueError(f"an example must be {', '.join(IMAGE_RANKS.values())} or an image file path, "
                         f"got an array of shape {array.shape}")
    array = to_float(array)
    if array.ndim == 2:
        array = array[:, :, None]
    return array[None] if array.ndim == 3 else array


def to_float(array: np.ndarray) -> np.ndarray:
    """float32 values: uint8 pixels scaled to 0..1, anything else as it is."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"examples must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


class Examples(Sequence):
    """The examples of X, made on access (file paths are read then)."""

    def __init__(self, X: Any) -> None:
        if isinstance(X, np.ndarray):
            if X.ndim not in (3, 4, 5):
                raise ValueError(f"X as one array must be [N,H,W], [N,H,W,C] or [N,T,H,W,C], got shape {X.shape}")
            self._items: Sequence[Any] = X[..., None] if X.ndim == 3 else X
        elif isinstance(X, (str, os.PathLike)):
            raise ValueError("X must be a sequence of examples or image file paths, not a single path")
        else:
            self._items = list(X)
        if len(self._items) == 0:
            raise ValueError("X holds no examples")

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return as_example(self._items[index])

    def __iter__(self) -> Iterator[np.ndarray]:
        for item in self._items:
            yield as_example(item)

    def describe(self, index: int) -> str:
        """How the example at `index` is named in messages: its file path, else its position."""
        item = self._items[index]
        if isinstance(item, (str, os.PathLike, StoredImage)):
            return str(item)
        return f"example {index}"
