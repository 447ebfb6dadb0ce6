"""Memory shared with the batch worker processes: an anonymous in-memory file (Linux `memfd_create`)
mapped as numpy arrays.

A process that maps the same file by its descriptor sees every byte written, without copies. Growing
the file keeps the bytes already written in place, so an array can grow without moving its data. Unlike
a /dev/shm segment, a memfd is not bounded by the size of the /dev/shm mount (64 MB in a default Docker
container), only by memory."""

from __future__ import annotations

import mmap
import os
import weakref

import numpy as np

SHARED_MEMORY_AVAILABLE = hasattr(os, "memfd_create")
"""Whether this system can share memory with worker processes this way (Linux)."""


class SharedFile:
    """An anonymous in-memory file: numpy arrays over it are visible to every process that maps it."""

    def __init__(self, name: str, nbytes: int) -> None:
        if not SHARED_MEMORY_AVAILABLE:
            raise OSError("shared memory for worker processes needs os.memfd_create (Linux)")
        self.fd = os.memfd_create(name)  # close-on-exec: passed to a child only when named in pass_fds
        self._closer = weakref.finalize(self, os.close, self.fd)
        self.nbytes = 0
        self.resize(nbytes)

    def resize(self, nbytes: int) -> None:
        """Make the file `nbytes` long (at least one byte); arrays mapped before keep their data and size."""
        self.nbytes = max(1, int(nbytes))
        os.ftruncate(self.fd, self.nbytes)

    def array(self, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
        """A writable array over the start of the file (the file must be large enough)."""
        return map_array(self.fd, shape, dtype)

    def close(self) -> None:
        """Close the descriptor (mapped arrays stay valid until they are freed)."""
        self._closer()


def map_array(fd: int, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A writable numpy array over the first bytes of a file descriptor, shared with every other mapping
    of it; the mapping lives as long as the array."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    nbytes = max(1, count * dtype.itemsize)
    buffer = mmap.mmap(fd, nbytes, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)
