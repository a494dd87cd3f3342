"""The tracker: one registry, and `untrack` releases everything a task held."""

from __future__ import annotations

from wansync.core.filegroup import FileGroup
from wansync.core.shapes import FileUrl
from wansync.core.tracker import CLAIM_RETRY, Task, Tracker
from wansync.files import sidecar


def make(
    name: str, task_id: str | None = None, state: sidecar.State = "downloading", files: int = 1
) -> Task:
    """A task; a downloading one has `files` files to fetch (one video, or pictures)."""
    record = sidecar.new(name, task_id or f"id-{name}", {}, 0.0)
    record.state = state
    task = Task(name, record)
    if state == "downloading":
        kind = "video" if files == 1 else "picture"
        urls = tuple(FileUrl(f"https://h/{name}/{k}", kind, f"f{k}") for k in range(files))
        task.group = FileGroup(urls)
        task.parts = tuple(f".{name}.{k + 1}.png.part" for k in range(files))
    return task


def test_removing_a_downloading_task_frees_its_slot():
    """The slot-leak case: with one slot, a task removed mid-download lets the next one start."""
    tr = Tracker()
    first, second = make("a"), make("b")
    tr.track(first)
    tr.track(second)
    tr.queue_download("a", 0.0)
    tr.queue_download("b", 0.0)
    [(task, slot)] = tr.take_downloads(1.0, concurrency=1)
    assert task is first and tr.take_downloads(1.0, 1) == []
    tr.untrack("a")
    assert slot.cancel.is_set()  # the worker stops at its next chunk
    assert tr.release("a", slot.number) is None  # its late result releases nothing
    [(task, _)] = tr.take_downloads(2.0, concurrency=1)
    assert task is second and tr.downloads_running == 1


def test_a_stale_ticket_cannot_release_a_new_tasks_slot():
    """A removed task's late result does not free the slot of a new task with its name."""
    tr = Tracker()
    tr.track(make("a"))
    tr.queue_download("a", 0.0)
    [(_, old)] = tr.take_downloads(0.0, 1)
    tr.untrack("a")
    tr.track(make("a", "id-new"))
    tr.queue_download("a", 0.0)
    [(_, new)] = tr.take_downloads(0.0, 1)
    assert tr.release("a", old.number) is None
    assert tr.holds("a", new.number)
    assert tr.release("a", new.number) is not None and tr.downloads_running == 0


def test_untrack_releases_id_queue_place_and_pending_write():
    """After untrack nothing of the task is left: id, download queue, unsaved sidecar."""
    tr = Tracker()
    tr.track(make("a", "same"))
    tr.unsaved["a"] = None
    tr.queue_download("a", 5.0)
    tr.untrack("a")
    assert "a" not in tr and tr.ids() == set() and tr.unsaved == {}
    assert tr.next_download(1) is None


def test_a_second_task_for_the_same_id_is_reported_as_twin():
    """One video per task id: tracking a second file for it names the first."""
    tr = Tracker()
    first = make("a", "same", "polling")
    assert tr.track(first) is None
    assert tr.track(make("b", "same", "polling")) is first
    assert tr.ids() == {"same"}


def test_downloads_wait_for_their_due_time_and_slots():
    """Earliest due first, none before its time, never more than the concurrency."""
    tr = Tracker()
    for name, due in (("a", 3.0), ("b", 1.0), ("c", 2.0)):
        tr.track(make(name))
        tr.queue_download(name, due)
    assert tr.next_download(2) == 1.0
    assert [t.name for t, _ in tr.take_downloads(2.5, 2)] == ["b", "c"]
    assert tr.next_download(2) is None  # both slots taken
    assert tr.take_downloads(10.0, 2) == []


def test_counts_by_state_and_in_progress():
    """Counts come from the registry: polling, downloading, and the API's unfinished ones."""
    tr = Tracker()
    running = make("r", state="polling")
    running.record.task_status = "RUNNING"
    done = make("d", state="polling")
    done.record.task_status = "SUCCEEDED"
    for t in (running, done, make("x")):
        tr.track(t)
    assert tr.in_progress() == 1
    assert tr.by_state() == {"polling": 2, "downloading": 1, "done": 0, "failed": 0}


def test_a_group_takes_one_slot_per_file_within_the_concurrency():
    """Four pictures and three slots: three start, the fourth when a slot frees."""
    tr = Tracker()
    task = make("p", files=4)
    tr.track(task)
    tr.queue_download("p", 0.0)
    taken = tr.take_downloads(0.0, 3)
    assert [slot.index for _, slot in taken] == [0, 1, 2] and tr.downloads_running == 3
    assert tr.take_downloads(0.0, 3) == [] and tr.next_download(3) is None
    assert tr.release("p", taken[1][1].number) is task and task.busy  # two still running
    [(_, fourth)] = tr.take_downloads(0.0, 3)
    assert fourth.index == 3 and tr.next_download(3) is None  # nothing left to start


def test_untrack_cancels_every_file_of_a_group():
    """A task removed (or failed) mid-group: every one of its downloads is told to stop."""
    tr = Tracker()
    tr.track(make("p", files=3))
    tr.queue_download("p", 0.0)
    slots = [slot for _, slot in tr.take_downloads(0.0, 4)]
    tr.untrack("p")
    assert all(slot.cancel.is_set() for slot in slots) and tr.downloads_running == 0
    assert all(tr.release("p", slot.number) is None for slot in slots)


def test_a_part_name_another_task_holds_makes_the_second_wait():
    """`clip`'s first picture and `clip.1`'s only one share `.clip.1.png.part`: the second
    task waits until the first is untracked, then claims it."""
    tr = Tracker()
    group, single = make("clip", files=2), make("clip.1")
    single.parts = (".clip.1.png.part",)
    for task in (group, single):
        tr.track(task)
        tr.queue_download(task.name, 0.0)
    taken = tr.take_downloads(0.0, 4)
    assert {t.name for t, _ in taken} == {"clip"}
    assert tr.claimed() == {".clip.1.png.part", ".clip.2.png.part"}
    assert tr.next_download(4) == CLAIM_RETRY  # looked at again in a second, not at once
    assert tr.take_downloads(0.5, 4) == []
    tr.untrack("clip")
    [(task, _)] = tr.take_downloads(CLAIM_RETRY, 4)
    assert task is single and tr.claimed() == {".clip.1.png.part"}
