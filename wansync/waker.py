"""A self-pipe the main loop sleeps on: any thread, and a signal handler, can wake it.

`threading.Event` is not enough: a signal handler that calls `Event.set()` while the
main thread is inside `Event.wait()` deadlocks on the condition's lock. A byte written
to a non-blocking pipe takes no lock at all.
"""

from __future__ import annotations

import contextlib
import os
import select


class Waker:
    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def set(self) -> None:
        """Wake the sleeper (safe from threads and signal handlers; never blocks)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"\0")

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` passes; returns True if woken. Drains the pipe."""
        ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
        if ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._r, 4096):
                    pass
        return bool(ready)

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
