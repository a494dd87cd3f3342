"""A `NAME.status.json` in the inbox with no `.task` or `.job` beside it, at start-up.

wansync drops such a sidecar only when it provably wrote it (a valid sidecar of its own
task, one name, owned by the daemon's user): the task was removed while it was stopped.
Anything else is a user's file, and a user's file is moved, never deleted: to `failed/`
under a free name, with a `sidecar.moved_aside` line saying where.
"""

from __future__ import annotations

import json
import os
import pwd

import pytest

from tests.helpers import Env, drop, parse_log, wait_until
from wansync.files.lock import user_name
from wansync.simulator import Simulator


def once(env: Env) -> list[dict[str, object]]:
    """`wansync once` to its end (exit 0); its log lines."""
    result = env.cli("once")
    assert result.returncode == 0, result.stderr
    return parse_log(result.stderr)


def test_a_users_stray_status_json_is_moved_to_failed_never_deleted(env: Env) -> None:
    """Notes that only look like a sidecar, a file whose name is taken in failed/, a folder
    and a link with such names: each is moved there as it is (the second as `NAME-2`; the
    link itself, never followed), with a line naming it; no task is said to be removed."""
    notes = b'{"my": "notes", "keep": true}\n'
    (env.inbox / "notes.status.json").write_bytes(notes)
    (env.inbox / "taken.status.json").write_bytes(b"not even JSON")
    (env.failed / "taken.status.json").write_bytes(b"an older record")
    (env.inbox / "album.status.json").mkdir()
    (env.inbox / "album.status.json" / "photo.txt").write_text("mine\n")
    (env.root / "elsewhere.json").write_text("{}")
    (env.inbox / "link.status.json").symlink_to(env.root / "elsewhere.json")
    logs = once(env)
    assert (env.failed / "album.status.json" / "photo.txt").read_text() == "mine\n"
    assert os.readlink(env.failed / "link.status.json") == str(env.root / "elsewhere.json")
    assert (env.root / "elsewhere.json").read_text() == "{}"
    assert not (env.inbox / "notes.status.json").exists()
    assert (env.failed / "notes.status.json").read_bytes() == notes
    assert (env.failed / "taken-2.status.json").read_bytes() == b"not even JSON"
    assert (env.failed / "taken.status.json").read_bytes() == b"an older record"
    moved = {e["file"]: e for e in logs if e["event"] == "sidecar.moved_aside"}
    assert moved.keys() == {f"{n}.status.json" for n in ("notes", "taken", "album", "link")}
    assert moved["taken.status.json"]["moved_to"] == str(env.failed / "taken-2.status.json")
    assert "not a wansync sidecar" in str(moved["notes.status.json"]["error"])
    assert not [e for e in logs if e["event"] == "task.removed"]


@pytest.mark.parametrize("owner", ["wansync's own", "another user's"])
def test_a_removed_tasks_sidecar_is_dropped_only_if_wansync_wrote_it(
    env: Env, sim: Simulator, owner: str
) -> None:
    """A task's sidecar, its `.task` removed while wansync was stopped: wansync's own is
    dropped (`task.removed`); the same file owned by another user (a producer's copy) is
    not provably ours: moved to failed/ as it is."""
    if owner == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    sim.add_task("left-task-00001", running_polls=1_000_000)
    drop(env.inbox, "left", "left-task-00001")
    daemon = env.start()
    path = env.inbox / "left.status.json"
    wait_until(lambda: env.sidecar(env.inbox, "left"), 20, "left's sidecar")
    assert daemon.stop() == 0
    (env.inbox / "left.task").unlink()
    written = path.read_bytes()
    if owner == "another user's":
        os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    logs = once(env)
    assert not path.exists()
    removed = [e for e in logs if e["event"] == "task.removed"]
    moved = [e for e in logs if e["event"] == "sidecar.moved_aside"]
    if owner == "wansync's own":
        assert [e["name"] for e in removed] == ["left"] and not moved
        assert not (env.failed / "left.status.json").exists()
    else:
        assert not removed and [e["file"] for e in moved] == ["left.status.json"]
        assert f"a file of {user_name(pwd.getpwnam('nobody').pw_uid)}" in str(moved[0]["error"])
        assert (env.failed / "left.status.json").read_bytes() == written
        assert json.loads(written)["task_id"] == "left-task-00001"
