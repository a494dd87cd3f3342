"""The inbox lock is the service user's alone; everyone else reads `.wansync.live`.

`judge` (what to do with what is at the lock's name) in-process; the files a real daemon
leaves; another user (`nobody`, a forked child: no interpreter needs to be reachable
for it) who cannot open, hold or block the lock; planted links, FIFOs, folders and other
users' files that never block a start; `submit --wait` following a running daemon with
no API key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import Env, drop, wait_until
from tests.test_jobs import SAMPLE_PNG
from wansync.cli.submit import who_runs
from wansync.core.errors import ConfigError, InboxLocked
from wansync.files import liveness
from wansync.files.lock import LOCK_NAME, Found, Inbox, InboxLock, Verdict, judge, user_name
from wansync.simulator import Simulator

ME, OTHER = 1000, 2000


# -- judge: a pure function of what is at the lock's name ---------------------------------
MINE, OTHERS = Inbox(ME, ME), Inbox(OTHER, OTHER)  # each folder in its owner's folder
SWAPPED = Inbox(OTHER, ME)  # another user's folder put in ours, where the inbox was


@pytest.mark.parametrize(
    ("found", "me", "inbox", "alive", "verdict"),
    [
        (None, ME, MINE, False, Verdict.CREATE),
        (Found("file", ME, 1, 7), ME, MINE, False, Verdict.USE),
        (Found("file", ME, 1, 7), ME, OTHERS, False, Verdict.USE),  # ours in another's inbox
        (Found("file", OTHER, 1, 7), 0, OTHERS, False, Verdict.USE),  # root: the owner's lock
        (Found("file", ME, 1, 7), 0, OTHERS, False, Verdict.REPLACE),  # root: not the owner's
        (Found("link", ME, 1, 7), ME, MINE, False, Verdict.REPLACE),
        (Found("fifo", OTHER, 1, 7), ME, OTHERS, False, Verdict.REPLACE),
        (Found("folder", OTHER, 2, 7), ME, MINE, True, Verdict.REPLACE),
        (Found("file", ME, 2, 7), ME, MINE, False, Verdict.REPLACE),  # a hard link
        (Found("file", OTHER, 1, 7), ME, MINE, False, Verdict.REPLACE),  # a leftover, a plant
        (Found("file", OTHER, 1, 7), ME, MINE, True, Verdict.FOREIGN_HELD),
        (Found("file", OTHER, 1, 7), ME, OTHERS, False, Verdict.FOREIGN),  # the service's
        (Found("file", 3000, 1, 7), ME, OTHERS, False, Verdict.FOREIGN),  # a third user's
        (Found("file", OTHER, 1, 7), ME, Inbox(0, ME), False, Verdict.FOREIGN),  # root's folder
        # another user's folder, with that user's lock, in place of the inbox in our folder
        (Found("file", OTHER, 1, 7), ME, SWAPPED, False, Verdict.INBOX_REPLACED),
        (Found("file", OTHER, 1, 7), ME, SWAPPED, True, Verdict.INBOX_REPLACED),
        (Found("file", ME, 1, 7), ME, SWAPPED, False, Verdict.USE),  # our lock: no one's block
        (None, ME, SWAPPED, False, Verdict.CREATE),
        (Found("file", OTHER, 1, 7), 0, SWAPPED, False, Verdict.USE),  # root: as before
        # not in its place, but not in our folder (or a link there): said, never waited on
        (Found("file", OTHER, 1, 7), ME, Inbox(OTHER, 0), False, Verdict.NOT_IN_PLACE),
        (Found("file", OTHER, 1, 7), ME, Inbox(OTHER, ME, link=True), False, Verdict.NOT_IN_PLACE),
        (Found("file", OTHER, 1, 7), ME, Inbox(OTHER, 0), True, Verdict.FOREIGN_HELD),
    ],
)
def test_judge(found: Found | None, me: int, inbox: Inbox, alive: bool, verdict: Verdict) -> None:
    """Ours: use; nothing: create; never a lock (link, FIFO, folder, hard link): replace;
    another user's: held by its live wansync → exit 3, else replaced by the inbox's
    owner (or root), and left to the inbox's owner by anyone else. An inbox folder that
    is not in its place (neither root's nor its parent's owner's) never makes another
    user's lock a block: in our own folder it is moved aside, elsewhere it is said."""
    assert judge(found, me, inbox, alive) is verdict


# -- what a daemon leaves -----------------------------------------------------------------
def test_the_lock_is_0600_and_the_live_record_says_who_runs(env: Env, sim: Simulator) -> None:
    """While it runs: lock 0600, `.wansync.live` readable by all, naming this process and
    the lock's inode; after a stop it says `stopped`, and no daemon is running."""
    daemon = env.start()
    daemon.wait_ready()
    lock = env.inbox / LOCK_NAME
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    live = env.inbox / liveness.LIVE_NAME
    assert stat.S_IMODE(live.stat().st_mode) & 0o044 == 0o044
    record = json.loads(live.read_text())
    assert record["pid"] == daemon.proc.pid and record["lock_inode"] == lock.stat().st_ino
    assert record["stopped"] is None and record["proc_start"] > 0
    running = liveness.running(env.inbox)
    assert running is not None and running.pid == daemon.proc.pid
    assert daemon.stop() == 0
    assert liveness.running(env.inbox) is None
    assert liveness.read(env.inbox).stopped.endswith("Z")  # type: ignore[union-attr]


def test_a_0644_lock_left_by_an_older_wansync_becomes_0600(env: Env, sim: Simulator) -> None:
    lock = env.inbox / LOCK_NAME
    lock.write_text("123\n")
    lock.chmod(0o644)
    assert env.cli("once").returncode == 0
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_a_second_daemon_is_refused_though_the_lock_file_was_removed(
    env: Env, sim: Simulator
) -> None:
    """Anyone in the group may remove the lock file under a running daemon: a second one
    of the same user then takes a new file, but its record shows the first still runs:
    exit 3 naming it; the first goes on."""
    first = env.start()
    first.wait_ready()
    (env.inbox / LOCK_NAME).unlink()
    second = env.cli("once", "--timeout", "10")
    assert second.returncode == 3, second.stderr
    assert f"another wansync (PID {first.proc.pid}) is running" in second.stderr
    assert "its lock file was removed" in second.stderr
    drop(env.inbox, "still", "task-still-00001")
    env.wait_ended("still")
    first.signal(signal.SIGTERM)  # (`stop()` looks for its PID in the lock file, now gone)
    assert first.wait(15) == 0


# -- the record is believed only as far as it checks out ----------------------------------
def _record(inbox: Path, **changes: object) -> None:
    lock = inbox / LOCK_NAME
    lock.touch()
    mine = liveness.describe_self(lock.stat().st_ino, "2026-01-01T00:00:00.000Z")
    data = {"schema": 1, **mine.__dict__, "pid": os.getppid(), **changes}
    data["proc_start"] = changes.get("proc_start", liveness.proc_start(os.getppid()))
    (inbox / liveness.LIVE_NAME).write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "believed"),
    [
        ({}, True),  # a live process, the same start time, this lock
        ({"stopped": "2026-01-01T00:00:01.000Z"}, False),
        ({"pid": 4_194_304}, False),  # no such process
        ({"proc_start": 1}, False),  # the pid is another process now (reused)
        ({"lock_inode": 1}, False),  # names another lock file
        ({"boot_id": "another-boot"}, False),
        ({"pid": "12"}, False),  # planted junk: wrong types
        ({"schema": 2}, False),
    ],
)
def test_a_record_is_running_only_if_it_checks_out(
    tmp_path: Path, changes: dict[str, object], believed: bool
) -> None:
    """Stopped, a dead or reused pid, another lock, another boot, wrong types: not running."""
    _record(tmp_path, **changes)
    assert (liveness.running(tmp_path) is not None) is believed


def test_a_planted_record_that_is_a_link_or_huge_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("{}")
    (tmp_path / liveness.LIVE_NAME).symlink_to(tmp_path / "elsewhere")
    assert liveness.read(tmp_path) is None
    (tmp_path / liveness.LIVE_NAME).unlink()
    (tmp_path / liveness.LIVE_NAME).write_text(" " * 100_000)
    assert liveness.read(tmp_path) is None


# -- another user -------------------------------------------------------------------------
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as another user needs root")


@pytest.fixture
def shared(sim: Simulator) -> Iterator[Env]:
    """An Env whose folders another user can reach (tmp_path's parents are 0700)."""
    root = Path(tempfile.mkdtemp(prefix="wansync-shared-"))
    root.chmod(0o755)
    env = Env(root, sim)
    try:
        yield env
    finally:
        env.reap()
        shutil.rmtree(root, ignore_errors=True)


def fork_as_nobody(action: Callable[[], int]) -> int:
    """Start `action` in a forked child as user nobody (its return value is the child's
    exit code); the child's pid."""
    nobody = pwd.getpwnam("nobody")
    pid = os.fork()
    if pid == 0:  # the child: nothing of pytest runs here, only the action
        code = 99
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = action()
        finally:
            os._exit(code)
    return pid


def as_nobody(action: Callable[[], int]) -> int:
    """`action` as user nobody in a forked child, to its end; its exit code."""
    return os.waitstatus_to_exitcode(os.waitpid(fork_as_nobody(action), 0)[1])


@needs_root
def test_another_user_cannot_open_the_lock_to_hold_it(shared: Env, sim: Simulator) -> None:
    """The finding: a local user takes a read-only flock on the lock while the daemon runs;
    it stops; the restart must not find its inbox locked (exit 3). Now the user cannot
    even open the lock file, and the restart starts."""
    lock = shared.inbox / LOCK_NAME
    first = shared.start()
    first.wait_ready()
    said, told = os.pipe()

    def hold() -> int:  # open the lock, wait for it, then keep it for 30 s
        try:
            fd = os.open(lock, os.O_RDONLY)
        except PermissionError:
            return 13
        os.write(told, b"opened")
        fcntl.flock(fd, fcntl.LOCK_EX)
        time.sleep(30)
        return 0

    pid = fork_as_nobody(hold)
    os.close(told)
    try:
        opened = os.read(said, 16)  # b"" once the child exits without opening it
        assert first.stop() == 0
        second = shared.start()
        wait_until(lambda: second.events("daemon.started") or second.proc.poll() is not None, 20)
        assert second.proc.poll() is None, "the restart found its inbox locked"
        assert second.stop() == 0
    finally:
        os.close(said)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    assert opened == b"" and code == 13, "another user opened the lock file"


@needs_root
def test_the_inbox_owner_replaces_another_users_leftover_lock(shared: Env) -> None:
    """The service (here nobody, owning its inbox) finds another user's lock that no live
    wansync holds (a plant, a producer's old `once`): moved aside, its own made, 0600."""
    shared.inbox.chmod(0o755)
    os.chown(shared.inbox, pwd.getpwnam("nobody").pw_uid, -1)
    lock = shared.inbox / LOCK_NAME
    lock.write_text("")
    lock.chmod(0o600)  # root's: nobody cannot even open it

    def take() -> int:
        InboxLock(shared.inbox).acquire()
        return 0

    assert as_nobody(take) == 0
    assert lock.stat().st_uid == pwd.getpwnam("nobody").pw_uid
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    [aside] = shared.inbox.glob(".wansync.lock.not-ours.*")
    assert aside.stat().st_uid == 0


@needs_root
def test_a_user_who_does_not_own_the_inbox_leaves_its_owners_lock_alone(shared: Env) -> None:
    """A group member's `once` on the service's inbox (its lock there, the service stopped):
    exit 3 saying whose the lock is; the lock is not moved, replaced or opened."""
    shared.inbox.chmod(0o777)  # the member may write the inbox, as the group may
    lock = shared.inbox / LOCK_NAME
    lock.write_text("")
    lock.chmod(0o600)
    before = lock.stat()
    said = shared.root / "said"
    said.touch(0o666)  # for the child's message (nobody may not create files there)
    said.chmod(0o666)

    def take() -> int:
        try:
            InboxLock(shared.inbox).acquire()
        except InboxLocked as exc:
            said.write_text(str(exc))
            return 3
        return 0

    assert as_nobody(take) == 3
    assert "belongs to user root (uid 0)" in said.read_text()
    assert lock.stat().st_ino == before.st_ino and os.listdir(shared.inbox) == [LOCK_NAME]


# -- an inbox folder put in place of the service's (issue 21, round four) -----------------
def _other_users_inbox(shared: Env, parent_owner: int) -> tuple[Path, int]:
    """The inbox made another user's (`daemon`, uid 1), holding that user's lock, which
    this process holds (`flock`) as that user would; its parent given to `parent_owner`.
    Returns the lock and the descriptor that holds it."""
    other = pwd.getpwnam("daemon").pw_uid
    os.chown(shared.root, parent_owner, -1)
    shared.inbox.chmod(0o777)
    drop(shared.inbox, "theirs", "task-theirs-0001")
    lock = shared.inbox / LOCK_NAME
    lock.write_text("")
    for path in (shared.inbox, lock, shared.inbox / "theirs.task"):
        os.chown(path, other, -1)
    fd = os.open(lock, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return lock, fd


def _said(shared: Env) -> Path:
    """A file the child (as nobody) may write what it saw into."""
    said = shared.root.parent / f"{shared.root.name}.said"
    said.touch()
    said.chmod(0o666)
    return said


@needs_root
def test_an_inbox_replaced_by_another_users_folder_with_its_lock_is_moved_aside(
    shared: Env,
) -> None:
    """The attacker's swap: in the service's folder (nobody's here), a member puts a folder
    of theirs where the inbox was, with a lock they hold. Taking the lock does not wait on
    it: the folder is moved aside whole (`inbox.not-ours.XXXX`, their lock and task in it)
    and a new inbox is the service's, with its own lock."""
    nobody = pwd.getpwnam("nobody").pw_uid
    lock, held = _other_users_inbox(shared, nobody)
    said = _said(shared)
    try:

        def take() -> int:
            taken = InboxLock(shared.inbox)
            taken.acquire()
            said.write_text(json.dumps(taken.inbox_moved))
            return 0

        assert as_nobody(take) == 0
    finally:
        os.close(held)
        said_text = said.read_text()
        said.unlink()
    [aside] = shared.root.glob("inbox.not-ours.*")
    assert sorted(p.name for p in aside.iterdir()) == [LOCK_NAME, "theirs.task"]
    assert aside.stat().st_uid == pwd.getpwnam("daemon").pw_uid
    assert shared.inbox.stat().st_uid == nobody and lock.stat().st_uid == nobody
    moved = json.loads(said_text)
    assert moved["moved_to"] == str(aside) and moved["path"] == str(shared.inbox)
    assert moved["owner"] == user_name(pwd.getpwnam("daemon").pw_uid)


@needs_root
def test_another_users_lock_in_a_folder_not_in_its_place_is_said_not_waited_on(
    shared: Env,
) -> None:
    """The same folder and lock, in a folder that is not the daemon's (root's here): not
    moved, and not "another wansync runs" either: exit 2 naming the lock file, the
    folders, their owners and what to do, never "start the service"."""
    lock, held = _other_users_inbox(shared, 0)
    said = _said(shared)
    try:

        def take() -> int:
            try:
                InboxLock(shared.inbox).acquire()
            except ConfigError as exc:
                said.write_text(str(exc))
                return 2
            except InboxLocked as exc:
                said.write_text(str(exc))
                return 3
            return 0

        code = as_nobody(take)
    finally:
        os.close(held)
        message = said.read_text()
        said.unlink()
    assert code == 2, message
    daemon_user = user_name(pwd.getpwnam("daemon").pw_uid)
    for part in (
        f"inbox: {lock} is a file of {daemon_user}, in {shared.inbox}, a folder of {daemon_user}",
        f"inside {shared.root}, which is user root (uid 0)'s",
        f"mv {shared.inbox} {shared.inbox}.replaced",
    ):
        assert part in message, message
    assert "start the service" not in message
    assert sorted(p.name for p in shared.inbox.iterdir()) == [LOCK_NAME, "theirs.task"]


# -- planted things never block a start ---------------------------------------------------
def _plant(inbox: Path, kind: str) -> None:
    lock = inbox / LOCK_NAME
    if kind == "link":
        (inbox.parent / "target").write_text("precious\n")
        lock.symlink_to(inbox.parent / "target")
    elif kind == "dangling link":
        lock.symlink_to(inbox.parent / "nowhere")
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "folder":
        lock.mkdir()
        (lock / "inside").write_text("x")
    elif kind == "hard link":
        (inbox.parent / "other").write_text("x")
        os.link(inbox.parent / "other", lock)
    elif kind == "another user's file":
        lock.write_text("")
        os.chown(lock, pwd.getpwnam("nobody").pw_uid, -1)
        lock.chmod(0o600)


@pytest.mark.parametrize(
    "kind", ["link", "dangling link", "fifo", "folder", "hard link", "another user's file"]
)
def test_a_planted_lock_is_moved_aside_and_the_daemon_starts(
    env: Env, sim: Simulator, kind: str
) -> None:
    """Whatever is planted at the lock's name, the daemon moves it aside (kept, never
    followed), takes its own lock, says so at start-up, and does its work."""
    if kind == "another user's file" and os.geteuid() != 0:
        pytest.skip("chown to another user needs root")
    _plant(env.inbox, kind)
    drop(env.inbox, "planted", "task-planted-0001")
    daemon = env.start("once")
    assert daemon.wait(30) == 0
    started = daemon.events("daemon.started")[0]
    assert len(started["lock_replaced"]) == 1 and "moved to .wansync.lock.not-ours." in str(
        started["lock_replaced"]
    )
    lock = env.inbox / LOCK_NAME
    assert stat.S_ISREG(lock.lstat().st_mode) and lock.stat().st_nlink == 1
    assert len(list(env.inbox.glob(".wansync.lock.not-ours.*"))) == 1
    if kind == "link":
        assert (env.root / "target").read_text() == "precious\n"
    if kind == "hard link":  # the other name's content was never truncated to a PID
        assert (env.root / "other").read_text() == "x"
    assert (env.outbox / "planted.mp4").exists()


# -- submit --wait follows a running daemon -----------------------------------------------
def test_submit_wait_follows_a_running_daemon_without_a_key(
    env: Env, sim: Simulator, tmp_path: Path
) -> None:
    """With the daemon running, `submit --wait` needs no API key: it follows the daemon
    (saying whom) and prints the MP4's path."""
    env.configure(submit={"max_per_second": 50})
    daemon = env.start()
    daemon.wait_ready()
    picture = env.inbox / "pictures" / "frame.png"
    picture.parent.mkdir()
    picture.write_bytes(SAMPLE_PNG)
    result = env.cli("submit", str(picture), "--prompt", "followed", "--wait", key=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(env.outbox / "frame.mp4")
    assert f"following the wansync that runs this inbox (PID {daemon.proc.pid}" in result.stderr
    assert "Traceback" not in result.stderr
    assert daemon.stop() == 0


@needs_root
def test_submit_wait_waits_for_the_service_whose_lock_it_is(shared: Env) -> None:
    """The service stopped for a moment (its lock there, no live record): a member's
    `submit --wait` does not try to be the daemon; it says the job waits for the service."""
    lock = shared.inbox / LOCK_NAME
    lock.write_text("")
    lock.chmod(0o600)
    said = shared.root / "said"
    said.touch()
    said.chmod(0o666)

    def ask() -> int:  # (imported above: the child as nobody may not read the stdlib)
        said.write_text(who_runs(shared.inbox, "clip") or "")
        return 0

    assert as_nobody(ask) == 0
    assert said.read_text() == (
        f"no wansync runs on {shared.inbox} now, and its lock belongs to user root (uid 0) "
        "(the service): clip.job waits for it to start (Ctrl-C stops waiting; the job stays)"
    )
