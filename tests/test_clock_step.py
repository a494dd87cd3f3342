"""The wall clock steps under the real daemon (issue 21, finding 5): no task ends for it.

The daemon runs as a subprocess with `tests/clockstep` preloaded: its CLOCK_REALTIME
moves by the seconds the test writes, its monotonic clock stays real. Tasks are held
PENDING by the simulator across the step, then let finish. `poll.give_up_after` (a day
by default) counts on the monotonic clock, so a +2 day step (a VM resumed, NTP after a
boot without a hardware clock) ends nothing; a step back of an hour stalls nothing.
The times wansync writes follow the wall clock, stepped or not (docs/what-happens.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clockstep import ClockStep
from tests.helpers import Daemon, Env, drop, wait_until
from wansync.core.times import parse_iso

DAY = 86400.0
HOUR = 3600.0
TASKS = 4
HELD = 10**6  # PENDING polls a held task answers before the test lets it finish
SLACK = 60.0  # seconds a time written may differ from the clock that wrote it


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shim built once for this module (skipped without a C compiler)."""
    return ClockStep.build(tmp_path_factory.mktemp("clockstep")).library


@pytest.fixture
def clock(shim: Path, tmp_path: Path) -> ClockStep:
    """The built shim with an offset file of this test's own, at 0."""
    step = ClockStep(shim, tmp_path / "clock-offset")
    step.set(0.0)
    return step


PROBE = """
import ctypes, time
libc = ctypes.CDLL(None)
class Timeval(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("usec", ctypes.c_long)]
tv = Timeval()
assert libc.gettimeofday(ctypes.byref(tv), None) == 0
libc.time.restype = ctypes.c_long
mono = time.monotonic()
time.sleep(0.2)
print(time.time(), time.clock_gettime(5), tv.sec + tv.usec / 1e6, libc.time(None),
      mono, time.monotonic() - mono, time.clock_gettime(time.CLOCK_BOOTTIME))
"""  # 5: CLOCK_REALTIME_COARSE, which Python's time module does not name


def probe(clock: ClockStep) -> list[float]:
    """The clocks a Python process under the shim reads (PROBE prints them)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, **clock.env()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return [float(v) for v in done.stdout.split()]


@pytest.mark.parametrize("offset", [2 * DAY, -HOUR, 0.0], ids=["plus-2-days", "back-1-hour", "0"])
def test_the_shim_shifts_the_wall_clock_and_leaves_the_monotonic_clock_real(clock, offset):
    """Under the shim, `time.time()` (and gettimeofday, time, CLOCK_REALTIME_COARSE) is
    `offset` off; `time.monotonic()`, CLOCK_BOOTTIME and `time.sleep` are the real ones."""
    clock.set(offset)
    real_before, mono_before = time.time(), time.monotonic()
    wall, coarse, timeofday, whole, mono, slept, boot = probe(clock)
    real_after, mono_after = time.time(), time.monotonic()
    for shifted in (wall, coarse, timeofday, whole):
        assert real_before + offset - 1 <= shifted <= real_after + offset + 1
    assert mono_before <= mono <= mono_after  # one system-wide clock, untouched
    assert 0.2 <= slept < 5
    assert abs(boot - time.clock_gettime(time.CLOCK_BOOTTIME)) < mono_after - mono_before + 1


def start(tmp_path: Path, sim, clock: ClockStep) -> tuple[Env, Daemon, list[str]]:
    """The daemon on the stepped clock, polling TASKS held tasks (each polled twice)."""
    env = Env(tmp_path / "env", sim)
    env.extra_env = clock.env()
    names = [f"step-{k}" for k in range(TASKS)]
    for name in names:
        sim.add_task(f"{name}-task-0001", pending_polls=HELD)
    daemon = env.start()
    daemon.wait_ready()
    for name in names:
        drop(env.inbox, name, f"{name}-task-0001")
    wait_until(
        lambda: all(len(sim.requests("task", f"{n}-task-0001")) >= 2 for n in names),
        what="every task to be polled twice",
    )
    return env, daemon, names


def polls_started_after(daemon: Daemon, wall: float, name: str) -> int:
    """`name`'s polls whose `started` (the daemon's wall clock) is past `wall`."""
    return sum(
        1 for e in daemon.events("task.polled", name=name) if (parse_iso(e["started"]) or 0) > wall
    )


@pytest.mark.parametrize("step", [2 * DAY, -HOUR], ids=["plus-2-days", "back-1-hour"])
def test_a_wall_clock_step_under_the_daemon_ends_no_task(tmp_path, sim, clock, step):
    """The wall clock steps while four tasks are PENDING: they go on polling, none ends
    as `Timeout`, each ends succeeded exactly once once the API says so, the daemon stays
    up, and its times follow the wall clock, stepped."""
    env, daemon, names = start(tmp_path, sim, clock)
    dropped = time.time()
    clock.step(step)
    stepped = time.time() + step  # the daemon's wall clock from now on (within 0.1 s)
    wait_until(
        lambda: (
            list(env.failed.iterdir())
            or all(polls_started_after(daemon, stepped - SLACK, n) >= 3 for n in names)
        ),
        what="three polls of each task on the stepped clock",
    )
    errors = {n: (env.sidecar(env.failed, n) or {}).get("error") for n in names}
    assert not any(errors.values()), f"tasks ended when the wall clock stepped: {errors}"
    for name in names:
        live = env.sidecar(env.inbox, name)
        assert live is not None and live["state"] == "polling", (name, live and live["error"])
        sim.tasks[f"{name}-task-0001"].pending_polls = 0  # the API says RUNNING, then done
    ended = env.wait_ended(*names)
    finished = time.time() + step
    for name, data in ended.items():
        assert data["state"] == "succeeded" and data["error"] is None, (name, data["error"])
        first_seen, done = parse_iso(data["first_seen"]), parse_iso(data["finished"])
        assert first_seen is not None and abs(first_seen - dropped) < SLACK  # before the step
        assert done is not None and abs(done - finished) < SLACK  # the stepped clock's time
    assert daemon.proc.poll() is None, "the daemon exited"
    assert sorted(os.listdir(env.outbox)) == sorted(
        f"{n}{ext}" for n in names for ext in (".mp4", ".status.json", ".task")
    )  # each once: no NAME-2
    assert not list(env.failed.iterdir())
    assert daemon.stop() == 0
    events = [json.dumps(e) for e in env.all_logs()]
    assert not [e for e in events if "Timeout" in e]


@pytest.mark.parametrize(
    "step",
    [2 * DAY, -HOUR],
    ids=["plus-2-days", "back-1-hour"],
)
def test_a_restart_after_a_wall_clock_step_ends_no_task(tmp_path, sim, clock, step):
    """The wall clock steps while four tasks are PENDING, then the daemon is stopped and
    started again: the new run resumes them (counting `give_up_after` on the seconds the
    sidecar says were followed, not first_seen to last_polled), none ends as `Timeout`,
    each succeeds once."""
    env, daemon, names = start(tmp_path, sim, clock)
    clock.step(step)
    stepped = time.time() + step
    wait_until(
        lambda: all(polls_started_after(daemon, stepped - SLACK, n) >= 1 for n in names),
        what="a poll of each task on the stepped clock",
    )
    assert daemon.stop() == 0  # its sidecars say when they were last polled: after the step
    daemon = env.start()
    daemon.wait_ready()
    for name in names:
        sim.tasks[f"{name}-task-0001"].pending_polls = 0
    ended = env.wait_ended(*names)
    errors = {n: data["error"] for n, data in ended.items() if data["error"]}
    assert not errors, f"tasks ended across the restart: {errors}"
    assert daemon.stop() == 0
