"""The send gate: when the next create may go out, and which queued job has room.

Three limits hold a job back: a pause every job waits out (a 429 or a rejected key, by
the one retry policy, retry.py), `submit.max_per_second`, and `submit.max_in_progress`.

The tasks generating now are counted (the daemon's count, by model) only when that can
have changed: a task ended or left (an event), a create was answered, or `RECOUNT_EVERY`
passed while jobs wait. Between counts, a job sent is counted as running at once, so a
burst of jobs cannot overrun the limit before the next count.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from wansync.core import events as ev
from wansync.core import inprogress
from wansync.core.errors import WansyncError
from wansync.core.lifecycle import Now
from wansync.core.retry import RetryPlan, as_transient, plan
from wansync.run.jobjournal import Job, model_of

RECOUNT_EVERY = 5.0  # in-progress tasks are recounted at least this often while jobs wait
Running = int | Mapping[str | None, int]  # tasks generating now, by model (None: unknown)
J = TypeVar("J")


class SendGate:
    """The pause, the pace, and the count of tasks generating now, by model."""

    def __init__(self, count: Callable[[], Running]) -> None:
        self._count = count
        self._changed = True
        self._running: Counter[str | None] = Counter()  # tasks generating now, by model
        self._recount_at = 0.0
        self.held_until = 0.0  # monotonic: no queued job has room until a recount (or an end)
        self.paused_until = 0.0  # monotonic: nothing is sent before this (a 429, a bad key)
        self.next_send = 0.0  # monotonic: submit.max_per_second's next place

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

    def sent(self, model: str | None, now: float, per_second: float) -> None:
        """A create went out: count its task as running from now on, whatever the answer,
        and keep the next one `submit.max_per_second` away."""
        self.next_send = now + 1.0 / per_second
        self._running[model] += 1

    def opens_at(self, held: bool) -> float:
        """When a request may next go out (monotonic); `held`: queued jobs waiting for
        room wait for the next recount too (a task's end wakes the loop anyway)."""
        mark = max(self.paused_until, self.next_send)
        return max(mark, self.held_until) if held else mark

    def back_off(self, job: Job, error: WansyncError, now: Now, interval: float) -> RetryPlan:
        """The one retry policy (retry.py) for a job's next try; a 429 or a rejected key
        holds every job."""
        job.errors_in_row += 1
        retry = plan(as_transient(error), job.errors_in_row, interval)
        if retry.pause is not None:
            self.paused_until = max(self.paused_until, now.mono + retry.pause)
        job.due = now.mono + retry.delay
        return retry

    def next_queued(
        self, queue: deque[str], jobs: Mapping[str, Job], limits: inprogress.Limits, now: float
    ) -> Job | None:
        """Take from `queue` the job to start now, if the pace and the limits allow one."""
        while queue and queue[0] not in jobs:
            queue.popleft()
        if not queue or now < self.next_send:
            return None
        queued = (jobs[n] for n in queue if n in jobs)
        job = self.first_with_room(limits, queued, model_of, now)
        if job is None or now < job.due:
            return None
        queue.remove(job.name)
        return job

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
