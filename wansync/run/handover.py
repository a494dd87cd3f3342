"""A job's new task gets its `.task` file, and so its name, before it is tracked.

The name is the job's own, `NAME`. A producer may have dropped a `NAME.task` of its own
while the create was out (it waited; see `Submitter.holds_name`): then the job's task
moves to the smallest free `NAME-k`, its journal first, so that it is never orphaned
and never sent again. The steps, each safe to be cut short by a crash:

  (1) the journal (the job's sidecar, holding the task id) is written as `NAME-k`'s;
  (2) `NAME.job` is renamed `NAME-k.job`;
  (3) `NAME-k.task` is written;
  (4) the old journal `NAME.status.json` is dropped, so `NAME.task` starts afresh.

Cut after (1): `NAME-k.status.json` has no file and is dropped at the next start, and
`NAME.job` with its journal does it all again. After (2): `NAME-k.job` and its journal
are a job whose task is recorded, so (3) is done then. After (3): `NAME-k` is a task.

A tracked job's task whose `.task` a producer replaced with another id (a rename onto
it) keeps its name: the producer's file moves to a free name and becomes a task there
(`reclaim`), since the file that was replaced was wansync's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from wansync import log
from wansync.core.errors import OutOfResources, TaskFileError
from wansync.core.lifecycle import Now
from wansync.core.messages import Adopt, Handover
from wansync.core.record import TaskRecord
from wansync.core.tracker import Task
from wansync.files import names, sidecar, taskfile
from wansync.files.folders import Folders
from wansync.files.fsutil import move_durable, write_new_file
from wansync.run.jobjournal import Job

PLACE_RETRY = 5.0  # seconds before a `.task` that could not be written is tried again
MISSING = "missing"  # `holder`: no `.task` there
UNREADABLE = "unreadable"  # `holder`: a `.task` that holds no valid id


@dataclass(frozen=True, slots=True)
class Placed:
    """Where a job's task went: the name it is tracked under and its record.

    `taken_by`: the id (or `unreadable`) in the `NAME.task` that made it move, else None.
    """

    name: str
    record: TaskRecord
    taken_by: str | None = None


def holder(path: Path) -> str:
    """The task id in the `.task` at `path`, `MISSING`, or `UNREADABLE`;
    `OutOfResources` when the system cannot read it now."""
    if not os.path.lexists(path):
        return MISSING
    try:
        return taskfile.read(path).task_id
    except (TaskFileError, OSError):
        return UNREADABLE


def free_name(folders: Folders, name: str, in_use: Callable[[str], bool]) -> str:
    """The smallest `NAME-k` (k ≥ 2) with no `.task`, `.job` or sidecar in the inbox."""
    for k in range(2, names.MAX_K + 1):
        candidate = f"{name}-{k}"
        try:
            names.check(candidate)
        except names.BadName:
            break  # NAME is at the length limit: no `-k` fits
        paths = (folders.task(candidate), folders.job(candidate), folders.sidecar(candidate))
        if not in_use(candidate) and not any(os.path.lexists(p) for p in paths):
            return candidate
    raise FileExistsError(f"no free name like {name}-k in the inbox for {name}'s task")


def place(
    folders: Folders,
    name: str,
    record: TaskRecord,
    in_use: Callable[[str], bool],
    retry_every: float,
    first_try: bool = True,
) -> Placed | None:
    """Write the `.task` of job `name`'s task (its id is in `record`, on disk already).

    None when a write failed (logged on the first try): nothing is lost, the journal
    holds the id; the caller tries again `retry_every` seconds later.
    """
    logger = log.get("wansync.submit")
    try:
        placed = _place(folders, name, record, in_use)
    except (OSError, OutOfResources) as exc:
        if first_try:
            why = str(exc.strerror or exc) if isinstance(exc, OSError) else exc.message
            logger.error(
                "job.task_file_error",
                name=name,
                task_id=record.task_id,
                error=why,
                detail=f"the sidecar holds the id; trying again every {int(retry_every)} s",
            )
        return None
    if placed.taken_by is not None:
        logger.warning(
            "job.name_taken",
            name=name,
            task_id=record.task_id,
            published_as=placed.name,
            detail=f"{name}.task in the inbox holds another task ({placed.taken_by}); "
            f"this job's task is fetched as {placed.name}",
        )
    return placed


def _place(
    folders: Folders, name: str, record: TaskRecord, in_use: Callable[[str], bool]
) -> Placed:
    task_id = str(record.task_id)
    found = _write_unless_there(folders.task(name), taskfile.render(task_id, record.meta))
    if found is None or found == task_id:  # written now, or before a restart
        return Placed(name, record)
    new = free_name(folders, name, in_use)
    job = replace(record.job, file=f"{new}{names.JOB_SUFFIX}") if record.job else None
    moved = replace(record, name=new, job=job)
    sidecar.write(folders.sidecar(new), moved)  # (1)
    if os.path.lexists(folders.job(name)):
        move_durable(folders.job(name), folders.job(new))  # (2)
    write_new_file(folders.task(new), taskfile.render(task_id, record.meta))  # (3)
    old = sidecar.read(folders.sidecar(name))
    if old is not None and old.task_id == task_id:
        with contextlib.suppress(FileNotFoundError):
            folders.sidecar(name).unlink()  # (4)
    return Placed(new, moved, found)


def _write_unless_there(path: Path, data: bytes) -> str | None:
    """Write `data` as the `.task` at `path` if none is there (None), else what holds it
    (`holder`): a producer's file that appears meanwhile is read, never replaced."""
    for _ in range(3):
        found = holder(path)
        if found != MISSING:
            return found
        with contextlib.suppress(FileExistsError):
            write_new_file(path, data)
            return None
    raise FileExistsError(f"{path.name} keeps appearing and going")


def reclaim(
    folders: Folders, name: str, record: TaskRecord, in_use: Callable[[str], bool]
) -> Path | None:
    """A tracked job's task's `NAME.task` was replaced: move the producer's file to a free
    name (it is a task of its own there), write ours again. Where it went (None: a disk
    error, logged; tried again at the file's next event)."""
    logger = log.get("wansync.daemon")
    try:
        target = folders.task(free_name(folders, name, in_use))
        move_durable(folders.task(name), target)
        write_new_file(folders.task(name), taskfile.render(str(record.task_id), record.meta))
    except OSError as exc:
        logger.error("task.replaced", name=name, error=str(exc.strerror or exc))
        return None
    logger.warning(
        "task.replaced",
        name=name,
        moved_to=target.name,
        detail=f"{name}.task is this job's task's; the file put in its place is {target.name}",
    )
    return target


class Placing:
    """Hands a job's new task over as a task to track, once its `.task` is written
    (`place`), directly from its record. A write that fails is tried again every
    `PLACE_RETRY` seconds; the job keeps its name (and its entry in `jobs`) meanwhile."""

    def __init__(self, folders: Folders, jobs: dict[str, Job]) -> None:
        self.folders = folders
        self.jobs = jobs  # the submitter's: the names a job holds
        self.unplaced: list[str] = []  # tasks made whose `.task` could not be written yet

    def marks(self) -> list[float]:
        """When each waiting `.task` is tried again (monotonic)."""
        return [self.jobs[n].due for n in self.unplaced if n in self.jobs]

    def due(self, now: Now) -> list[Handover]:
        """Try again the `.task` files whose time has come."""
        handed: list[Handover] = []
        for name in list(self.unplaced):
            job = self.jobs.get(name)
            if job is None or now.mono >= job.due:
                self.unplaced.remove(name)
            if job is not None and now.mono >= job.due:
                handed += self.hand_over(job, now)
        return handed

    def hand_over(self, job: Job, now: Now) -> list[Handover]:
        """Write the task's `.task` and hand it over, or hold it to try again."""
        first = job.step != "placing"
        placed = place(
            self.folders, job.name, job.record, self.jobs.__contains__, PLACE_RETRY, first
        )
        if placed is None:
            job.step, job.due = "placing", now.mono + PLACE_RETRY
            self.jobs[job.name] = job
            self.unplaced.append(job.name)
            return []
        self.jobs.pop(job.name, None)
        return [Adopt(Task(placed.name, placed.record), job.name)]
