"""What is in the inbox: files complete enough to read, and the listing of a scan.

Watchdog events and scans only say "look at this path"; `Candidates` decides when a
file has settled (a producer may still be writing it), and `scan_inbox` lists names
(not paths: the daemon rescans 10,000-task inboxes every few seconds).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from wansync.files import sidecar
from wansync.files.jobfile import JOB_SUFFIX, is_job_name
from wansync.files.names import stem
from wansync.files.taskfile import TASK_SUFFIX, is_task_name

SETTLE_SECONDS = 1.0
READ_AGAIN_AFTER = 1.0  # a file the system had no descriptor or memory to read


@dataclass
class _Candidate:
    size: int
    mtime_ns: int
    since: float  # monotonic time at which this size/mtime was first seen


@dataclass
class Candidates:
    """Task files seen but perhaps still being written: read once complete."""

    _waiting: dict[Path, _Candidate] = field(default_factory=dict)
    _ready: set[Path] = field(default_factory=set)
    _later: dict[Path, float] = field(default_factory=dict)  # path -> when to read again

    def ready(self, path: Path) -> None:
        """A close-after-write or a rename into the inbox: complete unless it is empty."""
        self._ready.add(path)

    def changed(self, path: Path, now: float) -> None:
        """A create/modify/scan sighting: read once size and mtime held still for 1 s."""
        try:
            st = path.lstat()
        except OSError:
            self._waiting.pop(path, None)
            return
        # The mtime is when it last changed, so a file untouched for a while is ready now.
        age = max(0.0, (time.time_ns() - st.st_mtime_ns) / 1e9)
        old = self._waiting.get(path)
        if old is None or (old.size, old.mtime_ns) != (st.st_size, st.st_mtime_ns):
            self._waiting[path] = _Candidate(st.st_size, st.st_mtime_ns, now - age)

    def later(self, path: Path, now: float) -> None:
        """A file that could not be read for want of descriptors or memory (not its own
        fault): handed out again `READ_AGAIN_AFTER` s from `now`, not at once (no spin)."""
        self._waiting.pop(path, None)
        self._ready.discard(path)
        self._later[path] = now + READ_AGAIN_AFTER

    def forget(self, path: Path) -> None:
        self._waiting.pop(path, None)
        self._ready.discard(path)
        self._later.pop(path, None)

    def __len__(self) -> int:
        return len(self._waiting) + len(self._ready) + len(self._later)

    def __contains__(self, path: Path) -> bool:
        return path in self._waiting or path in self._ready or path in self._later

    def take(self, now: float) -> list[Path]:
        """Paths ready to read now; empty files only once they have settled."""
        out: list[Path] = []
        for path, at in list(self._later.items()):
            if now >= at:
                del self._later[path]
                self._ready.add(path)
        for path in list(self._ready):
            self._ready.discard(path)
            try:
                empty = path.lstat().st_size == 0
            except OSError:
                self._waiting.pop(path, None)
                continue
            if empty:
                self.changed(path, now)
            else:
                self._waiting.pop(path, None)
                out.append(path)
        for path, cand in list(self._waiting.items()):
            try:
                st = path.lstat()
            except OSError:
                del self._waiting[path]
                continue
            if (st.st_size, st.st_mtime_ns) != (cand.size, cand.mtime_ns):
                self._waiting[path] = _Candidate(st.st_size, st.st_mtime_ns, now)
            elif now - cand.since >= SETTLE_SECONDS:
                del self._waiting[path]
                out.append(path)
        return out

    def next_check(self, now: float) -> float | None:
        """When `take` could next return something (soon, while anything waits)."""
        if self._ready:
            return now
        later = min(self._later.values(), default=None)
        if not self._waiting:
            return later
        settled = min(now + 0.25, min(c.since for c in self._waiting.values()) + SETTLE_SECONDS)
        return settled if later is None else min(settled, later)


@dataclass
class InboxListing:
    """Names (not paths: the daemon rescans 10,000-task inboxes every few seconds)."""

    tasks: set[str]
    jobs: set[str]
    orphans: list[str]  # sidecars with neither a `.task` nor a `.job`


def scan_inbox(inbox: Path) -> InboxListing:
    """The visible `.task` and `.job` files, and the sidecars that have neither."""
    tasks: set[str] = set()
    jobs: set[str] = set()
    sidecars: list[str] = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            name = entry.name
            if is_task_name(name):
                tasks.add(name[: -len(TASK_SUFFIX)])
            elif is_job_name(name):
                jobs.add(name[: -len(JOB_SUFFIX)])
            elif name.endswith(sidecar.SUFFIX) and not name.startswith("."):
                sidecars.append(name[: -len(sidecar.SUFFIX)])
    owned = {stem(n) for n in tasks | jobs}
    return InboxListing(tasks, jobs, [n for n in sidecars if n not in owned])
