"""`.job` files to tasks: validate, upload, create the task at most once, then hand over.

The job's sidecar (`NAME.status.json`) is its journal; its `state` says what a restart
may do:

  queued      nothing was sent: start again from the file.
  submitting  written durably *before* the create request. From here a task may exist,
              so the request is never sent again: a lost answer (timeout, reset, 5xx)
              or a restart searches the task list instead, and a job whose task cannot
              be found ends in `failed/` as `SubmitUncertain`.
  polling     the new task id, written durably right after the answer. Then `NAME.task`
              is written and the daemon tracks it like any dropped task: one path for
              polling, downloading and publishing.
  failed      `InvalidJobFile`, a 4xx from the API, or `SubmitUncertain`.

Only one create request is in flight at a time. So at most one job is ever uncertain,
and nothing else is sent until it is settled: a task of this model that appears in the
task list in its time window, and that no job or task of ours knows, is its own.

All state lives on the main thread; the one worker thread only does the HTTP calls.
"""

from __future__ import annotations

import collections
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import jobfile, log, sidecar
from .api import Submitted, TaskApi, api_time
from .config import Config
from .errors import (
    AuthRejected,
    JobFileError,
    RateLimited,
    SubmitAmbiguous,
    TaskFailed,
    TransientError,
    WansyncError,
)
from .publish import Folders
from .scheduler import AUTH_PAUSE_MIN, backoff
from .tracker import Task
from .upload import Uploader
from .workers import Workers

SEARCHES = (0.0, 0.25, 1.0)  # when to search the task list, in parts of submit.search_for
LOOKUP_MARGIN = 120.0  # seconds either side of the create the search covers (clock skew)
RECOUNT_EVERY = 5.0  # in-progress tasks are recounted at least this often while jobs wait


class JobHost(Protocol):
    """What the submitter needs from the daemon."""

    def in_progress(self) -> int: ...
    def known_task_ids(self) -> set[str]: ...
    def adopt(self, name: str, task_id: str, meta: dict[str, Any]) -> None: ...
    def finish(self, task: Task) -> None: ...
    def is_tracked(self, name: str) -> bool: ...


@dataclass(slots=True)
class Job:
    name: str
    data: dict[str, Any]  # its sidecar
    spec: jobfile.JobSpec | None  # None once submitting: the file is not needed again
    step: str = "queued"  # queued | uploading | posting | looking
    errors_in_row: int = 0
    lookups: int = 0
    due: float = 0.0  # monotonic: not before this (a backoff, the next search)
    searching_since: float = 0.0


class Submitter:
    def __init__(
        self,
        cfg: Config,
        folders: Folders,
        api: TaskApi,
        host: JobHost,
        results: queue.SimpleQueue,
        wake: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.folders = folders
        self.api = api
        self.host = host
        self.log = log.get("wansync.submit")
        self.uploader = Uploader(api, cfg.api.timeout)
        self.jobs: dict[str, Job] = {}
        self.queue: collections.deque[str] = collections.deque()
        self.active: str | None = None  # the one job whose upload/create/search is in flight
        self.uncertain: collections.deque[str] = collections.deque()
        self.paused_until = 0.0
        self.next_send = 0.0
        self.slots_changed = True
        self._in_progress = 0
        self._recount_at = 0.0
        self._results = results
        self._wake = wake
        self.worker = Workers("submit", 1, self._work)
        self._name_taken_logged: set[str] = set()

    # -- discovery ---------------------------------------------------------------------
    def discover(self, path: Path, now: float) -> None:
        """A settled `.job` file: queue it, or carry on from where its sidecar says."""
        name = jobfile.job_name(path)
        if name in self.jobs or self.host.is_tracked(name):
            return
        data = sidecar.read(self.folders.sidecar(name))
        if data is not None and not isinstance(data.get("job"), dict):
            data = None  # a removed task's leftover, not this job's journal
        if self.folders.task(name).exists():
            if not (data and data.get("task_id")) and name not in self._name_taken_logged:
                self._name_taken_logged.add(name)
                self.log.error(
                    "job.name_taken",
                    name=name,
                    detail=f"{name}.task is in the inbox too; rename one of them",
                )
            return  # handed over already: the task path owns it
        if data is not None:
            if data["state"] in sidecar.TERMINAL_STATES and data.get("published_as"):
                self.host.finish(Task(name, data))  # a publish cut short: carry it on
                return
            if data.get("task_id"):
                self._hand_over(name, data)  # recorded, but NAME.task was not written yet
                return
            if data["state"] == "submitting":
                self._start_uncertain(Job(name, data, None, "looking"), now, restarted=True)
                return
        try:
            spec = jobfile.read(path, self.cfg.submit.model, self.cfg.submit.max_upload_bytes)
        except (JobFileError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            fresh = sidecar.new(name, None, {}, time.time())
            fresh["job"] = self._job_block(path.name, None)
            self.log.warning("job.invalid", name=name, file=path.name, error=reason)
            self._fail(Job(name, fresh, None), "InvalidJobFile", f"{path.name}: {reason}")
            return
        fresh = sidecar.new(name, None, spec.meta, time.time())
        if data is not None:
            fresh["first_seen"] = data.get("first_seen") or fresh["first_seen"]
        fresh["state"] = "queued"
        fresh["job"] = self._job_block(path.name, spec.model)
        sidecar.write(self.folders.sidecar(name), fresh, durable=False)
        self.jobs[name] = Job(name, fresh, spec)
        self.queue.append(name)
        self.log.info("job.queued", name=name, model=spec.model, uploads=len(spec.uploads))

    @staticmethod
    def _job_block(file: str, model: str | None) -> dict[str, Any]:
        return {
            "file": file,
            "model": model,
            "attempts": 0,
            "submit_started": None,
            "submitted": None,
            "found_by": None,
        }

    def removed(self, name: str) -> None:
        """The `.job` left the inbox: forget it, unless a task may already exist for it."""
        job = self.jobs.get(name)
        if job is None or job.step != "queued" or self.active == name:
            return
        del self.jobs[name]
        with_sidecar = self.folders.sidecar(name)
        if with_sidecar.exists() and not self.folders.task(name).exists():
            with_sidecar.unlink(missing_ok=True)
        self.log.warning("job.removed", name=name, detail="job file was removed before submit")

    def waiting(self) -> int:
        return len(self.jobs)

    # -- dispatch (main thread) --------------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop(0.0)

    def next_time(self) -> float | None:
        """When `dispatch` could next do something, for the main loop's sleep."""
        if self.active is not None or not (self.queue or self.uncertain):
            return None
        mark = max(self.paused_until, self.next_send)
        if self.uncertain:
            return max(mark, self.jobs[self.uncertain[0]].due)
        return max(mark, self.jobs[self.queue[0]].due) if self.queue[0] in self.jobs else mark

    def dispatch(self, now: float) -> None:
        """Start the next upload, create or search, if the limits allow one now."""
        if self.active is not None or now < self.paused_until:
            return
        if self.uncertain:  # nothing else goes out until the uncertain job is settled
            job = self.jobs[self.uncertain[0]]
            if now >= job.due:
                self._search(job)
            return
        while self.queue and self.queue[0] not in self.jobs:
            self.queue.popleft()
        if not self.queue or now < self.next_send:
            return
        job = self.jobs[self.queue[0]]
        if now < job.due or self._slots_free(now) <= 0:
            return
        self.queue.popleft()
        self.active = job.name
        assert job.spec is not None
        if job.spec.uploads:
            job.step = "uploading"
            paths = [u.path for u in job.spec.uploads]
            self.worker.submit(("upload", job.name, job.spec.model, paths))
        else:
            self._send(job, [], now)

    def _slots_free(self, now: float) -> int:
        if self.slots_changed or now >= self._recount_at:
            self._in_progress = self.host.in_progress()
            self.slots_changed = False
            self._recount_at = now + RECOUNT_EVERY
        return self.cfg.submit.max_in_progress - self._in_progress

    def _send(self, job: Job, urls: list[str], now: float) -> None:
        """Record `submitting` durably, then (only then) let the create request go."""
        assert job.spec is not None
        body = jobfile.request_body(job.spec, urls)
        block = job.data["job"]
        block["attempts"] += 1
        block["submit_started"] = sidecar.utc_iso()
        job.data.update(state="submitting", error=None)
        sidecar.write(self.folders.sidecar(job.name), job.data)
        job.step = "posting"
        self.next_send = now + 1.0 / self.cfg.submit.max_per_second
        self._in_progress += 1  # counted as running from now on, whatever the answer
        self.worker.submit(("post", job.name, body, bool(urls) or _has_oss(body)))
        self.log.info("job.submitting", name=job.name, model=block["model"], uploads=len(urls))

    def _search(self, job: Job) -> None:
        self.active = job.name
        started = sidecar.parse_iso(job.data["job"]["submit_started"]) or time.time()
        window = (started - LOOKUP_MARGIN, started + self.cfg.api.timeout + LOOKUP_MARGIN)
        self.worker.submit(("lookup", job.name, job.data["job"]["model"], window))

    # -- the worker thread: HTTP only ---------------------------------------------------
    def _work(self, item: tuple[Any, ...]) -> None:
        kind, name, *args = item
        outcome: Any
        try:
            if kind == "upload":
                outcome = self.uploader.upload_all(*args)
            elif kind == "post":
                outcome = self.api.submit(*args)
            else:
                model, (start, end) = args
                outcome = self.api.list_tasks(model, start, end)
        except WansyncError as exc:
            outcome = exc
        except Exception as exc:  # a bug must not kill the worker, nor re-send a create
            error = SubmitAmbiguous if kind == "post" else TransientError
            outcome = error(f"unexpected {type(exc).__name__}", "InternalError")
        self._results.put(("job", name, kind, outcome))
        self._wake()

    # -- results (main thread) ---------------------------------------------------------
    def on_result(self, name: str, kind: str, outcome: Any) -> None:
        self.active = None
        job = self.jobs.get(name)
        if job is None:
            return
        now = time.monotonic()
        if kind == "upload":
            if isinstance(outcome, list):
                self._send(job, outcome, now)
                self.active = job.name
            else:
                self._not_sent(job, outcome, now)
        elif kind == "post":
            if isinstance(outcome, Submitted):
                self._record(job, outcome.task_id, outcome.request_id, None)
            elif isinstance(outcome, SubmitAmbiguous):
                self.log.warning(
                    "job.submit_uncertain",
                    name=name,
                    message=outcome.message,
                    detail="not sending again; searching the task list",
                )
                self._start_uncertain(job, now, restarted=False)
            else:
                self._not_sent(job, outcome, now)
        else:
            self._on_search(job, outcome, now)

    def _not_sent(self, job: Job, outcome: Any, now: float) -> None:
        """An answer that proves no task was made: fail by its code, or queue again."""
        self.slots_changed = True
        if isinstance(outcome, TaskFailed):
            self._fail(job, outcome.code, outcome.message)
            return
        job.errors_in_row += 1
        retry_after = outcome.retry_after if isinstance(outcome, RateLimited) else None
        delay = backoff(self.cfg.poll.interval, job.errors_in_row, retry_after)
        if isinstance(outcome, AuthRejected):
            delay = max(delay, AUTH_PAUSE_MIN)
        if isinstance(outcome, RateLimited | AuthRejected):
            self.paused_until = now + delay  # the account's limit: hold every job
        code = getattr(outcome, "code", "TransientError")
        message = getattr(outcome, "message", str(outcome))
        job.step = "queued"
        job.due = now + delay
        job.data.update(state="queued", error=sidecar.error(code, log.scrub(message), True))
        sidecar.write(self.folders.sidecar(job.name), job.data)
        self.queue.appendleft(job.name)
        self.log.warning(
            "job.retry_later",
            name=job.name,
            code=code,
            message=message,
            retry_in=round(delay, 3),
        )

    def _start_uncertain(self, job: Job, now: float, restarted: bool) -> None:
        job.step, job.spec, job.lookups = "looking", None, 0
        job.searching_since = now
        job.due = now + (0.0 if restarted else 0.1 * self.cfg.submit.search_for)
        why = "wansync stopped during the create" if restarted else "the create's answer was lost"
        job.data["error"] = sidecar.error(
            "SubmitUncertain", f"{why}; searching the task list for the task", True
        )
        sidecar.write(self.folders.sidecar(job.name), job.data)
        self.jobs[job.name] = job
        self.uncertain.append(job.name)

    def _on_search(self, job: Job, outcome: Any, now: float) -> None:
        if not isinstance(outcome, list):  # the search itself failed: try it again later
            job.errors_in_row += 1
            job.due = now + backoff(self.cfg.poll.interval, job.errors_in_row)
            self.log.warning("job.search_failed", name=job.name, error=str(outcome))
            return
        known = self.host.known_task_ids()
        model = job.data["job"]["model"]
        found = [
            r["task_id"]
            for r in outcome
            if r["task_id"] not in known and r.get("model_name", model) == model
        ]
        if len(found) == 1:
            self.uncertain.popleft()
            self._record(job, found[0], None, "task list")
            return
        started = job.data["job"]["submit_started"]
        if len(found) > 1:
            self.uncertain.popleft()
            self._fail(
                job,
                "SubmitUncertain",
                f"the create sent at {started} got no answer, and {len(found)} unknown "
                f"{model} tasks were made around then ({', '.join(found[:5])}); one of them "
                f"may be this job's. Check them in the console; write the right id into "
                f"{job.name}.task in the inbox, or `wansync retry {job.name}` to create anew",
            )
            return
        job.lookups += 1
        if job.lookups < len(SEARCHES):
            job.due = job.searching_since + SEARCHES[job.lookups] * self.cfg.submit.search_for
            return
        self.uncertain.popleft()
        self._fail(
            job,
            "SubmitUncertain",
            f"the create sent at {started} got no answer, and no {model} task made around "
            f"then ({api_time(time.time())} API time now) is in the task list. Most likely "
            f"none was made: check the console's task list, then `wansync retry {job.name}` "
            f"to create it, or write the task id into {job.name}.task in the inbox",
        )

    def _record(self, job: Job, task_id: str, request_id: str | None, found_by: str | None) -> None:
        """The task exists: write its id durably, then hand the job to the task path."""
        block = job.data["job"]
        block.update(submitted=sidecar.utc_iso(), found_by=found_by)
        job.data.update(task_id=task_id, state="polling", request_id=request_id, error=None)
        sidecar.write(self.folders.sidecar(job.name), job.data)
        self.log.info("job.submitted", name=job.name, task_id=task_id, found_by=found_by)
        self.slots_changed = True
        self._hand_over(job.name, job.data)

    def _hand_over(self, name: str, data: dict[str, Any]) -> None:
        self.jobs.pop(name, None)
        self.host.adopt(name, data["task_id"], data.get("meta") or {})

    def _fail(self, job: Job, code: str, message: str) -> None:
        self.jobs.pop(job.name, None)
        job.data.update(state="failed", error=sidecar.error(code, log.scrub(message), False))
        self.host.finish(Task(job.name, job.data))


def _has_oss(body: dict[str, Any]) -> bool:
    """A user may give `oss://` URLs from their own uploads: they need the same header."""
    inputs = body.get("input", {})
    urls = [m.get("url", "") for m in inputs.get("media", [])] + [inputs.get("img_url") or ""]
    return any(u.startswith("oss://") for u in urls)
