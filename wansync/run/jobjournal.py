"""A job as the submitter holds it, and its journal: the record its sidecar keeps.

Each function here moves a job's record to one state of the machine in submitter.py's
docstring (`queued`, `submitting`, `polling`, `failed`) and fills in what a restart
needs to carry on; `save` writes it. When to save is submitter.py's to decide: a
`submitting` record must be on disk before the create goes out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from wansync import log
from wansync.core import jobmatch
from wansync.core.record import JobRecord, TaskRecord
from wansync.core.times import utc_iso
from wansync.files import jobfile, sidecar
from wansync.remote.serverclock import Window, window_record
from wansync.run.publish import Folders

Step = Literal["queued", "uploading", "posting", "looking", "placing"]


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
    not_ours: set[str] = field(default_factory=set)  # listed tasks echoing another prompt


def block(job: Job) -> JobRecord:
    """The job's submit journal (every job's record has one: `sidecar.problem` and
    `discover` see to it)."""
    assert job.record.job is not None
    return job.record.job


def model_of(job: Job) -> str | None:
    return job.spec.model if job.spec else None


def save(folders: Folders, job: Job, logger: Any, durable: bool = True) -> bool:
    """Write the job's sidecar; a failed write is logged, never raised into the loop."""
    try:
        sidecar.write(folders.sidecar(job.name), job.record, durable=durable)
    except OSError as exc:
        logger.error("sidecar.write_error", name=job.name, error=str(exc.strerror or exc))
        return False
    return True


def invalid(name: str, path: Path, now: float) -> TaskRecord:
    """The record of a job whose file cannot be read or checked (it ends at once)."""
    fresh = sidecar.new(name, None, {}, now)
    fresh.job = JobRecord(path.name, None)
    return fresh


def queued(
    name: str, path: Path, spec: jobfile.JobSpec, found: TaskRecord | None, now: float
) -> TaskRecord:
    """A checked job's first record; `found`: an earlier one (its first sighting stays)."""
    fresh = sidecar.new(name, None, spec.meta, now)
    if found is not None:
        fresh.first_seen = found.first_seen or fresh.first_seen
    fresh.state = "queued"
    fresh.job = JobRecord(path.name, spec.model, sha256=spec.sha256)
    return fresh


def submitting(job: Job, body: dict[str, Any], window: Window | None, now: float) -> None:
    """About to send the create `body`: one more attempt, when, where a lost answer's task
    will be looked for (on the API's clock; None: the first search finds it out), and
    the digest of its prompt, which a task found there must echo (jobmatch.py)."""
    was = block(job)
    job.record.job = replace(
        was,
        attempts=was.attempts + 1,
        submit_started=utc_iso(now),
        search_window=window_record(window) if window else None,
        prompt_sha256=jobmatch.digest(jobmatch.prompt_sent(body)),
    )
    job.record.state, job.record.error = "submitting", None


def searched(job: Job, window: Window) -> None:
    """The window a search covered: a restart or `retry` searches this same window."""
    job.record.job = replace(block(job), search_window=window_record(window))


def requeued(job: Job, code: str, message: str) -> None:
    """No task was made, and the error is worth another try."""
    job.step = "queued"
    job.record.state = "queued"
    job.record.error = sidecar.error(code, log.scrub(message), True)


def uncertain(job: Job, restarted: bool) -> None:
    """A task may exist: say so, while the task list is searched."""
    why = "wansync stopped during the create" if restarted else "the create's answer was lost"
    job.record.error = sidecar.error(
        "SubmitUncertain", f"{why}; searching the task list for the task", True
    )


def submitted(
    job: Job, task_id: str, request_id: str | None, found_by: str | None, now: float
) -> None:
    """The task exists: its id, and how it was learnt (the answer, or the task list)."""
    record = job.record
    record.job = replace(block(job), submitted=utc_iso(now), found_by=found_by)
    record.task_id, record.request_id, record.error = task_id, request_id, None
    record.state = "polling"


def failed(job: Job, code: str, message: str) -> None:
    """The job ends in `failed/`."""
    job.record.state = "failed"
    job.record.error = sidecar.error(code, log.scrub(message), False)
