"""The one clock of a run: the absolute end of the budget, measured durations, and "does it still fit?".

Every time decision of the model goes through a `Budget`. It is told the remaining budget by each
platform call (the platform's clock is the authority), records how long training steps, validation
and test passes and reading took, and answers with planned durations: a measured duration times
`duration_margin`, applied once. `now` is injectable, so tests never sleep.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

Clock = Callable[[], float]

EMA_WEIGHT = 0.1
"""Weight of the newest measurement in a duration's running mean."""


class Kind(str, enum.Enum):
    """What a measured duration is of; each is recorded per unit."""

    STEP = "step"  # one training step
    FORWARD = "forward"  # one example through the network in evaluation mode (validation passes)
    TEST_PASS = "test_pass"  # one pass over the test set
    READ = "read"  # reading and converting one example


@dataclass
class Duration:
    """Running statistics of one kind of duration (seconds per unit)."""

    last: float = 0.0
    mean: float = 0.0
    count: int = 0

    def add(self, seconds: float) -> None:
        """Record one measurement. The first one of a kind also pays one-off costs (kernel selection,
        allocations, new shapes): it stands until the second, which replaces it instead of joining the mean."""
        self.mean = seconds if self.count <= 1 else (1.0 - EMA_WEIGHT) * self.mean + EMA_WEIGHT * seconds
        self.last = seconds
        self.count += 1

    @property
    def typical(self) -> float:
        """The slower of the last measurement and the running mean: a machine that slows down shows at once."""
        return max(self.last, self.mean)


class Budget:
    """The end of the budget and the measured cost of the work that has to fit before it."""

    def __init__(self, safety_margin_s: float, duration_margin: float, now: Clock = time.monotonic) -> None:
        if duration_margin < 1.0:
            raise ValueError(f"duration_margin must be at least 1, got {duration_margin!r}")
        self.safety_margin_s = safety_margin_s
        self.duration_margin = duration_margin
        self._now = now
        self.end = math.inf
        self._durations = {kind: Duration() for kind in Kind}

    def now(self) -> float:
        """The current time of this clock."""
        return self._now()

    def set_remaining(self, remaining_s: Optional[float]) -> None:
        """Anchor the end of the budget to what the platform says is left (None: no limit)."""
        self.end = math.inf if remaining_s is None else self._now() + remaining_s

    def time_left(self) -> float:
        """Seconds until the end of the budget."""
        return self.end - self._now()

    def fits(self, seconds: float) -> bool:
        """Whether work planned to take `seconds` ends before the budget's end less the safety margin."""
        return self._now() + seconds <= self.end - self.safety_margin_s

    def deadline(self, reserve_s: float = 0.0) -> float:
        """When work must stop so that `reserve_s` of later work (e.g. a test call) still fits."""
        return self.end - self.safety_margin_s - reserve_s

    def record(self, kind: Kind, seconds: float, units: float = 1.0) -> None:
        """Record that `units` of `kind` took `seconds` in all."""
        if units > 0:
            self._durations[kind].add(seconds / units)

    def measured(self, kind: Kind) -> Optional[float]:
        """Typical measured seconds per unit of `kind` (None before any measurement)."""
        duration = self._durations[kind]
        return duration.typical if duration.count else None

    def count(self, kind: Kind) -> int:
        """How many measurements of `kind` were recorded."""
        return self._durations[kind].count

    def planned(self, seconds: float) -> float:
        """A measured or estimated duration with the margin for noise applied (once)."""
        return self.duration_margin * seconds
