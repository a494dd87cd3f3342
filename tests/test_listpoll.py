"""List-assisted polling decisions, in-process with injected time: windows, paging, what a
page says, list health, and the pace of per-task polls (`wansync.core.listpoll`)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import lagmodel
from tests.helpers import TEST_KEY
from wansync.core import listpoll as lp
from wansync.core.errors import (
    AuthRejected,
    MalformedResponse,
    RateLimited,
    RemoteUnavailable,
    TransientError,
)
from wansync.core.retry import MAX_BACKOFF
from wansync.core.scheduler import Scheduler
from wansync.remote.api import TaskApi, api_time

POLICY = lp.ListPolicy(interval=5.0, poll_interval=15.0, max_per_second=20.0)
OFF = replace(POLICY, interval=None)
TODAY = (15.0, 27.0)  # what CompletionModel.next_poll would say
NOON = datetime(2025, 9, 25, 4, 0, tzinfo=UTC).timestamp()  # 12:00 in the API's zone


def at(wall: float) -> str:
    """A submit_time as the task API writes it (UTC+8, no zone)."""
    return api_time(wall)


def tracked(*tasks: lp.Tracked) -> dict[str, lp.Tracked]:
    return {t.task_id: t for t in tasks}


def task(n: int, wall: float | None, **kw) -> lp.Tracked:
    return lp.Tracked(f"t{n}", f"id-{n}", None if wall is None else at(wall), **kw)


def second(submit: str) -> str:
    """`2025-09-25 11:07:28.590` -> `20250925110728`, the list filter's form."""
    return submit[:19].replace("-", "").replace(" ", "").replace(":", "")


@dataclass
class FakeList:
    """`GET /api/v1/tasks` as documented: rows created in [start_time, end_time] (whole
    seconds, UTC+8), newest first, pages of page_size, `total` (None: left out)."""

    rows: list[tuple[str, str, str]]  # (submit_time, task id, status)
    say_total: bool = True

    def answer(self, request: lp.ListRequest) -> dict:
        inside = sorted(
            (r for r in self.rows if request.window.start <= second(r[0]) <= request.window.end),
            reverse=True,
        )
        first = (request.page_no - 1) * request.page_size
        page = inside[first : first + request.page_size]
        body = {
            "data": [{"task_id": i, "status": s, "model_name": "wan2.7-i2v"} for _, i, s in page],
            "page_no": request.page_no,
            "page_size": request.page_size,
        }
        if self.say_total:
            body["total"] = len(inside)
        return body


def run_pass(
    state: lp.ListState, tasks: dict[str, lp.Tracked], fake: FakeList, now: float
) -> tuple[lp.ListState, list[lp.ListRequest], list[lp.Outcome]]:
    """One whole pass, one page per millisecond; `seen` is carried out as the daemon would."""
    begun = lp.begin(state, tasks, now, POLICY)
    state, request = begun.state, begun.request
    requests, outcomes = [], []
    while request is not None:
        requests.append(request)
        out = lp.after_page(state, lp.read_page(fake.answer(request)), tasks, now, POLICY)
        for name in out.seen:
            key = next(k for k, t in tasks.items() if t.name == name)
            tasks[key] = replace(tasks[key], listed_at=now)
        outcomes.append(out)
        state, request = out.state, out.request
        now += 0.001
    return state, requests, outcomes


def names(outcomes: list[lp.Outcome], field: str) -> set[str]:
    return {n for out in outcomes for n in getattr(out, field)}


# -- (b) windows ---------------------------------------------------------------------------
def test_a_window_covers_every_known_submit_time_with_a_margin():
    """Start one minute before the oldest submit_time, end one after the newest (rounded
    outwards to whole seconds), in the API's zone-less compact form."""
    tasks = [task(1, NOON + 0.25), task(2, NOON + 600.5), task(3, None)]
    found = lp.windows(tasks)
    assert found is not None and found.cut == ()
    (window,) = found.windows
    assert (window.start, window.end) == ("20250925115900", "20250925121101")
    assert window.covered == {"id-1", "id-2"}


@pytest.mark.parametrize(
    "value",
    [None, "", "soon", 1758772800, "2025-13-40 99:00:00", "x" * 100_000, "9999-12-31 23:59:59"],
)
def test_an_unknown_or_unusable_submit_time_is_not_covered_and_keeps_todays_pace(value):
    """Before its first poll (or with an edited sidecar) a task is in no window, so no
    pass can vouch for it: it is polled as today."""
    odd = lp.Tracked("odd", "id-odd", value if isinstance(value, str) else None)
    assert lp.windows([odd]) is None
    begun = lp.begin(lp.ListState(), tracked(odd), 100.0, POLICY)
    assert begun.request is None and begun.state.next_at > 100.0
    assert lp.pace(odd, lp.ListState(), POLICY, TODAY, 0) == TODAY


def test_a_task_not_yet_polled_that_a_window_shows_is_polled_if_ended_but_never_slowed():
    """Its first poll is still due; the list may make it sooner, never later."""
    fresh = lp.Tracked("fresh", "id-fresh", None)
    tasks = tracked(task(1, NOON), fresh)
    fake = FakeList([(at(NOON), "id-1", "RUNNING"), (at(NOON + 1), "id-fresh", "SUCCEEDED")])
    state, _, outcomes = run_pass(lp.ListState(), tasks, fake, 10.0)
    assert names(outcomes, "poll_now") == {"fresh"} and names(outcomes, "slower") == {"t1"}
    assert not lp.watched(tasks["id-fresh"], state)


def test_a_window_spanning_midnight_in_the_apis_zone_finds_tasks_on_both_days():
    """23:59:30 and 00:00:30 (UTC+8): one window from 23:58:30 to 00:01:30 next day."""
    before = datetime(2025, 9, 25, 15, 59, 30, tzinfo=UTC).timestamp()
    after = before + 60
    tasks = tracked(task(1, before), task(2, after))
    (window,) = lp.windows(tasks.values()).windows  # type: ignore[union-attr]
    assert (window.start, window.end) == ("20250925235830", "20250926000130")
    fake = FakeList([(at(before), "id-1", "SUCCEEDED"), (at(after), "id-2", "FAILED")])
    _, requests, outcomes = run_pass(lp.ListState(), tasks, fake, 1000.0)
    assert len(requests) == 1
    assert names(outcomes, "poll_now") == {"t1", "t2"}


def test_a_task_submitted_hours_before_it_was_dropped_gets_a_window_of_its_own():
    """Five busy hours of the account's other tasks between an old task and the new ones:
    two windows, one page each, instead of paging through the five hours."""
    old, new = NOON - 5 * 3600, NOON
    others = [(at(old + 10 + i * 9), f"other-{i}", "SUCCEEDED") for i in range(2000)]
    ours = [(at(old), "id-1", "SUCCEEDED"), (at(new), "id-2", "RUNNING")]
    fake = FakeList([*others, *ours, (at(new + 5), "id-3", "PENDING")])
    tasks = tracked(task(1, old), task(2, new), task(3, new + 5))
    found = lp.windows(tasks.values())
    assert found is not None and [w.covered for w in found.windows] == [{"id-1"}, {"id-2", "id-3"}]
    _, requests, outcomes = run_pass(lp.ListState(), tasks, fake, 1000.0)
    assert len(requests) == 2
    assert names(outcomes, "poll_now") == {"t1"}
    assert names(outcomes, "seen") == {"t1", "t2", "t3"}


def test_windows_are_split_at_the_widest_gaps_only():
    """Six clusters an hour apart: MAX_WINDOWS windows, the narrowest gaps merged."""
    starts = [NOON - h * 3600 for h in (10, 9, 8, 5, 2, 0)]
    tasks = [task(i, wall) for i, wall in enumerate(starts)]
    found = lp.windows(tasks)
    assert found is not None and len(found.windows) == lp.MAX_WINDOWS
    assert set().union(*(w.covered for w in found.windows)) == {t.task_id for t in tasks}


def test_a_window_wider_than_the_bound_is_cut_and_the_cut_reported():
    """A task 30 h older than the newest is left out with a note, and keeps today's pace."""
    old, new = task(1, NOON - 30 * 3600, listed_at=50.0), task(2, NOON)
    found = lp.windows([old, new])
    assert found is not None and found.cut == ("id-1",)
    assert [w.covered for w in found.windows] == [{"id-2"}]
    begun = lp.begin(lp.ListState(), tracked(old, new), 100.0, POLICY)
    assert begun.note is not None and "1 task(s)" in begun.note
    state, _, outcomes = run_pass(lp.ListState(), tracked(old, new), FakeList([]), 100.0)
    assert "t1" in names(outcomes, "faster")  # it was watched; a pass cannot vouch for it
    assert lp.pace(replace(old, listed_at=50.0), state, POLICY, TODAY, 1) == TODAY


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 40 * 3600, allow_nan=False), min_size=1, max_size=60))
def test_every_known_task_is_in_one_window_or_cut(offsets):
    """Each covered submit time lies inside its window; windows never exceed a day and
    never overlap; what is cut is older than every window."""
    tasks = [task(i, NOON - off) for i, off in enumerate(offsets)]
    found = lp.windows(tasks)
    assert found is not None
    compact = {t.task_id: second(t.submit_time or "") for t in tasks}
    homes = [w for w in found.windows for _ in w.covered]
    assert len(homes) + len(found.cut) == len(tasks)
    for w in found.windows:
        assert all(w.start <= compact[i] <= w.end for i in w.covered)
        span = datetime.strptime(w.end, "%Y%m%d%H%M%S") - datetime.strptime(w.start, "%Y%m%d%H%M%S")
        assert span <= timedelta(hours=24)
    for a, b in itertools.pairwise(found.windows):
        assert a.end < b.start
    assert all(compact[i] < found.windows[0].start for i in found.cut)


# -- (a) when, (c) paging ------------------------------------------------------------------
def test_the_next_pass_is_due_a_list_interval_after_the_last_began():
    tasks = tracked(task(1, NOON))
    state, _, _ = run_pass(lp.ListState(), tasks, FakeList([]), 100.0)
    assert lp.due_at(state, POLICY) == 105.0
    assert lp.begin(state, tasks, 104.9, POLICY).request is None
    assert lp.begin(state, tasks, 105.0, POLICY).request is not None


def test_a_pass_of_many_pages_waits_longer_so_the_list_keeps_to_its_share():
    """20 pages at 20/s: the next pass 20 / (0.2 x 20) = 5 s later; at 2/s, 50 s."""
    slow = replace(POLICY, max_per_second=2.0)
    assert lp.period(20, POLICY) == 5.0
    assert lp.period(20, slow) == 50.0
    assert lp.period(1, slow) == 5.0


def test_paging_finds_a_task_on_the_last_page():
    """450 rows newest first: our ended task is the oldest, on page 5 of 5; a 6th page
    is never asked for."""
    rows = [(at(NOON + i), f"other-{i}", "SUCCEEDED") for i in range(1, 450)]
    fake = FakeList([*rows, (at(NOON), "id-1", "SUCCEEDED")])
    tasks = tracked(task(1, NOON), task(2, NOON + 449))
    _, requests, outcomes = run_pass(lp.ListState(), tasks, fake, 100.0)
    assert [r.page_no for r in requests] == [1, 2, 3, 4, 5]
    assert [out.poll_now for out in outcomes] == [(), (), (), (), ("t1",)]
    assert outcomes[-1].request is None and outcomes[-1].note is None


def test_a_watched_task_shown_on_an_earlier_page_of_the_pass_is_not_missed():
    rows = [(at(NOON + i), f"other-{i}", "RUNNING") for i in range(1, 250)]
    fake = FakeList([*rows, (at(NOON + 250), "id-2", "RUNNING"), (at(NOON), "id-1", "RUNNING")])
    tasks = tracked(task(1, NOON), task(2, NOON + 250))
    state, _, _ = run_pass(lp.ListState(), tasks, fake, 100.0)
    state, requests, outcomes = run_pass(state, tasks, fake, 105.0)
    assert len(requests) == 3 and "t2" in outcomes[0].seen and "t1" in outcomes[-1].seen
    assert names(outcomes, "faster") == set() and names(outcomes, "slower") == set()
    assert all(lp.watched(t, state) for t in tasks.values())


def test_paging_by_total_asks_no_page_past_an_exactly_full_last_one():
    rows = [(at(NOON + i), f"id-{i}", "RUNNING") for i in range(200)]
    tasks = tracked(task(0, NOON), task(199, NOON + 199))
    _, requests, _ = run_pass(lp.ListState(), tasks, FakeList(rows), 1.0)
    assert [r.page_no for r in requests] == [1, 2]


def test_paging_without_a_total_stops_at_the_first_short_page():
    rows = [(at(NOON + i), f"id-{i}", "RUNNING") for i in range(250)]
    tasks = tracked(task(0, NOON), task(249, NOON + 249))
    _, requests, _ = run_pass(lp.ListState(), tasks, FakeList(rows, say_total=False), 1.0)
    assert [r.page_no for r in requests] == [1, 2, 3]


def test_an_empty_page_ends_the_window_whatever_total_says():
    tasks = tracked(task(1, NOON))
    state = lp.begin(lp.ListState(), tasks, 1.0, POLICY).state
    out = lp.after_page(state, lp.read_page({"data": [], "total": 10**9}), tasks, 1.0, POLICY)
    assert out.request is None and out.state.current is None


def test_pages_per_pass_are_bounded_and_the_cut_reported():
    """A window of 5,000 rows: MAX_PAGES pages, a note; the tracked task on an unread
    page is not watched (it keeps today's pace)."""
    rows = [(at(NOON + i / 10), f"other-{i}", "RUNNING") for i in range(1, 5000)]
    fake = FakeList([*rows, (at(NOON), "id-1", "SUCCEEDED")])
    tasks = tracked(task(1, NOON, listed_at=1.0), task(2, NOON + 499.9))
    state, requests, outcomes = run_pass(lp.ListState(), tasks, fake, 100.0)
    assert len(requests) == lp.MAX_PAGES
    assert outcomes[-1].note is not None and "stopped after" in outcomes[-1].note
    assert names(outcomes, "poll_now") == set()
    assert "t1" in outcomes[-1].faster
    assert not lp.watched(tasks["id-1"], state)


@pytest.mark.parametrize(
    "body",
    [
        {"data": [1, "x", None, {"task_id": 7, "status": "SUCCEEDED"}]},
        {"data": [{"task_id": "id-1"}], "total": True},
        {"data": [{"task_id": "id-1", "status": ["SUCCEEDED"]}], "total": -3},
    ],
)
def test_rows_without_a_string_id_and_status_are_skipped(body):
    page = lp.read_page(body)
    assert page.rows == () and page.total is None


def test_a_hostile_page_is_read_no_further_than_the_page_size():
    body = {"data": [{"task_id": f"x{i}", "status": "RUNNING"} for i in range(50_000)]}
    assert len(lp.read_page(body).rows) == lp.PAGE_SIZE


# -- (d) what a page says ------------------------------------------------------------------
def test_only_idle_tracked_tasks_the_list_shows_as_ended_are_polled_now():
    statuses = ["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"]
    tasks = tracked(*(task(i, NOON + i) for i in range(len(statuses))))
    tasks["id-2b"] = lp.Tracked("busy", "id-2b", at(NOON), busy=True)  # a poll in flight
    rows = [(at(NOON + i), f"id-{i}", s) for i, s in enumerate(statuses)]
    fake = FakeList([*rows, (at(NOON), "id-2b", "SUCCEEDED")])
    _, _, outcomes = run_pass(lp.ListState(), tasks, fake, 10.0)
    assert names(outcomes, "poll_now") == {"t2", "t3", "t4"}
    assert names(outcomes, "seen") == {f"t{i}" for i in range(6)} | {"busy"}
    assert names(outcomes, "slower") == {f"t{i}" for i in range(6)}  # never a busy one


def test_ids_we_do_not_track_change_nothing():
    """Another program's tasks (ended or not) in our window: no poll, no pace change."""
    rows = [(at(NOON + i), f"theirs-{i}", "SUCCEEDED") for i in range(30)]
    tasks = tracked(task(1, NOON + 3, listed_at=1.0))
    state = lp.ListState(checked_since=0.0)
    before = dict(tasks)
    _, _, outcomes = run_pass(state, tasks, FakeList(rows), 10.0)
    assert names(outcomes, "poll_now") == set() and names(outcomes, "slower") == set()
    assert tasks == before  # nothing seen, so no listed_at written
    assert names(outcomes, "faster") == {"t1"}  # ours was not shown: back to today's pace


def test_a_task_the_list_shows_becomes_watched_and_slows_down():
    tasks = tracked(task(1, NOON))
    fake = FakeList([(at(NOON), "id-1", "RUNNING")])
    state, _, outcomes = run_pass(lp.ListState(), tasks, fake, 10.0)
    assert names(outcomes, "slower") == {"t1"} and names(outcomes, "poll_now") == set()
    assert lp.watched(tasks["id-1"], state)
    slow = 40 * 15.0
    assert lp.pace(tasks["id-1"], state, POLICY, TODAY, 1) == (slow, slow)
    state, _, outcomes = run_pass(state, tasks, fake, 15.0)  # shown again: no change
    assert names(outcomes, "slower") == set() and names(outcomes, "faster") == set()


def test_a_task_the_list_stops_showing_goes_back_to_todays_pace_after_one_pass():
    tasks = tracked(task(1, NOON), task(2, NOON + 1))
    both = FakeList([(at(NOON), "id-1", "RUNNING"), (at(NOON + 1), "id-2", "RUNNING")])
    state, _, _ = run_pass(lp.ListState(), tasks, both, 10.0)
    only_two = FakeList([(at(NOON + 1), "id-2", "RUNNING")])
    state, _, outcomes = run_pass(state, tasks, only_two, 15.0)
    assert names(outcomes, "faster") == {"t1"}
    assert lp.pace(tasks["id-1"], state, POLICY, TODAY, 1) == TODAY
    assert lp.pace(tasks["id-2"], state, POLICY, TODAY, 1) != TODAY


def test_a_task_first_polled_during_a_pass_is_not_judged_by_that_pass():
    """Its submit_time became known after the pass began: not covered, not `faster`."""
    tasks = tracked(task(1, NOON))
    begun = lp.begin(lp.ListState(), tasks, 10.0, POLICY)
    tasks["id-2"] = task(2, NOON + 2)  # first poll answered while page 1 was out
    out = lp.after_page(begun.state, lp.read_page({"data": [], "total": 0}), tasks, 10.1, POLICY)
    assert out.faster == () and not lp.watched(tasks["id-2"], out.state)


# -- (e) list health -----------------------------------------------------------------------
ERRORS: list[TransientError] = [
    RateLimited("HTTP 429: Throttling", 7.0),
    RemoteUnavailable("HTTP 500: Internal Server Error", "HTTP500"),
    RemoteUnavailable("HTTP 503: Service Unavailable", "HTTP503"),
    MalformedResponse("task list answer has no data list"),
    AuthRejected("HTTP 403: no list rights", "AccessDenied"),
]


def watched_state() -> tuple[lp.ListState, dict[str, lp.Tracked]]:
    tasks = tracked(task(1, NOON), task(2, NOON + 1))
    fake = FakeList([(at(NOON), "id-1", "RUNNING"), (at(NOON + 1), "id-2", "RUNNING")])
    state, _, _ = run_pass(lp.ListState(), tasks, fake, 10.0)
    assert all(lp.watched(t, state) for t in tasks.values())
    return state, tasks


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__ + ":" + e.message[:8])
def test_a_failed_list_request_makes_the_list_unhealthy_and_per_task_pace_normal(error):
    state, tasks = watched_state()
    state = lp.begin(state, tasks, 20.0, POLICY).state  # a pass under way
    out = lp.after_error(state, error, tasks, 20.0, POLICY)
    assert not out.state.healthy and out.state.current is None
    assert set(out.faster) == {"t1", "t2"}
    assert out.poll_now == () and out.request is None
    for t in tasks.values():
        assert lp.pace(t, out.state, POLICY, TODAY, 2) == TODAY
    assert lp.cycle(2, 0, out.state, POLICY) == 2 / 20.0  # N / rate, as without the list
    assert lp.begin(out.state, tasks, out.state.next_at - 0.01, POLICY).request is None
    assert lp.begin(out.state, tasks, out.state.next_at, POLICY).request is not None


def test_a_malformed_answer_is_an_error_not_an_empty_page():
    for body in ({}, [], {"data": "rows"}, {"data": None}, "[]", None):
        with pytest.raises(MalformedResponse):
            lp.read_page(body)


def test_the_list_backs_off_by_the_retry_policy_and_respects_retry_after():
    state, tasks = watched_state()
    delays = []
    now = 20.0
    for _ in range(9):
        out = lp.after_error(state, RemoteUnavailable("HTTP 500"), tasks, now, POLICY)
        delays.append(out.state.next_at - now)
        state, now = out.state, out.state.next_at
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]
    assert max(delays) == MAX_BACKOFF
    out = lp.after_error(lp.ListState(), RateLimited("HTTP 429", 42.0), tasks, 0.0, POLICY)
    assert out.state.next_at == 42.0
    state, now, delays = lp.ListState(), 0.0, []
    for _ in range(8):  # a key without list rights: not asked every minute for ever
        out = lp.after_error(state, AuthRejected("HTTP 403"), tasks, now, POLICY)
        delays.append(out.state.next_at - now)
        state, now = out.state, out.state.next_at
    assert delays == [60, 60, 60, 60, 80, 160, 300, 300]


def test_a_list_failing_for_days_keeps_backing_off_at_the_cap():
    """Thousands of errors in a row (a key without list rights for a month): no overflow."""
    _, tasks = watched_state()
    state = lp.ListState(errors_in_row=20_000, healthy=False)
    for error in (RemoteUnavailable("HTTP 500"), AuthRejected("HTTP 403")):
        out = lp.after_error(state, error, tasks, 0.0, POLICY)
        assert out.state.next_at == MAX_BACKOFF and out.state.errors_in_row == 20_001


def test_after_a_pause_a_good_page_makes_the_list_healthy_again():
    state, tasks = watched_state()
    out = lp.after_error(state, RemoteUnavailable("HTTP 500"), tasks, 20.0, POLICY)
    fake = FakeList([(at(NOON), "id-1", "SUCCEEDED"), (at(NOON + 1), "id-2", "RUNNING")])
    state, _, outcomes = run_pass(out.state, tasks, fake, out.state.next_at)
    assert state.healthy and state.errors_in_row == 0
    assert names(outcomes, "slower") == {"t1", "t2"} and names(outcomes, "poll_now") == {"t1"}


def test_after_a_pause_only_the_tasks_the_list_shows_again_are_watched():
    """Recovery vouches for nothing by itself: t2, on a page not read yet, stays unwatched."""
    state, tasks = watched_state()
    out = lp.after_error(state, RemoteUnavailable("HTTP 500"), tasks, 20.0, POLICY)
    tasks["id-1"] = task(1, NOON + 20)  # the newest: on page 1; t2, the oldest, on page 2
    rows = [(at(NOON + 1 + i / 10), f"other-{i}", "RUNNING") for i in range(1, 150)]
    ours = [(at(NOON + 1), "id-2", "RUNNING"), (at(NOON + 20), "id-1", "RUNNING")]
    fake = FakeList([*rows, *ours])
    begun = lp.begin(out.state, tasks, out.state.next_at, POLICY)
    assert begun.request is not None
    first = lp.after_page(
        begun.state, lp.read_page(fake.answer(begun.request)), tasks, 40.0, POLICY
    )
    assert first.request is not None and first.seen == ("t1",)
    assert not lp.watched(tasks["id-2"], first.state)


def test_with_the_list_off_everything_is_as_today():
    tasks = tracked(task(1, NOON, listed_at=5.0))
    assert lp.due_at(lp.ListState(), OFF) is None
    assert lp.begin(lp.ListState(), tasks, 100.0, OFF).request is None
    assert lp.pace(tasks["id-1"], lp.ListState(), OFF, TODAY, 1) == TODAY
    assert lp.cycle(30, 70, lp.ListState(), OFF) == 100 / 20.0


# -- (f) the per-task pace -----------------------------------------------------------------
def test_watched_polls_never_take_more_than_half_the_rate():
    """40 x 15 s = 600 s for a few; 20,000 watched at 20/s would need 33/s: 2,000 s."""
    assert lp.slow_interval(10, POLICY) == 600.0
    assert lp.slow_interval(20_000, POLICY) == 20_000 / (0.5 * 20.0)


def test_tasks_back_at_todays_pace_are_spread_over_the_watched_share_not_due_at_once():
    """After a list error the watched tasks' plans date from polls minutes ago: the i-th
    in order of its plan is due no sooner than i / (half the rate) from now, its
    deadline never before its due time; a plan still ahead is kept as it is."""
    now, step = 1000.0, 1 / (0.5 * 20.0)
    plans = {
        "late": (400.0, 410.0),
        "later": (300.0, 320.0),
        "no-bound": (350.0, None),
        "ahead": (1005.0, 1010.0),
    }
    spread = lp.back_to_today(plans, now, POLICY)
    assert spread == {
        "later": (now, now),
        "no-bound": (now + step, None),
        "late": (now + 2 * step, now + 2 * step),
        "ahead": (1005.0, 1010.0),
    }
    many = lp.back_to_today({f"t{i}": (10.0, 20.0) for i in range(1000)}, now, POLICY)
    dues = sorted(due for due, _ in many.values())
    assert dues[0] == now and dues[-1] == pytest.approx(now + 999 * step)  # 100 s at most
    assert all(deadline is not None and deadline >= due for due, deadline in many.values())


def test_the_cycle_of_unwatched_tasks_counts_what_the_list_and_watched_polls_leave():
    state = lp.ListState(checked_since=0.0)  # a pass has answered
    assert lp.cycle(100, 900, state, POLICY) == pytest.approx(100 / (16 - 900 / 600))


def test_the_cycle_is_todays_until_the_list_answers_and_again_once_it_fails():
    """No share of the rate is set aside for a list that has not answered yet, nor for
    one that fails: the predictor plans with N / rate, as without the list."""
    error = RemoteUnavailable("HTTP 500: boom", "HTTP500")
    assert lp.cycle(100, 0, lp.ListState(), POLICY) == 100 / POLICY.max_per_second
    answered = lp.ListState(checked_since=1.0)
    assert lp.cycle(100, 0, answered, POLICY) == pytest.approx(100 / 16)
    failed = lp.after_error(answered, error, {}, 2.0, POLICY).state
    assert lp.cycle(100, 0, failed, POLICY) == 100 / POLICY.max_per_second


def test_a_watched_task_the_list_never_says_ended_is_still_polled_at_a_bounded_interval():
    """The real scheduler at 20/s, 300 watched tasks and 2,000 unwatched ones that want
    far more than the rate (every 15 s): every gap between two direct polls of a watched
    task is still at most the watched interval plus a slot."""
    sched = Scheduler(POLICY.poll_interval, POLICY.max_per_second)
    state, _ = watched_state()
    watched = [task(i, NOON, listed_at=10.0) for i in range(300)]
    others = [lp.Tracked(f"u{i}", f"id-u{i}", at(NOON)) for i in range(2000)]
    by_name = {t.name: t for t in watched + others}
    for name in by_name:
        sched.add(name, 0.0)
    starts: dict[str, list[float]] = {t.name: [] for t in watched}
    now = 0.0
    while now < 2000:
        while (key := sched.take(now)) is not None:
            starts.get(key, []).append(now)
            wait, must = lp.pace(by_name[key], state, POLICY, (15.0, None), len(watched))
            sched.add(key, now + wait, None if must is None else now + must)
        now += 0.01
    bound = lp.slow_interval(300, POLICY) + 1 / POLICY.max_per_second + 0.01
    assert all(len(s) >= 3 for s in starts.values())
    assert max(b - a for s in starts.values() for a, b in itertools.pairwise(s)) <= bound


# -- the whole loop, on the completion-lag model (bench.lagmodel: real Scheduler, exact clock)
def lag_run(setup: lagmodel.Setup) -> tuple[lagmodel.ListedDaemon, lagmodel.Run]:
    daemon = lagmodel.ListedDaemon(lagmodel.tasks(42), setup)
    return daemon, daemon.go()


def mean_lag(daemon: lagmodel.ListedDaemon, run: lagmodel.Run, ids=None) -> float:
    ends = {t["id"]: t["at"] + t["q"] + t["r"] for t in daemon.ts}
    chosen = ends if ids is None else {i: ends[i] for i in ids}
    return sum(run.seen[i] - e for i, e in chosen.items()) / len(chosen)


RATE, INTERVAL = lagmodel.RATE, lagmodel.INTERVAL
LISTED = lagmodel.Setup(RATE, INTERVAL, lp.LIST_INTERVAL / 20)


def test_the_list_finds_most_ends_and_cuts_lag_and_requests():
    today_daemon, today = lag_run(lagmodel.Setup(RATE, INTERVAL, None))
    daemon, run = lag_run(LISTED)
    assert run.by_list >= 0.9 * len(daemon.ts)
    assert mean_lag(daemon, run) < 0.5 * mean_lag(today_daemon, today)
    assert run.requests < 0.7 * today.requests


def test_a_list_that_always_answers_500_changes_nothing_but_a_few_requests():
    today_daemon, today = lag_run(lagmodel.Setup(RATE, INTERVAL, None))
    daemon, run = lag_run(replace(LISTED, fails=True))
    assert run.by_list == 0 and run.list_requests <= 12
    assert mean_lag(daemon, run) <= 1.1 * mean_lag(today_daemon, today)
    assert run.requests - run.list_requests <= 1.05 * today.requests
    assert run.worst_gap <= 2 * len(daemon.ts) / RATE  # the two-cycle rule still holds


def test_tasks_the_list_never_shows_still_end_by_per_task_polls():
    today_daemon, today = lag_run(lagmodel.Setup(RATE, INTERVAL, None))
    daemon, run = lag_run(replace(LISTED, hidden=5))
    assert len(run.seen) == len(daemon.ts) and daemon.hidden
    hidden_lag = mean_lag(daemon, run, daemon.hidden)
    assert hidden_lag <= 1.1 * mean_lag(today_daemon, today, daemon.hidden)


# -- against the simulator's task list, over HTTP, with the real client's error types --------
def sim_pass(api: TaskApi, state: lp.ListState, tasks: dict[str, lp.Tracked], now: float):
    """A whole pass against the simulator (the client's GET, its error mapping)."""
    begun = lp.begin(state, tasks, now, POLICY)
    state, request, outcomes = begun.state, begun.request, []
    while request is not None:
        try:
            body = api._get_json("/api/v1/tasks", request.params())
            out = lp.after_page(state, lp.read_page(body), tasks, now, POLICY)
        except TransientError as error:
            out = lp.after_error(state, error, tasks, now, POLICY)
        for name in out.seen:
            tasks[f"id-{name}"] = replace(tasks[f"id-{name}"], listed_at=now)
        outcomes.append(out)
        state, request = out.state, out.request
    return state, outcomes


def test_against_the_simulator_the_list_finds_ended_tasks_and_never_vouches_for_a_hidden_one(sim):
    """An old task (submitted 5 h ago) that ended, one still running, one the list does
    not show, and 150 other tasks of the account on top: the windows and pages reach
    them all; only the ended one is polled now; the hidden one keeps today's pace. Then
    a 500, a 429 and a non-JSON answer each make the list unhealthy."""
    now = time.time()
    sim.add_task("id-old", model="wan2.7-i2v", created=now - 5 * 3600, run_seconds=60)
    sim.add_task("id-run", model="wan2.7-i2v", created=now - 30, queue_seconds=600)
    sim.add_task("id-hid", model="wan2.7-i2v", created=now - 20, queue_seconds=600, listed=False)
    for i in range(150):
        sim.add_task(f"others-{i:04d}", model="wan2.7-t2v", created=now - 25 + i / 10)
    api = TaskApi(sim.url, TEST_KEY, timeout=10)
    try:
        tasks = {}
        for name in ("old", "run", "hid"):
            submit = api.fetch(f"id-{name}").output["submit_time"]
            tasks[f"id-{name}"] = lp.Tracked(name, f"id-{name}", submit)
        state, outcomes = sim_pass(api, lp.ListState(), tasks, 100.0)
        assert len(outcomes) == 3  # the old task's window, then two pages of the recent one
        assert names(outcomes, "poll_now") == {"old"}
        assert names(outcomes, "seen") == {"old", "run"}
        assert lp.watched(tasks["id-run"], state) and not lp.watched(tasks["id-hid"], state)
        assert lp.pace(tasks["id-hid"], state, POLICY, TODAY, 2) == TODAY
        del tasks["id-old"]  # polled at once: SUCCEEDED, no longer polled
        for status, retry_after, pause in [(500, None, 5.0), (429, "30", 30.0)]:
            sim.add_fault("list", "status", status=status, retry_after=retry_after)
            state, outcomes = sim_pass(api, replace(state, next_at=0.0), tasks, 200.0)
            assert not state.healthy and names(outcomes, "faster") == {"run"}
            assert state.next_at == 200.0 + pause
            state, _ = sim_pass(api, state, tasks, state.next_at)
            assert state.healthy and lp.watched(tasks["id-run"], state)
        sim.add_fault("list", "malformed")
        state, outcomes = sim_pass(api, replace(state, next_at=0.0), tasks, 400.0)
        assert not state.healthy and names(outcomes, "faster") == {"run"}
        assert state.next_at == 400.0 + 5.0
    finally:
        api.close()


@pytest.mark.parametrize(
    ("list_interval", "poll_interval", "expected"),
    [(5.0, 15.0, 5.0), (5.0, 1.0, 1.0), (0.2, 0.2, 0.2), (None, 1.0, None)],
)
def test_the_list_is_asked_at_least_as_often_as_a_task_would_be_polled(
    list_interval: float | None, poll_interval: float, expected: float | None
) -> None:
    assert lp.pass_interval(list_interval, poll_interval) == expected
