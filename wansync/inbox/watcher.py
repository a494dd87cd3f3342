"""Inbox watching: watchdog events → a queue of (kind, path); the daemon rescans as a net.

Handlers only enqueue (an exception inside a handler would silently kill the observer
thread), and the daemon checks `healthy()` before telling systemd it is healthy.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from wansync.files.jobfile import is_job_name
from wansync.files.taskfile import is_task_name

READY, CHANGED, GONE = "ready", "changed", "gone"
EVENT_KINDS = [FileCreatedEvent, FileClosedEvent, FileMovedEvent, FileDeletedEvent]


class _Handler(FileSystemEventHandler):
    def __init__(self, out: queue.SimpleQueue[tuple[str, Path]], wake: Callable[[], None]) -> None:
        self.out = out
        self.wake = wake

    def _put(self, kind: str, path: str | bytes) -> None:
        p = Path(path.decode() if isinstance(path, bytes) else path)
        if is_task_name(p.name) or is_job_name(p.name):
            self.out.put((kind, p))
            self.wake()

    def on_closed(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put(READY, event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put(GONE, event.src_path)
            self._put(READY, event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put(CHANGED, event.src_path)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self._put(GONE, event.src_path)


class InboxWatcher:
    """Starts the observer before the first scan, so nothing falls between the two."""

    def __init__(self, inbox: Path, wake: Callable[[], None], polling: bool = False) -> None:
        self.inbox = inbox
        self.events: queue.SimpleQueue[tuple[str, Path]] = queue.SimpleQueue()
        self._handler = _Handler(self.events, wake)
        self._observer = PollingObserver(timeout=1.0) if polling else Observer()
        self.polling = polling
        self._identity: tuple[int, int] | None = None
        self._checked = 0.0

    def start(self) -> None:
        st = self.inbox.stat()
        self._identity = (st.st_dev, st.st_ino)
        # Ask the kernel only for what we act on: our own sidecar rewrites in the inbox
        # would otherwise cost a modify/open/close-nowrite event each, on every poll.
        self._observer.schedule(
            self._handler, str(self.inbox), recursive=False, event_filter=EVENT_KINDS
        )
        self._observer.daemon = True
        self._observer.start()

    def healthy(self) -> bool:
        """The observer and its emitters run, and the inbox is still the folder we watch.

        An exception in a handler ends the observer; deleting the folder does not always
        end the emitter (not while a file in it is open, as our lock is), hence the stat.
        Asked on every tick, it looks at most once a second while the answer is yes.
        """
        now = time.monotonic()
        if now - self._checked < 1.0:
            return True
        healthy = self._healthy_now()
        self._checked = now if healthy else 0.0
        return healthy

    def _healthy_now(self) -> bool:
        if not (self._observer.is_alive() and all(e.is_alive() for e in self._observer.emitters)):
            return False
        try:
            st = self.inbox.stat()
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self._identity

    def stop(self) -> None:
        self._observer.stop()

    def drain(self) -> list[tuple[str, Path]]:
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out
