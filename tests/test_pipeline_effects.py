"""The task path in-process: the pipeline changes state and returns effects; nothing else.

No threads, no network, no clock: worker results are handed in as messages, `now` is
given, and what the pipeline asks for (a poll, a download, the publish, an event) is
read from the list it returns. Only the publish is carried out here, as the daemon does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import structlog

from wansync import config
from wansync.config import Live
from wansync.core import events as ev
from wansync.core.effects import (
    Emit,
    ForgetFiles,
    Publish,
    ReloadKey,
    StartDownload,
    StartPoll,
    WriteSidecars,
)
from wansync.core.errors import AuthRejected
from wansync.core.lifecycle import Now
from wansync.core.messages import DownloadDone, Downloaded, PollDone, TaskReport
from wansync.core.record import HookRecord, JobRecord, Output
from wansync.core.scheduler import Scheduler
from wansync.core.tracker import Tracker
from wansync.files import sidecar
from wansync.run import publish
from wansync.run.pipeline import Pipeline, open_task
from wansync.run.publish import Folders

T0 = Now(1000.0, 1_800_000_000.0)
URL = "http://127.0.0.1:9/videos/t.mp4?Expires=1800003600&Signature=s"
MP4 = b"\0\0\0\x10ftypisom\0\0\0\0" + b"\0\0\0\x10moov" + b"\0" * 8  # boxes add up


class Setup:
    """One task path: real folders under tmp_path, the pipeline and what it holds."""

    def __init__(self, tmp_path: Path, hook: bool = False) -> None:
        self.folders = Folders(*(tmp_path / n for n in ("inbox", "outbox", "failed")))
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir()
        cfg = config.from_mapping(
            {
                "inbox": str(self.folders.inbox),
                "outbox": str(self.folders.outbox),
                "failed": str(self.folders.failed),
                "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            }
        )
        self.scheduler = Scheduler(cfg.poll.interval, cfg.poll.max_per_second)
        self.tracker = Tracker(self.scheduler)
        hook_for = (lambda state: HookRecord(state)) if hook else (lambda state: None)
        self.pipeline = Pipeline(Live(cfg), self.folders, self.tracker, self.scheduler, hook_for)

    def drop(self, name: str, task_id: str) -> Path:
        path = self.folders.task(name)
        path.write_text(f"{task_id}\n")
        return path


def events(effects: list[object]) -> list[str]:
    return [e.event.EVENT for e in effects if isinstance(e, Emit)]


def test_a_task_goes_poll_download_publish_by_effects(tmp_path: Path) -> None:
    """discover → StartPoll → (SUCCEEDED) → StartDownload → (done) → Publish, in ms."""
    p = Setup(tmp_path, hook=True)
    discovered = p.pipeline.discover(p.drop("clip", "task-clip-000001"), T0)
    assert events(discovered) == ["task.discovered"]
    assert not p.folders.sidecar("clip").exists()  # the journal writes it, not the pipeline
    [poll] = p.pipeline.dispatch(T0)
    assert poll == StartPoll("clip", "task-clip-000001", T0.mono, T0.wall)
    assert p.pipeline.dispatch(T0) == []  # in flight: not sent twice
    report = TaskReport("SUCCEEDED", "req-1", {"task_status": "SUCCEEDED", "video_url": URL}, None)
    answered = p.pipeline.handle(PollDone("clip", poll.task_id, T0.mono, T0.wall, 0.1, report), T0)
    assert events(answered) == ["task.polled"]
    task = p.tracker.get("clip")
    assert task is not None and task.state == "downloading"
    assert task.record.expires == "2027-01-15T09:00:00.000Z"
    [fetch] = p.pipeline.dispatch(T0)
    assert isinstance(fetch, StartDownload)
    assert (fetch.name, fetch.url, fetch.part) == ("clip", URL, p.folders.part("clip"))
    p.folders.part("clip").write_bytes(MP4)  # what the download worker leaves
    video = Downloaded(len(MP4), hashlib.sha256(MP4).hexdigest(), "video/mp4", '"e1"')
    done = DownloadDone("clip", fetch.slot.number, URL, 0.5, video)
    ended = p.pipeline.handle(done, T0)
    assert events(ended) == ["download.completed"] and ended[-1] == Publish(task)
    assert (
        "clip" not in p.tracker and "clip" not in p.scheduler and p.tracker.downloads_running == 0
    )
    assert task.record.outputs == [Output("clip.mp4", len(MP4), video.sha256, "video/mp4")]
    assert task.record.hook == HookRecord("succeeded")  # on the record before the files move
    published = publish.finish(p.folders, task.record, T0.wall, structlog.get_logger())
    assert isinstance(published, ev.TaskSucceeded) and published.published_as == "clip"
    assert (p.folders.outbox / "clip.mp4").read_bytes() == MP4
    final = sidecar.read(p.folders.outbox / "clip.status.json", published=True)
    assert final is not None and final.video == task.record.video and final.polls == 1


def test_a_removed_task_releases_everything_and_asks_to_drop_its_files(tmp_path: Path) -> None:
    """The .task left: untracked (its poll schedule too), its files to drop, one event."""
    p = Setup(tmp_path)
    p.pipeline.discover(p.drop("clip", "task-clip-000001"), T0)
    assert "clip" in p.scheduler
    effects = p.pipeline.removed("clip", T0)
    assert effects[0] == ForgetFiles("clip") and events(effects) == ["task.removed"]
    assert "clip" not in p.tracker and "clip" not in p.scheduler


def test_a_jobs_task_whose_task_file_left_ends_instead_of_being_dropped(tmp_path: Path) -> None:
    """A job's task (its record holds the job): the job ends as `TaskFileRemoved`, to be
    published in failed/ with its `.job`; nothing is dropped, so it is never sent again."""
    p = Setup(tmp_path)
    task, _ = open_task(p.folders, p.drop("clip", "task-clip-000001"), T0.wall)
    task.record.job = JobRecord("clip.job", "wan2.7-t2v", 1)
    p.pipeline.follow(task, T0)
    [end] = p.pipeline.removed("clip", T0)
    assert end == Publish(task) and "clip" not in p.tracker and "clip" not in p.scheduler
    assert task.record.state == "failed" and task.record.error is not None
    assert task.record.error.code == "TaskFileRemoved"
    assert "wansync add task-clip-000001 --name clip" in task.record.error.message


def test_an_auth_pause_shows_on_every_polling_task_and_its_probe_rereads_the_key(
    tmp_path: Path,
) -> None:
    """401: one AuthRejected, every polling task marked for its sidecar, and the probe
    after the pause asks for the key to be read again before it goes."""
    p = Setup(tmp_path)
    for name in ("a", "b"):
        p.pipeline.discover(p.drop(name, f"task-{name}-0000001"), T0)
    first = p.pipeline.dispatch(T0)[0]
    assert isinstance(first, StartPoll)
    refused = PollDone(first.name, first.task_id, T0.mono, T0.wall, 0.1, AuthRejected("401"))
    effects = p.pipeline.handle(refused, T0)
    assert events(effects) == ["auth.rejected"]
    assert isinstance(effects[-1], WriteSidecars) and set(effects[-1].names) == {"a", "b"}
    assert all(t.record.error and t.record.error.transient for t in p.tracker.tasks.values())
    later = Now(T0.mono + 3600, T0.wall + 3600)
    probe = p.pipeline.dispatch(later)
    assert isinstance(probe[0], ReloadKey) and isinstance(probe[1], StartPoll)


@pytest.mark.parametrize("content", ["not a task id!\n", ""])
def test_an_unreadable_task_file_ends_at_once(tmp_path: Path, content: str) -> None:
    """A .task that cannot be read: task.invalid, then its publish into failed/."""
    p = Setup(tmp_path)
    path = p.folders.task("bad")
    path.write_text(content)
    effects = p.pipeline.discover(path, T0)
    assert events(effects) == ["task.invalid"] and isinstance(effects[-1], Publish)
    record = effects[-1].task.record  # type: ignore[union-attr]
    assert record.state == "failed" and record.error.code == "InvalidTaskFile"
