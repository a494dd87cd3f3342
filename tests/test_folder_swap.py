"""Folders swapped for links while the daemon runs (their parent is group-writable): the
daemon reads, moves and creates nothing through them, stays up, and finishes the pending
work once the real folder is back (the attacker's t2/t7)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import Env, drop, wait_until


def outside_folder(root: Path) -> Path:
    """A folder wansync must never touch, with a canary task and a secret in it."""
    outside = root / "OUTSIDE"
    outside.mkdir()
    (outside / "stolen.task").write_text("stolen-task-00001\n")
    (outside / "secret.txt").write_text("not yours\n")
    return outside


def snapshot(folder: Path) -> dict[str, object]:
    """Every entry under `folder` (hidden ones too) with its bytes, and the folder's mtime
    (a file made and removed again changes it)."""
    entries: dict[str, object] = {".": folder.stat().st_mtime_ns}
    for path in folder.rglob("*"):
        st = path.lstat()
        entries[str(path.relative_to(folder))] = (st.st_mtime_ns, path.read_bytes())
    return entries


def swap(folder: Path, outside: Path) -> Path:
    """`mv folder folder.real; ln -s outside folder`; returns where the real one is."""
    real = folder.with_name(f"{folder.name}.real")
    os.rename(folder, real)
    os.symlink(outside, folder)
    return real


def put_back(folder: Path, real: Path) -> None:
    os.unlink(folder)
    os.rename(real, folder)


def test_an_inbox_swapped_for_a_link_is_left_alone_until_it_is_back(env: Env, sim):
    """Inbox → link to OUTSIDE: one `folder.replaced`, no lock, scratch folder, sidecar or
    task taken there, polls go on; a task dropped into the real inbox meanwhile, and the
    task that was polling, finish once it is put back."""
    env.configure(watch={"rescan_interval": 1})
    outside = outside_folder(env.root)
    ticker = sim.add_task("ticker-task-00001", running_polls=1_000_000)
    drop(env.inbox, "ticker", ticker.task_id)
    daemon = env.start()
    wait_until(lambda: len(sim.requests(task_id=ticker.task_id)) >= 3, 20, "ticker polled")
    before = snapshot(outside)
    real = swap(env.inbox, outside)
    daemon.wait_event("folder.replaced", 15, path=str(env.inbox))
    drop(real, "pending", "pending-task-00001")
    polls = len(sim.requests(task_id=ticker.task_id))
    # The loop keeps going (the ticker is polled) for several rescan intervals.
    wait_until(lambda: len(sim.requests(task_id=ticker.task_id)) >= polls + 15, 30, "15 more polls")
    assert snapshot(outside) == before
    assert not sim.requests(task_id="stolen-task-00001")
    assert daemon.proc.poll() is None
    put_back(env.inbox, real)
    ticker.running_polls = 0  # done at its next poll
    ended = env.wait_ended("pending", "ticker", timeout=40)
    assert all(data["state"] == "succeeded" for data in ended.values()), ended
    assert daemon.stop() == 0
    assert snapshot(outside) == before
    assert len(daemon.events("folder.replaced")) == 1
    assert not daemon.events("inbox.rewatched", path=str(outside))


def test_outbox_and_failed_swapped_for_links_receive_nothing_until_they_are_back(env: Env, sim):
    """Outbox and failed/ → links to OUTSIDE: no download, `.part` or published file lands
    there (one `folder.replaced` each); once they are back, both tasks end where they
    belong, exactly once."""
    env.configure(watch={"rescan_interval": 1})
    outside = outside_folder(env.root)
    daemon = env.start()
    daemon.wait_ready()
    before = snapshot(outside)
    real_out, real_failed = swap(env.outbox, outside), swap(env.failed, outside)
    drop(env.inbox, "after", "after-task-00001")
    drop(env.inbox, "bad", "!!")  # an invalid task file: it ends in failed/
    daemon.wait_event("folder.replaced", 20, path=str(env.outbox))
    daemon.wait_event("folder.replaced", 20, path=str(env.failed))
    # The download is refused (and retried) more than once, the failed publish too.
    wait_until(lambda: len(daemon.events("task.transient_error", name="after")) >= 2, 30)
    wait_until(lambda: len(daemon.events("task.invalid", name="bad")) >= 2, 30)
    assert snapshot(outside) == before
    assert daemon.proc.poll() is None
    put_back(env.outbox, real_out)
    put_back(env.failed, real_failed)
    assert env.wait_ended("after", timeout=60)["after"]["state"] == "succeeded"
    assert env.wait_ended("bad", timeout=30)["bad"]["state"] == "failed"
    assert daemon.stop() == 0
    assert snapshot(outside) == before
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "after.mp4",
        "after.status.json",
        "after.task",
    ]
    assert sorted(p.name for p in env.failed.iterdir()) == ["bad.status.json", "bad.task"]
    assert len(daemon.events("folder.replaced")) == 2
