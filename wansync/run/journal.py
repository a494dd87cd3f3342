"""The sidecars follow the events: each transition of a live task rewrites its file.

A write that fails (a full disk) never reaches the loop: it is logged once
(`sidecar.write_error`), the task goes on in memory, and the write is tried again
later (every `RETRY_EVERY` seconds) until it works. First sidecars of tasks found at
start-up are written in batches between ticks (`flush`), not one per event; so are the
polls that changed only their counters (`lazywrite`: once a second, docs/folders.md allows 5 s), in
slices that end before the next poll is due, so that the polls keep their pace.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from wansync import log
from wansync.core import events as ev
from wansync.core.tracker import Tracker
from wansync.files import sidecar
from wansync.files.folderguard import FolderReplaced
from wansync.run.lazywrite import LazyWrites
from wansync.run.publish import Folders

RETRY_EVERY = 5.0  # seconds between tries of a sidecar that could not be written

Writer = Callable[..., None]


class Journal:
    """An event consumer that keeps each live task's sidecar up to date."""

    def __init__(
        self,
        tracker: Tracker,
        folders: Folders,
        clock: Callable[[], float],
        write: Writer = sidecar.write,
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
                    if task and not self.lazy.write_now(name, task.data, self.clock()):
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

    def save(self, name: str, durable: bool = True) -> bool:
        """Write `name`'s sidecar now; on failure keep it pending. True if written."""
        task = self.tracker.get(name)
        if task is None or task.state in sidecar.TERMINAL_STATES:
            self.lazy.forget(name)
            return True
        try:
            self._write(self.folders.sidecar(name), task.data, durable=durable)
        except OSError as exc:
            self._failed(name, task.task_id, exc)
            return False
        self.lazy.written(name, task.data)
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
