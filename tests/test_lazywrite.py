"""Which sidecar writes may wait, decided with `now` passed in (no clock, no files)."""

from __future__ import annotations

from typing import Any

from wansync import sidecar
from wansync.lazywrite import FLUSH_EVERY, LazyWrites


def polled(polls: int, status: str = "RUNNING", **fields: Any) -> dict[str, Any]:
    data = sidecar.new("clip", "task-00000001", {}, 0.0)
    data.update(task_status=status, polls=polls, last_polled=f"t{polls}", next_poll=f"n{polls}")
    data.update(fields)
    return data


def on_disk(lazy: LazyWrites, data: dict[str, Any]) -> LazyWrites:
    lazy.written("clip", data)
    return lazy


def test_a_poll_that_changes_only_counters_waits() -> None:
    """polls, last_polled and next_poll alone: not written now."""
    lazy = on_disk(LazyWrites(), polled(3))
    assert lazy.write_now("clip", polled(4), now=10.0) is False
    assert lazy.next_flush() == 10.0 + FLUSH_EVERY


def test_a_change_of_state_task_status_or_error_is_written_at_once() -> None:
    """Each of the three fields SPEC names forces an immediate write."""
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
