"""The submit state machine, in-process: each state and answer, with `now` passed in."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from wansync import config
from wansync.config import Live
from wansync.core import events as ev
from wansync.core import jobmatch
from wansync.core.errors import (
    AuthRejected,
    RateLimited,
    RemoteUnavailable,
    SubmitAmbiguous,
    TaskFailed,
)
from wansync.core.lifecycle import Now
from wansync.core.messages import Adopt, End, LookupDone, Mailbox, PostDone, UploadDone
from wansync.core.record import JobRecord, Output
from wansync.core.retry import AUTH_PAUSE_MIN
from wansync.files import sidecar
from wansync.remote.api import Submitted, TaskApi
from wansync.run import handover
from wansync.run.publish import Folders
from wansync.run.submit_worker import LookupJob, PostJob, UploadJob
from wansync.run.submitter import PLACE_RETRY, SEARCHES, Submitter

T0 = Now(100.0, 1_800_000_000.0)
FRAME = [{"type": "first_frame", "url": "https://example.com/cat.png"}]


class Machine:
    """A submitter whose worker never runs: tests read its queue and answer by hand."""

    def __init__(self, root: Path, in_progress: int = 0) -> None:
        self.folders = Folders(root / "in", root / "out", root / "failed")
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir()
        cfg = config.from_mapping(
            {"inbox": str(root / "in"), "outbox": str(root / "out"), "failed": str(root / "failed")}
        )
        self.cfg = cfg
        self.running = in_progress
        self.events: list[ev.Event] = []
        self.sub = Submitter(
            Live(cfg),
            self.folders,
            TaskApi("http://127.0.0.1:9", "k", 1.0),  # never called: the worker never runs
            Mailbox(lambda: None),
            lambda: self.running,
            set,
            self.events.append,
        )

    def emitted(self) -> list[str]:
        return [e.EVENT for e in self.events]

    def drop(self, name: str, **doc: object) -> Path:
        path = self.folders.job(name)
        path.write_text(yaml.safe_dump({"prompt": "a cat", "media": FRAME, **doc}))
        return path

    def sent(self) -> list[object]:
        out = []
        while not self.sub.worker.items.empty():
            out.append(self.sub.worker.items.get_nowait())
        return out

    def state(self, name: str) -> str:
        data = sidecar.read(self.folders.sidecar(name))
        assert data is not None
        return str(data.state)


@pytest.fixture
def m(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


def test_queued_then_posting_records_submitting_before_the_request(m):
    """queued → posting: `submitting` is on disk before the create request is handed out."""
    assert m.sub.discover(m.drop("a"), T0) == []
    assert m.state("a") == "queued" and m.sub.jobs["a"].step == "queued"
    m.sub.dispatch(T0)
    [post] = m.sent()
    assert isinstance(post, PostJob) and m.state("a") == "submitting"
    assert m.sub.jobs["a"].step == "posting" and m.sub.active == "a"


def test_an_answer_hands_the_task_over(m):
    """posting + task id → the id is recorded (state polling) and the job is handed over."""
    m.sub.discover(m.drop("a", meta={"k": 1}), T0)
    m.sub.dispatch(T0)
    [adopt] = m.sub.handle(PostDone("a", Submitted("task-9", "r")), T0)
    assert isinstance(adopt, Adopt) and (adopt.job, adopt.task.name) == ("a", "a")
    assert (adopt.task.task_id, adopt.task.record.meta) == ("task-9", {"k": 1})
    assert m.folders.task("a").read_text() == '{"k": 1, "task_id": "task-9"}\n'
    assert m.state("a") == "polling" and "a" not in m.sub.jobs
    assert m.emitted() == ["job.queued", "job.submitting", "job.submitted"]


def test_uploading_then_posting_with_the_uploaded_urls(m, tmp_path):
    """A local image is uploaded first; its URL goes into the create request."""
    (m.folders.inbox / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    m.sub.discover(m.drop("a", media=[{"type": "first_frame", "path": "cat.png"}]), T0)
    m.sub.dispatch(T0)
    [upload] = m.sent()
    assert isinstance(upload, UploadJob) and m.sub.jobs["a"].step == "uploading"
    m.sub.handle(UploadDone("a", ["oss://bucket/cat.png"]), T0)
    [post] = m.sent()
    assert isinstance(post, PostJob) and post.resolve_oss
    assert post.body["input"]["media"][0]["url"] == "oss://bucket/cat.png"


def test_a_4xx_fails_the_job(m):
    """A final 4xx proves no task was made: the job ends in failed/ with its code."""
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    [end] = m.sub.handle(PostDone("a", TaskFailed("InvalidParameter", "bad")), T0)
    assert isinstance(end, End) and end.task.record.error.code == "InvalidParameter"


@pytest.mark.parametrize(
    ("error", "pause", "delay"),
    [
        (RateLimited("429", 30.0), 30.0, 30.0),
        (AuthRejected("401"), AUTH_PAUSE_MIN, AUTH_PAUSE_MIN),
        (RemoteUnavailable("could not connect"), None, 15.0),
    ],
)
def test_retry_later_on_429_401_and_transient(m, error, pause, delay):
    """Nothing was made: queue again after the shared back-off; 429/401 hold every job."""
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    assert m.sub.handle(PostDone("a", error), T0) == []
    job = m.sub.jobs["a"]
    assert job.step == "queued" and m.state("a") == "queued" and m.sub.queue[0] == "a"
    assert job.due == pytest.approx(T0.mono + delay)
    assert m.sub.paused_until == (T0.mono + pause if pause else 0.0)
    assert m.emitted()[-1] == "job.retry_later" and m.events[-1].code == error.code


def test_the_in_progress_limit_holds_jobs_back(tmp_path):
    """No create goes out while submit.max_in_progress tasks are running."""
    m = Machine(tmp_path, in_progress=10**6)
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    assert m.sent() == [] and m.sub.jobs["a"].step == "queued"


def start_looking(m: Machine) -> None:
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    m.sent()
    m.sub.handle(PostDone("a", SubmitAmbiguous("timeout")), T0)
    assert m.sub.jobs["a"].step == "looking" and m.sub.uncertain[0] == "a"
    later = Now(T0.mono + 1000, T0.wall + 1000)
    m.sub.dispatch(later)
    [lookup] = m.sent()
    assert isinstance(lookup, LookupJob)


def test_uncertain_with_one_unknown_task_found_takes_it(m):
    """Looking, one unknown task of the model in the window: it is this job's."""
    start_looking(m)
    rows = [{"task_id": "mine"}, {"task_id": "known"}]
    [adopt] = m.sub.handle(LookupDone("a", rows, frozenset({"known"})), T0)
    assert isinstance(adopt, Adopt) and (adopt.task.name, adopt.task.task_id) == ("a", "mine")
    assert sidecar.read(m.folders.sidecar("a")).job.found_by == "task list"


def test_the_create_records_the_digest_of_its_prompt(m):
    """`submitting` keeps what a task found in the list must echo: the prompt's digest."""
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    assert sidecar.read(m.folders.sidecar("a")).job.prompt_sha256 == jobmatch.digest("a cat")


def test_a_listed_task_echoing_another_prompt_is_never_taken(m):
    """The only unknown task of the model echoes another prompt: not the job's. It is
    said once, never polled again, the search goes on, and the job ends SubmitUncertain
    naming it (someone else on the account made it in the window)."""
    start_looking(m)
    said = {"stranger": jobmatch.digest("SOMEONE ELSE s clip")}
    with capture_logs() as logs:
        assert (
            m.sub.handle(LookupDone("a", [{"task_id": "stranger"}], frozenset(), None, said), T0)
            == []
        )
        for _ in SEARCHES[1:-1]:
            m.sub.dispatch(Now(T0.mono + 10_000, T0.wall))
            [lookup] = m.sent()
            assert "stranger" in lookup.ours, "a refused task is not polled again"
            rows = [{"task_id": "stranger"}]
            assert m.sub.handle(LookupDone("a", rows, frozenset()), T0) == []
    assert [e["task_id"] for e in logs if e["event"] == "job.not_ours"] == ["stranger"]
    m.sub.dispatch(Now(T0.mono + 20_000, T0.wall))
    m.sent()
    [end] = m.sub.handle(LookupDone("a", [{"task_id": "stranger"}], frozenset()), T0)
    assert isinstance(end, End) and end.task.record.error.code == "SubmitUncertain"
    assert "echo another prompt, so are not its: stranger" in end.task.record.error.message
    assert end.task.record.task_id is None


def test_the_task_echoing_the_jobs_prompt_is_taken_among_others(m):
    """Two unknown tasks, one echoing the job's prompt: that one is the job's (before, two
    candidates ended the job SubmitUncertain); one echoing another is left alone."""
    start_looking(m)
    rows = [{"task_id": "running"}, {"task_id": "mine"}, {"task_id": "theirs"}]
    said = {"mine": jobmatch.digest(" a cat\n"), "theirs": jobmatch.digest("a dog")}
    [adopt] = m.sub.handle(LookupDone("a", rows, frozenset(), None, said), T0)
    assert isinstance(adopt, Adopt) and adopt.task.task_id == "mine"


def test_an_unended_candidate_alone_is_taken_to_be_checked_when_it_ends(m):
    """One unknown task whose answer echoes no prompt yet (PENDING): taken, as before; its
    prompt is checked when it ends (test_jobmatch.py)."""
    start_looking(m)
    rows = [{"task_id": "pending"}, {"task_id": "theirs"}]
    said = {"pending": None, "theirs": jobmatch.digest("a dog")}
    [adopt] = m.sub.handle(LookupDone("a", rows, frozenset(), None, said), T0)
    assert isinstance(adopt, Adopt) and adopt.task.task_id == "pending"
    assert adopt.task.record.job.found_by == jobmatch.TASK_LIST


def test_uncertain_with_several_found_fails(m):
    """Looking, several unknown tasks: cannot tell which; fail as SubmitUncertain."""
    start_looking(m)
    [end] = m.sub.handle(LookupDone("a", [{"task_id": "x"}, {"task_id": "y"}], frozenset()), T0)
    assert isinstance(end, End) and end.task.record.error.code == "SubmitUncertain"


def test_uncertain_with_none_found_searches_again_then_fails(m):
    """Looking, nothing found: search again on schedule, then fail as SubmitUncertain."""
    start_looking(m)
    for _ in SEARCHES[1:]:
        assert m.sub.handle(LookupDone("a", [], frozenset()), T0) == []
        assert m.sub.jobs["a"].step == "looking"
        m.sub.dispatch(Now(T0.mono + 10_000, T0.wall))
        m.sent()
    [end] = m.sub.handle(LookupDone("a", [], frozenset()), T0)
    assert isinstance(end, End) and end.task.record.error.code == "SubmitUncertain"


def test_a_failed_search_is_tried_again_later(m):
    """Looking, the search itself fails: keep looking after a back-off."""
    start_looking(m)
    assert m.sub.handle(LookupDone("a", RemoteUnavailable("503"), frozenset()), T0) == []
    assert m.sub.jobs["a"].step == "looking" and m.sub.jobs["a"].due > T0.mono


def test_restart_while_submitting_searches_instead_of_sending(m):
    """A sidecar left in `submitting` (killed mid-create) is searched, never re-sent."""
    data = sidecar.new("a", None, {}, T0.wall)
    data.state = "submitting"
    data.job = JobRecord("a.job", "wan2.7-i2v", 1, sidecar.utc_iso(T0.wall), None, None)
    sidecar.write(m.folders.sidecar("a"), data)
    m.sub.discover(m.drop("a"), T0)
    assert m.sub.jobs["a"].step == "looking"
    m.sub.dispatch(T0)
    assert [type(x) for x in m.sent()] == [LookupJob]


def test_an_invalid_job_fails_at_once(m):
    """A .job that cannot be read ends in failed/ as InvalidJobFile."""
    path = m.folders.job("bad")
    path.write_text("prompt: [unclosed")
    [end] = m.sub.discover(path, T0)
    assert isinstance(end, End) and end.task.record.error.code == "InvalidJobFile"


def test_a_task_file_that_cannot_be_written_is_tried_again(m, monkeypatch):
    """The task exists but its `.task` cannot be written (a full disk): the job keeps its
    name and its id (in its sidecar), the write is tried again later, then handed over."""
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    m.sent()
    write = handover.write_new_file

    def full_disk(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(handover, "write_new_file", full_disk)
    assert m.sub.handle(PostDone("a", Submitted("task-9", "r")), T0) == []
    assert m.state("a") == "polling" and m.sub.holds_name("a")
    assert m.sub.next_time() == T0.mono + PLACE_RETRY
    assert m.sub.dispatch(T0) == [], "not before its time"
    monkeypatch.setattr(handover, "write_new_file", write)
    [adopt] = m.sub.dispatch(Now(T0.mono + PLACE_RETRY, T0.wall))
    assert isinstance(adopt, Adopt) and adopt.task.task_id == "task-9"
    assert m.folders.task("a").exists() and "a" not in m.sub.jobs


def test_a_task_file_before_the_create_wins_after_it_waits(m):
    """A producer's `a.task` while job `a` is queued: the job gives its name up (nothing
    was sent); once its create is out, the file must wait for the hand-over."""
    m.sub.discover(m.drop("a"), T0)
    assert m.sub.holds_name("a") is False and "a" not in m.sub.jobs
    m.sub.discover(m.drop("b"), T0)
    m.sub.dispatch(T0)
    assert m.sub.jobs["b"].step == "posting" and m.sub.holds_name("b") is True


def test_a_name_taken_meanwhile_moves_the_jobs_task_to_a_free_name(m):
    """`a.task` holds another id when job `a`'s task is handed over: its journal, `.job`
    and a new `.task` go to `a-2` (a-2.job is taken too, so `a-3`); never onto `a`."""
    m.sub.discover(m.drop("a"), T0)
    m.sub.dispatch(T0)
    m.sent()
    m.folders.task("a").write_text("producer-task-1\n")
    m.folders.job("a-2").write_text("someone else's job")
    [adopt] = m.sub.handle(PostDone("a", Submitted("task-9", "r")), T0)
    assert isinstance(adopt, Adopt) and (adopt.task.name, adopt.job) == ("a-3", "a")
    assert m.folders.task("a").read_text() == "producer-task-1\n", "the producer's, untouched"
    assert m.folders.task("a-3").read_text() == '{"task_id": "task-9"}\n'
    assert m.folders.job("a-3").exists() and not m.folders.job("a").exists()
    moved = sidecar.read(m.folders.sidecar("a-3"))
    assert moved is not None and (moved.task_id, moved.name) == ("task-9", "a-3")
    assert moved.job is not None and moved.job.file == "a-3.job"
    assert not m.folders.sidecar("a").exists(), "the producer's task starts afresh"


def _ended_in_outbox(m: Machine, name: str, finished: float) -> None:
    """A producer's task `name`, published: its final sidecar says it ended at `finished`."""
    record = sidecar.new(name, "producer-task-1", {}, finished - 5)
    record.state, record.finished = "succeeded", sidecar.utc_iso(finished)
    record.published_as = name
    record.outputs = [Output(f"{name}.mp4", 1000, "0" * 64, "video/mp4")]
    sidecar.write(sidecar.path_for(m.folders.outbox, name), record)


def _restarted(m: Machine) -> Submitter:
    """A new submitter on the same folders: what a restart knows is on disk."""
    api = TaskApi("http://127.0.0.1:9", "k", 1.0)
    return Submitter(Live(m.cfg), m.folders, api, Mailbox(lambda: None), lambda: 0, set, print)


def test_a_job_whose_name_a_task_holds_is_left_alone_for_good(m):
    """`a.task` is in the inbox when job `a` is read: nothing is queued; once that task
    has ended the same file is still left alone, in this run and after a restart;
    renamed, it is a job."""
    m.folders.task("a").write_text("producer-task-1\n")
    job = m.drop("a")
    assert m.sub.discover(job, T0) == [] and "a" not in m.sub.jobs
    m.folders.task("a").unlink()
    _ended_in_outbox(m, "a", job.lstat().st_ctime + 1)
    assert m.sub.discover(job, T0) == [] and "a" not in m.sub.jobs, "the same file, this run"
    again = _restarted(m)
    assert again.discover(job, T0) == [] and "a" not in again.jobs, "after a restart"
    assert m.sent() == [] and "job.queued" not in m.emitted()
    job.rename(m.folders.job("a-b"))
    assert again.discover(m.folders.job("a-b"), T0) == [] and "a-b" in again.jobs


def test_a_job_read_while_a_task_of_its_name_is_tracked_is_left_alone(m):
    """`busy`: a producer's task is tracked under the name (its `.task` may be on its way
    to the outbox): the job is left alone, and stays so once the name is free."""
    job = m.drop("a")
    assert m.sub.discover(job, T0, busy=True) == [] and "a" not in m.sub.jobs
    assert m.sub.discover(job, T0) == [] and "a" not in m.sub.jobs


def test_a_queued_job_that_gave_its_name_up_is_not_sent_after_the_task(m):
    """Job `a` queued, then a producer's `a.task` takes the name; when that task has
    ended, the job is not queued again (this run, and a restart that finds the task's
    final sidecar): it came before the task ended."""
    job = m.drop("a")
    m.sub.discover(job, T0)
    assert m.sub.holds_name("a") is False and "a" not in m.sub.jobs
    _ended_in_outbox(m, "a", job.lstat().st_ctime + 1)
    assert m.sub.discover(job, T0) == [] and "a" not in m.sub.jobs
    assert _restarted(m).discover(job, T0) == []


def test_a_job_written_after_a_task_of_its_name_ended_is_sent(m):
    """A task named `a` ended an hour before `a.job` was written: the name is free, the
    job is queued (to be published as `a-2`, as any name clash in the outbox)."""
    job = m.drop("a")
    _ended_in_outbox(m, "a", job.lstat().st_ctime - 3600)
    m.sub.discover(job, T0)
    assert m.sub.jobs["a"].step == "queued"


def test_a_queued_job_replaced_is_read_again_and_queued_anew(m):
    """Nothing sent: a new `a.job` in its place is read again; the create carries it. The
    same bytes again (a touch) change nothing."""
    m.sub.discover(m.drop("a", prompt="first"), T0)
    assert m.sub.discover(m.drop("a", prompt="first"), T0) == []
    assert m.emitted() == ["job.queued"]
    assert m.sub.discover(m.drop("a", prompt="second"), T0) == []
    assert m.emitted() == ["job.queued", "job.queued"] and list(m.sub.queue) == ["a"]
    m.sub.dispatch(T0)
    [post] = m.sent()
    assert isinstance(post, PostJob) and post.body["input"]["prompt"] == "second"


def test_a_job_replaced_while_its_upload_is_out_drops_that_upload(m):
    """Replaced while uploading (nothing created yet): the upload's answer is dropped,
    never sent as the new job's; the new file is uploaded and sent."""
    (m.folders.inbox / "cat.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    media = [{"type": "first_frame", "path": "cat.png"}]
    m.sub.discover(m.drop("a", prompt="first", media=media), T0)
    m.sub.dispatch(T0)
    [upload] = m.sent()
    assert isinstance(upload, UploadJob) and m.sub.jobs["a"].step == "uploading"
    m.sub.discover(m.drop("a", prompt="second", media=media), T0)
    assert m.sub.handle(UploadDone("a", ["oss://bucket/old.png"]), T0) == []
    assert m.sent() == [] and m.sub.active is None
    m.sub.dispatch(T0)
    [again] = m.sent()
    assert isinstance(again, UploadJob)
    m.sub.handle(UploadDone("a", ["oss://bucket/new.png"]), T0)
    [post] = m.sent()
    assert post.body["input"]["prompt"] == "second"
    assert post.body["input"]["media"][0]["url"] == "oss://bucket/new.png"


def test_a_job_replaced_once_its_create_is_out_is_set_aside(m):
    """Posting: the new file cannot change the request sent; it goes to `failed/a-2.job`
    with a `JobReplaced` sidecar, and the job's task is handed over as the sent job's."""
    m.sub.discover(m.drop("a", prompt="first"), T0)
    m.sub.dispatch(T0)
    m.sent()
    new = m.drop("a", prompt="second").read_bytes()
    assert m.sub.discover(m.folders.job("a"), T0) == []
    assert not m.folders.job("a").exists()
    assert (m.folders.failed / "a-2.job").read_bytes() == new
    aside = sidecar.read(m.folders.failed / "a-2.status.json", published=True)
    assert aside is not None and aside.error is not None and aside.error.code == "JobReplaced"
    [adopt] = m.sub.handle(PostDone("a", Submitted("task-9", "r")), T0)
    assert isinstance(adopt, Adopt) and adopt.task.task_id == "task-9"
    assert adopt.task.record.job is not None and adopt.task.record.job.sha256 is not None
