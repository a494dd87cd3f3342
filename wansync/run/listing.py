"""The task list in the daemon: list passes, and listpoll's decisions carried out.

`core/listpoll.py` decides (the windows, the next page, what a page says, the pace of a
task the list vouches for); this module keeps the list's state between calls, takes the
list's turn in the poll schedule, and turns each answer into changes of the schedule and
events. Main thread only, except `list_io`, the list worker's one request at a time.

The list's turn is one key, `LIST`, in the same `Scheduler` as the polls, so every list
request is a slot of `poll.max_per_second` like a poll. It is put in (due and deadline
both when listpoll says, so it goes before polls that are merely due) only when no list
request is in flight, at least one polling task's `submit_time` is known (a list slot
with nothing to ask would still take a deadline's place), and no auth pause is probing
(the probe after a refused key must be a poll: its answer ends the pause). Before each
add the key is removed: pages follow each other, the per-task interval is not theirs.

Per task (on `Task`, in memory only): `listed_at`, when the list last showed it; `plan`,
today's (due, deadline) from its last poll, to go back to when the list stops vouching
for it; `list_found`, the list said it ended and its poll has not yet said otherwise.
A task in a back-off (`errors_in_row`) is left to it, as one with a poll in flight is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from wansync.config import Live
from wansync.core import events as ev
from wansync.core import listpoll
from wansync.core.effects import Effect, Emit, StartList, WriteSidecars
from wansync.core.errors import TransientError
from wansync.core.lifecycle import Now
from wansync.core.listpoll import ListPolicy, Outcome, Page, Tracked
from wansync.core.messages import ListDone, Mailbox
from wansync.core.scheduler import Scheduler
from wansync.core.times import utc_iso
from wansync.core.tracker import Task, Tracker
from wansync.remote.api import TaskApi
from wansync.run.workers import attempt


class _ListKey:
    """The scheduler key of the list's turn: no task name can equal it."""

    def __repr__(self) -> str:
        return "LIST"


LIST: Final = _ListKey()


def submit_time(task: Task) -> str | None:
    """The task API's `submit_time` of the task's last answer (None before one)."""
    value = (task.record.output or {}).get("submit_time")
    return value if isinstance(value, str) else None


def tracked(task: Task) -> Tracked:
    """The task as listpoll sees it; one in a back-off is as busy as one being polled."""
    busy = task.busy or task.errors_in_row > 0
    status = task.record.task_status
    return Tracked(task.name, task.task_id, submit_time(task), task.listed_at, busy, status)


class Listing:
    """The list's state and turn; the pipeline asks it for each unfinished task's pace."""

    def __init__(
        self, live: Live, tracker: Tracker, scheduler: Scheduler, off: bool = False
    ) -> None:
        self.live = live
        self.off = off  # never list, whatever the config says (a pipeline on its own)
        self.tracker = tracker
        self.scheduler = scheduler
        self.state = listpoll.ListState()
        self.in_flight = False  # a list request is out: the next waits for its answer
        self.watched = 0  # tasks the list vouches for, as of its last answer
        self._maybe_known = True  # a task may have a known submit_time: worth a look

    def policy(self) -> ListPolicy:
        poll = self.live.cfg.poll
        interval = None if self.off else listpoll.pass_interval(poll.list_interval, poll.interval)
        return ListPolicy(interval, poll.interval, poll.max_per_second)

    # -- the pace of one task (after each of its polls) ---------------------------------
    def cycle(self, tracked_count: int) -> float:
        """The per-task cycle the predictor plans with (N / rate with the list off)."""
        unwatched = max(0, tracked_count - self.watched)
        return listpoll.cycle(unwatched, self.watched, self.state, self.policy())

    def pace(
        self, task: Task, started: float, wait: float, must: float | None
    ) -> tuple[float, float | None]:
        """Seconds from `started` to the task's next poll and to its deadline: the watched
        pace while the list vouches for it, else today's (`wait`, `must`), kept as its plan."""
        task.plan = (started + wait, None if must is None else started + must)
        self._maybe_known = True
        return listpoll.pace(tracked(task), self.state, self.policy(), (wait, must), self.watched)

    # -- the list's turn -----------------------------------------------------------------
    def schedule(self, now: Now) -> list[Effect]:
        """Put the list's turn in the schedule when one is due (see the module's text)."""
        policy = self.policy()
        if policy.interval is None:
            return self._off(now)
        if self.scheduler.probing:
            self.scheduler.remove(LIST)
            return []
        due = listpoll.due_at(self.state, policy)
        if due is None or self.in_flight or LIST in self.scheduler or not self._known():
            return []
        at = max(due, now.mono)
        self.scheduler.remove(LIST)
        self.scheduler.add(LIST, at, at)
        return []

    def _known(self) -> bool:
        """Whether a polling task's `submit_time` is known (a pass has a window to ask)."""
        if self._maybe_known:
            self._maybe_known = any(submit_time(t) is not None for t in self._polling())
        return self._maybe_known

    def take(self, now: Now) -> list[Effect]:
        """The scheduler gave the list its slot: the page to ask for, if any."""
        begun = listpoll.begin(self.state, self._view(), now.mono, self.policy())
        self.state = begun.state
        effects: list[Effect] = []
        if begun.note is not None:
            effects.append(Emit(ev.ListCut(at=now.wall, reason=begun.note)))
        if begun.request is not None:
            self.in_flight = True
            effects.append(StartList(begun.request))
        return effects

    # -- an answer -----------------------------------------------------------------------
    def handle(self, done: ListDone, now: Now) -> list[Effect]:
        """A page or an error: listpoll says what it means, and it is carried out."""
        self.in_flight = False
        policy, current = self.policy(), self.state.current
        if policy.interval is None or current is None:
            return []  # the list was turned off (a reload) while the request was out
        tasks = self._view()
        effects: list[Effect] = []
        if isinstance(done.outcome, Page):
            page, paused = done.outcome, not self.state.healthy
            out = listpoll.after_page(self.state, page, tasks, now.mono, policy)
            shown = sum(1 for row in page.rows if row.task_id in tasks)
            effects.append(
                Emit(
                    ev.ListPage(
                        at=now.wall,
                        window=current.window_no + 1,
                        page_no=done.request.page_no,
                        rows=len(page.rows),
                        shown=shown,
                        ended=len(out.poll_now),
                    )
                )
            )
            if paused:
                effects.append(Emit(ev.ListResumed(at=now.wall)))
        else:
            error = done.outcome
            out = listpoll.after_error(self.state, error, tasks, now.mono, policy)
            paused_event = ev.ListPaused(
                at=now.wall,
                code=error.code,
                message=error.message,
                errors_in_row=out.state.errors_in_row,
                retry_in=round(out.state.next_at - now.mono, 3),
            )
            effects.append(Emit(paused_event))
        self.state = out.state
        if out.note is not None:
            effects.append(Emit(ev.ListCut(at=now.wall, reason=out.note)))
        return effects + self._carry_out(out, now)

    def _carry_out(self, out: Outcome, now: Now) -> list[Effect]:
        """Remember who was shown, re-pace who changed, poll at once who ended, and take
        the list's word that a PENDING task is RUNNING (its sidecar says so at once)."""
        for task in self._tasks(out.seen):
            task.listed_at = now.mono
        for task in self._tasks(out.running):
            task.record.task_status = "RUNNING"
        slow = listpoll.slow_interval(self.watched + len(out.slower), self.policy())
        for task in self._tasks(out.slower):
            due = (self.scheduler.last_start(task.name) or now.mono) + slow
            self._pace_at(task, due, due, now)
        self._back_to_today(list(self._tasks(out.faster)), now)
        for task in self._tasks(out.poll_now):  # on this answer, not a rate slot later
            self.scheduler.add(task.name, now.mono, now.mono, urgent=True)
            task.list_found = True
        state = self.state
        self.watched = sum(listpoll.watched(tracked(t), state) for t in self._polling())
        changed = tuple(dict.fromkeys((*out.slower, *out.faster, *out.running)))
        return [WriteSidecars(changed)] if changed else []  # `next_poll` or `task_status`

    def _back_to_today(self, tasks: list[Task], now: Now) -> None:
        """Today's plans again for tasks the list stopped vouching for, spread out so that
        they do not all fall due at once (`listpoll.back_to_today`)."""
        plans = {t.name: t.plan or (now.mono, None) for t in tasks}
        spread = listpoll.back_to_today(plans, now.mono, self.policy())
        for task in tasks:
            self._pace_at(task, *spread[task.name], now)

    def _pace_at(self, task: Task, due: float, deadline: float | None, now: Now) -> None:
        self.scheduler.add(task.name, due, deadline)
        task.record.next_poll = utc_iso(now.wall + max(0.0, due - now.mono))

    def _off(self, now: Now) -> list[Effect]:
        """`poll.list_interval` is null (maybe since a reload): no turn, and every task
        the list vouched for back at today's pace."""
        self.scheduler.remove(LIST)
        if self.state == listpoll.ListState():
            return []
        vouched = [t for t in self._polling() if listpoll.watched(tracked(t), self.state)]
        self._back_to_today([t for t in vouched if not (t.busy or t.errors_in_row)], now)
        self.state, self.watched = listpoll.ListState(), 0
        names = tuple(t.name for t in vouched)
        return [WriteSidecars(names)] if names else []

    # -- views ---------------------------------------------------------------------------
    def _polling(self) -> Iterable[Task]:
        return (t for t in self.tracker.tasks.values() if t.state == "polling")

    def _view(self) -> dict[str, Tracked]:
        """Every polling task by task id: what a list row is looked up in."""
        return {t.task_id: tracked(t) for t in self._polling()}

    def _tasks(self, names: Iterable[str]) -> Iterable[Task]:
        for name in names:
            task = self.tracker.get(name)
            if task is not None and task.state == "polling":
                yield task


def list_io(api: TaskApi, mailbox: Mailbox) -> Callable[[StartList], None]:
    """The list worker: one request, its page or error posted as `ListDone`."""

    def run(job: StartList) -> None:
        began = time.monotonic()
        outcome = attempt(lambda: api.list_page(job.request.params()))
        if not isinstance(outcome, Page | TransientError):  # not expected: as transient
            outcome = TransientError(outcome.message or type(outcome).__name__, outcome.code)
        mailbox.post(ListDone(job.request, time.monotonic() - began, outcome))

    return run
