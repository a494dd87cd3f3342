"""The unit files verify silently and score well; sd_notify speaks to a real socket."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import drop, wait_until

UNITS = Path(__file__).parent.parent / "systemd"
analyze = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    analyze is None and not os.environ.get("CI"), reason="systemd-analyze not installed"
)


def installed_copy(tmp_path: Path, unit: str) -> Path:
    """The unit as shipped, with ExecStart pointing at the wansync this test runs."""
    exe = Path(sys.executable).parent / "wansync"
    text = (UNITS / unit).read_text().replace("/opt/wansync/bin/wansync", str(exe))
    copy = tmp_path / unit
    copy.write_text(text)
    return copy


@needs_analyze
@pytest.mark.parametrize("unit", ["wansync.service", "wansync@.service"])
def test_unit_verifies_with_no_output(tmp_path, unit):
    """`systemd-analyze verify` only warns on unknown keys, so any output is a failure."""
    result = subprocess.run(
        [analyze or "systemd-analyze", "verify", "--man=no", str(installed_copy(tmp_path, unit))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and result.stdout + result.stderr == ""


@needs_analyze
@pytest.mark.parametrize("unit", ["wansync.service", "wansync@.service"])
def test_unit_hardening_scores_at_most_2(tmp_path, unit):
    result = subprocess.run(
        [
            analyze or "systemd-analyze",
            "security",
            "--offline=yes",
            str(installed_copy(tmp_path, unit)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    score = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout).group(1))
    assert score <= 2.0


def test_units_keep_the_promises_the_readme_makes():
    for unit in ("wansync.service", "wansync@.service"):
        text = (UNITS / unit).read_text()
        for line in (
            "Type=notify",
            "WatchdogSec=",
            "Restart=on-failure",
            "RestartPreventExitStatus=2 3",
            "LoadCredential=dashscope_api_key:",
            "User=wansync",
            "UMask=0002",
            "StartLimitBurst=",
        ):
            assert line in text, (unit, line)
    assert "%i.yaml" in (UNITS / "wansync@.service").read_text()


def test_units_start_after_the_clock_is_synchronised():
    """A clock step after start-up ends no task (the monotonic clock counts), and the
    units wait for time-sync.target anyway; a consumer orders itself after it, never
    pulls it in (systemd.special(7))."""
    for unit in ("wansync.service", "wansync@.service"):
        lines = (UNITS / unit).read_text().splitlines()
        after = [line for line in lines if line.startswith("After=")]
        assert len(after) == 1 and "time-sync.target" in after[0].split(), unit
        assert not [line for line in lines if "Wants=" in line and "time-sync" in line], unit


class NotifySocket:
    """A real datagram socket standing in for systemd's; a thread stamps each arrival."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def read(self) -> list[tuple[float, str]]:
        return list(self.messages)

    def has(self, text: str) -> bool:
        return any(text in m for _, m in self.read())

    def close(self) -> None:
        self._closed = True
        self._thread.join(1)
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    ns = NotifySocket(tmp_path / "notify.sock")
    yield ns
    ns.close()


def test_ready_status_watchdog_stopping(env, sim, notify, monkeypatch):
    """READY after the scan, STATUS with counts, WATCHDOG at half the period, STOPPING."""
    present = drop(env.inbox, "present", "task-present-0001")
    os.utime(present, (time.time() - 5, time.time() - 5))  # written before the daemon started
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    daemon = env.start()
    wait_until(lambda: notify.has("READY=1"), 15, "READY=1")
    ready_at = next(t for t, m in notify.messages if "READY=1" in m)
    assert daemon.events("task.discovered", name="present")  # the scan came first
    env.wait_ended("present")
    wait_until(lambda: notify.has("1 done"), 15, "a STATUS line with the done count")
    time.sleep(1.0)
    pings = [t for t, m in notify.read() if m == "WATCHDOG=1" and t > ready_at]
    assert len(pings) >= 3
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.4  # half of WATCHDOG_USEC, with room for a busy machine
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert notify.has("STOPPING=1")
    status = [m for _, m in notify.messages if m.startswith("STATUS=")]
    assert any(re.search(r"\d+ polling, \d+ downloading, 1 done, 0 failed", s) for s in status)


def test_dead_watcher_stops_the_pings_and_a_restored_one_resumes_them(
    env, sim, notify, monkeypatch
):
    """Inbox replaced by a file: no watch, so no WATCHDOG=1; back as a folder: pings again."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    daemon = env.start()
    wait_until(lambda: notify.has("READY=1"), 15, "READY=1")
    shutil.rmtree(env.inbox)
    env.inbox.write_text("not a folder")  # the watch cannot be restored while this is here
    daemon.wait_event("inbox.unavailable", 10)
    broken_at = time.monotonic()
    time.sleep(1.0)
    assert not [t for t, m in notify.read() if m == "WATCHDOG=1" and t > broken_at + 0.2]
    env.inbox.unlink()
    daemon.wait_event("inbox.rewatched", 10)
    restored_at = time.monotonic()
    wait_until(
        lambda: [t for t, m in notify.read() if m == "WATCHDOG=1" and t > restored_at],
        5,
        "pings after the watch came back",
    )
    drop(env.inbox, "after", "task-after-00001")  # the recreated inbox works
    env.wait_ended("after")
    assert daemon.stop() == 0


def test_sighup_reloads_level_and_key_between_reloading_and_ready(
    env, sim, notify, monkeypatch, tmp_path
):
    """A wrong key file fixed on disk + SIGHUP: RELOADING=1, READY=1, polling resumes."""
    key_file = tmp_path / "key"
    key_file.write_text("wrong-key-000000\n")
    env.configure(api={"key_file": str(key_file)})
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify.path))
    drop(env.inbox, "held", "task-held-000001")
    daemon = env.start(key=None)
    daemon.wait_event("auth.rejected", 15)
    from tests.helpers import TEST_KEY

    key_file.write_text(TEST_KEY + "\n")
    daemon.signal(signal.SIGHUP)
    ended = env.wait_ended("held", timeout=15)
    assert ended["held"]["state"] == "succeeded"
    messages = [m for _, m in notify.read()]
    reloading = next(i for i, m in enumerate(messages) if "RELOADING=1" in m)
    assert "MONOTONIC_USEC=" in messages[reloading]
    assert any("READY=1" in m for m in messages[reloading + 1 :])
    assert daemon.events("config.reloaded")
    assert daemon.stop() == 0
