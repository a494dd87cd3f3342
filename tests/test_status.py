"""`wansync status`: what it shows for each kind of record, and `--watch` on and off a terminal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import Env, drop, sigint_default, wait_until
from tests.tty import PtyRun, screen
from wansync.core.record import DownloadState
from wansync.files import sidecar

BEFORE = "a line printed before status --watch"


def test_a_queued_task_shows_its_task_id(env: Env) -> None:
    """A `.task` the daemon has not picked up shows the id it holds (a bad one shows -)."""
    drop(env.inbox, "waiting", '{"task_id": "task-waiting-0001", "shot": 3}')
    drop(env.inbox, "garbage", "not a task id at all")
    rows = {r["name"]: r for r in json.loads(env.cli("status", "--json").stdout)}
    assert rows["waiting"]["task_id"] == "task-waiting-0001"
    assert rows["garbage"]["task_id"] is None
    table = env.cli("status").stdout
    assert "task-waiting-0001" in table


def test_a_download_shows_bytes_and_percent(env: Env) -> None:
    """The sidecar's download bytes/total appear as MB and percent in the table."""
    drop(env.inbox, "big", "task-big-000001")
    data = sidecar.new("big", "task-big-000001", {}, 1_700_000_000.0)
    data.state, data.task_status = "downloading", "SUCCEEDED"
    data.download = DownloadState('"abc"', 12_300_000, 40_000_000)
    sidecar.write(sidecar.path_for(env.inbox, "big"), data)
    assert "downloading 12.3 MB/40.0 MB 30%" in env.cli("status").stdout
    data.download = DownloadState(None, 5_000_000, None)
    sidecar.write(sidecar.path_for(env.inbox, "big"), data)
    assert "downloading 5.0 MB " in env.cli("status").stdout + " "
    row = json.loads(env.cli("status", "--json").stdout)[0]
    assert row["download"] == {"bytes": 5_000_000, "total": None}


def test_without_a_config_it_says_which_folders_it_looked_at(tmp_path: Path) -> None:
    """No -c, no $WANSYNC_CONFIG, no ./wansync.yaml: one stderr line naming the folders."""
    if Path("/etc/wansync/config.yaml").exists():
        pytest.skip("/etc/wansync/config.yaml exists on this machine")
    env = {k: v for k, v in os.environ.items() if k != "WANSYNC_CONFIG"}
    result = subprocess.run(
        [sys.executable, "-m", "wansync", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stderr.count("\n") == 1
    assert "no config file found" in result.stderr and "/var/lib/wansync/inbox" in result.stderr
    assert f"no wansync.yaml in {tmp_path}" in result.stderr  # where, as the refusals say it
    assert "every other command refuses without a config file" in result.stderr
    assert result.stdout.startswith("WHERE")


def test_watch_on_a_terminal_redraws_in_place(env: Env) -> None:
    """Frames replace each other: the lines above stay, one table shows, Ctrl-C exits 0."""
    drop(env.inbox, "first", "task-first-00001")
    run = PtyRun("status", "--watch", "-c", str(env.config_path), env=env.env())
    wait_until(lambda: run.text().count("WHERE") >= 2, 20, "two frames")
    drop(env.inbox, "second", "task-second-0002")
    wait_until(lambda: "task-second-0002" in run.text(), 20, "a frame with the new task")
    os.killpg(run.proc.pid, signal.SIGINT)
    assert run.wait(20) == 0
    shown = screen(BEFORE + "\r\n", run.text())
    assert shown[0] == BEFORE
    assert sum(line.startswith("WHERE") for line in shown) == 1, "\n".join(shown)
    assert sum("(Ctrl-C to stop)" in line for line in shown) == 1
    assert any("task-second-0002" in line for line in shown)
    assert "Traceback" not in run.text()


def test_watch_off_a_terminal_prints_one_table_a_second(env: Env) -> None:
    """Piped: whole tables, about one a second, no escape codes; SIGINT ends it with 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wansync", "status", "--watch", "-c", str(env.config_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env.env(),
        text=True,
        preexec_fn=sigint_default,  # SIGINT must reach it even under `pytest &`
    )
    assert proc.stdout is not None
    lines: list[str] = []
    headers: list[float] = []  # when each table began
    deadline = time.monotonic() + 30
    while len(headers) < 3 and time.monotonic() < deadline:
        lines.append(proc.stdout.readline())
        if lines[-1].startswith("WHERE"):
            headers.append(time.monotonic())
    assert len(headers) == 3, lines
    assert headers[2] - headers[0] >= 1.5  # paced at one a second, not a busy loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "\x1b" not in "".join(lines) + out


def test_a_hand_edited_sidecar_cannot_break_the_table(env: Env) -> None:
    """Wrong types and control characters in a sidecar or a name: a table, the controls
    shown escaped (`\\x1b`), never sent raw."""
    drop(env.failed, "odd\x1b[2Jname", "task-odd-000001")
    (env.failed / "odd\x1b[2Jname.status.json").write_text(
        json.dumps(
            {"schema": 1, "state": ["x"], "task_id": 12345, "polls": "many", "error": "boom\x07"}
        )
    )
    result = env.cli("status")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "odd\\x1b[2Jname" in result.stdout and "12345" in result.stdout
    assert "boom\\x07" in result.stdout
    assert json.loads(env.cli("status", "--json").stdout)[0]["polls"] == 0


def _into_a_pipe(env: Env, *args: str, read_first: bool) -> tuple[bytes, str, int]:
    """`wansync ARGS` with stdout a pipe whose reader hangs up after one line (or at once):
    (that line, stderr, the exit code)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "wansync", *args, "-c", str(env.config_path)],
        env=env.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline() if read_first else b""
    proc.stdout.close()  # `| head -1`: the reader is gone; what is written now is EPIPE
    err = proc.stderr.read().decode()
    return first, err, proc.wait(30)


def test_a_reader_that_hangs_up_ends_status_quietly(env: Env) -> None:
    """`wansync status --json | head -1` (more output than a pipe holds), and a reader gone
    before anything is written: 141, as for a program SIGPIPE ended; no traceback, no
    error line (stderr says only whether the daemon runs)."""
    for i in range(1500):
        (env.inbox / f"t{i:04d}.task").write_text(f"task-pipe-{i:06d}\n")
    for args, read_first in ((("status", "--json"), True), (("status",), False)):
        first, err, code = _into_a_pipe(env, *args, read_first=read_first)
        assert code == 141, (args, code, err)
        assert first == (b"[\n" if read_first else b"")
        lines = err.splitlines()
        assert len(lines) == 1 and "the daemon of" in lines[0], (args, err)
