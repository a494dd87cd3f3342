"""A self-pipe the main loop sleeps on: any thread, and a signal handler, can wake it.

`threading.Event` is not enough: a signal handler that calls `Event.set()` while the
main thread is inside `Event.wait()` deadlocks on the condition's lock. A byte written
to a non-blocking pipe takes no lock at all.

A wake-up is not free: on a busy machine the loop's first steps after a sleep run on cold
caches (docs/performance.md). `nudge` lets a result that can wait a few milliseconds
ride on a wake-up the loop has planned anyway, so at 50 polls/s one wake-up both reads
a poll's answer and starts the next poll.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import time

AWAKE = math.inf  # `_asleep_until` while the loop is not inside `wait`


class Waker:
    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._asleep_until = AWAKE

    def set(self) -> None:
        """Wake the sleeper (safe from threads and signal handlers; never blocks)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"\0")

    def nudge(self, within: float) -> None:
        """Wake the sleeper unless it wakes by itself within `within` seconds anyway.

        Post the result first, then nudge. No result is left waiting longer than
        `within`: while the loop is awake (it may have looked at its queue already)
        `_asleep_until` is AWAKE and the nudge writes its byte; once it sleeps, the
        nudge sees the true end of that sleep.
        """
        if self._asleep_until - time.monotonic() > within:
            self.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` passes; returns True if woken. Drains the pipe."""
        timeout = max(0.0, timeout)
        self._asleep_until = time.monotonic() + timeout
        try:
            ready, _, _ = select.select([self._r], [], [], timeout)
        finally:
            self._asleep_until = AWAKE
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._r, 4096):
                    pass
        return bool(ready)

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
