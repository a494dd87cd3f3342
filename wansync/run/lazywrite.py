"""Which sidecar writes may wait: a poll that changed nothing but its counters.

docs/folders.md: a poll that changes only `polls`, `last_polled` and `next_poll` may reach the
sidecar up to 5 s late; a change of `state`, `task_status` or `error` is written at once.
Most polls of a real task are such polls (RUNNING, then RUNNING again). Writing them in
one batch a second instead of one by one is what makes the daemon's CPU per poll about
half (docs/performance.md): a lone write right after a sleep costs about three times
a write in a run of writes (cold caches on a busy machine), and each write is an inotify
event that wakes the watcher's threads, once per batch instead of once per poll.

Pure bookkeeping with `now` passed in (monotonic seconds): the caller does the writing.
A write that waits is at most `FLUSH_EVERY` late while the loop runs; `kill -9` may lose
those counters (never a state change: that was written at once); a stop writes them all.
"""

from __future__ import annotations

from typing import Any

FLUSH_EVERY = 1.0  # seconds: how late a waiting write may be (docs/folders.md allows 5)

Signature = tuple[Any, Any, Any]


def signature(data: dict[str, Any]) -> Signature:
    """What must reach the file at once when it changes: state, task_status, error."""
    return (data.get("state"), data.get("task_status"), data.get("error"))


class LazyWrites:
    """Per task: what the file on disk says, and since when a newer poll waits for it."""

    def __init__(self) -> None:
        self._on_disk: dict[str, Signature] = {}
        self._waiting: dict[str, float] = {}  # name -> when its oldest unwritten poll came

    def write_now(self, name: str, data: dict[str, Any], now: float) -> bool:
        """After a poll: True if the sidecar must be written now; else it waits (noted)."""
        if self._on_disk.get(name) != signature(data):
            return True
        self._waiting.setdefault(name, now)
        return False

    def written(self, name: str, data: dict[str, Any]) -> None:
        """The sidecar now holds `data` (written now, in a flush, or by any other event)."""
        self._on_disk[name] = signature(data)
        self._waiting.pop(name, None)

    def forget(self, name: str) -> None:
        """The task is no longer tracked: nothing of it may be written any more."""
        self._on_disk.pop(name, None)
        self._waiting.pop(name, None)

    def next_flush(self) -> float | None:
        """When the loop must flush (the oldest waiting write is then `FLUSH_EVERY` late)."""
        if not self._waiting:
            return None
        return next(iter(self._waiting.values())) + FLUSH_EVERY

    def take_due(self, now: float) -> list[str]:
        """Every waiting name once the oldest is due (one batch), else nothing. The names
        stop waiting: the caller writes them (and calls `written` when that worked)."""
        when = self.next_flush()
        if when is None or now < when:
            return []
        return self.take_all()

    def take_all(self) -> list[str]:
        """Every waiting name, due or not (a stop writes them all)."""
        names = list(self._waiting)
        self._waiting.clear()
        return names
