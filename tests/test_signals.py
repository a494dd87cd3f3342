"""Signals from the first moment, and a batch run that gives up on a refused key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import drop, wait_until

SIGTERM_BIT = 1 << (signal.SIGTERM - 1)


def caught(pid: int) -> int:
    """The mask of signals the process has handlers for (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def block_stops() -> None:
    """In the child, before `exec`: SIGTERM and SIGINT blocked, as a launcher that leaves
    no moment unguarded starts wansync (a blocked signal stays pending across `exec`)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


@pytest.mark.parametrize(("command", "code"), [("run", 0), ("once", 128 + signal.SIGTERM)])
def test_a_storm_of_sigterms_from_the_start_ends_cleanly(env, sim, command, code):
    """SIGTERM every 10 ms from the moment wansync catches it: a clean stop, not death by
    signal (-15): `run` exits 0; `once`, stopped before its work was done, 143."""
    drop(env.inbox, "clip", "storm-task-0001")
    daemon = env.start(command)
    pid = daemon.proc.pid
    # Before this, a SIGTERM kills any Python program (its own start-up, the site's .pth
    # files: tens of ms under load); the next tests show no heavy import comes first, and
    # how a launcher covers even that.
    wait_until(lambda: caught(pid) & SIGTERM_BIT, 10, "wansync's SIGTERM handler", step=0.001)
    storm(daemon.proc, 15)
    assert daemon.proc.wait(5) == code, daemon.stderr_path.read_text()[-2000:]
    assert "Traceback" not in daemon.stderr_path.read_text()


@pytest.mark.parametrize(("command", "code"), [("run", 0), ("once", 128 + signal.SIGTERM)])
def test_a_storm_from_the_spawn_with_stops_blocked_ends_with_the_documented_code(
    env, sim, command, code
):
    """SIGTERM every 10 ms from the instant of the spawn, no wait at all, to a wansync
    started with SIGTERM/SIGINT blocked: the first ones wait, pending, until its handlers
    are in place and it unblocks them; then a clean stop with the documented code (`run`
    0, `once` 143), never death by signal and never a daemon deaf to stops."""
    drop(env.inbox, "clip", "storm-task-0002")
    sim.add_task("storm-task-0002", running_polls=1_000_000)  # `once` cannot finish first
    daemon = env.start(command, preexec_fn=block_stops)
    storm(daemon.proc, 8)
    try:
        got = daemon.proc.wait(5)
    except subprocess.TimeoutExpired:
        got = None  # it never saw a stop: the signals stayed blocked
    assert got == code, daemon.stderr_path.read_text()[-2000:]
    assert "Traceback" not in daemon.stderr_path.read_text()


def storm(proc: subprocess.Popen[str], seconds: float) -> None:
    """SIGTERM every 10 ms until `proc` ends (or `seconds` pass)."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.01)


FIRST_HANDLER = """
import os, runpy, signal, sys

def spy(signum, handler, real=signal.signal):
    if signum == signal.SIGTERM:  # the first SIGTERM handler: what is imported by now?
        print(" ".join(sorted(sys.modules)), flush=True)
        os._exit(0)
    return real(signum, handler)

signal.signal = spy
sys.argv = ["wansync", sys.argv[1], "-c", sys.argv[2]]
runpy.run_module("wansync", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("command", ["run", "once"])
def test_the_sigterm_handler_comes_before_any_heavy_import(env, command):
    """`run` and `once` catch SIGTERM before the CLI, the config, logging or HTTP are
    imported: the window in which a SIGTERM kills them is Python's own start-up only."""
    argv = [sys.executable, "-c", FIRST_HANDLER, command, str(env.config_path)]
    result = subprocess.run(argv, env=env.env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    modules = set(result.stdout.split())
    assert "wansync.run.signals" in modules
    ours = {m for m in modules if m.split(".")[0] == "wansync"}
    assert ours <= {"wansync", "wansync.__main__", "wansync.run", "wansync.run.signals"}, ours
    heavy = {"structlog", "watchdog", "urllib3", "requests", "yaml", "ssl"}
    assert not modules & heavy, modules & heavy


@pytest.mark.slow
def test_once_with_a_refused_key_gives_up_after_the_probe(env, sim):
    """A wrong key: one auth.rejected line per pause, then `once` exits 2 with the API's
    message (a batch run must end); no task fails and nothing is moved."""
    drop(env.inbox, "clip", "refused-key-0001")
    result = env.cli("once", key="wrong-key-123456789", timeout=120)
    assert result.returncode == 2
    *lines, last = result.stderr.strip().splitlines()
    rejected = [e for e in map(json.loads, lines) if e["event"] == "auth.rejected"]
    assert len(rejected) == 2, rejected  # the first refusal, then the refused probe
    assert rejected[1]["probe"] is True
    assert last.startswith("wansync: ") and "refused the key" in last and "InvalidApiKey" in last
    assert "Traceback" not in result.stderr
    assert (env.inbox / "clip.task").exists() and not list(env.failed.iterdir())
