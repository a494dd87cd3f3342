"""A daemon whose clock is 10 minutes behind the API's: a lost create is still found.

The task list is searched by creation time, on the API's clock. The simulator's
`clock_offset` moves its `Date` headers, its answers' times and its task list's filter
by 600 s, which is what a daemon 10 minutes behind sees. In-process: the offset read
from `Date`, the window on the server's clock, the submitter recording it; then the real
daemon against the skewed simulator, and `retry` of a `SubmitUncertain` job.
"""

from __future__ import annotations

import json
import time
import urllib.request
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import TEST_KEY, Env
from tests.test_jobs import SAMPLE_PNG, URL_FRAME, created, drop_job, job_ended
from tests.test_submitter_machine import T0, Machine
from wansync.core.errors import SubmitAmbiguous
from wansync.core.lifecycle import Now
from wansync.core.messages import End, LookupDone, PostDone
from wansync.core.record import JobRecord
from wansync.core.times import utc_iso
from wansync.files import sidecar
from wansync.remote.api import SUBMIT_PATH, TaskApi
from wansync.remote.serverclock import (
    BASE_MARGIN,
    UNSURE_MARGIN,
    Offset,
    ServerClock,
    offset_from,
    search_window,
    window_from_record,
    window_record,
)
from wansync.run.submit_worker import LookupJob, search
from wansync.simulator import Simulator

SKEW = 600.0  # the API's clock is 10 minutes ahead of the daemon's


# -- the server's clock, from `Date` ------------------------------------------------------
def test_the_offset_is_read_from_the_date_header() -> None:
    """A `Date` 600 s ahead of a 0.2 s round trip: offset 600 (± the round trip and 1 s)."""
    sent = 1_800_000_000.0
    found = offset_from(formatdate(sent + 0.1 + SKEW, usegmt=True), sent, sent + 0.2)
    assert found is not None
    assert abs(found.seconds - SKEW) <= found.error and found.error == pytest.approx(0.6)


@pytest.mark.parametrize(
    "date",
    [
        None,
        "",
        "yesterday",
        "Mon, 99 Foo 2026 25:61:61 GMT",
        "Sat, 01 Jan 9999 00:00:00 GMT",
        "Sat, 01 Jan 1972 00:00:00 GMT",
        "x" * 100_000,
    ],
)
def test_a_date_that_says_nothing_usable_is_no_offset(date: str | None) -> None:
    """Missing, unreadable, absurdly far (over a year) or huge: no offset, never a raise."""
    assert offset_from(date, 1_800_000_000.0, 1_800_000_000.1) is None
    clock = ServerClock()
    clock.observe(date, 1_800_000_000.0, 1_800_000_000.1)
    assert clock.offset() is None


def test_the_window_is_on_the_servers_clock_and_wider_when_unsure() -> None:
    """Known offset: started + offset, ± 120 s plus its error; unknown: ± 15 min around ours."""
    started = 1_800_000_000.0
    sure = search_window(started, Offset(SKEW, 0.5), request_time=4.0)
    assert sure == (started + SKEW - BASE_MARGIN - 0.5, started + SKEW + 4.0 + BASE_MARGIN + 0.5)
    unsure = search_window(started, None, request_time=4.0)
    assert unsure == (started - UNSURE_MARGIN, started + 4.0 + UNSURE_MARGIN)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "x",
        [],
        ["a", "b"],
        [1, 2],
        ["2027-01-01T00:00:00.000Z"] * 3,
        ["2027-01-01T01:00:00.000Z", "2027-01-01T00:00:00.000Z"],  # out of order
        ["2027-01-01T00:00:00.000Z", "2027-01-02T00:00:00.000Z"],  # a day wide
        ["9999-01-01T00:00:00.000Z", "9999-01-01T00:01:00.000Z"],  # far ahead
    ],
)
def test_a_window_read_back_from_a_sidecar_is_checked(value: Any) -> None:
    """A hand-edited `search_window` that is not two close, plausible times is ignored."""
    assert window_from_record(value, now=1_798_761_600.0) is None  # 2027-01-01


def test_a_recorded_window_reads_back_as_written() -> None:
    window = (1_798_761_600.0, 1_798_761_844.0)
    assert window_from_record(window_record(window), now=window[0]) == window


# -- the submitter records the window; the worker searches it -----------------------------
def _lost_create(m: Machine) -> LookupJob:
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    m.sent()
    m.sub.handle(PostDone("a", SubmitAmbiguous("timeout")), T0)
    m.sub.dispatch(Now(T0.mono + 1000, T0.wall))
    [lookup] = m.sent()
    assert isinstance(lookup, LookupJob)
    return lookup


def test_a_create_sent_with_a_known_offset_records_its_window(tmp_path: Path) -> None:
    """The API's clock is known (an earlier answer's `Date`): the window is recorded at once,
    on that clock, and the search uses exactly it."""
    m = Machine(tmp_path)
    m.sub.api.clock.observe(formatdate(T0.wall + SKEW, usegmt=True), T0.wall, T0.wall)
    lookup = _lost_create(m)
    assert lookup.recorded is not None
    low, high = lookup.recorded
    assert low < T0.wall + SKEW < high and low > T0.wall + SKEW - BASE_MARGIN - 2
    job = m.sub.jobs["a"].record.job
    assert job is not None and window_from_record(job.search_window, T0.wall) == (low, high)


def test_a_create_sent_before_any_answer_searches_wide_then_exact(tmp_path: Path) -> None:
    """No `Date` seen yet: no window is recorded; the search plans it from the clock known
    when it asks (wide when unknown), and the window it used is recorded after."""
    m = Machine(tmp_path)
    lookup = _lost_create(m)
    assert lookup.recorded is None
    assert lookup.plan(None)[0] == T0.wall - UNSURE_MARGIN
    exact = lookup.plan(Offset(SKEW, 0.5))
    assert exact[0] == T0.wall + SKEW - BASE_MARGIN - 0.5
    m.sub.handle(LookupDone("a", [], frozenset(), exact), T0)
    data = json.loads(m.folders.sidecar("a").read_text())  # as on disk: two ISO 8601 texts
    assert window_from_record(data["job"]["search_window"], T0.wall) == exact


def test_none_found_never_advises_a_blind_retry(tmp_path: Path) -> None:
    """Searched three times, nothing: the message names the window (API time) and says that
    `retry` searches again; only `--force` creates anew."""
    m = Machine(tmp_path)
    _lost_create(m)
    window = (T0.wall + SKEW - 121, T0.wall + SKEW + 125)
    for _ in range(2):
        assert m.sub.handle(LookupDone("a", [], frozenset(), window), T0) == []
        m.sub.dispatch(Now(T0.mono + 10_000, T0.wall))
        m.sent()
    [end] = m.sub.handle(LookupDone("a", [], frozenset(), window), T0)
    assert isinstance(end, End)
    assert end.task.record.error is not None
    message = end.task.record.error.message
    assert "Most likely none was made" not in message
    assert "(API time)" in message and "retry a --force" in message
    assert "`wansync retry a` searches the same window again" in message


def test_the_worker_learns_the_servers_clock_from_the_lists_own_answer() -> None:
    """Against a simulator 10 minutes ahead, with no `Date` seen yet: the wide search goes
    first, its answer sets the clock, and the exact window (on the API's clock) finds the
    task made by the lost create."""
    with Simulator(key=TEST_KEY) as sim:
        sim.clock_offset = SKEW
        started = time.time()
        task_id = _create(sim, "lost")
        api = TaskApi(sim.url, TEST_KEY, 2.0)
        used: list[tuple[float, float]] = []
        item = LookupJob("a", "wan2.7-i2v", None, lambda o: search_window(started, o, 4.0))
        try:
            rows = search(api, item, used)
        finally:
            api.close()
    assert [r["task_id"] for r in rows] == [task_id]
    assert len(used) == 2 and used[1][0] <= started + SKEW <= used[1][1]
    assert used[1][1] - used[1][0] < 2 * BASE_MARGIN + 10  # the exact one, not ± 15 min


def _create(sim: Simulator, prompt: str) -> str:
    """A create sent straight to the simulator: what the lost request had made."""
    body = {"model": "wan2.7-i2v", "input": {"prompt": prompt, "media": URL_FRAME}}
    request = urllib.request.Request(
        f"{sim.url}{SUBMIT_PATH}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TEST_KEY}", "X-DashScope-Async": "enable"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["output"]["task_id"])


# -- the real daemon, 10 minutes behind the API -------------------------------------------
@pytest.fixture
def skewed(env: Env, sim: Simulator) -> Env:
    sim.clock_offset = SKEW
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    return env


@pytest.mark.parametrize("first", ["the create", "an upload"])
def test_a_lost_create_is_found_though_our_clock_is_10_minutes_behind(
    skewed: Env, sim: Simulator, first: str
) -> None:
    """The create makes its task, its answer is lost: the daemon finds its one task in the
    task list (on the API's clock), adopts it, and never sends a second create. `first`:
    the create is the daemon's first request (no `Date` seen: the search finds the clock
    out), or a picture's upload comes first (the window is recorded with the create)."""
    env = skewed
    frame: list[dict[str, str]] = URL_FRAME
    if first == "an upload":
        (env.inbox / "pictures").mkdir()
        (env.inbox / "pictures" / "frame.png").write_bytes(SAMPLE_PNG)
        frame = [{"type": "first_frame", "path": "pictures/frame.png"}]
    sim.add_fault("submit", "reset", created=True)
    drop_job(env.inbox, "skewed", {"prompt": "lost in skew", "media": frame})
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 0, result.stderr[-2000:]
    data = job_ended(env, "skewed")
    assert data is not None and data["state"] == "succeeded"
    assert data["job"]["found_by"] == "task list"
    assert len(sim.requests("submit")) == 1, "no second create"
    assert [c["task_id"] for c in created(sim, "lost in skew")] == [data["task_id"]]
    assert bool(sim.requests("upload")) == (first == "an upload")


def test_retry_of_an_uncertain_job_searches_first_and_adopts_the_task(
    skewed: Env, sim: Simulator
) -> None:
    """A job ended `SubmitUncertain` though its create made a task: `retry` sends it back
    searching, and the daemon takes that task: no second create."""
    env = skewed
    made = time.time()
    task_id = _create(sim, "made by the lost create")
    doc = {"prompt": "made by the lost create", "media": URL_FRAME}
    drop_job(env.inbox, "unsure", doc)
    (env.inbox / "unsure.job").rename(env.failed / "unsure.job")
    record = sidecar.new("unsure", None, {}, made)
    record.state, record.finished, record.published_as = "failed", utc_iso(made + 40), "unsure"
    record.error = sidecar.error("SubmitUncertain", "no task found (an older wansync)", False)
    record.job = JobRecord("unsure.job", "wan2.7-i2v", attempts=1, submit_started=utc_iso(made))
    sidecar.write(env.failed / "unsure.status.json", record)  # no window: an older wansync

    result = env.cli("retry", "unsure")
    assert result.returncode == 0, result.stderr
    assert "searches the task list again" in result.stderr
    assert env.sidecar(env.inbox, "unsure")["state"] == "submitting"
    assert env.cli("once", "--timeout", "30").returncode == 0
    ended = job_ended(env, "unsure")
    assert ended is not None and ended["state"] == "succeeded"
    assert ended["task_id"] == task_id and ended["job"]["found_by"] == "task list"
    assert len(sim.requests("submit")) == len(created(sim)) == 1, "no second create"


@pytest.mark.parametrize("window", [5, ["x"], [1, 2], None])
def test_a_bad_recorded_window_never_costs_a_submitting_job_its_journal(
    tmp_path: Path, window: Any
) -> None:
    """A `submitting` sidecar whose `search_window` was edited to junk is still read (its
    window as none: a fresh one is placed), never refused: a refused journal would make
    the job be sent again. A good one reads back as written."""
    record = sidecar.new("a", None, {}, T0.wall)
    record.state = "submitting"
    record.job = JobRecord("a.job", "wan2.7-i2v", 1, utc_iso(T0.wall))
    path = sidecar.path_for(tmp_path, "a")
    sidecar.write(path, record)
    data = json.loads(path.read_text())
    data["job"]["search_window"] = window
    path.write_text(json.dumps(data))
    read = sidecar.read(path)
    assert read is not None and read.state == "submitting" and read.job is not None
    assert read.job.search_window is None
    good = window_record((T0.wall, T0.wall + 60))
    record.job = JobRecord("a.job", "wan2.7-i2v", 1, utc_iso(T0.wall), search_window=good)
    sidecar.write(path, record)
    read = sidecar.read(path)
    assert read is not None and read.job is not None and read.job.search_window == good
