"""What intake finds that no task will follow: a sidecar left without its file, and a
file whose name wansync cannot build on. Each ends here; what is left to do is returned
as effects (the event to emit, if any).

A sidecar is dropped only when it is provably wansync's own (`written_by_us`); any other
`NAME.status.json` in the inbox is a user's file, and a user's file is moved, never
deleted (docs/folders.md): to `failed/` under a free name, with a line saying where.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wansync import log
from wansync.core import events as ev
from wansync.core.effects import Effect, Emit
from wansync.core.record import HookRecord, TaskRecord
from wansync.files import names, sidecar
from wansync.files.folders import Folders
from wansync.files.lock import user_name
from wansync.run import publish

REMOVED_WHILE_STOPPED = "task file was removed while wansync was not running"


def orphan_sidecar(folders: Folders, name: str, wall: float) -> list[Effect]:
    """A sidecar without its `.task` (start-up): a publish cut short, a task removed, or
    a file of a user's that only looks like a sidecar.

    `sidecar.read` accepts only a sidecar named after its own task, so what is resumed or
    dropped here is that task's, never another's (a planted sidecar naming a live
    download); each of its `.part` files is published only as a whole file of the
    recorded size and type. Dropped only if wansync wrote it; else moved to failed/.
    """
    record = sidecar.read(folders.sidecar(name))
    task_id = record.task_id if record else None
    if record and record.ended and record.published_as:
        try:
            final = publish.resume(folders, record, task_file_is_ours=False)
        except OSError as exc:  # a full disk, a refused `.part`: left as it is
            log.get("wansync.daemon").error(
                "task.publish_error",
                name=name,
                task_id=task_id,
                error=f"{type(exc).__name__}: {exc.strerror or exc}",
                detail="left in the inbox as it is",
            )
            return []
        log.get("wansync.daemon").info(
            "task.publish_resumed", name=name, task_id=task_id, path=str(final)
        )
        return []
    path = folders.sidecar(name)
    why = not_ours(path, record)
    if why is not None:
        move_aside(folders, name, path, why)
        return []  # no task was removed: there was none
    assert record is not None  # `not_ours` says why when there is none
    publish.forget_files(folders, name, tuple(publish.parts_of(folders, record)))
    return [Emit(ev.TaskRemoved(at=wall, name=name, task_id=task_id, detail=REMOVED_WHILE_STOPPED))]


def not_ours(path: Path, record: TaskRecord | None) -> str | None:
    """Why the file at `path` is not a sidecar wansync wrote, or None if it provably is:
    a valid sidecar of its own task (`record`), a regular file with one name, owned by
    this process's user (the files it writes are; a producer's copy is the producer's)."""
    if record is None:
        return "not a wansync sidecar of this name"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None  # gone meanwhile: nothing of it is left to keep
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return "not a regular file with one name"
    if st.st_uid != os.geteuid():
        return f"a file of {user_name(st.st_uid)}, not written by this wansync"
    return None


def move_aside(folders: Folders, name: str, path: Path, why: str) -> None:
    """A user's `NAME.status.json` with no task: kept, in failed/ under a free name."""
    logger = log.get("wansync.daemon")
    file = names.escape(path.name)
    try:
        folders.check(folders.inbox, folders.failed)
        target = publish.move_to_free(path, folders.failed, names.stem(name), sidecar.SUFFIX)
    except FileNotFoundError:
        return  # gone meanwhile (or never there: `sidecar.read` found nothing)
    except OSError as exc:  # failed/ unwritable or replaced: left where it is
        logger.error(
            "sidecar.not_moved",
            file=file,
            error=why,
            detail=f"left in the inbox: {exc.strerror or exc}",
        )
        return
    logger.warning(
        "sidecar.moved_aside",
        file=file,
        moved_to=str(target),
        error=why,
        detail="no .task or .job beside it: a user's file is moved, never deleted",
    )


def refuse(folders: Folders, path: Path, hook: HookRecord | None, wall: float) -> list[Effect]:
    """A file whose NAME wansync cannot build its files from goes to failed/ with a
    sidecar that says why (`publish.refuse_name`); its event once it is there."""
    refused = publish.refuse_name(folders, path, hook)
    if refused is None or refused.final is None:
        return []  # a name that is fine after all, or not moved yet (the next scan)
    return [Emit(publish.ended(refused.record, refused.final, wall))]
