"""From folder to pipeline: the start-up scan, watcher events, the periodic rescan.

Everything here ends in one of four calls: a settled `.task` (→ `Pipeline.discover`),
a settled `.job` (→ `Submitter.discover`), a removed file (→ `removed`), or a sidecar
left without its file (a publish cut short: finish it; else drop it). What the task
path returns (effects) is handed to `carry_out` (the daemon's).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from wansync import log
from wansync.core import events as ev
from wansync.core.effects import Effect, Emit
from wansync.core.errors import OutOfResources
from wansync.core.lifecycle import Now
from wansync.files import folderguard, jobfile, sidecar
from wansync.files.lock import InboxLock
from wansync.files.taskfile import task_name
from wansync.inbox.settle import Candidates, scan_inbox
from wansync.inbox.watcher import CHANGED, GONE, READY, InboxWatcher
from wansync.run import publish
from wansync.run.pipeline import Pipeline
from wansync.run.submitter import Submitter
from wansync.run.waker import Waker

MAX_DEFERRED_SAID = 10_000  # files whose `file.read_later` was said (a bounded memory)


def name_of(path: Path) -> str:
    """`NAME` of `inbox/NAME.task` or `inbox/NAME.job`: one name for a job and its task."""
    return jobfile.job_name(path) if jobfile.is_job_name(path.name) else task_name(path)


class Intake:
    """Which inbox files to look at, and when they are ready to read."""

    def __init__(
        self,
        pipeline: Pipeline,
        submitter: Submitter,
        on_job: Callable[[Path, Now], None],
        carry_out: Callable[[list[Effect], Now], None],
    ) -> None:
        self.pipeline = pipeline
        self.folders = pipeline.folders
        self.tracker = pipeline.tracker
        self.submitter = submitter
        self.on_job = on_job  # the daemon carries a job's hand-overs out
        self.carry_out = carry_out  # ... and the task path's effects
        self.candidates = Candidates()
        self.only: set[str] | None = None  # burst: just these names
        self.burst = False
        self.scanned: list[Path] = []  # burst: what the start-up scan found
        self.watcher: InboxWatcher | None = None
        self._trouble_logged = False
        self._said_later: set[Path] = set()  # `file.read_later` said for these
        self.log = log.get("wansync.daemon")

    # -- the watch ---------------------------------------------------------------------
    def start_watch(self, wake: Waker, polling: bool) -> None:
        self.watcher = InboxWatcher(self.folders.inbox, wake, polling)
        self.watcher.start()

    def stop_watch(self) -> None:
        if self.watcher:
            self.watcher.stop()

    def restore_watch(self, lock: InboxLock, wake: Waker, polling: bool) -> bool:
        """Recreate the inbox, re-lock, watch again; True once watching. Raises
        `InboxLocked` when another wansync took the recreated inbox meanwhile.

        A path swapped for a link or another folder is not watched, locked or made
        anything in (`folder.replaced`, once); the old watch is kept for when it is back.
        """
        assert self.watcher is not None
        inbox = self.folders.inbox
        if self.folders.replaced(inbox):
            return False
        self.watcher.stop()
        try:
            self._recreate(inbox)
            lock.release()
            lock.acquire()
            watcher = InboxWatcher(inbox, wake, polling)
            watcher.start()
        except OSError as exc:
            if not self._trouble_logged:
                self.log.error(
                    "inbox.unavailable",
                    path=str(inbox),
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    detail="cannot watch the inbox; will keep trying",
                )
                self._trouble_logged = True
            return False
        self.watcher = watcher
        self._trouble_logged = False
        self.log.warning(
            "inbox.rewatched",
            path=str(inbox),
            detail="the inbox watch had stopped (folder removed?); watching again",
        )
        return True

    def _recreate(self, inbox: Path) -> None:
        """A gone inbox is made again, by us, and that folder is the inbox from now on;
        anything else there must still be the inbox recorded at start-up."""
        try:
            inbox.mkdir(parents=True)
        except FileExistsError:
            pass
        else:
            folderguard.GUARD.record(inbox)
        folderguard.check(inbox)  # a link planted just before or after the mkdir

    # -- files -------------------------------------------------------------------------
    def startup(self, now: Now, burst: bool, only: set[str] | None) -> set[str]:
        """Track every file present (call after the watch starts); returns their names."""
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folderguard.GUARD.record(folder)  # what each is now: later, it must still be
        listing = scan_inbox(self.folders.inbox)
        for name in listing.orphans:
            self._orphan_sidecar(name, now)
        if burst and only is not None:
            listing.tasks &= only
            listing.jobs &= only
        self.only = only if burst else None
        self.burst = burst
        tasks = [self.folders.task(n) for n in sorted(listing.tasks)]
        tasks += [self.folders.job(n) for n in sorted(listing.jobs - listing.tasks)]
        self.scanned = tasks
        for path in tasks:
            self.candidates.changed(path, now.mono)
        self.take(now, burst_names=None)
        if only is None:  # others' partial downloads are not ours to judge
            self._sweep_parts()
        names = listing.tasks | listing.jobs
        if not burst:
            self.scanned = []  # only `once` needs the list later
        return names

    def take(self, now: Now, burst_names: set[str] | None) -> None:
        """Hand every settled file on (in burst, only the ones the scan found)."""
        if self.folders.replaced(self.folders.inbox):
            self.candidates = Candidates()  # not read through a link; the rescan finds them
            return
        for path in self.candidates.take(now.mono):
            # a name wansync cannot build its files from (not UTF-8, too long): to failed/
            hook = self.pipeline.steps.hook_for("failed")
            refused = publish.refuse_name(self.folders, path, hook)
            if refused is not None:
                if refused.final is not None:
                    ended = publish.ended(refused.record, refused.final, now.wall)
                    self.carry_out([Emit(ended)], now)
                continue
            name = name_of(path)
            if name in self.tracker or (burst_names is not None and name not in burst_names):
                continue
            try:
                if jobfile.is_job_name(path.name):
                    self.on_job(path, now)
                else:
                    self.carry_out(self.pipeline.discover(path, now), now)
            except OutOfResources as exc:  # the system's fault, not the file's: read it later
                self.read_later(path, exc, now)
                continue
            self._said_later.discard(path)

    def read_later(self, path: Path, exc: OutOfResources, now: Now) -> None:
        """No descriptor or memory to read `path`: it stays in the inbox, is read again in
        a second (`once` waits for it too), and this is said once per file, not per try."""
        self.candidates.later(path, now.mono)
        if self.burst and path not in self.scanned:
            self.scanned.append(path)
        if path in self._said_later or len(self._said_later) >= MAX_DEFERRED_SAID:
            return
        self._said_later.add(path)
        self.log.warning(
            "file.read_later",
            name=name_of(path),
            file=path.name,
            error=exc.message,
            detail="the system is out of descriptors or memory; the file stays in the "
            "inbox and is read again in a second",
        )

    def waiting(self) -> list[Path]:
        return [p for p in self.scanned if p in self.candidates]

    def _sweep_parts(self) -> None:
        """Partial downloads no live task owns are ours to remove (the task was removed)."""
        owned = {publish.stem(n) for n in self.tracker.tasks}
        owned |= {publish.stem(name_of(p)) for p in self.waiting()}
        for entry in os.scandir(self.folders.outbox):
            if entry.name.startswith(".") and entry.name.endswith(".mp4.part"):
                name = entry.name[1 : -len(".mp4.part")]
                if name not in owned:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    self.log.info("download.part_removed", name=name)

    def _orphan_sidecar(self, name: str, now: Now) -> None:
        """A sidecar without its `.task`: a publish cut short, or a task the user removed.

        `sidecar.read` accepts only a sidecar named after its own task, so what is
        resumed or dropped here is that task's, never another's (a planted sidecar naming
        a live download); its `.part` is published only as a whole MP4 of the recorded size.
        """
        record = sidecar.read(self.folders.sidecar(name))
        if record and record.ended and record.published_as:
            try:
                final = publish.resume(self.folders, record, task_file_is_ours=False)
            except OSError as exc:  # a full disk, a refused `.part`: left as it is
                self.log.error(
                    "task.publish_error",
                    name=name,
                    task_id=record.task_id,
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    detail="left in the inbox as it is",
                )
                return
            self.log.info(
                "task.publish_resumed", name=name, task_id=record.task_id, path=str(final)
            )
            return
        publish.forget_files(self.folders, name)
        removed = ev.TaskRemoved(
            at=now.wall,
            name=name,
            task_id=record.task_id if record else None,
            detail="task file was removed while wansync was not running",
        )
        self.carry_out([Emit(removed)], now)

    def watch_events(self, now: Now) -> None:
        assert self.watcher is not None
        events = self.watcher.drain()
        if self.folders.replaced(self.folders.inbox):
            return  # paths through a link; the rescan finds what they were once it is back
        for kind, path in events:
            if path.parent != self.folders.inbox:
                continue
            if kind == READY:
                self.candidates.ready(path)
            elif kind == CHANGED:
                self.candidates.changed(path, now.mono)
            elif kind == GONE and not path.exists():
                self.candidates.forget(path)
                if jobfile.is_job_name(path.name):
                    self.submitter.removed(jobfile.job_name(path), now)
                else:
                    self.carry_out(self.pipeline.removed(task_name(path), now), now)

    def rescan(self, now: Now) -> None:
        """The safety net for missed events (overflow, network filesystems)."""
        if self.folders.replaced(self.folders.inbox):
            return
        try:
            listing = scan_inbox(self.folders.inbox)
        except OSError:
            return  # the watch check reports and repairs a missing inbox
        present = listing.tasks
        tracked = self.tracker.tasks
        for name in present.difference(tracked):  # strings only: cheap with 10,000 tasks
            path = self.folders.task(name)
            if path not in self.candidates:
                self.candidates.changed(path, now.mono)
        jobs = self.submitter.names()
        for name in listing.jobs.difference(tracked, jobs, present):
            path = self.folders.job(name)
            if path not in self.candidates:
                self.candidates.changed(path, now.mono)
        for name in [n for n in jobs if n not in listing.jobs]:
            self.submitter.removed(name, now)
        for name in [n for n in tracked if n not in present]:
            if not self.folders.task(name).exists():
                self.carry_out(self.pipeline.removed(name, now), now)


class Burst:
    """`wansync once`: the names it still waits for, and whether one of them failed.

    It follows the events: every ending removes a name (in burst mode only the files the
    start-up scan found are ever read, so any failure is one of ours).
    """

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.failed = False
        self.refused: str | None = None  # the key was refused again after a pause

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.AuthRejected) and event.probe:
            self.refused = f"{event.code}: {event.message}"
        if isinstance(event, ev.TaskSucceeded | ev.TaskFailed):
            self.failed = self.failed or isinstance(event, ev.TaskFailed)
            self.names.discard(event.name)

    def done(self, live: Callable[[str], bool], waiting: list[Path]) -> bool:
        """True once no name is live (tracked or a job) nor still settling."""
        still = {n for n in self.names if live(n)}
        if not still and not waiting:
            return True
        self.names = still | {name_of(p) for p in waiting}
        return False
