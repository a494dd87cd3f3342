"""The sidecar journal: events rewrite sidecars; a full disk never stops the loop."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from wansync.core import events as ev
from wansync.core.tracker import Task, Tracker
from wansync.files import sidecar
from wansync.run.journal import RETRY_EVERY, Journal
from wansync.run.publish import Folders


class Disk:
    """A sidecar writer whose disk can be full; it records what reached the disk."""

    def __init__(self) -> None:
        self.full = False
        self.written: list[tuple[str, bool]] = []

    def __call__(self, path: Path, data: Any, durable: bool = True) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written.append((path.name, durable))


def setup(tmp_path: Path) -> tuple[Journal, Disk, list[float], Tracker]:
    tracker = Tracker()
    tracker.track(Task("a", sidecar.new("a", "id-a", {}, 0.0)))
    disk, now = Disk(), [0.0]
    folders = Folders(tmp_path, tmp_path, tmp_path)
    return Journal(tracker, folders, lambda: now[0], write=disk), disk, now, tracker


def polled(status: str) -> ev.TaskPolled:
    return ev.TaskPolled(
        at=0, name="a", task_id="id-a", task_status=status, polls=1, seconds=0.1, changed=True
    )


def test_a_poll_rewrites_the_sidecar_durably_only_when_it_matters(tmp_path):
    """RUNNING answers skip fsync; SUCCEEDED (a download follows) is durable."""
    journal, disk, _, _ = setup(tmp_path)
    journal(polled("RUNNING"))
    journal(polled("SUCCEEDED"))
    assert disk.written == [("a.status.json", False), ("a.status.json", True)]


def test_discovered_sidecars_are_batched_until_flush(tmp_path):
    """A discovery only marks the sidecar pending; `flush` writes it."""
    journal, disk, _, _ = setup(tmp_path)
    journal(ev.TaskDiscovered(at=0, name="a", task_id="id-a", state="polling", resumed=False))
    assert disk.written == [] and journal.pending()
    journal.flush(1.0)
    assert disk.written == [("a.status.json", False)] and not journal.pending()


def test_a_full_disk_is_logged_once_and_the_write_retried_later(tmp_path):
    """ENOSPC: one `sidecar.write_error`, no exception, and a retry after RETRY_EVERY."""
    journal, disk, now, _ = setup(tmp_path)
    disk.full = True
    with capture_logs() as logs:
        journal(polled("RUNNING"))  # must not raise into the loop
        journal(polled("RUNNING"))
        now[0] = RETRY_EVERY + 0.1
        journal.flush(1.0)
    assert [e["log_level"] for e in logs if e["event"] == "sidecar.write_error"] == ["error"]
    assert journal.next_retry() is not None and disk.written == []
    disk.full = False
    now[0] = 3 * RETRY_EVERY
    journal.flush(1.0)
    assert disk.written == [("a.status.json", True)]
    assert journal.next_retry() is None


def test_a_removed_task_is_not_retried(tmp_path):
    """A failing sidecar whose task went away is dropped from the retry list."""
    journal, disk, now, tracker = setup(tmp_path)
    disk.full = True
    journal(polled("RUNNING"))
    tracker.untrack("a")
    now[0] = RETRY_EVERY + 1
    journal.flush(1.0)
    assert journal.next_retry() is None
