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
task list in its time window, and that no job or task of ours knows, is its own.

All state lives on the main thread; the one worker thread only does the HTTP calls and
posts their outcomes (messages.py). The submitter never calls into the daemon: what it
hands over (`Adopt`: this task now exists, track it; `End`: publish this job) is
returned to the loop.
"""

from __future__ import annotations

import collections
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from wansync import log
from wansync.config import Live
from wansync.core import events as ev
from wansync.core import inprogress
from wansync.core.errors import (
    JobFileError,
    SubmitAmbiguous,
    TaskFailed,
    TransientError,
    WansyncError,
)
from wansync.core.lifecycle import Now
from wansync.core.messages import (
    Adopt,
    End,
    Handover,
    JobStepDone,
    LookupDone,
    Mailbox,
    PostDone,
    UploadDone,
)
from wansync.core.record import JobRecord, TaskRecord
from wansync.core.retry import RetryPlan, as_transient, plan
from wansync.core.times import read_time, utc_iso
from wansync.core.tracker import Task
from wansync.files import jobfile, sidecar
from wansync.remote.api import DEADLINE_TIMEOUTS, Submitted, TaskApi, api_time
from wansync.remote.serverclock import search_window, window_from_record, window_record
from wansync.run import handover
from wansync.run.publish import Folders
from wansync.run.submit_worker import LookupJob, PostJob, UploadJob, WorkItem, has_oss, submit_io
from wansync.run.workers import Workers

SEARCHES = (0.0, 0.25, 1.0)  # when to search the task list, in parts of submit.search_for
RECOUNT_EVERY = 5.0  # in-progress tasks are recounted at least this often while jobs wait
PLACE_RETRY = 5.0  # seconds before a `.task` that could not be written is tried again
Step = Literal["queued", "uploading", "posting", "looking", "placing"]
Running = int | Mapping[str | None, int]  # tasks generating now, by model (None: unknown)


@dataclass(slots=True)
class Job:
    name: str
    record: TaskRecord  # what its sidecar says
    spec: jobfile.JobSpec | None  # None once submitting: the file is not needed again
    step: Step = "queued"
    errors_in_row: int = 0
    lookups: int = 0
    due: float = 0.0  # monotonic: not before this (a backoff, the next search)
    searching_since: float = 0.0


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
        self.unplaced: list[str] = []  # tasks made whose `.task` could not be written yet
        self.paused_until = 0.0
        self.next_send = 0.0
        self._slots_changed = True
        self._running: Counter[str | None] = Counter()  # tasks generating now, by model
        self._recount_at = 0.0
        self._held_until = 0.0  # monotonic: no queued job has room until a recount (or an end)
        self._count = in_progress
        self._tracked_ids = tracked_ids
        self._emit = emit  # the event bus: the log and other followers see each step
        self.worker: Workers[WorkItem] = Workers(
            "submit", 1, submit_io(api, live.cfg.api.timeout, folders, mailbox)
        )
        self._name_taken_logged: set[str] = set()

    # -- events: a task that ends or leaves frees a place under submit.max_in_progress --
    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.TaskPolled(task_status=status) if status not in ("PENDING", "RUNNING"):
                self._slots_changed = True
            case ev.TaskSucceeded() | ev.TaskFailed() | ev.TaskRemoved():
                self._slots_changed = True
            case _:
                pass

    def _save(self, job: Job, durable: bool = True) -> bool:
        """Write the job's sidecar; a failed write is logged, never raised into the loop."""
        try:
            sidecar.write(self.folders.sidecar(job.name), job.record, durable=durable)
        except OSError as exc:
            self.log.error("sidecar.write_error", name=job.name, error=str(exc.strerror or exc))
            return False
        return True

    # -- discovery ---------------------------------------------------------------------
    def discover(self, path: Path, now: Now) -> list[Handover]:
        """A settled `.job` file: queue it, or carry on from where its sidecar says."""
        name = jobfile.job_name(path)
        if name in self.jobs:
            return []
        found = sidecar.read(self.folders.sidecar(name))
        if found is not None and found.job is None:
            found = None  # a removed task's leftover, not this job's journal
        beside = self.folders.task(name).exists()
        if found is not None and (resumed := self._resume(name, found, beside, now)) is not None:
            return resumed
        if beside:
            self._name_taken(name, f"{name}.task is in the inbox too; rename one of them")
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
            return self._hand_over(Job(name, found, None), now)  # NAME.task not written yet
        if found.state == "submitting":
            self._start_uncertain(Job(name, found, None, "looking"), now, restarted=True)
            return []
        return None

    def _queue(self, path: Path, name: str, found: TaskRecord | None, now: Now) -> list[Handover]:
        """Read and check the whole job; queue it, or end it as `InvalidJobFile`."""
        cfg = self.live.cfg.submit
        try:
            spec = jobfile.read(path, cfg.model, cfg.max_upload_bytes)
        except (JobFileError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            fresh = sidecar.new(name, None, {}, now.wall)
            fresh.job = JobRecord(path.name, None)
            self._emit(ev.JobInvalid(at=now.wall, name=name, file=path.name, error=str(reason)))
            return [self._fail(Job(name, fresh, None), "InvalidJobFile", f"{path.name}: {reason}")]
        fresh = sidecar.new(name, None, spec.meta, now.wall)
        if found is not None:
            fresh.first_seen = found.first_seen or fresh.first_seen
        fresh.state = "queued"
        fresh.job = JobRecord(path.name, spec.model)
        job = Job(name, fresh, spec)
        self._save(job, durable=False)
        self.jobs[name] = job
        self.queue.append(name)
        self._emit(
            ev.JobQueued(at=now.wall, name=name, model=spec.model, uploads=len(spec.uploads))
        )
        return []

    def _name_taken(self, name: str, detail: str) -> None:
        if name not in self._name_taken_logged:  # once: a rescan meets it again and again
            self._name_taken_logged.add(name)
            self.log.error("job.name_taken", name=name, detail=detail)

    def holds_name(self, name: str) -> bool:
        """A producer's `NAME.task` settled while job NAME is here: must it wait?

        Before the create goes out, the file wins: the job is left alone (`job.name_taken`,
        as when the file was there first). From then on a task may exist, so the file
        waits for the hand-over (`handover.place` moves the job's task to a free name).
        """
        job = self.jobs.get(name)
        if job is None:
            return False
        if job.step in ("queued", "uploading"):  # nothing sent; an upload's answer is dropped
            del self.jobs[name]
            self._name_taken(name, f"{name}.task came before the job was sent; rename one")
            return False
        return True

    def removed(self, name: str, now: Now) -> None:
        """The `.job` left the inbox: forget it, unless a task may already exist for it."""
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
        marks = [self.jobs[n].due for n in self.unplaced if n in self.jobs]
        if self.active is None and (self.queue or self.uncertain):
            mark = max(self.paused_until, self.next_send)
            if self.uncertain:
                marks.append(max(mark, self.jobs[self.uncertain[0]].due))
            else:  # no room: wait for the next recount (a task's end wakes the loop anyway)
                mark = max(mark, self._held_until)
                head = self.jobs.get(self.queue[0])
                marks.append(max(mark, head.due) if head is not None else mark)
        return min(marks, default=None)

    def dispatch(self, now: Now) -> list[Handover]:
        """Hand over the tasks whose `.task` can now be written; start the next upload,
        create or search, if the limits allow one now."""
        handed = self._place_due(now)
        if self.active is not None or now.mono < self.paused_until:
            return handed
        if self.uncertain:  # nothing else goes out until the uncertain job is settled
            job = self.jobs[self.uncertain[0]]
            if now.mono >= job.due:
                self._search(job, now)
            return handed
        self._start_next(now)
        return handed

    def _place_due(self, now: Now) -> list[Handover]:
        handed: list[Handover] = []
        for name in list(self.unplaced):
            job = self.jobs.get(name)
            if job is None or now.mono >= job.due:
                self.unplaced.remove(name)
            if job is not None and now.mono >= job.due:
                handed += self._hand_over(job, now)
        return handed

    def _start_next(self, now: Now) -> None:
        while self.queue and self.queue[0] not in self.jobs:
            self.queue.popleft()
        if not self.queue or now.mono < self.next_send:
            return
        job = self._next_with_room(now.mono)
        self._held_until = self._recount_at if job is None else 0.0
        if job is None or now.mono < job.due:
            return
        self.queue.remove(job.name)
        self.active = job.name
        assert job.spec is not None
        if job.spec.uploads:
            job.step = "uploading"
            paths = list(job.spec.uploads)  # what was checked: the upload holds it to that
            self.worker.submit(UploadJob(job.name, job.spec.model, paths))
        else:
            self._send(job, [], now)

    def _next_with_room(self, now: float) -> Job | None:
        """The first queued job whose model's `submit.max_in_progress` has room (a full
        pattern holds back its own jobs only), or None."""
        if self._slots_changed or now >= self._recount_at:
            counted = self._count()  # a plain number: tasks whose models are not known
            self._running = Counter({None: counted} if isinstance(counted, int) else counted)
            self._slots_changed = False
            self._recount_at = now + RECOUNT_EVERY
        queued = (self.jobs[n] for n in self.queue if n in self.jobs)
        limits = self.live.cfg.submit.max_in_progress
        return inprogress.first_with_room(limits, queued, _model_of, self._running)

    def _send(self, job: Job, urls: list[str], now: Now) -> None:
        """Record `submitting` durably, then (only then) let the create request go."""
        assert job.spec is not None
        body = jobfile.request_body(job.spec, urls)
        block = _block(job)
        # Where a lost answer's task will be looked for, on the API's clock (known from
        # earlier answers' `Date`); else the first search finds it out and records it.
        offset = self.api.clock.offset()
        window = search_window(now.wall, offset, self._request_time()) if offset else None
        block = replace(
            block,
            attempts=block.attempts + 1,
            submit_started=utc_iso(now.wall),
            search_window=window_record(window) if window else None,
        )
        job.record.job, job.record.state, job.record.error = block, "submitting", None
        if not self._save(job):  # not on disk: sending now could make a task twice
            self.active = None
            error = TransientError("cannot write the sidecar", "SidecarWriteError")
            self._not_sent(job, error, now)
            return
        job.step = "posting"
        self.next_send = now.mono + 1.0 / self.live.cfg.submit.max_per_second
        self._running[job.spec.model] += 1  # counted as running from now on, whatever the answer
        oss = bool(urls) or has_oss(body)
        self.worker.submit(PostJob(job.name, body, oss, job.spec.endpoint))
        self._emit(
            ev.JobSubmitting(at=now.wall, name=job.name, model=str(block.model), uploads=len(urls))
        )

    def _request_time(self) -> float:
        """The longest a create request may take (its whole answer's deadline)."""
        return DEADLINE_TIMEOUTS * self.live.cfg.api.timeout

    def _search(self, job: Job, now: Now) -> None:
        """The task list over the window the sidecar recorded (a restart, a retry), or one
        placed on the API's clock as the worker knows it when it asks."""
        self.active = job.name
        block = _block(job)
        started = read_time(block.submit_started, now.wall) or now.wall
        recorded = window_from_record(block.search_window, now.wall)
        plan = functools.partial(search_window, started, request_time=self._request_time())
        self.worker.submit(LookupJob(job.name, str(block.model), recorded, plan))

    # -- results (main thread) ---------------------------------------------------------
    def handle(self, message: JobStepDone, now: Now) -> list[Handover]:
        """A worker's result: the state machine's next step."""
        self.active = None
        job = self.jobs.get(message.name)
        if job is None:
            return []
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
            case LookupDone(outcome=list() as rows, known=known, window=window):
                if window is not None:  # a restart or `retry` searches this same window
                    job.record.job = replace(_block(job), search_window=window_record(window))
                return self._on_search(job, rows, known, now)
            case LookupDone(outcome=WansyncError() as error):
                self._back_off(job, error, now)
                self.log.warning("job.search_failed", name=job.name, error=str(error))
        return []

    def _not_sent(self, job: Job, error: WansyncError, now: Now) -> list[Handover]:
        """An answer that proves no task was made: fail by its code, or queue again."""
        self._slots_changed = True
        if isinstance(error, TaskFailed):
            return [self._fail(job, error.code, error.message)]
        error = as_transient(error)
        retry = self._back_off(job, error, now)
        job.step = "queued"
        job.record.state = "queued"
        job.record.error = sidecar.error(error.code, log.scrub(error.message), True)
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

    def _back_off(self, job: Job, error: WansyncError, now: Now) -> RetryPlan:
        """The one retry policy (retry.py) for a job's next try; a 429 or a rejected key
        holds every job."""
        job.errors_in_row += 1
        retry = plan(as_transient(error), job.errors_in_row, self.live.cfg.poll.interval)
        if retry.pause is not None:
            self.paused_until = max(self.paused_until, now.mono + retry.pause)
        job.due = now.mono + retry.delay
        return retry

    def _start_uncertain(self, job: Job, now: Now, restarted: bool) -> None:
        job.step, job.spec, job.lookups = "looking", None, 0
        job.searching_since = now.mono
        job.due = now.mono + (0.0 if restarted else 0.1 * self.live.cfg.submit.search_for)
        why = "wansync stopped during the create" if restarted else "the create's answer was lost"
        job.record.error = sidecar.error(
            "SubmitUncertain", f"{why}; searching the task list for the task", True
        )
        self._save(job)
        self.jobs[job.name] = job
        self.uncertain.append(job.name)

    def _on_search(
        self, job: Job, rows: list[dict[str, Any]], known: frozenset[str], now: Now
    ) -> list[Handover]:
        ours = known | self._tracked_ids()
        block = _block(job)
        model, started = block.model, block.submit_started
        when = _window_text(block.search_window, started, now.wall)
        found = [
            r["task_id"]
            for r in rows
            if r["task_id"] not in ours and r.get("model_name", model) == model
        ]
        if len(found) == 1:
            self.uncertain.popleft()
            return self._record(job, found[0], None, "task list", now)
        if len(found) > 1:
            self.uncertain.popleft()
            return [
                self._fail(
                    job,
                    "SubmitUncertain",
                    f"the create sent at {started} got no answer, and {len(found)} unknown "
                    f"{model} tasks were made {when} ({', '.join(found[:5])}); one of them "
                    f"may be this job's. Check them in the console and write the right id "
                    f"into {job.name}.task in the inbox; `wansync retry {job.name} --force` "
                    f"creates a new task (paid again if one of these is its)",
                )
            ]
        job.lookups += 1
        if job.lookups < len(SEARCHES):
            search_for = self.live.cfg.submit.search_for
            job.due = job.searching_since + SEARCHES[job.lookups] * search_for
            self._save(job)  # the window searched, for a restart
            return []
        self.uncertain.popleft()
        return [
            self._fail(
                job,
                "SubmitUncertain",
                f"the create sent at {started} got no answer, and no {model} task made "
                f"{when} is in the task list, though one may still have been made. Check "
                f"the console's task list: a task of yours there goes into {job.name}.task "
                f"in the inbox (`wansync add ID --name {job.name}`). `wansync retry "
                f"{job.name}` searches the same window again and takes the task if it is "
                f"there; only `wansync retry {job.name} --force` creates a new one",
            )
        ]

    def _record(
        self, job: Job, task_id: str, request_id: str | None, found_by: str | None, now: Now
    ) -> list[Handover]:
        """The task exists: write its id durably, then hand the job to the task path."""
        record = job.record
        record.job = replace(_block(job), submitted=utc_iso(now.wall), found_by=found_by)
        record.task_id, record.request_id, record.error = task_id, request_id, None
        record.state = "polling"
        self._save(job)
        self._emit(ev.JobSubmitted(at=now.wall, name=job.name, task_id=task_id, found_by=found_by))
        self._slots_changed = True
        return self._hand_over(job, now)

    def _hand_over(self, job: Job, now: Now) -> list[Handover]:
        """Give the task its `.task` file (handover.py), then hand it over as a task to
        track, directly from its record. A write that fails is tried again (`dispatch`);
        the job keeps its name meanwhile."""
        first = job.step != "placing"
        placed = handover.place(
            self.folders, job.name, job.record, self.jobs.__contains__, PLACE_RETRY, first
        )
        if placed is None:
            job.step, job.due = "placing", now.mono + PLACE_RETRY
            self.jobs[job.name] = job
            self.unplaced.append(job.name)
            return []
        self.jobs.pop(job.name, None)
        return [Adopt(Task(placed.name, placed.record), job.name)]

    def _fail(self, job: Job, code: str, message: str) -> End:
        self.jobs.pop(job.name, None)
        job.record.state = "failed"
        job.record.error = sidecar.error(code, log.scrub(message), False)
        return End(Task(job.name, job.record))


def _model_of(job: Job) -> str | None:
    return job.spec.model if job.spec else None


def _block(job: Job) -> JobRecord:
    """The job's submit journal (every job's record has one: `sidecar.problem` and
    `discover` see to it)."""
    assert job.record.job is not None
    return job.record.job


def _window_text(record: tuple[str, str] | None, started: str | None, now: float) -> str:
    """The searched window as the console shows times (API time), for a failure message."""
    window = window_from_record(record, now)
    if window is None:
        return f"around {started}"
    return f"between {api_time(window[0])} and {api_time(window[1])} (API time)"
