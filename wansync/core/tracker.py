"""THE registry of live tasks: each task, the task-id index, the sidecars still to write,
the download queue and its slots, and the counts.

`untrack(name)` releases everything a task holds at once, so nothing (a download slot,
an id, a pending write) can outlive its task. A download slot is a numbered ticket: a
late `DownloadDone` for a task that was removed (or replaced by a new file of the same
name) finds no ticket of its number and releases nothing.

Main thread only; no clock reads (`now` is passed in). Restores everything from the
inbox alone: a `.task` and its sidecar are the whole state, so a restart (or a
`kill -9`) picks up exactly where the files say it was.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wansync.core.errors import TaskFileError
from wansync.files import sidecar
from wansync.files.taskfile import TaskSpec, read, task_name
from wansync.run.publish import Folders


@dataclass(slots=True)
class Task:
    """One tracked task; `data` is its sidecar, the single source of truth on disk."""

    name: str
    data: dict[str, Any]
    errors_in_row: int = 0
    busy: bool = False  # a poll or a download for it is in flight
    refused_url: str | None = None  # a video URL storage refused once
    reported_bytes: int = 0  # download bytes at the last progress event

    @property
    def task_id(self) -> str:
        return str(self.data["task_id"])

    @property
    def state(self) -> sidecar.State:
        state: sidecar.State = self.data["state"]
        return state

    def set_state(self, state: sidecar.State) -> None:
        sidecar.set_state(self.data, state)


@dataclass(frozen=True, slots=True)
class Slot:
    """A download in flight: its ticket number and the flag that cancels it."""

    number: int
    cancel: threading.Event


@dataclass
class Tracker:
    """Live tasks and everything they hold."""

    tasks: dict[str, Task] = field(default_factory=dict)
    unsaved: dict[str, None] = field(default_factory=dict)  # sidecars to (re)write
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0})
    _by_id: dict[str, str] = field(default_factory=dict)  # task id -> name fetching it
    _due: dict[str, float] = field(default_factory=dict)  # waiting for a download slot
    _slots: dict[str, Slot] = field(default_factory=dict)
    _tickets: Iterator[int] = field(default_factory=itertools.count)

    # -- membership --------------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self.tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def get(self, name: str) -> Task | None:
        return self.tasks.get(name)

    def track(self, task: Task) -> Task | None:
        """Track `task`; returns the live task already fetching its id (then not indexed)."""
        self.tasks[task.name] = task
        if task.state in sidecar.TERMINAL_STATES:
            return None
        twin = self.tasks.get(self._by_id.get(task.task_id, ""))
        if twin is not None and twin is not task:
            return twin
        self._by_id[task.task_id] = task.name
        return None

    def untrack(self, name: str) -> Task | None:
        """Forget `name` and release all it held: its id, its queue place, its slot."""
        task = self.tasks.pop(name, None)
        self.unsaved.pop(name, None)
        self._due.pop(name, None)
        slot = self._slots.pop(name, None)
        if slot is not None:
            slot.cancel.set()  # the worker stops at its next chunk
        task_id = task.data.get("task_id") if task is not None else None
        if task_id and self._by_id.get(task_id) == name:
            del self._by_id[task_id]
        return task

    def ids(self) -> set[str]:
        """The task ids live tasks are fetching."""
        return set(self._by_id)

    # -- downloads ---------------------------------------------------------------------
    def queue_download(self, name: str, at: float) -> None:
        """`name` should download from monotonic time `at` on (when a slot is free)."""
        if name in self.tasks:
            self._due[name] = at

    def next_download(self, concurrency: int) -> float | None:
        """When `take_downloads` could next start one, if a slot is free."""
        if not self._due or len(self._slots) >= concurrency:
            return None
        return min(self._due.values())

    def take_downloads(self, now: float, concurrency: int) -> list[tuple[Task, Slot]]:
        """The earliest-due waiting downloads that fit the free slots; each takes one."""
        free = concurrency - len(self._slots)
        if free <= 0 or not self._due:
            return []
        due = sorted((d, n) for n, d in self._due.items() if d <= now)[:free]
        out = []
        for _, name in due:
            del self._due[name]
            task = self.tasks[name]
            if task.state != "downloading" or task.busy:
                continue
            slot = Slot(next(self._tickets), threading.Event())
            self._slots[name] = slot
            task.busy = True
            out.append((task, slot))
        return out

    def holds(self, name: str, number: int) -> bool:
        """Is ticket `number` still `name`'s slot (not released, not a removed task's)?"""
        slot = self._slots.get(name)
        return slot is not None and slot.number == number

    def release(self, name: str, number: int) -> Task | None:
        """A download ended: free its slot; returns the task if the ticket was still valid."""
        if not self.holds(name, number):
            return None
        del self._slots[name]
        task = self.tasks[name]
        task.busy = False
        return task

    @property
    def downloads_running(self) -> int:
        return len(self._slots)

    # -- counts ------------------------------------------------------------------------
    def in_progress(self) -> int:
        """Tasks the account is generating now: tracked ones the API has not finished."""
        return sum(
            1
            for t in self.tasks.values()
            if t.state == "polling" and t.data["task_status"] in (None, "PENDING", "RUNNING")
        )

    def by_state(self) -> dict[str, int]:
        polling = sum(1 for t in self.tasks.values() if t.state == "polling")
        downloading = sum(1 for t in self.tasks.values() if t.state == "downloading")
        return {"polling": polling, "downloading": downloading, **self.counts}


def open_task(folders: Folders, path: Path, now_wall: float) -> tuple[Task, TaskSpec | None]:
    """Read a complete `.task` and its sidecar (if any) into a `Task`.

    An unreadable file yields a task already in state `failed` (`InvalidTaskFile`).
    A sidecar for another task id (the user replaced the file) is started afresh.
    `OutOfResources` (no descriptor or memory: the file is not at fault) is raised to
    the caller, which leaves the file where it is and reads it again later.
    """
    name = task_name(path)
    try:
        spec = read(path)
    except (TaskFileError, OSError) as exc:
        reason = exc if isinstance(exc, TaskFileError) else exc.strerror
        task_id = exc.task_id if isinstance(exc, TaskFileError) else None
        data = sidecar.new(name, task_id, {}, now_wall)
        sidecar.set_state(data, "failed")
        data["finished"] = sidecar.utc_iso(now_wall)
        data["error"] = sidecar.error("InvalidTaskFile", f"{path.name}: {reason}", False)
        return Task(name, data), None
    previous = sidecar.read(folders.sidecar(name))
    if previous and previous.get("task_id") == spec.task_id:
        previous["meta"] = spec.meta
        return Task(name, previous), spec
    return Task(name, sidecar.new(name, spec.task_id, spec.meta, now_wall)), spec
