"""The submitter's one worker thread: upload, create, search (the task list, then a poll
of each unknown task it shows, for the prompt its answer echoes); HTTP and folder reads
only.

Each step's outcome goes back to the loop as a message (messages.py); the state machine
in submitter.py decides what it means.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wansync.core import jobmatch
from wansync.core.errors import SubmitAmbiguous
from wansync.core.kinds import VIDEO_GENERATION
from wansync.core.messages import JobStepDone, LookupDone, Mailbox, PostDone, UploadDone
from wansync.files import sidecar
from wansync.files.jobfile import LocalFile
from wansync.remote.api import TaskApi, TaskReport
from wansync.remote.serverclock import Offset, Window
from wansync.remote.upload import Uploader
from wansync.run.publish import Folders
from wansync.run.workers import attempt


@dataclass(frozen=True, slots=True)
class UploadJob:
    name: str
    model: str
    paths: list[LocalFile]  # as checked: the upload sends only that same file


@dataclass(frozen=True, slots=True)
class PostJob:
    name: str
    body: dict[str, Any]
    resolve_oss: bool
    endpoint: str = VIDEO_GENERATION  # under /api/v1/services/: the model's kind's


@dataclass(frozen=True, slots=True)
class LookupJob:
    name: str
    model: str
    recorded: Window | None  # the window a search already used (in the sidecar): again
    plan: Callable[[Offset | None], Window]  # else: the window for the server's clock
    ours: frozenset[str] = frozenset()  # ids the loop knows as ours (or not the job's)


def search(api: TaskApi, item: LookupJob, used: list[Window]) -> list[dict[str, Any]]:
    """The task list over the job's window on the server's clock (serverclock.py).

    With no `Date` seen yet, the wide window goes first; its own answer tells the
    server's clock, and the exact window is searched then (the one whose rows count).
    """
    if item.recorded is not None:
        used.append(item.recorded)
        return api.list_tasks(item.model, *item.recorded)
    before = api.clock.offset()
    used.append(item.plan(before))
    rows = api.list_tasks(item.model, *used[-1])
    after = api.clock.offset()
    if before is None and after is not None:
        used.append(item.plan(after))
        rows = api.list_tasks(item.model, *used[-1])
    return rows


def echoes(
    api: TaskApi, item: LookupJob, rows: list[dict[str, Any]], known: frozenset[str]
) -> dict[str, str | None]:
    """Poll the unknown tasks the search found (at most `MAX_CHECKED`; more cannot be
    told apart anyway): each one's echoed prompt digest, None if its answer echoes none.
    A poll that fails leaves its task out: unknown, as if it echoed nothing."""
    candidates = jobmatch.unknown_tasks(rows, item.ours | known, item.model)
    said: dict[str, str | None] = {}
    for task_id in candidates[: jobmatch.MAX_CHECKED]:
        answer = attempt(functools.partial(api.fetch, task_id))
        if isinstance(answer, TaskReport):
            said[task_id] = answer.prompt_sha256
    return said


WorkItem = UploadJob | PostJob | LookupJob


def submit_io(
    api: TaskApi, timeout: float, folders: Folders, mailbox: Mailbox
) -> Callable[[WorkItem], None]:
    """The worker: run one step, post its outcome. A bug in a create is `SubmitAmbiguous`:
    a task may exist, so it is searched for, never sent again."""
    uploader = Uploader(api, timeout)

    def run(item: WorkItem) -> None:
        message: JobStepDone
        match item:
            case UploadJob(name=name, model=model, paths=paths):
                message = UploadDone(name, attempt(lambda: uploader.upload_all(model, paths)))
            case PostJob(name=name, body=body, resolve_oss=oss, endpoint=endpoint):
                sent = attempt(lambda: api.submit(body, oss, endpoint), SubmitAmbiguous)
                message = PostDone(name, sent)
            case LookupJob(name=name):
                used: list[Window] = []
                found = attempt(lambda: search(api, item, used))
                window = used[-1] if used else None
                known = frozenset(ended_ids(folders))
                said = echoes(api, item, found, known) if isinstance(found, list) else {}
                message = LookupDone(name, found, known, window, said)
        mailbox.post(message)

    return run


def ended_ids(folders: Folders, since_seconds: float = 86400) -> set[str]:
    """Ids of our tasks that ended in the last day (worker thread: it reads folders)."""
    known: set[str] = set()
    since = time.time() - since_seconds
    for folder in (folders.outbox, folders.failed):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.endswith(sidecar.SUFFIX) and entry.stat().st_mtime >= since:
                    record = sidecar.read(Path(entry.path), published=True)
                    if record and record.task_id:
                        known.add(record.task_id)
    return known


def has_oss(body: Any) -> bool:
    """A user may give `oss://` URLs from their own uploads, anywhere in the request (a
    raw job's `input` is sent as given): they need the same header."""
    if isinstance(body, str):
        return body.startswith("oss://")
    if isinstance(body, dict):
        return any(has_oss(value) for value in body.values())
    if isinstance(body, list):
        return any(has_oss(value) for value in body)
    return False
