"""What intake finds that no task will follow: a sidecar left without its file, and a
file whose name wansync cannot build on. Each ends here; what is left to do is returned
as effects (the event to emit, if any).
"""

from __future__ import annotations

from pathlib import Path

from wansync import log
from wansync.core import events as ev
from wansync.core.effects import Effect, Emit
from wansync.core.record import HookRecord
from wansync.files import sidecar
from wansync.files.folders import Folders
from wansync.run import publish

REMOVED_WHILE_STOPPED = "task file was removed while wansync was not running"


def orphan_sidecar(folders: Folders, name: str, wall: float) -> list[Effect]:
    """A sidecar without its `.task` (start-up): a publish cut short, or a task removed.

    `sidecar.read` accepts only a sidecar named after its own task, so what is resumed or
    dropped here is that task's, never another's (a planted sidecar naming a live
    download); each of its `.part` files is published only as a whole file of the
    recorded size and type.
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
    parts = tuple(publish.parts_of(folders, record)) if record else ()
    publish.forget_files(folders, name, parts)
    return [Emit(ev.TaskRemoved(at=wall, name=name, task_id=task_id, detail=REMOVED_WHILE_STOPPED))]


def refuse(folders: Folders, path: Path, hook: HookRecord | None, wall: float) -> list[Effect]:
    """A file whose NAME wansync cannot build its files from goes to failed/ with a
    sidecar that says why (`publish.refuse_name`); its event once it is there."""
    refused = publish.refuse_name(folders, path, hook)
    if refused is None or refused.final is None:
        return []  # a name that is fine after all, or not moved yet (the next scan)
    return [Emit(publish.ended(refused.record, refused.final, wall))]
