"""The relay's clock: the one authority on when a session has ended.

The relay never trusts the browser's or the agent's idea of time; every expiry decision reads a
:class:`Clock` passed in at construction. :class:`SystemClock` is wall time (``time.time``) for
comparisons with token and ticket ``exp`` claims, and sleeps on the event loop's monotonic clock
so that a wall-clock step cannot stretch a wait by more than the step itself. Tests pass a
:class:`ManualClock` and move time by hand, so a 30-minute expiry is tested in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Wall time in seconds since the epoch, and a way to wait until a moment of it."""

    def now(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep_until(self, moment: float) -> None:
        """Return once :meth:`now` has reached ``moment``."""
        ...


class SystemClock:
    """The real clock. Waits re-check wall time, so an NTP step cannot delay an expiry much."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, moment: float) -> None:
        while True:
            remaining = moment - time.time()
            if remaining <= 0:
                return
            # re-check at least every 5 s so that a wall-clock jump forward is seen promptly
            await asyncio.sleep(min(remaining, 5.0))


class ManualClock:
    """A clock that only moves when :meth:`advance` or :meth:`set` is called (for tests)."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._changed = asyncio.Event()

    def now(self) -> float:
        return self._now

    def set(self, moment: float) -> None:
        self._now = moment
        self._changed.set()
        self._changed = asyncio.Event()

    def advance(self, seconds: float) -> None:
        self.set(self._now + seconds)

    async def sleep_until(self, moment: float) -> None:
        while self._now < moment:
            await self._changed.wait()
