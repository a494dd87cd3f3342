"""The small commands: add, status, retry, check, --help; exit codes and one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, Env, drop, wait_until
from wansync.core.errors import ConfigError
from wansync.simulator import Simulator


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "wansync", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("run", "once", "add", "submit", "status", "retry", "check", "simulate", "demo"):
        assert command in out


def test_add_writes_a_task_atomically(env: Env) -> None:
    result = env.cli("add", "task-added-00001", "--name", "clip")
    assert result.returncode == 0
    assert (env.inbox / "clip.task").read_text() == "task-added-00001\n"
    assert [p.name for p in env.inbox.iterdir()] == ["clip.task"]  # no temp file left
    again = env.cli("add", "task-added-00001", "--name", "clip")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_add_rejects_a_bad_id_with_exit_2(env: Env) -> None:
    result = env.cli("add", "bad id")
    assert result.returncode == 2
    assert result.stderr.startswith("wansync: TASK_ID:") and len(result.stderr.splitlines()) == 1
    assert not list(env.inbox.iterdir())


def test_status_reports_every_folder(env: Env, sim: Simulator) -> None:
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
        ("inbox", "waiting", "waiting"),
        ("failed", "broken", "failed"),
    }
    table = env.cli("status").stdout
    assert "InvalidTaskFile: broken.task: file is empty" in table
    assert table.splitlines()[0].split()[:3] == ["WHERE", "NAME", "TASK"]


def test_retry_moves_the_task_back(env: Env, sim: Simulator) -> None:
    sim.add_task("task-retry-00001", outcome="FAILED")
    drop(env.inbox, "again", "task-retry-00001")
    assert env.cli("once").returncode == 1
    assert (env.failed / "again.task").exists()
    result = env.cli("retry", "again", "--force")  # FAILED: without --force it is refused
    assert result.returncode == 0
    assert (env.inbox / "again.task").exists() and not (env.failed / "again.task").exists()
    sim.add_task("task-retry-00001", outcome="SUCCEEDED")
    assert env.cli("once").returncode == 0
    assert (env.outbox / "again.mp4").exists()
    assert env.cli("retry", "nothing-here").returncode == 2


def test_check_offline_and_online(env: Env, sim: Simulator) -> None:
    result = env.cli("check", "--online")
    assert result.returncode == 0, result.stderr
    assert "api: ok" in result.stdout and TEST_KEY not in result.stdout + result.stderr
    wrong = env.cli("check", "--online", key="wrong-key-1234567")
    assert wrong.returncode == 2 and "rejected the key" in wrong.stderr
    assert "wrong-key-1234567" not in wrong.stdout + wrong.stderr
    nokey = env.cli("check", key=None)
    assert nokey.returncode == 2 and "no API key" in nokey.stderr


def test_run_without_a_key_exits_2_with_one_line(env: Env) -> None:
    result = env.cli("run", key=None)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "api.key_file" in result.stderr


def test_folders_on_different_filesystems_are_refused(env: Env, tmp_path: Path) -> None:
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


def test_add_never_races_a_starting_daemon(env: Env, sim: Simulator) -> None:
    """Found by the demo on a terminal: a starting daemon swept `add`'s temp file away."""
    daemon = env.start()
    for i in range(20):
        assert env.cli("add", f"task-race-{i:05d}").returncode == 0
    env.wait_ended(*(f"task-race-{i:05d}" for i in range(20)))
    assert daemon.stop() == 0


# -- one line and exit 2, never a traceback ------------------------------------------------


def _one_line(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["check", "once"])
def test_an_inbox_that_cannot_be_a_folder_is_one_line(env: Env, command: str) -> None:
    """An inbox under /proc, or one that is a regular file: one line naming it, exit 2."""
    env.configure(inbox="/proc/nope/inbox", outbox="/proc/nope/outbox", failed="/proc/nope/f")
    _one_line(env.cli(command), "inbox", "/proc/nope/inbox")
    plain = env.root / "plain-file"
    plain.write_text("not a folder")
    env.configure(inbox=str(plain), outbox=str(env.outbox), failed=str(env.failed))
    _one_line(env.cli(command), "inbox:", str(plain), "is not a folder")


def _unprivileged() -> list[str]:
    """A prefix that runs a child without root's power to write anyone's folder.

    A throwaway user cannot run this venv's python (it lives under /root, mode 0700), so
    as root we drop every capability instead (`setpriv`): uid 0 without
    CAP_DAC_OVERRIDE is held to the permission bits like any user.
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and setpriv (util-linux) is not installed")
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]


def test_add_without_write_permission_names_the_folder_and_the_fix(env: Env) -> None:
    """`add`, `submit` by a user who may not write the inbox (their own, mode 0555): one
    line naming it, and the hint that fits its mode and owner (`chmod u+w`)."""
    env.inbox.chmod(0o555)
    try:
        add = ["add", "task-perm-00001", "-c", str(env.config_path)]
        result = subprocess.run(
            [*_unprivileged(), sys.executable, "-m", "wansync", *add],
            capture_output=True,
            text=True,
            timeout=60,
            env=env.env(),
        )
        _one_line(result, "inbox:", str(env.inbox), "permission denied", "chmod u+w")
        assert "usermod" not in result.stderr
        picture = env.root / "pic.png"
        picture.write_bytes(b"\x89PNG\r\n\x1a\n a stand-in picture")
        submit = ["submit", str(picture), "--prompt", "waves", "-c", str(env.config_path)]
        result = subprocess.run(
            [*_unprivileged(), sys.executable, "-m", "wansync", *submit],
            capture_output=True,
            text=True,
            timeout=60,
            env=env.env(),
        )
        _one_line(result, "inbox:", str(env.inbox), "permission denied", "chmod u+w")
        assert list(env.inbox.iterdir()) == []
    finally:
        env.inbox.chmod(0o755)


# -- check changes nothing -----------------------------------------------------------------


def test_check_creates_nothing_and_says_run_will(env: Env) -> None:
    """Missing folders are reported (run creates them), never made by `check`."""
    env.configure(inbox=str(env.root / "new" / "inbox"), outbox=str(env.root / "new" / "out"))
    result = env.cli("check")
    assert result.returncode == 0, result.stderr
    assert f"inbox {env.root}/new/inbox does not exist yet; `wansync run` will create it" in (
        result.stdout
    )
    assert not (env.root / "new").exists()


def test_check_reads_the_key_from_key_file(env: Env, sim: Simulator, tmp_path: Path) -> None:
    """`check --key-file` finds a key that only the service can otherwise see."""
    key_file = tmp_path / "the.key"
    key_file.write_text(TEST_KEY + "\n")
    result = env.cli("check", "--online", "--key-file", str(key_file), key=None)
    assert result.returncode == 0, result.stderr
    assert f"key: found ({key_file})" in result.stdout
    assert "the key works" in result.stdout and "PENDING" not in result.stdout
    missing = env.cli("check", "--key-file", str(tmp_path / "nope.key"), key=None)
    _one_line(missing, "--key-file:", "nope.key")


def test_the_service_key_file_follows_the_unit() -> None:
    """As the units say: config.yaml -> dashscope_api_key, NAME.yaml -> NAME.key."""
    from wansync import config
    from wansync.cli import checks

    main = config.from_mapping(None, source=Path("/etc/wansync/config.yaml"))
    beijing = config.from_mapping(None, source=Path("/etc/wansync/beijing.yaml"))
    assert checks.service_key_file(main) == Path("/etc/wansync/dashscope_api_key")
    assert checks.service_key_file(beijing) == Path("/etc/wansync/beijing.key")
    units = Path(__file__).parent.parent / "systemd"
    assert "/etc/wansync/dashscope_api_key" in (units / "wansync.service").read_text()
    assert "/etc/wansync/%i.key" in (units / "wansync@.service").read_text()


def test_a_locked_inbox_names_the_pid_of_its_holder(env: Env, sim: Simulator) -> None:
    """`once` beside a running daemon: exit 3 and the daemon's PID."""
    daemon = env.start()
    wait_until(daemon.holds_lock, 20, "the daemon to hold the lock")
    result = env.cli("once")
    assert result.returncode == 3
    assert f"another wansync (PID {daemon.proc.pid}) is running" in result.stderr
    assert daemon.stop() == 0


def test_every_help_is_clear_and_shows_defaults() -> None:
    """Each command's --help works and names the defaults of its options."""
    for command in ("run", "once", "add", "submit", "status", "retry", "check", "demo"):
        out = subprocess.run(
            [sys.executable, "-m", "wansync", command, "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.startswith("usage: wansync " + command)
        if command not in ("demo",):
            assert "default: $WANSYNC_CONFIG" in out
    check = subprocess.run(
        [sys.executable, "-m", "wansync", "check", "--help"], capture_output=True, text=True
    ).stdout
    assert "--key-file" in check and "changes nothing" in check


# -- retry ----------------------------------------------------------------------------------


def test_retry_takes_the_latest_failed_record_and_keeps_the_name(env: Env, sim: Simulator) -> None:
    """Failed twice (NAME, NAME-2): retry NAME and retry NAME-2 both bring back NAME."""
    sim.add_task("task-twice-00001", outcome="FAILED")
    drop(env.inbox, "twice", "task-twice-00001")
    assert env.cli("once").returncode == 1
    assert env.cli("retry", "twice", "--force").returncode == 0  # FAILED: --force
    assert env.cli("once").returncode == 1  # fails again: failed/twice-2.*
    assert (env.failed / "twice-2.task").exists() and (env.failed / "twice.status.json").exists()
    result = env.cli("retry", "twice", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(env.inbox / "twice.task")
    assert f"moved {env.failed / 'twice-2.task'} to {env.inbox / 'twice.task'}" in result.stderr
    again = env.cli("retry", "twice-2")
    assert again.returncode == 2 and "already in the inbox" in again.stderr
    assert env.cli("once").returncode == 1  # fails a third time: failed/twice-3.*
    by_stem = env.cli("retry", "twice-3", "--force")
    assert by_stem.returncode == 0 and (env.inbox / "twice.task").exists()
    assert not list(env.inbox.glob("twice-*"))


def test_retry_of_a_success_says_where_the_video_is(env: Env, sim: Simulator) -> None:
    """A task that succeeded is not retried: exit 2 naming its video."""
    drop(env.inbox, "fine", "task-fine-000001")
    assert env.cli("once").returncode == 0
    result = env.cli("retry", "fine")
    _one_line(result, "fine: it succeeded", str(env.outbox / "fine.mp4"))
    _one_line(env.cli("retry", "nothing-here"), "no failed task or job", str(env.failed))


def test_as_root_check_falls_back_to_the_service_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key anywhere else: root reads the file the unit's LoadCredential= reads."""
    from wansync import config
    from wansync.cli import checks

    if os.geteuid() != 0:
        pytest.skip("the fallback is for root only")
    for name in ("DASHSCOPE_API_KEY", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(checks, "SERVICE_KEY_DIR", tmp_path)
    cfg = config.from_mapping(None, source=tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="no API key"):
        checks.find_key(cfg, None)
    (tmp_path / "dashscope_api_key").write_text("sk-from-the-service\n")
    key, source = checks.find_key(cfg, None)
    assert key == "sk-from-the-service" and str(tmp_path / "dashscope_api_key") in source


def test_the_permission_hint_spots_a_group_not_yet_in_this_session(tmp_path: Path) -> None:
    """Listed in the folder's (group-writable) group but not in this login's groups: log
    in again / newgrp; not listed: join it with usermod, then newgrp."""
    from wansync.cli import checks

    access = checks.FolderAccess(
        folder=tmp_path,
        mode=0o2775,
        owner="wansync",
        owner_uid=900,
        group="wansync",
        gid=900,
        group_members=("alice",),
        user="alice",
        uid=1000,
        user_gid=1000,
        session_gids=frozenset({1000}),
        service_group="wansync",
    )
    hint = checks.folder_hint(access)
    assert "you were added to group wansync after logging in" in hint and "newgrp wansync" in hint
    outsider = dataclasses.replace(access, group_members=())
    assert "`sudo usermod -aG wansync alice`, then log in again or run `newgrp wansync`" in (
        checks.folder_hint(outsider)
    )
