"""`.job` files to tasks: validate, upload, create the task at most once, then hand over.

The job's sidecar (`NAME.status.json`) is its journal; its `state` says what a restart
may do:

  queued      nothing was sent: start again from the file.
  submitting  written durably *before* the create request. From here a task may exist,
              so the request is never sent again: a lost answer (timeout, reset, 5xx)
              or a restart searches the task list instead, and a job whose task cannot
              be found ends in `failed/` as `SubmitUncertain`.
  polling     the new task id, written durably right after the answer. Then `NAME.task`
              is written (handover.py: under a free name if a producer took NAME
              meanwhile) and the job, now a task, is handed to the task path: one path
              for polling, downloading and publishing.
  failed      `InvalidJobFile`, a 4xx from the API, or `SubmitUncertain`.

Only one create request is in flight at a time. So at most one job is ever uncertain,
and nothing else is sent until it is settled: a task of this model that appears in the
task list in its time window, and that no job or task of ours knows, is its own, unless
its answer echoes another prompt (jobsearch.py, jobmatch.py: someone else on the account
made it).

All state lives on the main thread; the one worker thread only does the HTTP calls and
posts their outcomes (messages.py). The submitter never calls into the daemon: what it
hands over (`Adopt`: this task now exists, track it; `End`: publish this job) is
returned to the loop.

Its parts: the job and its journal's steps (jobjournal.py), when a request may go and
which queued job has room (jobgate.py), the search after a lost answer (jobsearch.py),
and writing the new task's `.task` (handover.py).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wansync import config, log
from wansync.config import Live
from wansync.core import events as ev
from wansync.core import jobmatch
from wansync.core.errors import (
    JobFileError,
    SubmitAmbiguous,
    TaskFailed,
    TransientError,
    WansyncError,
)
from wansync.core.lifecycle import Now
from wansync.core.messages import (
    End,
    Handover,
    JobStepDone,
    LookupDone,
    Mailbox,
    PostDone,
    UploadDone,
)
from wansync.core.record import TaskRecord
from wansync.core.retry import as_transient
from wansync.core.tracker import Task
from wansync.files import jobfile, sidecar
from wansync.remote.api import DEADLINE_TIMEOUTS, Submitted, TaskApi
from wansync.run import handover, jobjournal, jobreplaced, jobsearch
from wansync.run.handover import PLACE_RETRY, Placing
from wansync.run.jobgate import RECOUNT_EVERY, Running, SendGate
from wansync.run.jobjournal import Job, block
from wansync.run.jobsearch import SEARCHES
from wansync.run.namehold import NameHolds
from wansync.run.publish import Folders
from wansync.run.submit_worker import PostJob, UploadJob, WorkItem, has_oss, submit_io
from wansync.run.workers import Workers

__all__ = ["PLACE_RETRY", "RECOUNT_EVERY", "SEARCHES", "Job", "Running", "Submitter"]


class Submitter:
    """The submit state machine (main thread) and its one HTTP worker."""

    def __init__(
        self,
        live: Live,
        folders: Folders,
        api: TaskApi,
        mailbox: Mailbox,
        in_progress: Callable[[], Running],
        tracked_ids: Callable[[], set[str]],
        emit: Callable[[ev.Event], None],
    ) -> None:
        self.live = live
        self.folders = folders
        self.api = api
        self.log = log.get("wansync.submit")
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.active: str | None = None  # the one job whose upload/create/search is in flight
        self.uncertain: collections.deque[str] = collections.deque()
        self.placing = Placing(folders, self.jobs)  # `.task` files to write (handover.py)
        self.gate = SendGate(in_progress)  # the pause, the pace, max_in_progress
        self._tracked_ids = tracked_ids
        self._emit = emit  # the event bus: the log and other followers see each step
        self.worker: Workers[WorkItem] = Workers(
            "submit", 1, submit_io(api, live.cfg.api.timeout, folders, mailbox)
        )
        self.holds = NameHolds(folders, self.log)  # jobs whose NAME a task holds (namehold.py)

    # -- events: a task that ends or leaves frees a place under submit.max_in_progress --
    def __call__(self, event: ev.Event) -> None:
        self.gate.notice(event)

    @property
    def paused_until(self) -> float:
        return self.gate.paused_until

    def _save(self, job: Job, durable: bool = True) -> bool:
        """Write the job's sidecar; a failed write is logged, never raised into the loop."""
        return jobjournal.save(self.folders, job, self.log, durable)

    # -- discovery ---------------------------------------------------------------------
    def discover(self, path: Path, now: Now, busy: bool = False) -> list[Handover]:
        """A settled `.job` file: queue it, carry on from where its sidecar says, or leave
        it alone when a task holds its name (`busy`: one is tracked under it; namehold.py)."""
        name = jobfile.job_name(path)
        if name in self.jobs:
            return self._again(self.jobs[name], path, now)
        if self.holds.still(name, path):
            return []
        found = sidecar.read(self.folders.sidecar(name))
        if found is not None and found.job is None:
            found = None  # a removed task's leftover, not this job's journal
        beside = self.folders.task(name).exists()
        if found is not None and (resumed := self._resume(name, found, beside, now)) is not None:
            return resumed
        if (reason := self.holds.why(name, path, beside, busy)) is not None:
            self.holds.hold(name, path, reason)
            return []
        return self._queue(path, name, found, now)

    def _resume(
        self, name: str, found: TaskRecord, beside: bool, now: Now
    ) -> list[Handover] | None:
        """Carry on from the journal; None: nothing was sent, start from the file.

        `beside`: a `NAME.task` is in the inbox. Holding this job's task id, it is the
        task path's; holding another, a producer's, which the job's task must not take.
        """
        task_id = found.task_id
        if beside and task_id and handover.holder(self.folders.task(name)) == task_id:
            return []  # handed over already: the task path owns it
        if found.ended and found.published_as:
            return [End(Task(name, found))]  # a publish cut short: carry it on
        if task_id:
            return self.placing.hand_over(Job(name, found, None), now)  # NAME.task not written yet
        if found.state == "submitting":
            self._start_uncertain(Job(name, found, None, "looking"), now, restarted=True)
            return []
        return None

    def _again(self, job: Job, path: Path, now: Now) -> list[Handover]:
        """The job's `.job` settled again (a file renamed onto it, a rewrite). Nothing
        sent yet: a file that is not the one read is read again and queued anew (an
        upload in flight is dropped); from the create on, it is set aside
        (jobreplaced.py): the task is made from the job as it was read."""
        if job.step not in ("queued", "uploading"):
            jobreplaced.check(self.folders, job.record, path, now.wall)
            return []
        if jobreplaced.digest(path) in (block(job).sha256, None):
            return []  # the same bytes (a touch, a copy of itself), or gone (JobGone comes)
        del self.jobs[job.name]
        if job.name in self.queue:
            self.queue.remove(job.name)
        self.log.warning(
            "job.replaced",
            name=job.name,
            file=path.name,
            detail="nothing was sent for it yet: the new file is read and queued anew",
        )
        return self._queue(path, job.name, job.record, now)

    def _queue(self, path: Path, name: str, found: TaskRecord | None, now: Now) -> list[Handover]:
        """Read and check the whole job; queue it, or end it as `InvalidJobFile`."""
        cfg = self.live.cfg.submit
        try:
            keys = config.key_file_ids(self.live.cfg)  # never uploaded, whatever their name
            spec = jobfile.read(path, cfg.model, cfg.max_upload_bytes, keys)
        except (JobFileError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            fresh = jobjournal.invalid(name, path, now.wall)
            self._emit(ev.JobInvalid(at=now.wall, name=name, file=path.name, error=str(reason)))
            return [self._fail(Job(name, fresh, None), "InvalidJobFile", f"{path.name}: {reason}")]
        job = Job(name, jobjournal.queued(name, path, spec, found, now.wall), spec)
        self._save(job, durable=False)
        self.jobs[name] = job
        self.queue.append(name)
        self._emit(
            ev.JobQueued(at=now.wall, name=name, model=spec.model, uploads=len(spec.uploads))
        )
        return []

    def holds_name(self, name: str) -> bool:
        """A producer's `NAME.task` settled while job NAME is here: must it wait?

        Before the create goes out, the file wins: the job is left alone for good
        (`job.name_taken`, as when the file was there first; namehold.py). From then on a
        task may exist, so the file waits for the hand-over (`handover.place` moves the
        job's task to a free name).
        """
        job = self.jobs.get(name)
        if job is None:
            return False
        if job.step in ("queued", "uploading"):  # nothing sent; an upload's answer is dropped
            del self.jobs[name]
            reason = f"{name}.task came before the job was sent: a task holds the name {name}"
            self.holds.hold(name, self.folders.job(name), reason)
            return False
        return True

    def removed(self, name: str, now: Now) -> None:
        """The `.job` left the inbox: forget it, unless a task may already exist for it."""
        self.holds.forget(name)
        job = self.jobs.get(name)
        if job is None or job.step != "queued" or self.active == name:
            return
        del self.jobs[name]
        with_sidecar = self.folders.sidecar(name)
        if with_sidecar.exists() and not self.folders.task(name).exists():
            with_sidecar.unlink(missing_ok=True)
        self._emit(ev.JobRemoved(at=now.wall, name=name))

    def waiting(self) -> int:
        return len(self.jobs)

    def names(self) -> set[str]:
        return set(self.jobs)

    def has(self, name: str) -> bool:
        return name in self.jobs

    # -- dispatch (main thread) --------------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(0.0)

    def next_time(self) -> float | None:
        """When `dispatch` could next do something, for the main loop's sleep."""
        marks = self.placing.marks()
        if self.active is None and (self.queue or self.uncertain):
            mark = self.gate.opens_at(held=not self.uncertain)
            head = self.jobs.get((self.uncertain or self.queue)[0])
            marks.append(max(mark, head.due) if head is not None else mark)
        return min(marks, default=None)

    def dispatch(self, now: Now) -> list[Handover]:
        """Hand over the tasks whose `.task` can now be written; start the next upload,
        create or search, if the limits allow one now."""
        handed = self.placing.due(now)
        if self.active is not None or now.mono < self.gate.paused_until:
            return handed
        if self.uncertain:  # nothing else goes out until the uncertain job is settled
            job = self.jobs[self.uncertain[0]]
            if now.mono >= job.due:  # search the task list for its task (jobsearch.py)
                self.active = job.name
                ours = frozenset(self._tracked_ids())
                self.worker.submit(jobsearch.lookup(job, now, self._request_time(), ours))
            return handed
        self._start_next(now)
        return handed

    def _start_next(self, now: Now) -> None:
        limits = self.live.cfg.submit.max_in_progress
        job = self.gate.next_queued(self.queue, self.jobs, limits, now.mono)
        if job is None:
            return
        self.active = job.name
        assert job.spec is not None
        if job.spec.uploads:
            job.step = "uploading"
            paths = list(job.spec.uploads)  # what was checked: the upload holds it to that
            self.worker.submit(UploadJob(job.name, job.spec.model, paths))
        else:
            self._send(job, [], now)

    def _send(self, job: Job, urls: list[str], now: Now) -> None:
        """Record `submitting` durably, then (only then) let the create request go."""
        assert job.spec is not None
        body = jobfile.request_body(job.spec, urls)
        window = jobsearch.window_at_send(self.api.clock, now.wall, self._request_time())
        jobjournal.submitting(job, body, window, now.wall)
        if not self._save(job):  # not on disk: sending now could make a task twice
            self.active = None
            error = TransientError("cannot write the sidecar", "SidecarWriteError")
            self._not_sent(job, error, now)
            return
        job.step = "posting"
        self.gate.sent(job.spec.model, now.mono, self.live.cfg.submit.max_per_second)
        oss = bool(urls) or has_oss(body)
        self.worker.submit(PostJob(job.name, body, oss, job.spec.endpoint))
        self._emit(
            ev.JobSubmitting(
                at=now.wall, name=job.name, model=str(block(job).model), uploads=len(urls)
            )
        )

    def _request_time(self) -> float:
        """The longest a create request may take (its whole answer's deadline)."""
        return DEADLINE_TIMEOUTS * self.live.cfg.api.timeout

    # -- results (main thread) ---------------------------------------------------------
    def handle(self, message: JobStepDone, now: Now) -> list[Handover]:
        """A worker's result: the state machine's next step."""
        self.active = None
        job = self.jobs.get(message.name)
        if job is None or (isinstance(message, UploadDone) and job.step != "uploading"):
            return []  # its job was replaced (or ended) while the upload was out
        match message:
            case UploadDone(outcome=list() as urls):
                self.active = job.name
                self._send(job, urls, now)
            case PostDone(outcome=Submitted() as answer):
                return self._record(job, answer.task_id, answer.request_id, None, now)
            case PostDone(outcome=SubmitAmbiguous() as lost):
                self._emit(ev.JobUncertain(at=now.wall, name=job.name, message=lost.message))
                self._start_uncertain(job, now, restarted=False)
            case (
                UploadDone(outcome=WansyncError() as error)
                | PostDone(outcome=WansyncError() as error)
            ):
                return self._not_sent(job, error, now)
            case LookupDone(outcome=list() as rows, known=known, window=window, said=said):
                if window is not None:  # a restart or `retry` searches this same window
                    jobjournal.searched(job, window)
                return self._on_search(job, rows, known, said, now)
            case LookupDone(outcome=WansyncError() as error):
                self.gate.back_off(job, error, now, self.live.cfg.poll.interval)
                self.log.warning("job.search_failed", name=job.name, error=str(error))
        return []

    def _not_sent(self, job: Job, error: WansyncError, now: Now) -> list[Handover]:
        """An answer that proves no task was made: fail by its code, or queue again."""
        self.gate.changed()
        if isinstance(error, TaskFailed):
            return [self._fail(job, error.code, error.message)]
        error = as_transient(error)
        retry = self.gate.back_off(job, error, now, self.live.cfg.poll.interval)
        jobjournal.requeued(job, error.code, error.message)
        self._save(job)
        self.queue.appendleft(job.name)
        self._emit(
            ev.JobRetryLater(
                at=now.wall,
                name=job.name,
                code=error.code,
                message=error.message,
                retry_in=round(retry.delay, 3),
            )
        )
        return []

    def _start_uncertain(self, job: Job, now: Now, restarted: bool) -> None:
        jobsearch.begin(job, now.mono, restarted, self.live.cfg.submit.search_for)
        self._save(job)
        self.jobs[job.name] = job
        self.uncertain.append(job.name)

    def _on_search(
        self,
        job: Job,
        rows: list[dict[str, Any]],
        known: frozenset[str],
        said: Mapping[str, str | None],
        now: Now,
    ) -> list[Handover]:
        """One search's verdict (jobsearch.py): the task, another search, or a failure.
        A listed task whose answer echoes another prompt is not the job's: said once."""
        search_for = self.live.cfg.submit.search_for
        ours = known | self._tracked_ids()
        for task_id in jobsearch.not_ours(block(job), rows, ours, said):
            if task_id not in job.not_ours:
                job.not_ours.add(task_id)
                self.log.warning(
                    "job.not_ours",
                    name=job.name,
                    task_id=task_id,
                    message="a task of the model in the search window echoes another "
                    "prompt than the job's: not taken",
                )
        verdict = jobsearch.judge(
            job.name,
            block(job),
            rows,
            ours,
            job.not_ours,
            said,
            job.lookups,
            job.searching_since,
            search_for,
            now,
        )
        if isinstance(verdict, jobsearch.Again):
            job.lookups += 1
            job.due = verdict.due
            self._save(job)  # the window searched, for a restart
            return []
        self.uncertain.popleft()
        if isinstance(verdict, jobsearch.Found):
            return self._record(job, verdict.task_id, None, jobmatch.TASK_LIST, now)
        return [self._fail(job, "SubmitUncertain", verdict.message)]

    def _record(
        self, job: Job, task_id: str, request_id: str | None, found_by: str | None, now: Now
    ) -> list[Handover]:
        """The task exists: write its id durably, then hand the job to the task path."""
        jobjournal.submitted(job, task_id, request_id, found_by, now.wall)
        self._save(job)
        self._emit(ev.JobSubmitted(at=now.wall, name=job.name, task_id=task_id, found_by=found_by))
        self.gate.changed()
        return self.placing.hand_over(job, now)

    def _fail(self, job: Job, code: str, message: str) -> End:
        self.jobs.pop(job.name, None)
        jobjournal.failed(job, code, message)
        return End(Task(job.name, job.record))
