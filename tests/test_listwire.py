"""List-assisted polling in the daemon (run/listing.py): the list's turn in the schedule,
what its answers do to the polls, `found_by`, and the daemon against the simulator's list.

In-process first (the pipeline and the listing with `now` given, answers handed in as
messages, as tests/test_pipeline_effects.py does), then the daemon as a subprocess
against the simulator, whose task list filters, pages and fails like the real one.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEST_KEY, Env, drop
from wansync import config
from wansync.config import Live
from wansync.core import events as ev
from wansync.core import listpoll
from wansync.core.effects import Emit, StartList, StartPoll, WriteSidecars
from wansync.core.errors import AuthRejected, RemoteUnavailable, TransientError
from wansync.core.lifecycle import Now
from wansync.core.messages import ListDone, PollDone, TaskReport
from wansync.core.scheduler import Scheduler
from wansync.core.tracker import Tracker
from wansync.files import sidecar
from wansync.remote.api import TaskApi, api_time
from wansync.run.listing import LIST, Listing
from wansync.run.pipeline import Pipeline
from wansync.run.publish import Folders

T0 = Now(1000.0, 1_800_000_000.0)
T1 = Now(1000.1, 1_800_000_000.1)  # the next slot of the rate after a poll at T0
SUBMIT = "2027-01-15 16:00:00.000"  # as the task API writes it (UTC+8, no zone)
MODEL = "wan2.7-i2v"  # the simulator lists only tasks that have a model
INTERVAL, LIST_EVERY, RATE = 1.0, 1.0, 20.0  # the list never less often than a poll


def later(now: Now, seconds: float) -> Now:
    return Now(now.mono + seconds, now.wall + seconds)


class Setup:
    """The pipeline with its listing, on real folders; polls and list pages by hand."""

    def __init__(self, tmp_path: Path, list_interval: float | None = LIST_EVERY) -> None:
        self.folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir()
        self.cfg = config.from_mapping(
            {
                "inbox": str(self.folders.inbox),
                "outbox": str(self.folders.outbox),
                "failed": str(self.folders.failed),
                "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
                "poll": {
                    "interval": INTERVAL,
                    "max_per_second": RATE,
                    "list_interval": list_interval,
                },
            }
        )
        self.live = Live(self.cfg)
        self.scheduler = Scheduler(INTERVAL, RATE)
        self.tracker = Tracker(self.scheduler)
        self.listing = Listing(self.live, self.tracker, self.scheduler)
        self.pipeline = Pipeline(
            self.live, self.folders, self.tracker, self.scheduler, lambda s: None, self.listing
        )

    def discover(self, name: str, task_id: str, now: Now = T0) -> None:
        path = self.folders.task(name)
        path.write_text(f"{task_id}\n")
        self.pipeline.discover(path, now)

    def dispatch(self, now: Now) -> list[Any]:
        return self.pipeline.dispatch(now)

    def poll(self, name: str, status: str, now: Now, answer: Any = None) -> list[Any]:
        """The poll due at `now` goes out (in the next free slot of the rate: a list page
        may have taken this one) and answers `status` (or `answer`)."""
        for _ in range(5):
            starts = [e for e in self.dispatch(now) if isinstance(e, StartPoll) and e.name == name]
            if starts:
                return self.answer_poll(starts[0], status, now, answer)
            now = later(now, 1 / RATE)
        raise AssertionError(f"{name} was not polled")

    def answer_poll(self, start: StartPoll, status: str, now: Now, answer: Any = None) -> list[Any]:
        output = {"task_id": start.task_id, "task_status": status, "submit_time": SUBMIT}
        if status == "SUCCEEDED":
            output["video_url"] = "http://127.0.0.1:9/v.mp4"
        report = answer or TaskReport(status, None, output, None)
        done = PollDone(start.name, start.task_id, now.mono, now.wall, 0.01, report)
        return self.pipeline.handle(done, now)

    def list_turn(self, now: Now) -> StartList:
        [start] = [e for e in self.dispatch(now) if isinstance(e, StartList)]
        return start

    def answer(self, start: StartList, now: Now, rows: dict[str, str] | Exception) -> list[Any]:
        """The list page `start` asked for answers these (task id -> status) rows."""
        if isinstance(rows, TransientError):
            outcome: listpoll.Page | TransientError = rows
        else:
            page = tuple(listpoll.Row(i, s) for i, s in rows.items())
            outcome = listpoll.Page(page, len(page), listpoll.PAGE_SIZE)
        return self.pipeline.handle(ListDone(start.request, 0.01, outcome), now)

    def due(self, name: str) -> float | None:
        return self.scheduler.due_at(name)


def emitted(effects: list[Any]) -> list[ev.Event]:
    return [e.event for e in effects if isinstance(e, Emit)]


def watched_setup(tmp_path: Path) -> Setup:
    """One task polled once (RUNNING), then shown by a list page: watched."""
    s = Setup(tmp_path)
    s.discover("clip", "task-clip-000001")
    s.poll("clip", "RUNNING", T0)
    assert s.due("clip") == T0.mono + INTERVAL  # today's pace: few tasks, one interval
    s.answer(s.list_turn(T1), T1, {"task-clip-000001": "RUNNING"})
    return s


# -- in-process ------------------------------------------------------------------------------
def test_a_shown_task_slows_down_and_an_end_the_list_shows_is_polled_at_once(tmp_path):
    """Watched: next poll 40 x interval away; the list says SUCCEEDED: polled now, and its
    end is recorded as found by the list (sidecar and event)."""
    s = watched_setup(tmp_path)
    assert s.due("clip") == T0.mono + 40 * INTERVAL
    t = later(T1, LIST_EVERY)
    assert s.dispatch(later(T1, LIST_EVERY - 0.1)) == []  # the next pass, not before its time
    effects = s.answer(s.list_turn(t), t, {"task-clip-000001": "SUCCEEDED"})
    [page] = emitted(effects)
    assert isinstance(page, ev.ListPage) and (page.shown, page.ended) == (1, 1)
    assert s.due("clip") == t.mono
    effects = s.poll("clip", "SUCCEEDED", t)
    [polled] = [e for e in emitted(effects) if isinstance(e, ev.TaskPolled)]
    assert polled.found_by == "list"
    assert s.tracker.get("clip").record.found_by == "list"


def test_an_end_the_list_shows_is_polled_on_its_answer_not_a_rate_slot_later(tmp_path):
    """The page took the slot at `t`; its answer names an end: the poll goes at once (the
    sliding second still counts it), where a merely due task waits for the next slot."""
    s = watched_setup(tmp_path)
    s.discover("other", "task-other-00001", T1)
    t = later(T1, LIST_EVERY)
    s.answer(s.list_turn(t), t, {"task-clip-000001": "SUCCEEDED"})
    assert [(e.name, e.started) for e in s.dispatch(t) if isinstance(e, StartPoll)] == [
        ("clip", t.mono)
    ]


def test_an_end_a_poll_sees_by_itself_is_found_by_poll_and_said_once(tmp_path):
    """With no word from the list, the poll that sees the end says `poll`; a later poll
    of the same task (no URL yet) does not count it again."""
    s = Setup(tmp_path)
    s.discover("clip", "task-clip-000001")
    s.poll("clip", "RUNNING", T0)
    t = later(T0, INTERVAL)
    no_url = TaskReport("SUCCEEDED", None, {"task_id": "task-clip-000001"}, None)
    [first] = [
        e for e in emitted(s.poll("clip", "SUCCEEDED", t, no_url)) if e.EVENT == "task.polled"
    ]
    assert first.found_by == "poll"
    t = later(t, 60)
    [again] = [e for e in emitted(s.poll("clip", "SUCCEEDED", t)) if e.EVENT == "task.polled"]
    assert again.found_by is None and s.tracker.get("clip").record.found_by == "poll"


def test_a_pending_task_the_list_shows_running_says_running_without_a_poll(tmp_path):
    """Watched, a task is asked directly only every 40 x interval: the list's RUNNING is
    taken into its record (and sidecar) at once, so `status` and `submit --wait` do not
    say PENDING all that while; a later row saying PENDING (older than what we know)
    never moves it back, and an unpolled task is left to its first poll."""
    s = Setup(tmp_path)
    s.discover("clip", "task-clip-000001")
    s.discover("fresh", "task-fresh-00001")
    s.poll("clip", "PENDING", T0)
    effects = s.answer(
        s.list_turn(T1), T1, {"task-clip-000001": "RUNNING", "task-fresh-00001": "RUNNING"}
    )
    assert s.tracker.get("clip").record.task_status == "RUNNING"
    assert s.tracker.get("fresh").record.task_status is None
    [write] = [e for e in effects if isinstance(e, WriteSidecars)]
    assert write.names == ("clip",) and not [e for e in effects if isinstance(e, StartPoll)]
    assert s.due("clip") == T0.mono + 40 * INTERVAL  # watched: no poll for the news
    t = later(T1, LIST_EVERY)
    s.answer(s.list_turn(t), t, {"task-clip-000001": "PENDING"})
    assert s.tracker.get("clip").record.task_status == "RUNNING"


def test_a_list_answer_naming_tasks_we_do_not_track_changes_nothing(tmp_path):
    """Strangers' rows, ended or not, schedule nothing and touch no task."""
    s = Setup(tmp_path)
    s.discover("clip", "task-clip-000001")
    s.poll("clip", "RUNNING", T0)
    before = s.due("clip")
    strangers = {f"stranger-{i:04d}": ("SUCCEEDED" if i % 2 else "RUNNING") for i in range(50)}
    effects = s.answer(s.list_turn(T1), T1, strangers)
    assert [type(e) for e in emitted(effects)] == [ev.ListPage]
    assert s.due("clip") == before and len(s.scheduler) == 1  # the clip; no stranger
    assert s.tracker.get("clip").listed_at is None


def test_a_task_named_list_is_polled_like_any_other(tmp_path):
    """The list's key in the schedule is no name: a task called `list` is a task."""
    s = Setup(tmp_path)
    s.discover("list", "task-list-000001")
    s.poll("list", "RUNNING", T0)
    turn = s.list_turn(T1)
    assert "list" in s.scheduler and LIST not in s.scheduler  # the task waits; the list asks
    s.answer(turn, T1, {"task-list-000001": "SUCCEEDED"})
    s.poll("list", "SUCCEEDED", later(T0, INTERVAL))  # at once: one interval after its poll
    assert s.tracker.get("list").state == "downloading"


def test_the_list_waits_until_a_submit_time_is_known(tmp_path):
    """Before any task's first answer there is no window to ask: no list slot is taken."""
    s = Setup(tmp_path)
    s.discover("clip", "task-clip-000001")
    assert LIST not in s.scheduler
    [start] = s.dispatch(T0)
    assert isinstance(start, StartPoll) and LIST not in s.scheduler


def test_a_list_error_puts_watched_tasks_back_at_todays_pace_and_says_so_once(tmp_path):
    """A 500 pauses the list (one list interval), the watched task is due at its plan
    again; a second failure extends the pause at debug; a good page resumes the list."""
    s = watched_setup(tmp_path)
    t = later(T1, LIST_EVERY)
    effects = s.answer(s.list_turn(t), t, RemoteUnavailable("HTTP 500: boom", "HTTP500"))
    [paused] = emitted(effects)
    assert isinstance(paused, ev.ListPaused) and paused.errors_in_row == 1
    assert paused.retry_in == LIST_EVERY and paused.code == "HTTP500"
    assert s.due("clip") == t.mono  # today's plan from its last poll, past: due now
    assert [e for e in effects if isinstance(e, WriteSidecars)] == [WriteSidecars(("clip",))]
    s.poll("clip", "RUNNING", later(t, 0.5))  # polled at today's pace while the list waits
    assert s.due("clip") == t.mono + 0.5 + INTERVAL
    t = later(t, 5.0)
    [again] = emitted(s.answer(s.list_turn(t), t, RemoteUnavailable("HTTP 503", "HTTP503")))
    assert again.errors_in_row == 2  # logged at debug: the pause was said
    t = later(t, 10.0)
    kinds = [type(e) for e in emitted(s.answer(s.list_turn(t), t, {"task-clip-000001": "RUNNING"}))]
    assert kinds == [ev.ListPage, ev.ListResumed]


def test_after_a_list_error_the_watched_tasks_are_not_all_due_at_once(tmp_path):
    """Their plans date from their last polls, long past: each falls due a slot of the
    watched share (half the rate) after the one before, not all at once."""
    s = Setup(tmp_path)
    names = [f"c{i}" for i in range(4)]
    for i, name in enumerate(names):
        s.discover(name, f"task-clip-{i:06d}")
    polled: set[str] = set()
    shown = None
    for k in range(100):  # a slot of the rate each: first polls, then a pass shows all
        t = later(T0, k / RATE)
        for effect in s.dispatch(t):
            if isinstance(effect, StartPoll):
                polled.add(effect.name)
                s.answer_poll(effect, "RUNNING", t)
            elif isinstance(effect, StartList) and len(polled) == 4:
                s.answer(effect, t, {f"task-clip-{i:06d}": "RUNNING" for i in range(4)})
                shown = t
            elif isinstance(effect, StartList):  # a pass before all were polled
                s.answer(effect, t, {})
        if shown is not None:
            break
    assert shown is not None
    assert all((s.due(n) or 0.0) > shown.mono + 30 * INTERVAL for n in names)  # watched
    t = later(shown, 30.0)  # their plans (a poll interval after T0) are long past
    s.answer(s.list_turn(t), t, RemoteUnavailable("HTTP 500: boom", "HTTP500"))
    step = 1 / (listpoll.WATCHED_SHARE * RATE)
    dues = sorted(s.due(n) or 0.0 for n in names)
    assert dues == pytest.approx([t.mono + i * step for i in range(4)])


def test_no_list_slot_while_an_auth_pause_waits_for_its_probe(tmp_path):
    """The probe after a refused key must be a poll (its answer ends the pause): the
    list's turn is taken out until a poll answers again."""
    s = watched_setup(tmp_path)
    t = later(T0, 40 * INTERVAL)
    effects = s.dispatch(t) + s.dispatch(later(t, 1 / RATE))  # its deadline; a list pass
    [start] = [e for e in effects if isinstance(e, StartPoll)]
    [turn] = [e for e in effects if isinstance(e, StartList)]
    s.answer(turn, t, {"task-clip-000001": "RUNNING"})
    s.answer_poll(start, "RUNNING", t, AuthRejected("HTTP 401: no", "InvalidApiKey"))
    assert s.scheduler.probing and not s.listing.in_flight
    for k in range(1, 200):
        moment = later(t, k)
        effects = s.dispatch(moment)
        assert not [e for e in effects if isinstance(e, StartList)], k
        if [e for e in effects if isinstance(e, StartPoll)]:
            break  # the probe went out: a poll
    assert LIST not in s.scheduler


def test_turning_the_list_off_by_a_reload_puts_watched_tasks_back_at_todays_pace(tmp_path):
    """`poll.list_interval: null` after a reload: no list turn, and a task the list
    vouched for is due at its plan again, its sidecar rewritten for `next_poll`."""
    s = watched_setup(tmp_path)
    poll = dataclasses.replace(s.cfg.poll, list_interval=None)
    s.live.cfg = dataclasses.replace(s.cfg, poll=poll)
    t = later(T0, 0.5)
    assert s.dispatch(t) == [WriteSidecars(("clip",))]
    assert LIST not in s.scheduler and s.due("clip") == T0.mono + INTERVAL


def test_with_the_list_off_the_per_task_cycle_is_todays(tmp_path):
    """`null`: N / rate for the predictor, today's pace for every task, no list turn."""
    s = Setup(tmp_path, list_interval=None)
    for i in range(30):
        s.discover(f"c{i}", f"task-clip-{i:06d}")
    assert s.listing.cycle(30) == 30 / RATE
    effects = s.dispatch(T0)
    assert all(isinstance(e, StartPoll) for e in effects) and LIST not in s.scheduler


@pytest.mark.parametrize(
    ("raw", "seconds"), [(None, None), (5, 5.0), ("2s", 2.0), ("250ms", 0.25), ("1m", 60.0)]
)
def test_list_interval_is_a_duration_or_null(raw, seconds):
    """Seconds or a unit; null turns the list off; the default is 5 s."""
    assert config.from_mapping(None).poll.list_interval == 5.0
    assert config.from_mapping({"poll": {"list_interval": raw}}).poll.list_interval == seconds


@pytest.mark.parametrize("bad", [0, -1, "50ms", "soon", True])
def test_a_bad_list_interval_names_the_key(bad):
    with pytest.raises(config.ConfigError, match=r"poll\.list_interval:"):
        config.from_mapping({"poll": {"list_interval": bad}})


def test_found_by_is_written_after_the_job_and_read_back_checked(tmp_path):
    """The sidecar's `found_by` is "list" or "poll"; anything else makes it invalid."""
    record = sidecar.new("clip", "task-clip-000001", {}, T0.wall)
    record.found_by = "list"
    path = tmp_path / "clip.status.json"
    sidecar.write(path, record)
    back = sidecar.read(path)
    assert back is not None and back.found_by == "list"
    assert list(sidecar.to_json(back))[-1] == "found_by"
    data = sidecar.to_json(back)
    for bad in ("stream", 1, ["list"]):
        assert sidecar.problem({**data, "found_by": bad}, path.name) == (
            'found_by must be "list", "poll" or null'
        )


def test_list_answers_and_found_ends_are_counted():
    """wansync_list_requests_total{result} and wansync_tasks_ended_found_total{by}."""
    from prometheus_client import generate_latest

    from wansync.config import MetricsConfig
    from wansync.outlets.metrics import Metrics

    m = Metrics(MetricsConfig(listen=None), lambda: (True, "ok"), dict)
    page = dict(window=1, page_no=1, rows=3, shown=1, ended=0)
    for event in (
        ev.ListPage(at=0, **page),
        ev.ListPage(at=0, **page),
        ev.ListPaused(at=0, code="HTTP500", message="x", errors_in_row=1, retry_in=5.0),
    ):
        m.consume(event)
    polled = dict(name="c", task_id="t", task_status="SUCCEEDED", polls=2, seconds=0.1)
    for by in ("list", "list", "poll", None):
        m.consume(ev.TaskPolled(at=0, changed=True, found_by=by, **polled))
    text = generate_latest(m.registry).decode()
    for line in (
        'wansync_list_requests_total{result="ok"} 2.0',
        'wansync_list_requests_total{result="error"} 1.0',
        'wansync_tasks_ended_found_total{by="list"} 2.0',
        'wansync_tasks_ended_found_total{by="poll"} 1.0',
    ):
        assert line in text


# -- the daemon against the simulator's task list -------------------------------------------
POLL = {"interval": 0.5, "max_per_second": 50, "list_interval": 0.25}
WATCHED = 40 * POLL["interval"]  # the watched pace: 20 s


@pytest.fixture
def listed(env: Env) -> Env:
    env.configure(poll=POLL)
    return env


def lag(sim: Any, task_id: str) -> float:
    """From the task's end (the simulator's clock) to the poll that saw SUCCEEDED."""
    task = sim.tasks[task_id]
    end = task.created + (task.queue_seconds or 0.0) + task.run_seconds
    seen = [r["wall"] for r in sim.requests("task", task_id) if r["task_status"] == "SUCCEEDED"]
    return seen[0] - end


def polls(sim: Any, task_id: str, since: float = 0.0) -> int:
    return len([r for r in sim.requests("task", task_id) if r["t"] >= since])


def test_the_list_finds_an_end_within_moments_while_the_task_is_polled_slowly(listed, sim):
    """A listed task: after its first poll the list vouches for it (next direct poll 20 s
    away); it ends 4 s later and is published within a second or two of that, found by
    the list, asked twice in all where today's pace asks eight times."""
    sim.add_task("found-task-0001", model=MODEL, queue_seconds=1, run_seconds=3)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "found", "found-task-0001")
    data = listed.wait_ended("found", timeout=WATCHED - 2)["found"]
    daemon.stop()
    assert data["state"] == "succeeded" and data["found_by"] == "list"
    assert lag(sim, "found-task-0001") < 2.0
    assert polls(sim, "found-task-0001") <= 3


def test_a_task_the_list_never_shows_ends_by_its_own_polls(listed, sim):
    """`listed=False` (another workspace, a list that lags): polled at today's pace, its
    end found by its own poll, as soon as without the list."""
    sim.add_task("hidden-task-001", model=MODEL, queue_seconds=1, run_seconds=3, listed=False)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "hidden", "hidden-task-001")
    data = listed.wait_ended("hidden", timeout=20)["hidden"]
    daemon.stop()
    assert data["state"] == "succeeded" and data["found_by"] == "poll"
    assert lag(sim, "hidden-task-001") < 1.5
    assert polls(sim, "hidden-task-001") >= 6  # every 0.5 s for 4 s: never slowed
    assert sim.requests("list"), "the list was asked"


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": "1"},
        {"kind": "status", "status": 500},
        {"kind": "malformed"},
    ],
    ids=["429", "500", "malformed"],
)
def test_list_errors_change_nothing_but_speed(listed, sim, fault):
    """The list vouches for a task, then every list request fails: the task is back at
    today's pace at once, ends by its own poll with the lag of today, and the pause is
    said once at warning."""
    sim.add_task("flaky-task-0001", model=MODEL, queue_seconds=1, run_seconds=5)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "flaky", "flaky-task-0001")
    daemon.wait_event("list.page", shown=1)  # watched now: its next poll is 20 s away
    sim.add_fault("list", count=10**6, **fault)
    failing_since = time.monotonic()
    data = listed.wait_ended("flaky", timeout=20)["flaky"]
    daemon.stop()
    assert data["state"] == "succeeded" and data["found_by"] == "poll"
    assert lag(sim, "flaky-task-0001") < 1.5
    assert polls(sim, "flaky-task-0001", since=failing_since) >= 4  # every 0.5 s again
    warned = [e for e in daemon.events("list.paused") if e["level"] == "warning"]
    assert len(warned) == 1 and daemon.events("list.paused")[0]["errors_in_row"] == 1


def test_paging_finds_a_tracked_task_on_the_last_page_among_strangers(listed, sim):
    """250 newer tasks of the account (some ended) come first in the list: ours is on
    page 3; it is found there, and no stranger is ever polled or published."""
    now = time.time()
    sim.add_task("paged-task-0001", model=MODEL, created=now, queue_seconds=1, run_seconds=3)
    for i in range(250):
        ended = {"queue_seconds": 0, "run_seconds": 0.001} if i % 5 == 0 else {}
        sim.add_task(f"stranger-{i:05d}", model=MODEL, created=now + 0.5 + i / 1000, **ended)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "paged", "paged-task-0001")
    data = listed.wait_ended("paged", timeout=WATCHED - 2)["paged"]
    daemon.stop()
    assert data["found_by"] == "list" and lag(sim, "paged-task-0001") < 2.0
    assert {r["query"]["page_no"][0] for r in sim.requests("list")} == {"1", "2", "3"}
    assert not [r for r in sim.requests("task") if r["task_id"].startswith("stranger")]
    assert sorted(p.name for p in listed.outbox.iterdir()) == [
        "paged.mp4",
        "paged.status.json",
        "paged.task",
    ]


def test_a_task_submitted_hours_before_it_was_dropped_is_found_by_the_list(listed, sim):
    """Submitted 3 h ago and still queued, beside a task of now: two windows, one per
    cluster of submit times; the old task's end is found by the list."""
    now = time.time()
    hours = 3 * 3600
    sim.add_task(
        "old-task-000001", model=MODEL, created=now - hours, queue_seconds=hours + 1, run_seconds=3
    )
    sim.add_task("new-task-000001", model=MODEL, queue_seconds=600, run_seconds=60)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "old", "old-task-000001")
    drop(listed.inbox, "new", "new-task-000001")
    data = listed.wait_ended("old", timeout=WATCHED - 2)["old"]
    daemon.stop()
    assert data["found_by"] == "list" and lag(sim, "old-task-000001") < 2.0
    windows = {r["query"]["start_time"][0] for r in sim.requests("list")}
    assert len(windows) == 2, windows


def midnight_in_the_apis_zone(now: float) -> float:
    """The latest 00:00 UTC+8 at least an hour before `now` (both wall times)."""
    day, zone = 86400, 8 * 3600
    midnight = (now + zone) // day * day - zone
    return midnight if now - midnight >= 3600 else midnight - day


def test_tasks_either_side_of_midnight_in_the_apis_zone_are_found_in_one_window(listed, sim):
    """Submitted at 23:59:30 and 00:00:30 UTC+8 (hours ago) and still queued: one window,
    23:58:30 of one day to 00:01:30 of the next (the API's zone, no zone in the text, as
    the list filters expect); the list finds both ends."""
    now = time.time()
    midnight = midnight_in_the_apis_zone(now)
    for task_id, created in (
        ("eve-task-000001", midnight - 30),
        ("morn-task-00001", midnight + 30),
    ):
        wait = now - created + 1  # queued until a second from now, then 3 s running
        sim.add_task(task_id, model=MODEL, created=created, queue_seconds=wait, run_seconds=3)
    daemon = listed.start()
    daemon.wait_ready()
    drop(listed.inbox, "eve", "eve-task-000001")
    drop(listed.inbox, "morn", "morn-task-00001")
    ended = listed.wait_ended("eve", "morn", timeout=WATCHED - 2)
    daemon.stop()
    assert {n: d["found_by"] for n, d in ended.items()} == {"eve": "list", "morn": "list"}
    assert lag(sim, "eve-task-000001") < 2.0 and lag(sim, "morn-task-00001") < 2.0
    windows = {
        (r["query"]["start_time"][0], r["query"]["end_time"][0]) for r in sim.requests("list")
    }
    start, end = api_time(midnight - 90, compact=True), api_time(midnight + 90, compact=True)
    assert start.endswith("235830") and end.endswith("000130") and start[:8] != end[:8]
    # a pass may also ask one task's window alone: before the other's first poll, or
    # after the other ended (both end within a second, in either order)
    eve_alone = (start, api_time(midnight + 30, compact=True))
    morn_alone = (api_time(midnight - 30, compact=True), end)
    assert (start, end) in windows <= {(start, end), eve_alone, morn_alone}


def test_with_list_interval_null_no_list_request_is_sent(env, sim):
    """`poll.list_interval: null`: today's daemon: per-task polls only, ends found by poll."""
    env.configure(poll={**POLL, "list_interval": None})
    sim.add_task("plain-task-0001", model=MODEL, queue_seconds=1, run_seconds=2)
    daemon = env.start()
    daemon.wait_ready()
    drop(env.inbox, "plain", "plain-task-0001")
    data = env.wait_ended("plain", timeout=20)["plain"]
    daemon.stop()
    assert data["found_by"] == "poll" and lag(sim, "plain-task-0001") < 1.5
    assert not sim.requests("list")
    assert not [e for e in daemon.logs() if e["event"].startswith("list.")]


def test_the_simulators_list_moves_a_poll_counted_task_on_as_a_poll_does(sim):
    """A scripted task that counts polls (the simulator's default) moves on at each look,
    a list row's included: else the list would show it RUNNING for ever and a daemon that
    trusts the list would wait on it (the demo's jobs did)."""
    sim.add_task("counted-task-001", model=MODEL, pending_polls=1, running_polls=1)
    sim.add_task("timed-task-00001", model=MODEL, queue_seconds=600, run_seconds=60)
    api = TaskApi(sim.url, TEST_KEY, timeout=10)
    try:
        seen = []
        for _ in range(3):
            rows = {r.task_id: r.status for r in api.list_page({"page_size": 10}).rows}
            seen.append((rows["counted-task-001"], rows["timed-task-00001"]))
    finally:
        api.close()
    assert seen == [("PENDING", "PENDING"), ("RUNNING", "PENDING"), ("SUCCEEDED", "PENDING")]
