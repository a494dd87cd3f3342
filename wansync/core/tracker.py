"""THE registry of live tasks: each task, the task-id index, the sidecars still to write,
the download queue and its slots, and the counts.

`untrack(name)` releases everything a task holds at once, so nothing (its place in the
poll schedule, a download slot, an id, a pending write) can outlive its task. A download
slot is a numbered ticket: a late `DownloadDone` for a task that was removed (or
replaced by a new file of the same name) finds no ticket of its number and releases
nothing.

Main thread only; no clock reads (`now` is passed in), no I/O. What it holds comes
from the inbox alone (a `.task` and its sidecar are the whole state: see
`pipeline.open_task`), so a restart (or a `kill -9`) picks up where the files say it was.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from wansync.core.record import TERMINAL_STATES, State, TaskRecord
from wansync.core.scheduler import Scheduler


@dataclass(slots=True)
class Task:
    """One tracked task: its `record` (what its sidecar says) and what only memory holds."""

    name: str
    record: TaskRecord
    errors_in_row: int = 0
    busy: bool = False  # a poll or a download for it is in flight
    refused_url: str | None = None  # a video URL storage refused once
    reported_bytes: int = 0  # download bytes at the last progress event
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
    """A download in flight: its ticket number and the flag that cancels it."""

    number: int
    cancel: threading.Event


@dataclass
class Tracker:
    """Live tasks and everything they hold."""

    scheduler: Scheduler | None = None  # whose entry `untrack` releases too
    tasks: dict[str, Task] = field(default_factory=dict)
    unsaved: dict[str, None] = field(default_factory=dict)  # sidecars to write (the journal's)
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
        slot = self._slots.pop(name, None)
        if slot is not None:
            slot.cancel.set()  # the worker stops at its next chunk
        task_id = task.record.task_id if task is not None else None
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
    def count_ended(self, state: State) -> None:
        """A task was published (into outbox/ when `succeeded`, else failed/)."""
        self.counts["done" if state == "succeeded" else "failed"] += 1

    def in_progress(self) -> int:
        """Tasks the account is generating now: tracked ones the API has not finished."""
        return sum(
            1
            for t in self.tasks.values()
            if t.state == "polling" and t.record.task_status in (None, "PENDING", "RUNNING")
        )

    def by_state(self) -> dict[str, int]:
        polling = sum(1 for t in self.tasks.values() if t.state == "polling")
        downloading = sum(1 for t in self.tasks.values() if t.state == "downloading")
        return {"polling": polling, "downloading": downloading, **self.counts}
