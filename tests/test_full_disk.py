"""A full disk, for real: a small tmpfs holds the three folders (root only; CI is root)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, Daemon, Env, drop, wait_until
from wansync.files import fsutil

SIZE = "8m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs, unmounted afterwards; skipped where mounting is refused."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"mount refused: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC; returns it (delete to free)."""
    filler = folder / "filler.bin"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(block)
            f.flush()
    # the last partial block may still fit: squeeze out every byte
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:
            f.write(b"\0" * 512)
            f.flush()
    probe = folder / "probe"
    with pytest.raises(OSError) as exc:
        probe.write_bytes(b"x" * 4096)
    probe.unlink(missing_ok=True)
    assert exc.value.errno == errno.ENOSPC
    return filler


def stop(daemon: Daemon) -> int:
    """SIGTERM and wait: the lock file cannot hold the PID (the helpers' usual sign of a
    started daemon) on a full disk, so this waits on the start-up log line instead."""
    daemon.wait_event("daemon.started", 20)
    daemon.signal(signal.SIGTERM)
    return daemon.wait(15)


def test_full_disk_leaves_work_pending_and_finishes_once_there_is_space(small_disk, sim):
    """ENOSPC: the daemon stays up (also across a restart), nothing partial is published,
    the error is logged; freeing space lets every task finish by itself, exactly once."""
    env = Env(small_disk.parent, sim)  # config and logs outside the small disk
    env.inbox, env.outbox, env.failed = (small_disk / n for n in ("inbox", "outbox", "failed"))
    for folder in (env.inbox, env.outbox, env.failed):
        folder.mkdir()
    env.configure(
        inbox=str(env.inbox),
        outbox=str(env.outbox),
        failed=str(env.failed),
        watch={"rescan_interval": 1},
    )
    names = [f"full{i}" for i in range(3)]
    for i, name in enumerate(names):
        sim.add_task(f"full-disk-task-{i:03d}", video_size=600_000)
        drop(env.inbox, name, f"full-disk-task-{i:03d}")
    filler = fill(small_disk)
    try:
        daemon = env.start()
        daemon.wait_event("daemon.started", 20)
        wait_until(
            lambda: daemon.events("sidecar.write_error") or daemon.events("task.transient_error"),
            30,
            "the disk error in the log",
        )
        assert daemon.proc.poll() is None, "the daemon must stay up on a full disk"
        assert not list(env.outbox.glob("*.mp4"))
        assert stop(daemon) == 0
        again = env.start()  # a restart while the disk is still full starts and stays up
        again.wait_event("daemon.started", 20)
        wait_until(lambda: again.proc.poll() is None and again.events("task.discovered"), 20)
        assert again.proc.poll() is None
    finally:
        filler.unlink()
    ended = env.wait_ended(*names, timeout=90)
    assert all(data["state"] == "succeeded" for data in ended.values()), ended
    videos = sorted(p.name for p in env.outbox.glob("*.mp4"))
    assert videos == [f"{n}.mp4" for n in names], videos  # once each, no NAME-2
    assert not list(env.outbox.glob(".*.part"))
    assert stop(again) == 0
    env.reap()
    assert TEST_KEY not in env.every_file_text()


def test_a_failed_sidecar_write_leaves_no_temp_file(small_disk):
    """ENOSPC while writing a sidecar's temp file: the error is raised, the old sidecar is
    intact, and no `*.wansync-tmp` is left in the scratch folder (one per retry, before)."""
    target = small_disk / "clip.status.json"
    fsutil.write_json_atomic(target, {"v": 1})
    filler = fill(small_disk)
    try:
        for _ in range(5):
            with pytest.raises(OSError) as exc:
                fsutil.write_json_atomic(target, {"v": 2, "pad": "x" * 200_000})
            assert exc.value.errno == errno.ENOSPC
    finally:
        filler.unlink()
    assert json.loads(target.read_text()) == {"v": 1}
    assert os.listdir(small_disk / fsutil.SCRATCH) == []


def test_a_failed_task_file_write_leaves_no_temp_file(small_disk):
    """ENOSPC while writing a `.task` (`wansync add`'s producer-style temp + rename): no
    `.NAME.task.*.tmp` stays in the inbox, where no sweep would ever remove it."""
    target = small_disk / "j1.task"
    filler = fill(small_disk)
    try:
        for _ in range(5):
            with pytest.raises(OSError) as exc:
                fsutil.write_bytes_atomic(target, b"x" * 200_000)
            assert exc.value.errno == errno.ENOSPC
    finally:
        filler.unlink()
    assert sorted(os.listdir(small_disk)) == [], os.listdir(small_disk)


def test_add_and_submit_on_a_full_disk_exit_1_naming_the_file(small_disk, sim, tmp_path):
    """`wansync add` and `wansync submit` whose inbox is full (ENOSPC): exit 1, as a failure
    that is not the input's fault (docs/commands.md), one line naming the file and the
    problem, no traceback, nothing left in the inbox; with space again, the same works."""
    env = Env(tmp_path / "conf", sim)  # config outside the small disk
    env.inbox = small_disk / "inbox"
    env.inbox.mkdir()
    env.configure(inbox=str(env.inbox))
    filler = fill(small_disk)
    try:
        for args, name in (
            (("add", "task-full-disk-0001"), "task-full-disk-0001.task"),
            (("submit", "https://example.com/a.png", "--prompt", "p", "--name", "j"), "j.job"),
        ):
            result = env.cli(*args)
            assert result.returncode == 1, (args, result.stderr)
            [line] = result.stderr.splitlines()
            assert f"cannot write {env.inbox / name}: no space left on the device" in line, line
            assert "nothing was written" in line and result.stdout == ""
            assert os.listdir(env.inbox) == [], os.listdir(env.inbox)
    finally:
        filler.unlink()
    assert env.cli("add", "task-full-disk-0001").returncode == 0
    assert (env.inbox / "task-full-disk-0001.task").read_text() == "task-full-disk-0001\n"
