"""A few daemon threads reading work from a queue: the daemon's only concurrency.

`attempt` is the one wrapper every worker's I/O runs in: whatever happens, the main
loop gets an outcome (the value, or a typed error), and the worker thread lives on.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from wansync.core.effects import StartDownload, StartPoll
from wansync.core.errors import (
    DownloadInterrupted,
    Stopping,
    TransientError,
    WansyncError,
    internal,
)
from wansync.core.messages import (
    DownloadDone,
    Downloaded,
    DownloadProgress,
    DownloadStarted,
    Mailbox,
    PollDone,
)
from wansync.remote.api import TaskApi, TaskReport
from wansync.remote.download import Downloader

T = TypeVar("T")
Item = TypeVar("Item")


def attempt(
    work: Callable[[], T], unexpected: type[WansyncError] = TransientError
) -> T | WansyncError:
    """`work()`, or the error it ended with as a value.

    A disk error becomes `unexpected` with its text; any other exception is a bug,
    reported as `unexpected` with code `InternalError` (a create request passes
    `SubmitAmbiguous`, so a bug can never make it be sent twice).
    """
    try:
        return work()
    except WansyncError as exc:
        return exc
    except OSError as exc:
        return unexpected(f"disk error: {exc.strerror or type(exc).__name__}")
    except Exception as exc:
        return internal(exc, unexpected)


@dataclass
class Workers(Generic[Item]):
    """A few daemon threads reading items from a queue; they never block the exit."""

    name: str
    count: int
    job: Callable[[Item], None]
    items: queue.SimpleQueue[Item | None] = field(default_factory=queue.SimpleQueue)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for i in range(self.count):
            t = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self) -> None:
        while True:
            item = self.items.get()
            if item is None:
                return
            self.job(item)

    def submit(self, item: Item) -> None:
        self.items.put(item)

    def stop(self, grace: float) -> None:
        for _ in self.threads:
            self.items.put(None)
        deadline = time.monotonic() + grace
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


# -- the I/O of a poll and of a download (run on worker threads) -----------------------
RESULT_MAY_WAIT = 0.05  # seconds a PENDING/RUNNING answer may wait for the loop
PROGRESS_EVERY = 5.0  # seconds between progress messages of one download


def poll_io(api: TaskApi, mailbox: Mailbox) -> Callable[[StartPoll], None]:
    """A poll worker: one request, its outcome posted as `PollDone`."""

    def run(job: StartPoll) -> None:
        began = time.monotonic()
        outcome = attempt(lambda: api.fetch(job.task_id))
        seconds = time.monotonic() - began
        done = PollDone(job.name, job.task_id, job.started, job.started_wall, seconds, outcome)
        unfinished = isinstance(outcome, TaskReport) and outcome.status in ("PENDING", "RUNNING")
        # An unfinished task's next poll is an interval away: its answer may wait for the
        # loop's next planned wake-up (at 50 polls/s the next poll's, 20 ms away).
        mailbox.post(done, within=RESULT_MAY_WAIT if unfinished else None)

    return run


def fetch_io(downloader: Downloader, mailbox: Mailbox) -> Callable[[StartDownload], None]:
    """A download worker, one file of a task's group: posts `DownloadStarted`, a
    `DownloadProgress` every few seconds, and `DownloadDone`; stops at the next chunk
    once its slot is cancelled."""

    def run(job: StartDownload) -> None:
        began = time.monotonic()
        last = [began]
        number, index = job.slot.number, job.slot.index
        ours: list[tuple[int, int]] = []  # the `.part` this download writes: (device, inode)

        def on_start(etag: str | None) -> None:
            size = 0
            with contextlib.suppress(FileNotFoundError):  # dropped already: the task ended
                st = os.lstat(job.part)  # opened (made) just before: the file we write
                ours.append((st.st_dev, st.st_ino))
                size = st.st_size if job.etag else 0
            mailbox.post(DownloadStarted(job.name, number, job.url, etag, size, index))

        def on_progress(done: int, total: int | None) -> None:
            if job.slot.cancel.is_set():
                raise Stopping("the task was removed")
            if time.monotonic() - last[0] >= PROGRESS_EVERY:
                last[0] = time.monotonic()
                mailbox.post(DownloadProgress(job.name, number, done, total, index))

        def fetch() -> Downloaded:
            return downloader.fetch(job.url, job.part, job.etag, on_start, on_progress, job.kind)

        outcome = attempt(fetch, DownloadInterrupted)
        if job.slot.cancel.is_set():  # removed (or failed) meanwhile: the part is garbage
            _unlink_if(job.part, ours)
        seconds = time.monotonic() - began
        mailbox.post(DownloadDone(job.name, number, job.url, seconds, outcome, index))

    return run


def _unlink_if(part: Path, ours: list[tuple[int, int]]) -> None:
    """Unlink `part` only while it is still the file this download wrote: the task's end
    already dropped it, and a new task of the same name (a retry) may have made its own
    `.part` there since."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) in ours:
        part.unlink(missing_ok=True)
