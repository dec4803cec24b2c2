"""One clock, injected everywhere time matters.

Everything that needs "now" takes a Clock, so tests drive time with FakeClock instead of
sleeping, and the emulated fleet can replay any moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch, UTC."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to. Safe to share between threads."""

    def __init__(self, start: float) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock does not go backwards; advance by zero or more seconds")
        with self._lock:
            self._now += seconds
            return self._now

    def sleep(self, seconds: float) -> None:
        """What waiting means on a fake clock: it moves on, at once."""
        self.advance(max(seconds, 0.0))

    def set(self, epoch_seconds: float) -> float:
        with self._lock:
            if epoch_seconds < self._now:
                raise ValueError("a clock does not go backwards; set a time at or after now")
            self._now = float(epoch_seconds)
            return self._now


class ResumedClock:
    """A clock that runs on at wall speed from `start`: the time after an emulated run ended
    (the demo's dashboard once its agent has stopped), so ages keep growing instead of freezing.
    `monotonic` is injectable for tests."""

    def __init__(self, start: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._start, self._monotonic = float(start), monotonic
        self._origin = monotonic()

    def now(self) -> float:
        return self._start + (self._monotonic() - self._origin)
