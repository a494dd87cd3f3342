"""The ordered moves that end a task in `outbox/` or `failed/`; a crash between any two is harmless.

Order, success: (1) the final sidecar, naming the chosen file, is written in the inbox;
(2) `.NAME.mp4.part` → `outbox/X.mp4`; (3) a job's `.job` → `outbox/X.job`; (4) the
`.task` → `outbox/X.task`; (5) the sidecar → `outbox/X.status.json`. Failure skips (2)
and drops the `.part`; a job that failed before it had a task has no `.task`.
The inbox sidecar is the journal: while it is there and terminal, the publish is not
finished, and `resume` carries it on from wherever it stopped. Every step is idempotent.

Also the rest of a task's end: `finish` (the whole publish and the event that says so),
and what a removed task leaves behind (`forget_files`: its sidecar and partial video).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wansync import log
from wansync.core import events as ev
from wansync.core.record import ErrorInfo, HookRecord, JobRecord, TaskRecord
from wansync.files import names, sidecar
from wansync.files.folderguard import FolderReplaced
from wansync.files.folders import Folders
from wansync.files.fsutil import NotARegularFile, fsync_dir, move_durable, open_regular
from wansync.files.names import (
    JOB_SUFFIX,
    MAX_K,
    MAX_STEM_BYTES,
    MP4,
    PUBLISHED_SUFFIXES,
    TASK_SUFFIX,
    stem,
)
from wansync.remote import mp4check

__all__ = ["MAX_STEM_BYTES", "MP4", "Folders", "free_name", "publish", "refuse_name", "stem"]
ATTEMPTS = 3  # names re-chosen when something else took the chosen one meanwhile


def free_name(folder: Path, name: str) -> str:
    """`name`, or the smallest `name-k` (k ≥ 2) none of whose files exist in `folder`.

    A link counts as taken, even one that points nowhere (`lexists`): a publish never
    writes onto, or through, anything it did not make.
    """
    for candidate in itertools.chain([name], (f"{name}-{k}" for k in range(2, MAX_K + 1))):
        if not any(os.path.lexists(folder / f"{candidate}{s}") for s in PUBLISHED_SUFFIXES):
            return candidate
    raise FileExistsError(f"{folder}: every name from {name} to {name}-{MAX_K} is taken")


def finalize(folders: Folders, record: TaskRecord) -> None:
    """Step (1): choose the published name and write the terminal sidecar durably."""
    dest = folders.destination(record)
    folders.check(folders.inbox, dest)
    chosen = free_name(dest, stem(record.name))
    record.published_as = chosen
    if record.state == "succeeded":
        _name_video(record, chosen)
    sidecar.write(folders.sidecar(record.name), record)


def _name_video(record: TaskRecord, chosen: str) -> None:
    """The video's published file is `chosen.mp4`."""
    video = record.video
    if video is not None:
        path = f"{chosen}{MP4}"
        record.outputs = [replace(o, path=path) if o is video else o for o in record.outputs]


def _is_file(path: Path) -> bool:
    """A regular file itself, not a link to one (a link planted at our `.part`)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class PartRefused(OSError):
    """The `.part` a sidecar would publish is not the video it records: nothing moves.

    A sidecar is a file anyone in the group may plant or edit; a `.part` may be another
    download still growing. Publishing one needs the bytes the sidecar names and a
    whole MP4 (the box walk), every time, not only after a download.
    """


def _check_part(part: Path, record: TaskRecord) -> None:
    """`PartRefused` unless `part` is a file only we name, of the recorded size, a whole MP4."""
    want = record.video.bytes if record.video is not None else None
    try:
        fd, st = open_regular(part)
    except (OSError, NotARegularFile) as exc:
        raise PartRefused(errno.EINVAL, f"{part.name}: {exc}") from None
    try:
        if st.st_nlink != 1:
            raise PartRefused(errno.EINVAL, f"{part.name} has other names (a hard link)")
        if st.st_size != want:
            raise PartRefused(
                errno.EINVAL, f"{part.name} holds {st.st_size} bytes, the sidecar says {want}"
            )
        try:
            mp4check.check(fd, st.st_size)
        except mp4check.NotMp4 as exc:
            raise PartRefused(errno.EINVAL, f"{part.name} is not a whole MP4: {exc}") from None
    finally:
        os.close(fd)


def _owns_task_file(record: TaskRecord, ours: bool) -> bool:
    """A job that ended before it had a task has no `.task`: one there is a producer's."""
    return ours and not (record.job and not record.task_id)


def _pending(folders: Folders, record: TaskRecord, ours: bool) -> list[tuple[Path, str]]:
    """The moves (2)-(5) not yet done, in order: (what is still in place, its suffix)."""
    name = record.name
    steps: list[tuple[Path, str]] = []
    if record.state == "succeeded" and _is_file(folders.part(name)):
        _check_part(folders.part(name), record)
        steps.append((folders.part(name), MP4))
    if ours and record.job and os.path.lexists(folders.job(name)):
        steps.append((folders.job(name), JOB_SUFFIX))
    if _owns_task_file(record, ours) and os.path.lexists(folders.task(name)):
        steps.append((folders.task(name), TASK_SUFFIX))
    if os.path.lexists(folders.sidecar(name)):
        steps.append((folders.sidecar(name), sidecar.SUFFIX))
    return steps


def _usable(chosen: str, dest: Path, steps: list[tuple[Path, str]]) -> bool:
    """`published_as` is a plain name and nothing took its remaining files' places."""
    try:
        names.check_published(chosen)
    except (names.BadName, TypeError, AttributeError):
        return False
    return not any(os.path.lexists(dest / f"{chosen}{suffix}") for _, suffix in steps)


def resume(folders: Folders, record: TaskRecord, task_file_is_ours: bool) -> Path:
    """Steps (2) to (5) from wherever they stopped; returns the published sidecar's path.

    `task_file_is_ours` is False when the `.task` had already gone: then a `.task` or
    `.job` of the same name in the inbox is a new one the user dropped (a retry).
    `published_as` is checked again here (a plain name), and if something took one of
    its places meanwhile (a file, a link, even a dangling one), the rest of the moves go
    to a newly chosen free name, recorded in the inbox sidecar first.
    """
    dest = folders.destination(record)
    folders.check(folders.inbox, folders.outbox, folders.failed)
    if record.state != "succeeded":
        with contextlib.suppress(FileNotFoundError):
            folders.part(record.name).unlink()  # our own partial download, never published
    for _ in range(ATTEMPTS):
        steps = _pending(folders, record, task_file_is_ours)
        chosen = record.published_as
        if chosen is None or not _usable(chosen, dest, steps):
            _choose_again(folders, record, steps)
            continue
        try:
            for src, suffix in steps:
                move_durable(src, dest / f"{chosen}{suffix}")
        except FileExistsError:
            continue  # taken between the check and the move: choose again
        fsync_dir(dest)
        return dest / f"{chosen}{sidecar.SUFFIX}"
    raise FileExistsError(f"{dest}: the names chosen for {record.name} were taken meanwhile")


def _choose_again(folders: Folders, record: TaskRecord, steps: list[tuple[Path, str]]) -> None:
    """A new free name for the moves still to do, written to the journal before any."""
    chosen = free_name(folders.destination(record), stem(record.name))
    record.published_as = chosen
    if any(suffix == MP4 for _, suffix in steps):
        _name_video(record, chosen)
    if any(suffix == sidecar.SUFFIX for _, suffix in steps):
        sidecar.write(folders.sidecar(record.name), record)


def publish(folders: Folders, record: TaskRecord) -> Path:
    """Finalize and move: the whole publish, in order."""
    finalize(folders, record)
    return resume(folders, record, task_file_is_ours=True)


@dataclass(frozen=True)
class Refused:
    """A file refused for its name: its record, and where it went (None: not moved yet)."""

    record: TaskRecord
    final: Path | None


def refuse_name(folders: Folders, path: Path, hook: HookRecord | None = None) -> Refused | None:
    """A `Refused` when `path`'s NAME is one wansync cannot build its files from; then the
    file goes to failed/. None when the name is fine.

    A name that is not valid UTF-8 (it could not be written to a sidecar or a log), or so
    long that `NAME.task` would pass 255 bytes. The file is moved to `failed/` under a
    printable name (bad bytes escaped as `\\xff`, shortened with a hash if long) beside a
    sidecar that says why. Nothing else is made for it: no inbox sidecar, no task.
    `hook`: the hook record its sidecar carries (docs/hooks.md).
    """
    is_job = path.name.endswith(JOB_SUFFIX)
    name = path.name[: -len(JOB_SUFFIX if is_job else TASK_SUFFIX)]
    try:
        names.check(name)
        return None
    except names.BadName as exc:
        reason = f"{names.escape(path.name)}: {exc}"
    shown, suffix = names.escape(name), JOB_SUFFIX if is_job else TASK_SUFFIX
    code = "InvalidJobFile" if is_job else "InvalidTaskFile"
    record = sidecar.new(shown, None, {}, time.time())
    record.state, record.finished = "failed", sidecar.utc_iso()
    record.error = sidecar.error(code, reason, False)
    if is_job:
        record.job = JobRecord(names.escape(path.name), None)
    record.hook = hook
    event = "job.invalid" if is_job else "task.invalid"
    logger = log.get("wansync.publish")
    try:
        folders.check(folders.inbox, folders.failed)
        record.published_as = chosen = free_name(folders.failed, stem(shown))
        move_durable(path, folders.failed / f"{chosen}{suffix}")
        sidecar.write(folders.failed / f"{chosen}{sidecar.SUFFIX}", record)
    except OSError as exc:  # gone meanwhile, or failed/ unwritable: the next scan tries again
        logger.error(event, name=shown, error=reason, detail=f"not moved: {exc.strerror or exc}")
        return Refused(record, None)
    logger.warning(event, name=shown, file=names.escape(path.name), error=reason, code=code)
    return Refused(record, folders.failed / f"{chosen}{sidecar.SUFFIX}")


# -- the end of a task's way ------------------------------------------------------------------
def finish(folders: Folders, record: TaskRecord, wall: float, logger: Any) -> ev.Event | None:
    """Publish (or finish publishing) an ended task; the event that says so, or None when
    the disk refused: then the inbox sidecar keeps the decision and a restart carries it on."""
    try:
        if record.published_as:
            final = resume(folders, record, task_file_is_ours=True)
        else:
            final = publish(folders, record)
    except FolderReplaced:
        return None  # the guard said so once for the folder, not once per task
    except OSError as exc:
        logger.error(
            "task.publish_error",
            name=record.name,
            task_id=record.task_id,
            error=f"{type(exc).__name__}: {exc.strerror or exc}",
        )
        return None
    return ended(record, final, wall)


def ended(record: TaskRecord, final: Path, wall: float) -> ev.Event:
    """The event of a published task: `final` is its sidecar in outbox/ or failed/."""
    chosen = str(record.published_as)
    if record.state == "succeeded":
        video = final.parent / f"{chosen}{MP4}"
        return ev.TaskSucceeded(
            at=wall,
            name=record.name,
            task_id=str(record.task_id),
            published_as=chosen,
            video=str(video),
            sidecar=str(final),
            polls=record.polls,
            path=str(video),
        )
    error = record.error or ErrorInfo("", "", False)
    return ev.TaskFailed(
        at=wall,
        name=record.name,
        task_id=record.task_id,
        published_as=chosen,
        sidecar=str(final),
        code=error.code,
        message=error.message,
        path=str(final),
    )


def forget_files(folders: Folders, name: str) -> None:
    """A removed task's sidecar and partial download: ours, and no longer wanted."""
    for path in (folders.sidecar(name), folders.part(name)):
        if folders.replaced(path.parent):
            continue  # not through a swapped folder: the next start-up drops them
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
