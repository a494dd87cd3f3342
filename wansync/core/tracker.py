"""THE registry of live tasks: each task, the task-id index, the sidecars still to write,
the download queue and its slots, the `.part` names claimed, and the counts.

`untrack(name)` releases everything a task holds at once, so nothing (its place in the
poll schedule, its download slots, an id, a pending write, its `.part` names) can
outlive its task. A download slot is a numbered ticket for one file of a task: a late
`DownloadDone` for a task that was removed (or replaced by a new file of the same name)
finds no ticket of its number and releases nothing. A `.part` name is one task's while
it downloads: `clip`'s first picture and `clip.1`'s only one would both grow in
`.clip.1.png.part`, so the second task waits until the first is done with it.

Main thread only; no clock reads (`now` is passed in), no I/O. What it holds comes
from the inbox alone (a `.task` and its sidecar are the whole state: see
`pipeline.open_task`), so a restart (or a `kill -9`) picks up where the files say it was.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wansync.core.record import TERMINAL_STATES, State, TaskRecord
from wansync.core.scheduler import Scheduler

if TYPE_CHECKING:  # filegroup -> messages -> tracker: the type only
    from wansync.core.filegroup import FileGroup

CLAIM_RETRY = 1.0  # seconds before a task whose `.part` name is another's looks again


@dataclass(slots=True)
class Task:
    """One tracked task: its `record` (what its sidecar says) and what only memory holds."""

    name: str
    record: TaskRecord
    errors_in_row: int = 0
    busy: bool = False  # a poll or a download for it is in flight
    refused_url: str | None = None  # a file URL storage refused once
    unsupported_in_row: int = 0  # SUCCEEDED answers in a row that named no file to fetch
    group: FileGroup | None = None  # its files on their way down (state downloading)
    parts: tuple[str, ...] = ()  # where its files grow (the `.part` paths it claims)
    reported_bytes: dict[int, int] = field(default_factory=dict)  # per file, at the last event
    followed_since: float | None = None  # monotonic: when this run began following it
    followed_before: float = 0.0  # seconds earlier runs followed it (lifecycle.task_age)
    # the task list's (run/listing.py), in memory only: when the list last showed it
    # (monotonic), today's (due, deadline) from its last poll, and whether the list
    # said it ended before its own poll saw it (the sidecar's `found_by`)
    listed_at: float | None = None
    plan: tuple[float, float | None] | None = None
    list_found: bool = False

    @property
    def task_id(self) -> str:
        """The id it polls (`"None"` only for a file that ended before it had one)."""
        return str(self.record.task_id)

    @property
    def state(self) -> State:
        return self.record.state


@dataclass(frozen=True, slots=True)
class Slot:
    """A download in flight: its ticket number, the flag that cancels it, and which file
    of its task's group it fetches."""

    number: int
    cancel: threading.Event
    index: int = 0


@dataclass
class Tracker:
    """Live tasks and everything they hold."""

    scheduler: Scheduler | None = None  # whose entry `untrack` releases too
    tasks: dict[str, Task] = field(default_factory=dict)
    unsaved: dict[str, None] = field(default_factory=dict)  # sidecars to write (the journal's)
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0})
    _by_id: dict[str, str] = field(default_factory=dict)  # task id -> name fetching it
    _due: dict[str, float] = field(default_factory=dict)  # waiting for a download slot
    _slots: dict[str, dict[int, Slot]] = field(default_factory=dict)  # name -> file -> slot
    _claims: dict[str, str] = field(default_factory=dict)  # `.part` path -> task name
    _held: dict[str, tuple[str, ...]] = field(default_factory=dict)  # task name -> its claims
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
        if task.state in TERMINAL_STATES:
            return None
        twin = self.tasks.get(self._by_id.get(task.task_id, ""))
        if twin is not None and twin is not task:
            return twin
        self._by_id[task.task_id] = task.name
        return None

    def untrack(self, name: str) -> Task | None:
        """Forget `name` and release all it held: its place in the poll schedule, its id,
        its download queue place and slot, its pending sidecar write."""
        if self.scheduler is not None:
            self.scheduler.remove(name)
        task = self.tasks.pop(name, None)
        self.unsaved.pop(name, None)
        self._due.pop(name, None)
        for slot in self._slots.pop(name, {}).values():
            slot.cancel.set()  # the worker stops at its next chunk
        self.unclaim(name)
        task_id = task.record.task_id if task is not None else None
        if task_id and self._by_id.get(task_id) == name:
            del self._by_id[task_id]
        return task

    def ids(self) -> set[str]:
        """The task ids live tasks are fetching."""
        return set(self._by_id)

    # -- downloads ---------------------------------------------------------------------
    def queue_download(self, name: str, at: float) -> None:
        """`name`'s files not done should download from monotonic time `at` on (each when
        a slot is free)."""
        if name in self.tasks:
            self._due[name] = at

    def next_download(self, concurrency: int) -> float | None:
        """When `take_downloads` could next start one, if a slot is free."""
        if not self._due or self.downloads_running >= concurrency:
            return None
        return min(self._due.values())

    def take_downloads(self, now: float, concurrency: int) -> list[tuple[Task, Slot]]:
        """The files of the earliest-due tasks that fit the free slots; each takes one.

        A task stays due while files of its round are left to start; one whose `.part`
        names another task holds waits `CLAIM_RETRY` seconds.
        """
        if not self._due:  # the usual case: asked on every dispatch
            return []
        free = concurrency - self.downloads_running
        out: list[tuple[Task, Slot]] = []
        for _, name in sorted((d, n) for n, d in self._due.items() if d <= now):
            if free <= 0:
                break
            task = self.tasks[name]
            if task.state != "downloading" or task.group is None:
                del self._due[name]
                continue
            if not self.claim(task):
                self._due[name] = now + CLAIM_RETRY
                continue
            while free > 0 and (index := task.group.take()) is not None:
                slot = Slot(next(self._tickets), threading.Event(), index)
                self._slots.setdefault(name, {})[index] = slot
                task.busy = True
                out.append((task, slot))
                free -= 1
            if not task.group.waiting:
                del self._due[name]
        return out

    def holds(self, name: str, number: int) -> bool:
        """Is ticket `number` still one of `name`'s slots (not released, not a removed
        task's)?"""
        return any(s.number == number for s in self._slots.get(name, {}).values())

    def release(self, name: str, number: int) -> Task | None:
        """A download ended: free its slot; returns the task if the ticket was still valid."""
        slots = self._slots.get(name, {})
        index = next((k for k, s in slots.items() if s.number == number), None)
        if index is None:
            return None
        del slots[index]
        if not slots:
            del self._slots[name]
        task = self.tasks[name]
        task.busy = bool(slots)
        return task

    @property
    def downloads_running(self) -> int:
        return sum(len(slots) for slots in self._slots.values())

    # -- `.part` names -----------------------------------------------------------------
    def claim(self, task: Task) -> bool:
        """Make `task.parts` its own (and only those); False, with nothing changed, if
        another task holds one of them."""
        if self._held.get(task.name) == task.parts:
            return True
        if any(self._claims.get(p, task.name) != task.name for p in task.parts):
            return False
        self.unclaim(task.name)
        self._claims.update(dict.fromkeys(task.parts, task.name))
        self._held[task.name] = task.parts
        return True

    def unclaim(self, name: str) -> None:
        """Give up the `.part` names task `name` holds."""
        for path in self._held.pop(name, ()):
            if self._claims.get(path) == name:
                del self._claims[path]

    def claimed(self) -> frozenset[str]:
        """Every `.part` name a live task holds (an ended task leaves those alone)."""
        return frozenset(self._claims)

    # -- counts ------------------------------------------------------------------------
    def count_ended(self, state: State) -> None:
        """A task was published (into outbox/ when `succeeded`, else failed/)."""
        self.counts["done" if state == "succeeded" else "failed"] += 1

    def in_progress(self) -> int:
        """Tasks the account is generating now: tracked ones the API has not finished."""
        return sum(self.in_progress_by_model().values())

    def in_progress_by_model(self) -> dict[str | None, int]:
        """The same tasks by model: a job's, or None for a `.task` file's (wansync does not
        know its model); `submit.max_in_progress` counts them per model pattern."""
        running: dict[str | None, int] = {}
        for t in self.tasks.values():
            if t.state == "polling" and t.record.task_status in (None, "PENDING", "RUNNING"):
                model = t.record.job.model if t.record.job else None
                running[model] = running.get(model, 0) + 1
        return running

    def by_state(self) -> dict[str, int]:
        polling = sum(1 for t in self.tasks.values() if t.state == "polling")
        downloading = sum(1 for t in self.tasks.values() if t.state == "downloading")
        return {"polling": polling, "downloading": downloading, **self.counts}
