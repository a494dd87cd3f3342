"""Who is polled next: per-task interval, a global sliding-window rate, fairness, pauses.

Pure bookkeeping with `now` passed in (no clock, no threads), so tests drive time by hand.
The earliest-due task goes first; an overdue task keeps its original due time, so with
more tasks than the rate allows they are served in order of lateness and none starves.
A task may also carry a deadline (the latest it must be polled): once that has come it goes
before every merely due task, earliest deadline first. Poll starts are at least 1/rate
apart, so deadlines set a fixed time after each poll are too, and a forced poll waits at
most a slot or so: that is what bounds the gap while `due` is free to say "not yet".
The one exception is an `urgent` key (a task the task list says ended): it may start
right after the request before it, within the sliding second's count, so its poll goes
on the list's answer rather than a slot later.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Hashable

_EPSILON = 0.002  # keep the window strict even when two clocks disagree by a hair


class Scheduler:
    """Poll pacing for many tasks under one account-wide rate."""

    def __init__(self, interval: float, max_per_second: float) -> None:
        self.interval = interval
        self.max_per_second = max_per_second
        self._heap: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, tuple[float, int]] = {}
        self._deadlines: list[tuple[float, int, Hashable]] = []
        self._deadline: dict[Hashable, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._recent: deque[float] = deque()  # start times of the last polls (<= 1 s)
        self._last_start: dict[Hashable, float] = {}
        self._paused_until = 0.0
        self._probe_pending = False  # after an auth pause: one probe poll, then wait for it
        self._probing = False
        self._urgent: dict[Hashable, int] = {}  # key -> the seq of the add that said so

    # -- membership ------------------------------------------------------------------
    def add(
        self, key: Hashable, due: float, deadline: float | None = None, urgent: bool = False
    ) -> None:
        """Schedule `key` at `due`, never sooner than `interval` after its last poll began;
        from `deadline` on (if given) it goes before every task whose deadline has not come.
        `urgent`: it may start right after the request before it, not a slot later (the
        sliding second still holds): a task the list says ended is polled on its answer."""
        if deadline is not None:
            due = min(due, deadline)  # the bound wins over a later preference
        last = self._last_start.get(key)
        if last is not None:
            due = max(due, last + self.interval)  # and the interval over everything
        seq = next(self._seq)
        self._due[key] = (due, seq)
        heapq.heappush(self._heap, (due, seq, key))
        self._deadline.pop(key, None)
        self._urgent.pop(key, None)
        if urgent:
            self._urgent[key] = seq
        if deadline is not None:
            deadline = max(deadline, due)
            self._deadline[key] = (deadline, seq)
            heapq.heappush(self._deadlines, (deadline, seq, key))

    def remove(self, key: Hashable) -> None:
        """Forget `key` (finished, downloading, or removed by the user)."""
        self.park(key)
        self._last_start.pop(key, None)

    def park(self, key: Hashable) -> None:
        """Take `key` out of the queue but remember when it was last polled."""
        self._due.pop(key, None)
        self._deadline.pop(key, None)
        self._urgent.pop(key, None)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._due

    def __len__(self) -> int:
        return len(self._due)

    def due_at(self, key: Hashable) -> float | None:
        entry = self._due.get(key)
        return entry[0] if entry else None

    # -- account-wide pauses ---------------------------------------------------------
    def pause_until(self, until: float, probe: bool = False) -> None:
        """Hold every poll until `until` (429 Retry-After); `probe` lets one through first."""
        self._paused_until = max(self._paused_until, until)
        if probe:
            self._probe_pending = True
            self._probing = False

    def probe_done(self) -> None:
        """The probe poll after an auth pause answered without 401/403: resume everyone."""
        self._probe_pending = False
        self._probing = False

    def resume_now(self) -> None:
        """Lift a pause at once (a new key arrived); a pending probe still goes first."""
        self._paused_until = 0.0

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def probing(self) -> bool:
        """An auth pause's probe is pending or under way: the next poll must be a task's."""
        return self._probe_pending or self._probing

    # -- the decision ----------------------------------------------------------------
    def _rate_ready_at(self, now: float, spaced: bool = True) -> float:
        """When the rate lets a request start: the sliding second's count, and (`spaced`)
        1 / rate after the last start."""
        while self._recent and self._recent[0] <= now - 1.0 - _EPSILON:
            self._recent.popleft()
        limit = max(1, int(self.max_per_second))
        start = now
        if self._recent and spaced:
            start = max(start, self._recent[-1] + 1.0 / self.max_per_second)
        if len(self._recent) >= limit:
            start = max(start, self._recent[-limit] + 1.0 + _EPSILON)
        return start

    @staticmethod
    def _head(
        heap: list[tuple[float, int, Hashable]], live: dict[Hashable, tuple[float, int]]
    ) -> tuple[float, Hashable] | None:
        while heap:
            when, seq, key = heap[0]
            if live.get(key) == (when, seq):
                return when, key
            heapq.heappop(heap)  # superseded by a later add, taken, parked or removed
        return None

    def _peek(self) -> tuple[float, Hashable] | None:
        return self._head(self._heap, self._due)

    def _urgent_head(self) -> tuple[float, Hashable] | None:
        """The earliest-due urgent key (there are few: the ends one list page found)."""
        best: tuple[float, int, Hashable] | None = None
        for key, seq in list(self._urgent.items()):
            entry = self._due.get(key)
            if entry is None or entry[1] != seq:
                del self._urgent[key]  # taken, parked or added again since
            elif best is None or entry < best[:2]:
                best = (*entry, key)
        return None if best is None else (best[0], best[2])

    def _ready(self, now: float) -> tuple[float, tuple[float, Hashable] | None]:
        """When the next poll may start, and the urgent key that may start before any
        other (None: the next poll is the usual choice)."""
        head = self._peek()
        if head is None or self._probing:
            return math.inf, None
        when = max(head[0], self._paused_until, self._rate_ready_at(now))
        urgent = self._urgent_head()
        if urgent is not None:
            sooner = max(urgent[0], self._paused_until, self._rate_ready_at(now, spaced=False))
            if sooner < when:
                return sooner, urgent
        return when, None

    def next_time(self, now: float) -> float | None:
        """When the next poll may start (possibly `now` or earlier), or None if nothing waits."""
        when, _ = self._ready(now)
        return None if when == math.inf else when

    def take(self, now: float) -> Hashable | None:
        """The key to poll now, if any; its start is recorded against the rate."""
        when, urgent = self._ready(now)
        if when > now:
            return None
        forced = self._head(self._deadlines, self._deadline)
        head = forced if forced is not None and forced[0] <= now else self._peek()
        head = urgent or head
        assert head is not None  # _ready() saw it
        _, key = head
        del self._due[key]
        self._deadline.pop(key, None)
        self._urgent.pop(key, None)
        self._recent.append(now)
        self._last_start[key] = now
        if self._probe_pending:
            self._probe_pending = False
            self._probing = True
        return key

    def last_start(self, key: Hashable) -> float | None:
        return self._last_start.get(key)
