"""The whole daemon in-process: `build` with a fake clock, the test calls `tick(now)`.

The API is the real simulator on 127.0.0.1 (a request takes milliseconds); the clock is
the test's, so 15 s between polls, a search window or a two-day clock step cost nothing.
Between ticks the test waits briefly (real time) for a worker's result on the loop's own
wake-up pipe; when none comes, it moves the clock to the loop's next wake-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from tests.helpers import TEST_KEY, drop, searches
from wansync import config
from wansync.core.lifecycle import Now
from wansync.run.daemon import Daemon, build
from wansync.simulator import Simulator

DAY = 86400.0
URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
PNG = bytes.fromhex("89504e470d0a1a0a") + b"a tiny picture"


class FakeClock:
    """Monotonic and wall time that move only when the test moves them."""

    def __init__(self) -> None:
        self.mono = 10_000.0
        self.wall = time.time()  # the simulator's task list is searched by real times

    def __call__(self) -> Now:
        return Now(self.mono, self.wall)

    def to(self, mono: float) -> None:
        """Let time pass until monotonic `mono` (the wall clock goes along)."""
        if mono > self.mono:
            self.wall += mono - self.mono
            self.mono = mono


class Loop:
    """A daemon built in-process on `root`, opened and started; `until` drives it."""

    def __init__(self, root: Path, sim: Simulator, **sections: Any) -> None:
        self.inbox, self.outbox, self.failed = (root / n for n in ("inbox", "outbox", "failed"))
        self.inbox.mkdir(parents=True, exist_ok=True)
        doc: dict[str, Any] = {
            "inbox": str(self.inbox),
            "outbox": str(self.outbox),
            "failed": str(self.failed),
            "api": {"base_url": sim.url, "timeout": 5},
            "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            "submit": {"max_per_second": 50, "search_for": 1.5},
        }
        doc.update(sections)
        self.clock = FakeClock()
        self.daemon: Daemon = build(config.from_mapping(doc), TEST_KEY, self.clock)
        self.ticks = 0

    def __enter__(self) -> Loop:
        self.daemon.open()
        self.daemon.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.daemon.close()

    def until(self, done: Callable[[], Any], what: str, limit: float = 15.0) -> None:
        """Tick until `done()`; fail after `limit` seconds of real time."""
        deadline = time.monotonic() + limit
        while True:
            wake_at = self.daemon.tick(self.clock())
            self.ticks += 1
            if done():
                return
            assert self.daemon.exit_code is None, f"the loop ended before {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            if not self.daemon.wake.wait(0.02):  # no worker result: time passes
                self.clock.to(wake_at)

    def sidecar(self, folder: Path, name: str) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((folder / f"{name}.status.json").read_text())
        except (OSError, ValueError):
            return None
        return data

    def published(self, name: str) -> dict[str, Any] | None:
        """`name`'s final sidecar once its publish is complete (no inbox sidecar left)."""
        if (self.inbox / f"{name}.status.json").exists():
            return None
        return self.sidecar(self.outbox, name) or self.sidecar(self.failed, name)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def drop_job(inbox: Path, name: str, doc: dict[str, Any]) -> Path:
    tmp = inbox / f".{name}.job.tmp"
    tmp.write_text(yaml.safe_dump(doc))
    os.rename(tmp, inbox / f"{name}.job")
    return inbox / f"{name}.job"


@pytest.fixture
def slow_sim() -> Iterator[Simulator]:
    """Tasks stay PENDING for five polls: time for a test to act while they are polled."""
    with Simulator(key=TEST_KEY, pending_polls=5, running_polls=1) as server:
        yield server


def test_a_task_file_is_polled_downloaded_and_published(tmp_path, sim):
    """A `.task`: PENDING → RUNNING → SUCCEEDED 15 s apart, the download, the publish."""
    sim.add_task("tick-task-000001")
    with Loop(tmp_path, sim) as loop:
        drop(loop.inbox, "clip", "tick-task-000001")
        started = loop.clock.mono
        loop.until(lambda: loop.published("clip"), "clip to be published")
    data = loop.published("clip")
    assert data is not None and data["state"] == "succeeded" and data["polls"] == 3
    answers = [r["task_status"] for r in sim.requests("task", "tick-task-000001")]
    assert answers == ["PENDING", "RUNNING", "SUCCEEDED"]
    assert loop.clock.mono - started >= 2 * 15, "poll.interval (15 s) kept, on the fake clock"
    video = loop.outbox / "clip.mp4"
    assert sha256(video) == sim.video_sha256("tick-task-000001") == data["video"]["sha256"]
    assert (loop.outbox / "clip.task").read_text() == "tick-task-000001"
    assert sorted(p.name for p in loop.inbox.iterdir() if not p.name.startswith(".")) == []


def test_a_job_is_uploaded_submitted_its_lost_answer_found_and_its_task_fetched(tmp_path, sim):
    """A `.job`: upload, create (the answer is lost), the task list search finds the task,
    the job becomes a tracked task without reading its `.task` back, and it is fetched."""
    sim.add_fault("submit", "reset", created=True)  # the task is made, the answer is lost
    with Loop(tmp_path, sim) as loop:
        (loop.inbox / "frame.png").write_bytes(PNG)
        doc = {"prompt": "in process", "media": [{"type": "first_frame", "path": "frame.png"}]}
        drop_job(loop.inbox, "cat", doc)
        with capture_logs() as logs:
            loop.until(lambda: loop.published("cat"), "the job's task to be published")
    data = loop.published("cat")
    assert data is not None and data["state"] == "succeeded"
    [made] = sim.desk.created
    assert data["task_id"] == made["task_id"] and data["job"]["found_by"] == "task list"
    assert len(sim.requests("submit")) == 1, "an uncertain create is never sent again"
    assert len(sim.requests("upload")) == 1 and len(searches(sim)) >= 1
    url = made["body"]["input"]["media"][0]["url"]
    assert sim.desk.objects[url.removeprefix("oss://")] == PNG
    assert sha256(loop.outbox / "cat.mp4") == sim.video_sha256(made["task_id"])
    task_file = json.loads((loop.outbox / "cat.task").read_text())
    assert task_file == {"task_id": made["task_id"]}, "the .task a user would have dropped"
    assert (loop.outbox / "cat.job").exists()
    events = [e["event"] for e in logs]
    assert events.index("job.submit_uncertain") < events.index("job.submitted")
    assert events.index("job.submitted") < events.index("task.discovered")
    assert "task.invalid" not in events


def test_a_forward_wall_clock_step_ends_no_task(tmp_path, slow_sim):
    """A +2 day step of the wall clock while the API says PENDING: no `Timeout`, no error;
    `poll.give_up_after` (1 day) counts on the monotonic clock."""
    sim = slow_sim
    sim.add_task("step-task-000001")
    with Loop(tmp_path, sim) as loop:
        drop(loop.inbox, "clip", "step-task-000001")
        loop.until(lambda: sim.requests("task", "step-task-000001"), "the first poll")
        loop.clock.wall += 2 * DAY  # a VM resumed, or NTP after a boot without a clock
        loop.until(lambda: len(sim.requests("task", "step-task-000001")) >= 4, "more polls")
        live = loop.sidecar(loop.inbox, "clip")
        assert live is not None and live["state"] == "polling" and live["error"] is None
        assert not list(loop.failed.iterdir())
        loop.until(lambda: loop.published("clip"), "clip to be published")
    data = loop.published("clip")
    assert data is not None and data["state"] == "succeeded", data["error"]


def test_give_up_after_still_ends_a_task_by_the_monotonic_clock(tmp_path, slow_sim):
    """What the step must not do, the time itself does: followed longer than
    `poll.give_up_after`, a PENDING task ends as `Timeout`."""
    sim = slow_sim
    sim.add_task("slow-task-000001")
    with Loop(tmp_path, sim, poll={"interval": 15, "give_up_after": 40}) as loop:
        drop(loop.inbox, "clip", "slow-task-000001")
        loop.until(lambda: loop.published("clip"), "clip to end")
    data = loop.published("clip")
    assert data is not None and data["error"]["code"] == "Timeout"
    assert len(sim.requests("task", "slow-task-000001")) == 3  # at 0, 15 and 30 s


def test_a_jobs_task_file_replaced_by_a_producer_moves_the_producers_file(tmp_path, slow_sim):
    """A job's task is tracked as `clip`; a producer renames its own `clip.task` onto ours:
    its file moves to `clip-2.task` and is a task there, the job's task goes on as `clip`."""
    sim = slow_sim
    sim.add_task("producer-task-01", pending_polls=0, running_polls=0)
    with Loop(tmp_path, sim) as loop:
        drop_job(loop.inbox, "clip", {"prompt": "replaced", "media": URL_FRAME})
        loop.until(lambda: sim.requests("task"), "the job's task to be polled")
        [made] = sim.desk.created
        drop(loop.inbox, "clip", "producer-task-01")
        with capture_logs() as logs:
            loop.until(lambda: loop.published("clip") and loop.published("clip-2"), "both to end")
    ours, theirs = loop.published("clip"), loop.published("clip-2")
    assert ours is not None and ours["task_id"] == made["task_id"]
    assert theirs is not None and theirs["task_id"] == "producer-task-01"
    assert ours["state"] == theirs["state"] == "succeeded"
    assert (loop.outbox / "clip.job").exists() and (loop.outbox / "clip-2.task").exists()
    assert len(sim.desk.created) == 1
    [moved] = [e for e in logs if e["event"] == "task.replaced"]
    assert moved["moved_to"] == "clip-2.task"


def test_a_429_that_comes_during_a_tick_pauses_polling_from_when_it_came(tmp_path, sim):
    """A tick reads the clock, its other work takes 0.4 s, and the 429 comes meanwhile:
    polling waits the whole Retry-After from when the answer came, not from the tick's
    start (a poll sent early would spend the account's quota again)."""
    sim.add_fault("task", "status", status=429, retry_after="2", delay=1.0)  # answered in 1 s
    with Loop(tmp_path, sim) as loop:
        drop(loop.inbox, "clip", "tick-429-0000001")

        clip = lambda: loop.daemon.tracker.get("clip")  # noqa: E731
        loop.until(lambda: clip() and clip().busy, "the first poll to go out")
        assert clip().record.polls == 0, "the 429 was handled in the tick that sent its poll"
        began = loop.clock()  # the tick that handles the 429 reads the clock here
        loop.clock.to(began.mono + 0.4)  # and drains 0.4 s later
        deadline = time.monotonic() + 15
        while not clip().record.polls:
            assert time.monotonic() < deadline, "timed out waiting for the 429"
            loop.daemon.wake.wait(0.1)  # real time: the answer takes a second
            loop.daemon.tick(began)
        assert loop.daemon.scheduler.paused_until >= began.mono + 0.4 + 2.0
        loop.until(lambda: loop.published("clip"), "clip to be published")
    assert len(sim.requests("task", "tick-429-0000001")) == 4  # the 429, then three
