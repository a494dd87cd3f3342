"""The sidecars follow the events: each transition of a live task rewrites its file.

This is the one module that decides when a live task's sidecar is written (the
pipeline only changes the record and emits the event). A write that fails (a full
disk) never reaches the loop: it is logged once (`sidecar.write_error`), the task goes
on in memory, and the write is tried again later (every `RETRY_EVERY` seconds) until it
works. First sidecars of tasks found at start-up, and of tasks whose error an auth pause
set (`later`), are written in batches between ticks (`flush`), not one per event; so are the polls
that changed only their counters (`LazyWrites`: once a second), in slices that end
before the next poll is due, so that the polls keep their pace.

Which writes may wait: a poll that changes only `polls`, `last_polled` and `next_poll`
may reach the sidecar up to 5 s late (docs/folders.md); a change of `state`,
`task_status` or `error` is written at once. Most polls of a real task are such polls
(RUNNING, then RUNNING again). Writing them in one batch a second instead of one by one
is what makes the daemon's CPU per poll about half (docs/performance.md): a lone write
right after a sleep costs about three times a write in a run of writes (cold caches on a
busy machine), and each write is an inotify event that wakes the watcher's threads, once
per batch instead of once per poll. A write that waits is at most `FLUSH_EVERY` late
while the loop runs; `kill -9` may lose those counters (never a state change: that was
written at once); a stop writes them all.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from pathlib import Path

from wansync import log
from wansync.core import events as ev
from wansync.core.record import ErrorInfo, TaskRecord
from wansync.core.tracker import Tracker
from wansync.files import sidecar
from wansync.files.folderguard import FolderReplaced
from wansync.run.publish import Folders

RETRY_EVERY = 5.0  # seconds between tries of a sidecar that could not be written
FLUSH_EVERY = 1.0  # seconds: how late a waiting write may be (docs/folders.md allows 5)

Writer = Callable[[Path, TaskRecord, bool], None]


def _write(path: Path, record: TaskRecord, durable: bool) -> None:
    sidecar.write(path, record, durable=durable)


class Journal:
    """An event consumer that keeps each live task's sidecar up to date."""

    def __init__(
        self,
        tracker: Tracker,
        folders: Folders,
        clock: Callable[[], float],
        write: Writer = _write,
    ) -> None:
        self.tracker = tracker
        self.folders = folders
        self.clock = clock  # monotonic: the flush budget and the retry time
        self._write = write
        self._failing: dict[str, float] = {}  # name -> when to try again
        self.lazy = LazyWrites()
        self._batch: deque[str] = deque()  # lazy writes taken for a flush, not yet written
        self.log = log.get("wansync.daemon")

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.TaskDiscovered(name=name):
                self.tracker.unsaved[name] = None  # batched: start-up may find 10,000
            case ev.TaskPolled(name=name, task_status=status):
                if status in ("PENDING", "RUNNING"):
                    task = self.tracker.get(name)
                    if task and not self.lazy.write_now(name, task.record, self.clock()):
                        return  # only its counters changed: written with the next batch
                self.save(name, durable=status not in ("PENDING", "RUNNING"))
            case ev.TaskSucceeded(name=name) | ev.TaskFailed(name=name) | ev.TaskRemoved(name=name):
                self.lazy.forget(name)
            case ev.TaskTransientError(name=name) | ev.DownloadStarted(name=name):
                self.save(name)
            case ev.DownloadProgress(name=name):
                self.save(name, durable=False)
            case _:
                pass

    def later(self, names: tuple[str, ...]) -> None:
        """Records changed with no event of their own: written with the next batch."""
        self.tracker.unsaved.update(dict.fromkeys(n for n in names if n in self.tracker))

    def save(self, name: str, durable: bool = True) -> bool:
        """Write `name`'s sidecar now; on failure keep it pending. True if written."""
        task = self.tracker.get(name)
        if task is None or task.state in sidecar.TERMINAL_STATES:
            self.lazy.forget(name)
            return True
        try:
            self._write(self.folders.sidecar(name), task.record, durable)
        except OSError as exc:
            self._failed(name, task.task_id, exc)
            return False
        self.lazy.written(name, task.record)
        if self._failing.pop(name, None) is not None:
            self.log.info("sidecar.written", name=name, detail="the sidecar could be written again")
        return True

    def _failed(self, name: str, task_id: str, exc: OSError) -> None:
        # A replaced inbox is said once for the folder (folder.replaced), not per task.
        if name not in self._failing and not isinstance(exc, FolderReplaced):
            self.log.error(
                "sidecar.write_error",
                name=name,
                task_id=task_id,
                error=f"{type(exc).__name__}: {exc.strerror or exc}",
                detail=f"the task goes on; trying again every {int(RETRY_EVERY)} s",
            )
        self._failing[name] = self.clock() + RETRY_EVERY
        self.tracker.unsaved.pop(name, None)

    def pending(self) -> bool:
        """Is there a sidecar to write now (the loop must not sleep)?"""
        return bool(self.tracker.unsaved or self._batch)

    def next_retry(self) -> float | None:
        """When the journal needs a tick: a failed write's retry, or the lazy batch."""
        soonest = min((*self._failing.values(), self.lazy.next_flush() or math.inf))
        return None if soonest == math.inf else soonest

    def flush(self, budget: float, until: float | None = None, final: bool = False) -> None:
        """Write pending sidecars for at most `budget` seconds, and lazy ones (the batch
        that is due; all of them if `final`) until `until` (monotonic: the next poll).
        None is fsynced: a task whose first sidecar is lost in a power cut is simply
        discovered again, and lost counters come back with the next poll."""
        start = self.clock()
        now = start
        self._batch.extend(self.lazy.take_all() if final else self.lazy.take_due(now))
        while self._batch and (final or self.clock() < min(until or math.inf, start + budget)):
            self.save(self._batch.popleft(), durable=False)
        for name, at in list(self._failing.items()):
            if at <= now and name not in self.tracker:
                del self._failing[name]
            elif at <= now:
                self.save(name)
        unsaved = self.tracker.unsaved
        while unsaved and self.clock() - start < budget:
            name = next(iter(unsaved))
            del unsaved[name]
            self.save(name, durable=False)


Signature = tuple[str, str | None, ErrorInfo | None]


def signature(record: TaskRecord) -> Signature:
    """What must reach the file at once when it changes: state, task_status, error."""
    return (record.state, record.task_status, record.error)


class LazyWrites:
    """Per task: what the file on disk says, and since when a newer poll waits for it."""

    def __init__(self) -> None:
        self._on_disk: dict[str, Signature] = {}
        self._waiting: dict[str, float] = {}  # name -> when its oldest unwritten poll came

    def write_now(self, name: str, record: TaskRecord, now: float) -> bool:
        """After a poll: True if the sidecar must be written now; else it waits (noted)."""
        if self._on_disk.get(name) != signature(record):
            return True
        self._waiting.setdefault(name, now)
        return False

    def written(self, name: str, record: TaskRecord) -> None:
        """The sidecar now holds `record` (written now, in a flush, or by any other event)."""
        self._on_disk[name] = signature(record)
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
