"""A `.job` replaced after its create went out: the task stays the job's as it was sent.

A job is read once, when it is queued, and the digest of the bytes read is kept in its
sidecar (`job.sha256`). Until the create goes out, a file put in its place is simply
read again and queued anew (submitter.py). From the create on, a task may exist, made
from what was read: a new file under the name cannot change it, and must never be
published beside that task's files as if it were their job. So it is set aside: moved
to `failed/NAME-k.job` (k ≥ 2: never taken for the job's own record) beside a sidecar
that says why (`JobReplaced`), with one `job.replaced` error. wansync keeps no copy of
the file it sent, so the job then ends with no `.job` beside its files.

`check` runs when such a file settles (the watch), and once more just before the job's
end is published (a replacement made while wansync was stopped, or under `once`).
"""

from __future__ import annotations

import os
from pathlib import Path

from wansync import log
from wansync.core.record import JobRecord, TaskRecord
from wansync.core.times import utc_iso
from wansync.files import jobfile, names, sidecar
from wansync.files.folders import Folders
from wansync.files.fsutil import NotARegularFile, move_durable, read_small

CODE = "JobReplaced"
NOT_A_JOB = "not a job"  # `digest`: a link, a FIFO, a folder, a file over the size limit
UNREADABLE = "unreadable"  # `digest`: cannot be read now (no permission, no descriptor)


def digest(path: Path) -> str | None:
    """The `.job` at `path` now, as `jobfile.digest` records it (or `NOT_A_JOB`,
    `UNREADABLE`); None when it is gone."""
    try:
        return jobfile.digest(read_small(path, jobfile.MAX_BYTES))
    except FileNotFoundError:
        return None
    except NotARegularFile:
        return NOT_A_JOB
    except OSError:
        return UNREADABLE


def check(folders: Folders, record: TaskRecord, path: Path, wall: float) -> Path | None:
    """The job's create went out: set the `.job` at `path` aside unless it is the file
    read for it. Where it went; None when it is that file, gone, cannot be read now
    (nothing is moved on a doubt), or the record keeps no digest (an older sidecar)."""
    sent = record.job.sha256 if record.job is not None else None
    found = digest(path)
    if sent is None or found in (sent, None, UNREADABLE):
        return None
    return set_aside(folders, record, path, found, wall)


def set_aside(
    folders: Folders, record: TaskRecord, path: Path, found: str | None, wall: float
) -> Path | None:
    """Move `path` to `failed/NAME-k.job` with a `JobReplaced` sidecar; logged either way.
    None when it could not be moved (a disk error; the next check tries again)."""
    logger = log.get("wansync.submit")
    name = jobfile.job_name(path)
    made = f"its task {record.task_id}" if record.task_id else "its create request is out"
    why = (
        f"{path.name} was replaced after the job was sent ({made}): the task is made from "
        f"the job as it was read, and this file was not sent; to send it, move it into "
        f"the inbox under a new name"
    )
    try:
        folders.check(folders.inbox, folders.failed)
        chosen = _free_name(folders.failed, names.stem(name))
        target = folders.failed / f"{chosen}{names.JOB_SUFFIX}"
        move_durable(path, target)
        aside = sidecar.new(name, None, {}, wall)
        aside.state, aside.finished = "failed", utc_iso(wall)
        aside.error = sidecar.error(CODE, why, False)
        kept = found if found not in (NOT_A_JOB, UNREADABLE) else None
        aside.job = JobRecord(path.name, None, sha256=kept)
        aside.published_as = chosen
        sidecar.write(folders.failed / f"{chosen}{sidecar.SUFFIX}", aside)
    except OSError as exc:
        error = str(exc.strerror or exc)
        logger.error("job.replaced", name=name, file=path.name, error=error, detail=why)
        return None
    logger.error(
        "job.replaced",
        name=name,
        file=path.name,
        task_id=record.task_id,
        moved_to=target.name,
        detail=why,
    )
    return target


def _free_name(folder: Path, stem: str) -> str:
    """The smallest `STEM-k` (k ≥ 2) none of whose published files is in `folder`."""
    for k in range(2, names.MAX_K + 1):
        candidate = f"{stem}-{k}"
        if not any(os.path.lexists(folder / f"{candidate}{s}") for s in names.PUBLISHED_SUFFIXES):
            return candidate
    raise FileExistsError(f"{folder}: every name from {stem}-2 to {stem}-{names.MAX_K} is taken")
