"""From folder to loop: the start-up scan, watcher events, the periodic rescan.

Intake calls nothing outside itself: it yields what it finds, one file at a time, and
the daemon hands each on before the next is looked at: a settled `.task` (`TaskFile`,
for the pipeline), a settled `.job` (`JobFile`, for the submitter), a file gone
(`TaskGone`, `JobGone`), a tracked task's file that now names another task (`Replaced`),
a file whose name wansync cannot build on (`NameRefused`), a sidecar left without its
file (`Orphan`). What to do with the last two is run/leftovers.py's.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from wansync import log
from wansync.core import events as ev
from wansync.core.errors import OutOfResources, TaskFileError
from wansync.core.lifecycle import Now
from wansync.core.tracker import Tracker
from wansync.files import folderguard, jobfile, names, taskfile
from wansync.files.folders import Folders
from wansync.files.lock import InboxLock
from wansync.files.taskfile import task_name
from wansync.inbox.settle import Candidates, scan_inbox
from wansync.inbox.watcher import CHANGED, GONE, READY, InboxWatcher


@dataclass(frozen=True, slots=True)
class TaskFile:
    """A settled `.task` no live task has: to track (or to end at once)."""

    path: Path


@dataclass(frozen=True, slots=True)
class JobFile:
    """A settled `.job`: one to read (a producer's task may hold its name), or a tracked
    job's own, settled again (a file put in its place after the create: the daemon
    checks it, run/jobreplaced.py)."""

    path: Path


@dataclass(frozen=True, slots=True)
class TaskGone:
    name: str


@dataclass(frozen=True, slots=True)
class JobGone:
    name: str


@dataclass(frozen=True, slots=True)
class NameRefused:
    """A file whose NAME wansync cannot build its files from (not UTF-8, too long)."""

    path: Path


@dataclass(frozen=True, slots=True)
class Orphan:
    """A sidecar with neither `.task` nor `.job`, found at start-up."""

    name: str


@dataclass(frozen=True, slots=True)
class Replaced:
    """A tracked task's `.task` now holds `task_id` (None: no valid id): another task."""

    path: Path
    task_id: str | None


Found = TaskFile | JobFile | TaskGone | JobGone | Replaced | NameRefused | Orphan

MAX_DEFERRED_SAID = 10_000  # files whose `file.read_later` was said (a bounded memory)


def name_of(path: Path) -> str:
    """`NAME` of `inbox/NAME.task` or `inbox/NAME.job`: one name for a job and its task."""
    return jobfile.job_name(path) if jobfile.is_job_name(path.name) else task_name(path)


def _jobs_first(path: Path) -> bool:
    """Sort key: a `.job` is looked at before a `.task` of the same tick (its name)."""
    return not jobfile.is_job_name(path.name)


def file_task_id(path: Path) -> str | None:
    """The id a `.task` holds now, or None when it holds none (or is gone);
    `OutOfResources` when the system cannot read it now."""
    try:
        return taskfile.read(path).task_id
    except (TaskFileError, OSError):
        return None


class Intake:
    """Which inbox files to look at, and when they are ready to read."""

    def __init__(
        self,
        folders: Folders,
        tracker: Tracker,
        jobs: Callable[[], set[str]],
    ) -> None:
        self.folders = folders
        self.tracker = tracker
        self.jobs = jobs  # names of the jobs the submitter has
        self.candidates = Candidates()
        self.only: set[str] | None = None  # burst: just these names
        self.burst = False
        self.scanned: list[Path] = []  # burst: what the start-up scan found
        self.watcher: InboxWatcher | None = None
        self._held: dict[str, Path] = {}  # `.task` files waiting for a job's hand-over
        self._trouble_logged = False
        self._said_later: set[Path] = set()  # `file.read_later` said for these
        self.log = log.get("wansync.daemon")

    def watch_healthy(self) -> bool:
        """No watch (burst), or a live one: what systemd's watchdog and /healthz ask."""
        return self.watcher is None or self.watcher.healthy()

    # -- the watch ---------------------------------------------------------------------
    def start_watch(self, wake: Callable[[], None], polling: bool) -> None:
        self.watcher = InboxWatcher(self.folders.inbox, wake, polling)
        self.watcher.start()

    def stop_watch(self) -> None:
        if self.watcher:
            self.watcher.stop()

    def restore_watch(self, lock: InboxLock, wake: Callable[[], None], polling: bool) -> bool:
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
    def scan(
        self, now: Now, burst: bool, only: set[str] | None
    ) -> tuple[set[str], Iterator[Found]]:
        """Every file present (call after the watch starts): their names, and what they
        are, to hand on (then `sweep_parts`). A `.job` comes before its name's `.task`."""
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folderguard.GUARD.record(folder)  # what each is now: later, it must still be
        listing = scan_inbox(self.folders.inbox)
        if burst and only is not None:
            listing.tasks &= only
            listing.jobs &= only
        self.only, self.burst = (only if burst else None), burst
        paths = [self.folders.job(n) for n in sorted(listing.jobs)]
        paths += [self.folders.task(n) for n in sorted(listing.tasks)]
        self.scanned = paths
        for path in paths:
            self.candidates.changed(path, now.mono)
        orphans = [Orphan(name) for name in listing.orphans]
        return listing.tasks | listing.jobs, itertools.chain(orphans, self.take(now, None))

    def take(self, now: Now, burst_names: set[str] | None) -> Iterator[Found]:
        """Every settled file, one at a time (in burst, only the ones the scan found)."""
        if not self.candidates:
            return  # nothing to look at: neither is the inbox (a stat a tick saved)
        if self.folders.replaced(self.folders.inbox):
            self.candidates = Candidates()  # not read through a link; the rescan finds them
            return
        for path in sorted(self.candidates.take(now.mono), key=_jobs_first):
            found = self._settled(path, now, burst_names)
            if found is not None:
                yield found

    def _settled(self, path: Path, now: Now, burst_names: set[str] | None) -> Found | None:
        name = name_of(path)
        try:
            names.check(name)
        except names.BadName:
            return NameRefused(path)  # not UTF-8, or too long: to failed/
        if burst_names is not None and name not in burst_names:
            return None
        if jobfile.is_job_name(path.name):  # if its name is tracked: the job's task's own
            return JobFile(path)  # (replaced after the create?), or a producer's (a clash)
        task = self.tracker.get(name)
        if task is None:
            return TaskFile(path)
        try:
            held = file_task_id(path)  # news of a tracked task's `.task`: replaced?
        except OutOfResources as exc:
            self.read_later(path, exc, now)
            return None
        return None if held == task.task_id else Replaced(path, held)

    def hold(self, path: Path) -> None:
        """A `.task` that must wait for the job of its name to be handed over."""
        name = task_name(path)
        self._held[name] = path
        self.log.warning(
            "task.waiting",
            name=name,
            detail=f"{name}.job's task may exist already: {path.name} is read once that "
            f"task has its name ({name}, or {name}-k if this file keeps {name})",
        )

    def release(self, name: str) -> None:
        """The job `name` is handed over: a `.task` that waited for it is read now."""
        path = self._held.pop(name, None)
        if path is not None:
            self.candidates.ready(path)

    def forget(self, path: Path) -> None:
        """A file wansync wrote itself (a job's `.task`): not one to read."""
        self.candidates.forget(path)

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

    def read_done(self, path: Path) -> None:
        """`path` was read: a `file.read_later` for it may be said again another time."""
        self._said_later.discard(path)

    def waiting(self) -> list[Path]:
        return [p for p in self.scanned if p in self.candidates]

    def sweep_parts(self) -> None:
        """Partial downloads no live task owns are ours to remove (the task was removed).
        After the start-up scan's files are handed on; not in a `once` for some names."""
        if self.only is None:  # else others' partial downloads are not ours to judge
            owned = {names.stem(n) for n in self.tracker.tasks}
            owned |= {names.stem(name_of(p)) for p in self.waiting()}
            owned |= {names.stem(n) for n in self._held}
            for entry in os.scandir(self.folders.outbox):
                owners = names.part_owners(entry.name)  # `.X.EXT.part`: X's, or Y's if X is Y.k
                if owners and not owned.intersection(owners):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    self.log.info("download.part_removed", name=owners[-1], file=entry.name)
        if not self.burst:
            self.scanned = []  # only `once` needs the list later

    def watch_events(self, now: Now) -> Iterator[Found]:
        """The watcher's news: files to look at soon, files gone."""
        assert self.watcher is not None
        events = self.watcher.drain()
        if not events or self.folders.replaced(self.folders.inbox):
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
                yield self._gone(path)

    def _gone(self, path: Path) -> Found:
        if jobfile.is_job_name(path.name):
            return JobGone(jobfile.job_name(path))
        self._held.pop(task_name(path), None)
        return TaskGone(task_name(path))

    def rescan(self, now: Now) -> Iterator[Found]:
        """The safety net for missed events (overflow, network filesystems)."""
        if self.folders.replaced(self.folders.inbox):
            return
        try:
            listing = scan_inbox(self.folders.inbox)
        except OSError:
            return  # the watch check reports and repairs a missing inbox
        present = listing.tasks
        tracked = self.tracker.tasks
        jobs = self.jobs()
        for name in present.difference(tracked, self._held):  # strings: cheap with 10,000
            self._look(self.folders.task(name), now)
        for name in listing.jobs.difference(tracked, jobs, present):
            self._look(self.folders.job(name), now)
        for name in [n for n in jobs if n not in listing.jobs]:
            yield JobGone(name)
        for name in [n for n in tracked if n not in present]:
            if not self.folders.task(name).exists():
                yield TaskGone(name)

    def _look(self, path: Path, now: Now) -> None:
        if path not in self.candidates:
            self.candidates.changed(path, now.mono)


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
