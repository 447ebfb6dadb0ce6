"""What the machine offers and how the model uses it: device, CPU threads, mixed precision, batch workers.

Chosen once from what is found (CUDA or not, the cores this process may use) and logged; on a CPU the
thread count is re-tuned while training, because a core taken by another process makes a team of
spinning OpenMP threads several times slower than one thread fewer.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from autoclint.data.shared import SHARED_MEMORY_AVAILABLE

logger = logging.getLogger(__name__)

MAX_AUTO_WORKERS = 4
MAX_AUTO_PROCESSES = 8
TUNING_STEPS = 6  # timed steps per thread count tried (after one step to settle)
SLOWDOWN_TO_RETUNE = 1.5  # step time over the tuned reference that triggers a new trial
RETUNE_AFTER_STEPS = 30  # steps of sustained slowdown (or speed-up) before a new trial
ABANDON_FACTOR = 2.0  # a thread count whose step takes this many times the best median so far is dropped


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pick_device() -> torch.device:
    """The current CUDA device, with its index (tensors on it report "cuda:0", never "cuda"), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def configure_threads(num_threads: int) -> int:
    """Use `num_threads` intra-op CPU threads (0: every core this process may run on)."""
    if num_threads <= 0:
        num_threads = usable_cores()
    torch.set_num_threads(num_threads)
    return num_threads


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA) and numpy's legacy global generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def worker_count(requested: int, cores: Optional[int] = None, *, processes: bool = False) -> int:
    """Batch workers: `requested`, or when 0 one per core beyond the first, from 1 to 4 threads (more
    would wait on the GIL) or 8 processes.

    The training step keeps the other cores busy; on a 2-core machine one worker keeps up with it.
    """
    if requested > 0:
        return requested
    cores = usable_cores() if cores is None else cores
    return max(1, min(MAX_AUTO_PROCESSES if processes else MAX_AUTO_WORKERS, cores - 1))


def use_worker_processes(kind: str, device: torch.device, cores: Optional[int] = None) -> bool:
    """Whether training batches are built in worker processes (`kind`: auto, threads or processes).

    Automatically on CUDA with at least two cores to spare: there one interpreter's augmentation cannot
    keep up with the GPU. On a CPU the training step needs the cores, and threads start at once, where a
    process first imports torch (seconds). Processes need shared memory (Linux)."""
    if kind == "threads":
        return False
    if not SHARED_MEMORY_AVAILABLE:
        if kind == "processes":
            logger.warning("batch worker processes need os.memfd_create (Linux): using threads")
        return False
    if kind == "processes":
        return True
    cores = usable_cores() if cores is None else cores
    return device.type == "cuda" and cores >= 3


NATIVE_BF16_CAPABILITY = (8, 0)
"""Compute capability from which GPUs run bfloat16 natively (Ampere); older ones only emulate it, slowly."""


def autocast_dtype(device: torch.device) -> Optional[torch.dtype]:
    """Mixed-precision dtype on CUDA: bfloat16 where the GPU runs it natively (Ampere and later), else
    float16 with a loss scaler (V100, T4, P100: `is_bf16_supported` also counts emulation); None (fp32) on CPU."""
    if device.type != "cuda":
        return None
    native = torch.cuda.get_device_capability(device) >= NATIVE_BF16_CAPABILITY
    return torch.bfloat16 if native and torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Precision:
    """How tensors go onto the device and through the network: autocast dtype, memory format, loss scaler."""

    device: torch.device
    dtype: Optional[torch.dtype] = None  # None: float32
    channels_last: bool = False
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)

    @classmethod
    def for_device(cls, device: torch.device) -> "Precision":
        """Mixed precision and channels-last on CUDA, plain float32 elsewhere."""
        return cls(device, autocast_dtype(device), channels_last=device.type == "cuda")

    @property
    def pin_memory(self) -> bool:
        """Whether host batches should be pinned for asynchronous copies."""
        return self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this precision (a no-op for float32)."""
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def to_input(self, examples: torch.Tensor) -> torch.Tensor:
        """A uint8 batch -> float in [0, 1] on the device, channels-last for images when enabled."""
        inputs = examples.to(self.device, non_blocking=True).float().div_(255.0)
        if self.channels_last and inputs.dim() == 4:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        return inputs

    def synchronize(self) -> None:
        """Wait for queued device work, so that measured durations are complete."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def mark(self) -> Optional[torch.cuda.Event]:
        """A marker of the work queued so far on an asynchronous device (a CUDA event); None on a CPU,
        where work is done when the call returns."""
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event()
        event.record()
        return event

    def wait(self, marker: Optional[torch.cuda.Event]) -> None:
        """Wait until the work before `marker` is done (nothing to wait for without one)."""
        if marker is not None:
            marker.synchronize()

    def describe(self) -> str:
        """One line for the log."""
        dtype = "float32" if self.dtype is None else str(self.dtype).replace("torch.", "")
        return f"{self.device}, {dtype}{', channels-last' if self.channels_last else ''}"


@dataclass
class ThreadTuner:
    """Picks the CPU thread count with the fastest training steps, and tries again when the load changes.

    It is told each step's duration (it reads no clock) and answers with a thread count to switch to,
    or None. Candidates go from one thread up (at most three: one, half, max): one thread is never
    catastrophically slow, and a count whose step takes `ABANDON_FACTOR` times the best median so far is
    dropped at once, so a loaded machine wastes a step or two on it, not a whole trial.
    """

    max_threads: int
    current: int = 0
    reference_s: float = 0.0  # mean step time of the chosen count when it was chosen
    _trial: list[int] = field(default_factory=list)
    _timings: dict[int, list[float]] = field(default_factory=dict)
    _settle: int = 1
    _off_reference: int = 0

    def __post_init__(self) -> None:
        self.current = self.current or self.max_threads
        self._start_trial()

    @property
    def candidates(self) -> list[int]:
        """Thread counts worth trying."""
        return sorted({self.max_threads, max(1, self.max_threads // 2), 1})

    @property
    def tuning(self) -> bool:
        """True while thread counts are being compared."""
        return bool(self._trial)

    def _start_trial(self) -> None:
        self._trial = self.candidates if len(self.candidates) > 1 else []
        self._timings = {}
        self._settle = 1

    def observe(self, step_s: float) -> Optional[int]:
        """Take one step's duration at the current thread count; returns a count to switch to, or None."""
        if self._trial:
            return self._observe_trial(step_s)
        if self.reference_s <= 0.0:
            return None
        off = step_s > SLOWDOWN_TO_RETUNE * self.reference_s or step_s < self.reference_s / SLOWDOWN_TO_RETUNE
        self._off_reference = self._off_reference + 1 if off else 0
        if self._off_reference < RETUNE_AFTER_STEPS:
            return None
        logger.info("training steps now take %.3f s against %.3f s when %d threads were chosen: tuning again",
                    step_s, self.reference_s, self.current)
        self._off_reference = 0
        self._start_trial()
        return self._switch_to(self._trial[0])

    def _observe_trial(self, step_s: float) -> Optional[int]:
        if self.current != self._trial[0]:
            return self._switch_to(self._trial[0])
        if self._settle:
            self._settle -= 1
            return None
        timings = self._timings.setdefault(self.current, [])
        timings.append(step_s)
        finished = [float(np.median(times)) for threads, times in self._timings.items() if threads != self.current]
        hopeless = bool(finished) and step_s > ABANDON_FACTOR * min(finished)
        if len(timings) < TUNING_STEPS and not hopeless:
            return None
        self._trial.pop(0)
        if self._trial:
            self._settle = 1
            return self._switch_to(self._trial[0])
        medians = {threads: float(np.median(times)) for threads, times in self._timings.items()}
        best = min(medians, key=medians.get)
        self.reference_s = medians[best]
        logger.info("CPU threads: %d (median step %s)", best,
                    ", ".join(f"{threads} threads {seconds:.3f} s" for threads, seconds in medians.items()))
        return self._switch_to(best)

    def _switch_to(self, threads: int) -> Optional[int]:
        if threads == self.current:
            return None
        self.current = threads
        return threads


def release_cached_memory(device: torch.device) -> None:
    """Collect unreachable tensors and give the CUDA caching allocator's free blocks back (after running
    out of memory); nothing to do on a CPU."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def apply_thread_count(threads: Optional[int]) -> None:
    """Switch torch's intra-op thread pool to `threads` (None: leave it)."""
    if threads is not None:
        torch.set_num_threads(threads)


def describe_machine(device: torch.device, precision: Precision, threads: int, workers: int,
                     processes: bool = False) -> str:
    """One log line: device, precision, CPU threads, batch workers and pinned memory."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{usable_cores()} CPU cores"
    threads = threads or torch.get_num_threads()  # 0: left to torch (on CUDA), which uses this many
    return (f"{name}: {precision.describe()}, {threads} intra-op threads, {workers} batch worker "
            f"{'processes' if processes else 'threads'} (1 intra-op thread each), "
            f"pinned memory {'on' if precision.pin_memory else 'off'}")
