"""`submit --wait` follows whoever runs the inbox, and takes over when that one is gone.

A one-shot run (`wansync once`, or another `submit --wait` that runs its own job) takes
only the files it found when it started, then exits: a `submit --wait` that follows it
must then run its own job (docs/commands.md, `submit`; docs/what-happens.md).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Env, drop, wait_until
from wansync.files import liveness
from wansync.simulator import Simulator

HELD = 10**9  # PENDING polls: a task that does not move until the test lets it


class Waiter:
    """`wansync submit --model wan2.7-t2v --prompt … --name NAME --wait` as a subprocess."""

    def __init__(self, env: Env, name: str, timeout: float = 25) -> None:
        self.name = name
        self.out, self.err = env.root / f"{name}.out", env.root / f"{name}.err"
        argv = ["submit", "--model", "wan2.7-t2v", "--prompt", f"the {name} clip"]
        argv += ["--name", name, "--wait", "--timeout", str(timeout), "-c", str(env.config_path)]
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wansync", *argv], env=env.env(), stdout=out, stderr=err
            )

    def said(self) -> str:
        return self.err.read_text(errors="replace")

    def ended(self, timeout: float = 40) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"{self.name} did not end: {self.said()}") from None


@pytest.fixture
def follow_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    return env


def _runs_it(env: Env, pid: int) -> bool:
    """Process `pid` holds the inbox and says so in `.wansync.live`."""
    running = liveness.running(env.inbox)
    return running is not None and running.pid == pid


def _let_go(sim: Simulator) -> None:
    """Every task made from now on moves at once, and so does every task held so far."""
    sim.defaults["pending_polls"] = 1
    for task in list(sim.tasks.values()):
        task.pending_polls = 1


def test_two_submit_waits_at_once_both_get_their_files(follow_env: Env, sim: Simulator) -> None:
    """No daemon: the first runs its job; the second follows it, sees it end without its
    job, and runs its own: both exit 0 with their own MP4."""
    env = follow_env
    sim.defaults["pending_polls"] = HELD  # the first's task waits until the second follows
    first = Waiter(env, "first")
    wait_until(lambda: _runs_it(env, first.proc.pid), 20, "the first to run its job")
    second = Waiter(env, "second")
    wait_until(lambda: "following the wansync" in second.said(), 20, "the second to follow")
    _let_go(sim)
    assert first.ended() == 0, first.said()
    assert second.ended() == 0, second.said()
    assert first.out.read_text().strip() == str(env.outbox / "first.mp4")
    assert second.out.read_text().strip() == str(env.outbox / "second.mp4")
    assert "a one-shot run" in second.said() and "running it here" in second.said()
    assert liveness.read(env.inbox).one_shot  # type: ignore[union-attr]
    prompts = sorted(c["prompt"] for c in sim.desk.created)
    assert prompts == ["the first clip", "the second clip"]  # each sent once


def test_a_submit_wait_during_once_gets_its_own_job_done(follow_env: Env, sim: Simulator) -> None:
    """`wansync once` runs a long task; a `submit --wait` written meanwhile follows it,
    and when `once` ends (without the new job, which it never took) runs its job itself."""
    env = follow_env
    sim.add_task("once-long-task-01", pending_polls=HELD)
    drop(env.inbox, "long", "once-long-task-01")
    once = env.start("once", "--timeout", "40")
    wait_until(lambda: _runs_it(env, once.proc.pid), 20, "once to hold the inbox")
    late = Waiter(env, "late")
    wait_until(lambda: "following the wansync" in late.said(), 20, "the late job to follow once")
    _let_go(sim)
    assert once.wait(40) == 0
    assert (env.outbox / "long.mp4").exists()
    assert late.ended() == 0, late.said()
    assert late.out.read_text().strip() == str(env.outbox / "late.mp4")
    assert [c["prompt"] for c in sim.desk.created] == ["the late clip"]


def test_the_live_record_of_an_older_wansync_is_a_daemons(tmp_path: Path) -> None:
    """A record without `one_shot` (written by a wansync before it) is read as a daemon's;
    one whose `one_shot` is not a boolean is not believed at all."""
    record = liveness.describe_self(7, "2026-01-01T00:00:00.000Z", one_shot=True)
    liveness.write(tmp_path, record)
    assert liveness.read(tmp_path) == record
    data = json.loads((tmp_path / liveness.LIVE_NAME).read_text())
    del data["one_shot"]
    (tmp_path / liveness.LIVE_NAME).write_text(json.dumps(data))
    assert liveness.read(tmp_path) == dataclasses.replace(record, one_shot=False)
    (tmp_path / liveness.LIVE_NAME).write_text(json.dumps({**data, "one_shot": "yes"}))
    assert liveness.read(tmp_path) is None
