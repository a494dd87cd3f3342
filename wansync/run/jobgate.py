"""The in-progress gate: which queued job has room under `submit.max_in_progress` now.

The tasks generating now are counted (the daemon's count, by model) only when that can
have changed: a task ended or left (an event), a create was answered, or `RECOUNT_EVERY`
passed while jobs wait. Between counts, a job sent is counted as running at once, so a
burst of jobs cannot overrun the limit before the next count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from wansync.core import events as ev
from wansync.core import inprogress

RECOUNT_EVERY = 5.0  # in-progress tasks are recounted at least this often while jobs wait
Running = int | Mapping[str | None, int]  # tasks generating now, by model (None: unknown)
J = TypeVar("J")


class RoomGate:
    """The count of tasks generating now, by model, and the first queued job with room."""

    def __init__(self, count: Callable[[], Running]) -> None:
        self._count = count
        self._changed = True
        self._running: Counter[str | None] = Counter()  # tasks generating now, by model
        self._recount_at = 0.0
        self.held_until = 0.0  # monotonic: no queued job has room until a recount (or an end)

    def notice(self, event: ev.Event) -> None:
        """A task that ends or leaves frees a place under submit.max_in_progress."""
        match event:
            case ev.TaskPolled(task_status=status) if status not in ("PENDING", "RUNNING"):
                self._changed = True
            case ev.TaskSucceeded() | ev.TaskFailed() | ev.TaskRemoved():
                self._changed = True
            case _:
                pass

    def changed(self) -> None:
        """Count again before the next choice (a create was answered, or proved unsent)."""
        self._changed = True

    def sent(self, model: str | None) -> None:
        """A create went out: count its task as running from now on, whatever the answer."""
        self._running[model] += 1

    def first_with_room(
        self,
        limits: inprogress.Limits,
        queued: Iterable[J],
        model_of: Callable[[J], str | None],
        now: float,
    ) -> J | None:
        """The first queued job whose model's limit has room (a full pattern holds back
        its own jobs only), or None; then nothing has room until `held_until`."""
        if self._changed or now >= self._recount_at:
            counted = self._count()  # a plain number: tasks whose models are not known
            self._running = Counter({None: counted} if isinstance(counted, int) else counted)
            self._changed = False
            self._recount_at = now + RECOUNT_EVERY
        job = inprogress.first_with_room(limits, queued, model_of, self._running)
        self.held_until = self._recount_at if job is None else 0.0
        return job
