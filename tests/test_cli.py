"""The small commands: add, status, retry, check, --help; exit codes and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, drop


def test_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "wansync", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "once", "add", "submit", "status", "retry", "check", "simulate", "demo"):
        assert command in out


def test_add_writes_a_task_atomically(env):
    result = env.cli("add", "task-added-00001", "--name", "clip")
    assert result.returncode == 0
    assert (env.inbox / "clip.task").read_text() == "task-added-00001\n"
    assert [p.name for p in env.inbox.iterdir()] == ["clip.task"]  # no temp file left
    again = env.cli("add", "task-added-00001", "--name", "clip")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_add_rejects_a_bad_id_with_exit_2(env):
    result = env.cli("add", "bad id")
    assert result.returncode == 2
    assert result.stderr.startswith("wansync: TASK_ID:") and len(result.stderr.splitlines()) == 1
    assert not list(env.inbox.iterdir())


def test_status_reports_every_folder(env, sim):
    drop(env.inbox, "queued", "task-queued-0001")
    env.cli("once")  # ends it in the outbox
    drop(env.inbox, "waiting", "task-waiting-0002")
    drop(env.failed, "broken", "")
    (env.failed / "broken.status.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "name": "broken",
                "task_id": None,
                "state": "failed",
                "polls": 0,
                "error": {
                    "code": "InvalidTaskFile",
                    "message": "broken.task: file is empty",
                    "transient": False,
                },
            }
        )
    )
    rows = json.loads(env.cli("status", "--json").stdout)
    summary = {(r["where"], r["name"], r["state"]) for r in rows}
    assert summary == {
        ("outbox", "queued", "succeeded"),
        ("inbox", "waiting", "queued"),
        ("failed", "broken", "failed"),
    }
    table = env.cli("status").stdout
    assert "InvalidTaskFile: broken.task: file is empty" in table
    assert table.splitlines()[0].split()[:3] == ["WHERE", "NAME", "TASK"]


def test_retry_moves_the_task_back(env, sim):
    sim.add_task("task-retry-00001", outcome="FAILED")
    drop(env.inbox, "again", "task-retry-00001")
    assert env.cli("once").returncode == 1
    assert (env.failed / "again.task").exists()
    result = env.cli("retry", "again")
    assert result.returncode == 0
    assert (env.inbox / "again.task").exists() and not (env.failed / "again.task").exists()
    sim.add_task("task-retry-00001", outcome="SUCCEEDED")
    assert env.cli("once").returncode == 0
    assert (env.outbox / "again.mp4").exists()
    assert env.cli("retry", "nothing-here").returncode == 2


def test_check_offline_and_online(env, sim):
    result = env.cli("check", "--online")
    assert result.returncode == 0, result.stderr
    assert "api: ok" in result.stdout and TEST_KEY not in result.stdout + result.stderr
    wrong = env.cli("check", "--online", key="wrong-key-1234567")
    assert wrong.returncode == 2 and "rejected the key" in wrong.stderr
    assert "wrong-key-1234567" not in wrong.stdout + wrong.stderr
    nokey = env.cli("check", key=None)
    assert nokey.returncode == 2 and "no API key" in nokey.stderr


def test_run_without_a_key_exits_2_with_one_line(env):
    result = env.cli("run", key=None)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "api.key_file" in result.stderr


def test_folders_on_different_filesystems_are_refused(env, tmp_path):
    """Publishing is a rename, so an outbox on another filesystem is a config error."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    other = Path(tempfile.mkdtemp(dir=shm))
    try:
        env.configure(outbox=str(other / "outbox"))
        result = env.cli("check")
        assert result.returncode == 2
        assert "outbox: must be on the same filesystem" in result.stderr
    finally:
        shutil.rmtree(other)


def test_add_never_races_a_starting_daemon(env, sim):
    """Found by the demo on a terminal: a starting daemon swept `add`'s temp file away."""
    daemon = env.start()
    for i in range(20):
        assert env.cli("add", f"task-race-{i:05d}").returncode == 0
    env.wait_ended(*(f"task-race-{i:05d}" for i in range(20)))
    assert daemon.stop() == 0
