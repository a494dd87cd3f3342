"""Which tracked tasks ended, learned from the task list instead of asking each one.

A per-task poller learns of a finished task only when its turn comes: with N tasks in
flight at `rate` requests/s that is N / (2 rate) seconds on average, whatever the order
(`bench.lagbound`). The task list (`GET /api/v1/tasks`, the SDK's `VideoSynthesis.list`)
answers for up to a hundred tasks per request. So every list period we page through the
tasks created in the windows that cover our unfinished tasks' `submit_time`, poll at once
each tracked task the list shows as ended, and poll the others directly far less often.

Nothing depends on the list. A task is *watched* while the list is healthy and showed it
in its last finished pass (or the one under way); only a watched task is polled at the
slow pace, and still at a bounded interval (`watched_interval`, a deadline). Everything
else keeps today's pace: a task whose `submit_time` is not known yet (before its first
poll), one left out of the windows by a bound, one the list does not show (another
workspace, a key without list rights), and every task while the list fails (a 429, 5xx
or malformed answer pauses the list by the one retry policy and unwatches everyone).

The list filters on creation time in the API's zone (UTC+8, no zone in the text). The
windows are computed from the `submit_time` strings the task API wrote, on that same
clock, so our own clock's offset does not matter; `MARGIN` covers the list's creation
time against the task's submit time and the filter's whole seconds. A pass asks for
every status, not only the ended ones: a tracked task missing from a whole pass is one
the list does not show, and with rows newest first and no status filter a row can only
move to a later page while we page (new tasks come in on top), so none is skipped.

Pure: no clock, no I/O. The caller keeps `ListState` and each task's `listed_at`, and
carries out what an `Outcome` says (poll these now, pace those again).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from wansync.core.errors import AuthRejected, MalformedResponse, TransientError
from wansync.core.retry import backoff, plan

ENDED = frozenset({"SUCCEEDED", "FAILED", "CANCELED"})
LIST_INTERVAL = 5.0  # default `poll.list_interval`, seconds between passes (bench.lagmodel)
LIST_SHARE = 0.2  # a pass of p pages waits p / (LIST_SHARE * rate): at most this share
WATCHED_FACTOR = 40  # a watched task is still polled every 40 x poll.interval (10 min)
WATCHED_SHARE = 0.5  # ... or less often, so that watched polls take at most this share
PAGE_SIZE = 100  # rows per page: the most the API returns
MAX_PAGES = 20  # pages per pass; rows past them are not read (their tasks stay unwatched)
MAX_WINDOWS = 4  # windows per pass: split at the widest gaps between submit times
MIN_GAP = timedelta(minutes=15)  # a quieter stretch than this is worth a window of its own
MAX_WINDOW = timedelta(hours=23)  # the API refuses more than 24 h between start and end
MARGIN = timedelta(seconds=60)  # each side of a window
API_ZONE = timedelta(hours=8)  # the zone of the API's zone-less times (Beijing, Singapore)
_COMPACT = "%Y%m%d%H%M%S"
_MAX_TIME_CHARS = 40
_EARLIEST, _LATEST = datetime(2000, 1, 1), datetime(9000, 1, 1)


def pass_interval(list_interval: float | None, poll_interval: float) -> float | None:
    """The time between passes: `poll.list_interval`, but never longer than `poll.interval`,
    so a short poll interval (a test, a walk at 1 s) never waits on the list for what a
    direct poll would have told sooner. None: the list is off."""
    return None if list_interval is None else min(list_interval, poll_interval)


@dataclass(frozen=True, slots=True)
class ListPolicy:
    """`interval`: `poll.list_interval`, the shortest time between two passes (None:
    the list is off and everything is as without it); the rest is the `poll` section."""

    interval: float | None
    poll_interval: float
    max_per_second: float
    watched_factor: float = WATCHED_FACTOR

    @property
    def watched_interval(self) -> float:
        """The bound on the gap between two direct polls of a watched task."""
        return self.watched_factor * self.poll_interval


@dataclass(frozen=True, slots=True)
class Tracked:
    """A task still being polled. `submit_time` as the task API wrote it (None before
    the first poll); `listed_at`: our time when the list last showed it; `busy`: a poll
    of it is in flight, so nothing is to be scheduled for it; `status`: the task_status
    it is known to have (its last poll's, or the list's `RUNNING` since)."""

    name: str
    task_id: str
    submit_time: str | None
    listed_at: float | None = None
    busy: bool = False
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """One `start_time`..`end_time` range (API zone, compact) and the tasks it covers."""

    start: str
    end: str
    covered: frozenset[str]  # task ids


@dataclass(frozen=True, slots=True)
class Windows:
    """The windows of one pass, oldest first, and the tasks left out by `MAX_WINDOW`."""

    windows: tuple[Window, ...]
    cut: tuple[str, ...]  # task ids: older than the newest by more than MAX_WINDOW


@dataclass(frozen=True, slots=True)
class ListRequest:
    """One page to ask for: `params()` are the query of `GET /api/v1/tasks`."""

    window: Window
    page_no: int
    page_size: int = PAGE_SIZE

    def params(self) -> dict[str, str | int]:
        return {
            "start_time": self.window.start,
            "end_time": self.window.end,
            "page_no": self.page_no,
            "page_size": self.page_size,
        }


@dataclass(frozen=True, slots=True)
class Row:
    task_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Page:
    """A list answer, checked for shape: `total` rows in the window (None: not said)."""

    rows: tuple[Row, ...]
    total: int | None
    page_size: int | None


@dataclass(frozen=True, slots=True)
class Pass:
    """A pass under way: which window and page come next, how many pages were read."""

    windows: tuple[Window, ...]
    started: float
    window_no: int = 0
    page_no: int = 1
    pages: int = 0

    @property
    def request(self) -> ListRequest:
        return ListRequest(self.windows[self.window_no], self.page_no)


@dataclass(frozen=True, slots=True)
class ListState:
    """The list's own state, kept by the caller between calls.

    `checked_since`: a task the list has not shown since this time is not watched (the
    start of the last finished pass; after an error, the error's time)."""

    next_at: float = 0.0
    healthy: bool = True
    errors_in_row: int = 0
    checked_since: float = -math.inf
    current: Pass | None = None

    @property
    def answering(self) -> bool:
        """The list has answered (a whole pass, or a page since its last error) and not
        failed since: only then is its share of the rate set aside (`cycle`)."""
        return self.healthy and self.checked_since > -math.inf


@dataclass(frozen=True, slots=True)
class Begin:
    """Send `request` now (None: nothing to ask); `note` says what a bound left out of
    a new pass (a debug line)."""

    state: ListState
    request: ListRequest | None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a list answer means. Task names throughout.

    `poll_now`: the list says they ended; poll each at once. `seen`: set their
    `listed_at` to now. `slower`: now watched, pace them at `slow_interval` after their
    last poll. `faster`: no longer watched, back to today's pace. `request`: the next page to ask
    now (None: the pass is over or stopped). `note`: a bound cut the pass (a debug line).
    `running`: known as PENDING, the list shows them RUNNING: their status moves on
    without a poll (a watched task is asked directly only every `watched_interval`, and
    the sidecar would say PENDING that long).
    """

    state: ListState
    poll_now: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()
    slower: tuple[str, ...] = ()
    faster: tuple[str, ...] = ()
    request: ListRequest | None = None
    note: str | None = None
    running: tuple[str, ...] = ()


# -- (b) the windows ---------------------------------------------------------------------
def parse_submit_time(value: Any) -> datetime | None:
    """`2025-09-25 11:07:28.590` as a zone-less time in the API's zone; None if unusable
    (a sidecar may have been edited: anything but a plausible time is unknown)."""
    if not isinstance(value, str) or len(value) > _MAX_TIME_CHARS:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:  # never written so by the API; read it as it says
        moment = (moment.astimezone(UTC) + API_ZONE).replace(tzinfo=None)
    return moment if _EARLIEST <= moment <= _LATEST else None


def _compact(moment: datetime, up: bool) -> str:
    """Whole seconds, rounded away from the window's inside."""
    whole = moment.replace(microsecond=0)
    if up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.strftime(_COMPACT)


def _groups(times: list[tuple[datetime, str]]) -> list[list[tuple[datetime, str]]]:
    """Sorted (time, id) pairs split at the widest gaps over MIN_GAP, MAX_WINDOWS at most."""
    gaps = sorted(
        ((b[0] - a[0], i + 1) for i, (a, b) in enumerate(itertools.pairwise(times))),
        reverse=True,
    )
    cuts = sorted(i for gap, i in gaps[: MAX_WINDOWS - 1] if gap > MIN_GAP)
    bounds = [0, *cuts, len(times)]
    return [times[a:b] for a, b in itertools.pairwise(bounds)]


def windows(tasks: Iterable[Tracked]) -> Windows | None:
    """The windows covering every task with a known `submit_time`; None if there is none.

    Windows never span more than MAX_WINDOW: older tasks are left out (`cut`) and stay on
    per-task polling (a task is queryable for 24 h anyway)."""
    times = sorted(
        (moment, t.task_id)
        for t in tasks
        if (moment := parse_submit_time(t.submit_time)) is not None
    )
    if not times:
        return None
    oldest = times[-1][0] - MAX_WINDOW
    cut = tuple(task_id for moment, task_id in times if moment < oldest)
    kept = times[len(cut) :]
    found = tuple(
        Window(
            _compact(group[0][0] - MARGIN, up=False),
            _compact(group[-1][0] + MARGIN, up=True),
            frozenset(task_id for _, task_id in group),
        )
        for group in _groups(kept)
    )
    return Windows(found, cut)


# -- (a) when a pass is due --------------------------------------------------------------
def due_at(state: ListState, policy: ListPolicy) -> float | None:
    """When the next list request may go (None: the list is off). A pass under way asks
    its next page as soon as the rate allows."""
    if policy.interval is None:
        return None
    return -math.inf if state.current is not None else state.next_at


def period(pages: int, policy: ListPolicy) -> float:
    """Time between two pass starts: `poll.list_interval`, longer for a pass of many pages
    so that the list uses at most LIST_SHARE of the rate."""
    assert policy.interval is not None
    return max(policy.interval, pages / (LIST_SHARE * policy.max_per_second))


def begin(state: ListState, tasks: Mapping[str, Tracked], now: float, policy: ListPolicy) -> Begin:
    """The request to send now: the next page of the pass under way, or page 1 of a new
    pass when one is due; none when the list is off, not due, or no task is covered
    (then the next look is a list interval later)."""
    if policy.interval is None or (state.current is None and now < state.next_at):
        return Begin(state, None)
    if state.current is not None:
        return Begin(state, state.current.request)
    found = windows(tasks.values())
    if found is None or not found.windows:  # look again later, at a list pass's pace
        return Begin(replace(state, next_at=now + period(1, policy)), None)
    current = Pass(found.windows, now)
    note = None
    if found.cut:
        note = f"{len(found.cut)} task(s) older than the {_hours(MAX_WINDOW)} h window left out"
    return Begin(replace(state, current=current), current.request, note)


def _hours(span: timedelta) -> int:
    return int(span.total_seconds() // 3600)


# -- (c) paging --------------------------------------------------------------------------
def read_page(obj: Any, page_size: int = PAGE_SIZE) -> Page:
    """A list answer's rows, `total` and page size; `MalformedResponse` if it has no list
    of rows. Rows without a string task id and status are skipped; at most `page_size`
    rows are read (a hostile answer may hold thousands)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise MalformedResponse("task list answer has no data list")
    rows = tuple(
        Row(r["task_id"], r["status"])
        for r in obj["data"][:page_size]
        if isinstance(r, dict) and isinstance(r.get("task_id"), str)
        if isinstance(r.get("status"), str)
    )
    return Page(rows, _count(obj.get("total")), _count(obj.get("page_size")) or None)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def more_pages(request: ListRequest, page: Page) -> bool:
    """Whether this window has rows past this page: by `total` when the answer says it,
    else by a full page."""
    if not page.rows:
        return False
    if page.total is None:
        return len(page.rows) >= request.page_size
    return request.page_no * (page.page_size or request.page_size) < page.total


def _advance(current: Pass, request: ListRequest, page: Page) -> tuple[Pass | None, str | None]:
    """The pass after this page: its next page or window, or None when it is over (with a
    note if MAX_PAGES stopped it short)."""
    pages = current.pages + 1
    more = more_pages(request, page)
    later = len(current.windows) - current.window_no - 1  # windows after this one
    if pages < MAX_PAGES and more:
        return replace(current, page_no=current.page_no + 1, pages=pages), None
    if pages < MAX_PAGES and later:
        return replace(current, window_no=current.window_no + 1, page_no=1, pages=pages), None
    if more or later:
        return None, (
            f"list pass stopped after {MAX_PAGES} pages: the rest of window"
            f" {current.window_no + 1} of {len(current.windows)} and any after it not read"
        )
    return None, None


# -- (d) what a page says ----------------------------------------------------------------
def watched(task: Tracked, state: ListState) -> bool:
    """Whether the list vouches for this task: healthy, and it showed the task since
    `checked_since` (a task it does not show is polled at today's pace). A task not yet
    polled (no `submit_time`) never is, even if a window happens to show it."""
    return (
        state.healthy
        and task.submit_time is not None
        and task.listed_at is not None
        and task.listed_at >= state.checked_since
    )


@dataclass(frozen=True, slots=True)
class _Read:
    """What one page's rows say about the tracked tasks (names, ids shown)."""

    shown: frozenset[str]
    seen: tuple[str, ...]
    slower: tuple[str, ...]
    poll_now: tuple[str, ...]
    running: tuple[str, ...]


def _read_rows(page: Page, tasks: Mapping[str, Tracked], state: ListState) -> _Read:
    shown: dict[str, Tracked] = {}
    ended: set[str] = set()
    running: set[str] = set()
    for row in page.rows:
        task = tasks.get(row.task_id)
        if task is None:
            continue  # not ours, or ended already: nothing to do
        shown.setdefault(row.task_id, task)
        if row.status in ENDED:
            ended.add(row.task_id)
        elif row.status == "RUNNING":
            running.add(row.task_id)
    idle = {task_id: t for task_id, t in shown.items() if not t.busy}
    newly = (t for t in idle.values() if t.submit_time is not None and not watched(t, state))
    # Only forward, and only from a poll's PENDING: a row may be older than the last poll.
    started = (t for i, t in idle.items() if i in running - ended and t.status == "PENDING")
    return _Read(
        frozenset(shown),
        tuple(t.name for t in shown.values()),
        tuple(t.name for t in newly),
        tuple(t.name for task_id, t in idle.items() if task_id in ended),
        tuple(t.name for t in started),
    )


def after_page(
    state: ListState,
    page: Page,
    tasks: Mapping[str, Tracked],
    now: float,
    policy: ListPolicy,
) -> Outcome:
    """Read one page of the pass under way. `tasks` maps task id to every task still being
    polled (ended ones are not in it); an id it does not hold changes nothing."""
    current = state.current
    assert current is not None, "an answer to a request begin() did not make"
    read = _read_rows(page, tasks, state)
    following, note = _advance(current, current.request, page)
    healthy = replace(state, healthy=True, errors_in_row=0, current=following)
    if following is not None:
        return Outcome(
            healthy,
            read.poll_now,
            read.seen,
            read.slower,
            (),
            following.request,
            None,
            read.running,
        )
    missed = tuple(  # every task, not only the covered ones: a cut task is missed too
        task.name
        for task_id, task in tasks.items()
        if task_id not in read.shown
        and not task.busy
        and watched(task, state)
        and (task.listed_at or 0.0) < current.started
    )
    done = replace(
        healthy,
        checked_since=current.started,
        next_at=current.started + period(current.pages + 1, policy),
    )
    return Outcome(done, read.poll_now, read.seen, read.slower, missed, None, note, read.running)


# -- (e) list health ---------------------------------------------------------------------
def after_error(
    state: ListState,
    error: TransientError,
    tasks: Mapping[str, Tracked],
    now: float,
    policy: ListPolicy,
) -> Outcome:
    """A list request failed (429, 5xx, timeout, malformed answer, a refused key): pause
    the list by the retry policy, stop the pass, and put every watched task back on
    today's pace. Per-task polls are not paused (a 429 on a poll does that)."""
    assert policy.interval is not None
    errors = state.errors_in_row + 1
    delay = plan(error, errors, policy.interval).delay
    if isinstance(error, AuthRejected):  # a key without list rights: no need to ask often
        delay = max(delay, backoff(policy.interval, errors))
    faster = tuple(t.name for t in tasks.values() if not t.busy and watched(t, state))
    failed = ListState(
        next_at=now + delay,
        healthy=False,
        errors_in_row=errors,
        checked_since=now,
        current=None,
    )
    return Outcome(failed, faster=faster)


# -- (f) the per-task pace ---------------------------------------------------------------
def slow_interval(watched_count: int, policy: ListPolicy) -> float:
    """The watched pace: `watched_interval`, or longer when that many watched tasks would
    take more than WATCHED_SHARE of the rate (their deadlines would crowd out the rest)."""
    return max(policy.watched_interval, watched_count / (WATCHED_SHARE * policy.max_per_second))


def pace(
    task: Tracked,
    state: ListState,
    policy: ListPolicy,
    today: tuple[float, float | None],
    watched_count: int,
) -> tuple[float, float | None]:
    """Seconds until this unfinished task is worth polling and until it must be: the
    watched pace for both (the list will say when it ends; the deadline bounds the gap),
    or `today` (`CompletionModel.next_poll`) when the list does not vouch for it."""
    if policy.interval is not None and watched(task, state):
        slow = slow_interval(watched_count, policy)
        return slow, slow
    return today


Plan = tuple[float, float | None]  # (due, deadline) on the caller's monotonic clock


def back_to_today(plans: Mapping[str, Plan], now: float, policy: ListPolicy) -> dict[str, Plan]:
    """Today's plans for tasks the list no longer vouches for (`faster`), spread out.

    A watched task's plan dates from its last direct poll, often minutes ago: taken as
    they are, after one list error every such task would be due and past its deadline at
    once, and its polls would go before every other task's for N / rate seconds (at 1,000
    watched tasks and 20/s, a new task's first poll waited 42 s in `bench.lagmodel`,
    15 s without the list). So, in order of their plans, the i-th may not be due before
    now + i / (WATCHED_SHARE x rate): the returning tasks take the share watched polls
    had, and every other task keeps the rest. Their gaps stay bounded: the last is
    polled N / (WATCHED_SHARE x rate) seconds from now at the latest."""
    step = 1.0 / (WATCHED_SHARE * policy.max_per_second)
    ordered = sorted(plans.items(), key=lambda item: (item[1][0], item[0]))
    spread: dict[str, Plan] = {}
    for i, (name, (due, deadline)) in enumerate(ordered):
        due = max(due, now + i * step)
        spread[name] = (due, None if deadline is None else max(deadline, due))
    return spread


def cycle(unwatched: int, watched_count: int, state: ListState, policy: ListPolicy) -> float:
    """The per-task cycle the predictor should plan with: N / rate, as without the list,
    while the list is off, failing or not heard from yet; once it answers, the unwatched
    tasks share what the list and the watched polls leave of the rate."""
    rate = policy.max_per_second
    if policy.interval is None or not state.answering:  # off, failing, or not heard yet
        return (unwatched + watched_count) / rate
    left = rate * (1 - LIST_SHARE) - watched_count / slow_interval(watched_count, policy)
    return unwatched / max(left, rate * LIST_SHARE)
