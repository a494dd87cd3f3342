"""Which sidecar writes may wait, decided with `now` passed in (no clock, no files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wansync.core import events as ev
from wansync.core.record import TaskRecord
from wansync.core.tracker import Task, Tracker
from wansync.files import sidecar
from wansync.run.journal import FLUSH_EVERY, Journal, LazyWrites
from wansync.run.publish import Folders


def polled(polls: int, status: str = "RUNNING", **fields: Any) -> TaskRecord:
    data = sidecar.new("clip", "task-00000001", {}, 0.0)
    data.task_status, data.polls = status, polls
    data.last_polled, data.next_poll = f"t{polls}", f"n{polls}"
    for key, value in fields.items():
        setattr(data, key, value)
    return data


def on_disk(lazy: LazyWrites, data: TaskRecord) -> LazyWrites:
    lazy.written("clip", data)
    return lazy


def test_a_poll_that_changes_only_counters_waits() -> None:
    """polls, last_polled and next_poll alone: not written now."""
    lazy = on_disk(LazyWrites(), polled(3))
    assert lazy.write_now("clip", polled(4), now=10.0) is False
    assert lazy.next_flush() == 10.0 + FLUSH_EVERY


def test_a_change_of_state_task_status_or_error_is_written_at_once() -> None:
    """Each of the three fields docs/folders.md names forces an immediate write."""
    error = sidecar.error("RemoteUnavailable", "HTTP 503", True)
    for change in ({"task_status": "SUCCEEDED"}, {"state": "downloading"}, {"error": error}):
        lazy = on_disk(LazyWrites(), polled(3))
        assert lazy.write_now("clip", polled(4, **change), now=10.0) is True, change
        assert lazy.next_flush() is None


def test_an_error_that_clears_is_a_change_too() -> None:
    """The first good poll after a transient error removes the error at once."""
    error = sidecar.error("RemoteUnavailable", "HTTP 503", True)
    lazy = on_disk(LazyWrites(), polled(3, error=error))
    assert lazy.write_now("clip", polled(4), now=10.0) is True


def test_a_task_never_written_is_written_at_once() -> None:
    """No sidecar known on disk (first poll, or after a restart): write now."""
    assert LazyWrites().write_now("clip", polled(1), now=0.0) is True


def test_waiting_writes_are_flushed_in_one_batch_no_later_than_flush_every() -> None:
    """The oldest waiting write sets the flush time; the flush takes every waiting name."""
    lazy = LazyWrites()
    for i, name in enumerate(("a", "b", "c")):
        lazy.written(name, polled(1))
        assert lazy.write_now(name, polled(2), now=10.0 + i * 0.3) is False
    assert lazy.take_due(10.0 + FLUSH_EVERY - 0.01) == []
    assert lazy.take_due(10.0 + FLUSH_EVERY) == ["a", "b", "c"]
    assert lazy.next_flush() is None and lazy.take_due(100.0) == []


def test_a_second_counter_poll_keeps_the_first_ones_deadline() -> None:
    """Two waiting polls of one task: the flush is due by the first one's time."""
    lazy = on_disk(LazyWrites(), polled(1))
    lazy.write_now("clip", polled(2), now=10.0)
    lazy.write_now("clip", polled(3), now=10.9)
    assert lazy.next_flush() == 10.0 + FLUSH_EVERY


def test_a_write_for_any_other_reason_ends_the_wait() -> None:
    """An immediate write (or any event's write) carries the counters along."""
    lazy = on_disk(LazyWrites(), polled(1))
    lazy.write_now("clip", polled(2), now=10.0)
    lazy.written("clip", polled(2))
    assert lazy.next_flush() is None


def test_a_task_no_longer_tracked_is_never_written_late() -> None:
    """Published or removed: its waiting write is dropped, and it is unknown again."""
    lazy = on_disk(LazyWrites(), polled(1))
    lazy.write_now("clip", polled(2), now=10.0)
    lazy.forget("clip")
    assert lazy.take_all() == []
    assert lazy.write_now("clip", polled(3), now=11.0) is True


def test_a_stop_takes_every_waiting_write_due_or_not() -> None:
    """SIGTERM: everything waiting is written before the exit."""
    lazy = on_disk(LazyWrites(), polled(1))
    lazy.write_now("clip", polled(2), now=10.0)
    assert lazy.take_all() == ["clip"]
    assert lazy.take_all() == []


# -- the journal, which follows the decision -----------------------------------------------
class Disk:
    """A sidecar writer that records what reached the disk; each write takes `cost` s."""

    def __init__(self, clock: list[float], cost: float = 0.0) -> None:
        self.clock, self.cost = clock, cost
        self.written: list[tuple[str, int, bool]] = []

    def __call__(self, path: Path, data: TaskRecord, durable: bool = True) -> None:
        self.clock[0] += self.cost
        self.written.append((path.name, data.polls, durable))


def journal_with(tmp_path: Path, names: str = "a", cost: float = 0.0) -> tuple[Any, ...]:
    tracker = Tracker()
    for name in names:
        tracker.track(Task(name, sidecar.new(name, f"id-{name}", {}, 0.0)))
    now = [0.0]
    disk = Disk(now, cost)
    folders = Folders(tmp_path, tmp_path, tmp_path)
    return Journal(tracker, folders, lambda: now[0], write=disk), disk, now, tracker


def poll(journal: Journal, tracker: Tracker, name: str, status: str = "RUNNING") -> None:
    """What the loop does for one answer: update the task, then emit the event."""
    data = tracker.get(name).record  # type: ignore[union-attr]
    data.task_status, data.polls = status, data.polls + 1
    journal(
        ev.TaskPolled(
            at=0,
            name=name,
            task_id=f"id-{name}",
            task_status=status,
            polls=data.polls,
            seconds=0.1,
            changed=False,
        )
    )


def test_the_journal_writes_a_counters_only_poll_with_the_next_batch(tmp_path: Path) -> None:
    """RUNNING again: nothing now; the flush a second later writes it (not fsynced)."""
    journal, disk, now, tracker = journal_with(tmp_path)
    poll(journal, tracker, "a")  # PENDING -> RUNNING: a change, written at once
    poll(journal, tracker, "a")
    assert disk.written == [("a.status.json", 1, False)]
    assert journal.next_retry() == FLUSH_EVERY
    journal.flush(0.05)
    assert len(disk.written) == 1
    now[0] = FLUSH_EVERY
    journal.flush(0.05)
    assert disk.written[-1] == ("a.status.json", 2, False) and journal.next_retry() is None


def test_a_stop_writes_every_waiting_poll(tmp_path: Path) -> None:
    """SIGTERM: the final flush writes the counters that were still waiting."""
    journal, disk, _, tracker = journal_with(tmp_path)
    poll(journal, tracker, "a")
    poll(journal, tracker, "a")
    journal.flush(2.0, final=True)
    assert disk.written[-1] == ("a.status.json", 2, False)


def test_an_ended_task_is_never_written_late(tmp_path: Path) -> None:
    """Removed (or published) while its counters waited: its file is not written again."""
    journal, disk, now, tracker = journal_with(tmp_path)
    poll(journal, tracker, "a")
    poll(journal, tracker, "a")
    journal(ev.TaskRemoved(at=0, name="a", task_id="id-a", detail="removed"))
    tracker.untrack("a")
    now[0] = 10.0
    journal.flush(2.0, final=True)
    assert [w[1] for w in disk.written] == [1]


def test_a_batch_is_written_in_slices_that_end_before_the_next_poll(tmp_path: Path) -> None:
    """`until` (the next poll's start) ends a slice; the rest follows at the next tick."""
    journal, disk, now, tracker = journal_with(tmp_path, "abcd", cost=0.004)
    for name in "abcd":
        poll(journal, tracker, name)
    disk.written.clear()
    for name in "abcd":
        poll(journal, tracker, name)
    now[0] = 2.0
    journal.flush(0.05, until=2.0 + 0.01)
    assert [w[0] for w in disk.written] == ["a.status.json", "b.status.json", "c.status.json"]
    assert journal.pending()
    journal.flush(0.05)
    assert len(disk.written) == 4 and not journal.pending()
