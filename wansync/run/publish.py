"""The ordered moves that end a task in `outbox/` or `failed/`; a crash between any two is harmless.

Order, success: (1) one free name X is chosen for the whole group (none of `X.mp4`,
`X.status.json`, `X.task`, `X.job` and the task's files `X.EXT` or `X.1.EXT`, `X.2.EXT`
… exists) and the final sidecar naming it (`published_as`, every `outputs[].path`) is
written in the inbox; (2) each file, in order: `.NAME[.k].EXT.part` → `outbox/X[.k].EXT`
(every one complete and verified before the first moves); (3) a job's `.job` →
`outbox/X.job`; (4) the `.task` → `outbox/X.task`; (5) the sidecar →
`outbox/X.status.json`, last: a consumer that sees it sees every file. Failure skips (2)
and drops the `.part` files; a job that failed before it had a task has no `.task`.
The inbox sidecar is the journal: while it is there and terminal, the publish is not
finished, and `resume` carries it on from wherever it stopped, under the same X (a file
no longer at its `.part` was moved already). Every step is idempotent.

Also the rest of a task's end: `finish` (the whole publish and the event that says so),
and what a removed task leaves behind (`forget_files`: its sidecar and partial files).
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
from wansync.core.filegroup import expected_extension
from wansync.core.record import ErrorInfo, HookRecord, JobRecord, Output, TaskRecord
from wansync.core.shapes import Outputs, outputs_of
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
    group_suffix,
    stem,
)
from wansync.remote import mp4check, picturecheck

__all__ = ["MAX_STEM_BYTES", "MP4", "Folders", "free_name", "publish", "refuse_name", "stem"]
ATTEMPTS = 3  # names re-chosen when something else took the chosen one meanwhile


def free_name(folder: Path, name: str, files: tuple[str, ...] = ()) -> str:
    """`name`, or the smallest `name-k` (k ≥ 2) none of whose files exist in `folder`:
    the published suffixes and the task's own `files` (`.1.png` …).

    A link counts as taken, even one that points nowhere (`lexists`): a publish never
    writes onto, or through, anything it did not make.
    """
    suffixes = (*PUBLISHED_SUFFIXES, *files)
    for candidate in itertools.chain([name], (f"{name}-{k}" for k in range(2, MAX_K + 1))):
        if not any(os.path.lexists(folder / f"{candidate}{s}") for s in suffixes):
            return candidate
    raise FileExistsError(f"{folder}: every name from {name} to {name}-{MAX_K} is taken")


def file_suffixes(record: TaskRecord) -> tuple[str, ...]:
    """The suffix of each of a succeeded task's files: `.EXT`, or `.1.EXT`, `.2.EXT` …"""
    if record.state != "succeeded":
        return ()
    count = len(record.outputs)
    return tuple(group_suffix(k, count, o.extension) for k, o in enumerate(record.outputs))


def parts_of(folders: Folders, record: TaskRecord) -> list[Path]:
    """Where each of the task's files grows (or grew) before it is published.

    Named as its download named it: from the files its answer names (each URL's
    extension, `filegroup.expected_extension`); for a record whose answer names none
    or another number of files than it has outputs (an older sidecar), from its outputs.
    """
    found = outputs_of(record.output) if record.output is not None else None
    count = len(record.outputs)
    if isinstance(found, Outputs) and count in (0, len(found.files)):
        n = len(found.files)
        return [
            folders.part(record.name, k, n, expected_extension(f))
            for k, f in enumerate(found.files)
        ]
    return [folders.part(record.name, k, count, o.extension) for k, o in enumerate(record.outputs)]


def finalize(folders: Folders, record: TaskRecord) -> None:
    """Step (1): choose the published name for the whole group and write the terminal
    sidecar naming it durably, before any file moves."""
    dest = folders.destination(record)
    folders.check(folders.inbox, dest)
    chosen = free_name(dest, stem(record.name), file_suffixes(record))
    record.published_as = chosen
    if record.state == "succeeded":
        _name_outputs(record, chosen)
    sidecar.write(folders.sidecar(record.name), record)


def _name_outputs(record: TaskRecord, chosen: str) -> None:
    """Each file's published name is `chosen` and its suffix (`chosen.mp4`, `chosen.2.png`)."""
    suffixes = file_suffixes(record)
    record.outputs = [
        o if o.path == f"{chosen}{s}" else replace(o, path=f"{chosen}{s}")
        for o, s in zip(record.outputs, suffixes, strict=True)
    ]


def _is_file(path: Path) -> bool:
    """A regular file itself, not a link to one (a link planted at our `.part`)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


class PartRefused(OSError):
    """A `.part` a sidecar would publish is not the file it records: nothing moves.

    A sidecar is a file anyone in the group may plant or edit; a `.part` may be another
    download still growing. Publishing one needs the bytes the sidecar names and a
    whole file of its type (an MP4 by the box walk, a picture by its signature and
    end), every time, not only after a download.
    """


def _check_part(part: Path, output: Output) -> None:
    """`PartRefused` unless `part` is a file only we name, of the recorded size, a whole
    file of the recorded type."""
    try:
        fd, st = open_regular(part)
    except (OSError, NotARegularFile) as exc:
        raise PartRefused(errno.EINVAL, f"{part.name}: {exc}") from None
    try:
        if st.st_nlink != 1:
            raise PartRefused(errno.EINVAL, f"{part.name} has other names (a hard link)")
        if st.st_size != output.bytes:
            raise PartRefused(
                errno.EINVAL,
                f"{part.name} holds {st.st_size} bytes, the sidecar says {output.bytes}",
            )
        _check_type(fd, st.st_size, part, output)
    finally:
        os.close(fd)


def _check_type(fd: int, size: int, part: Path, output: Output) -> None:
    if output.is_video:
        try:
            mp4check.check(fd, size)
        except mp4check.NotMp4 as exc:
            raise PartRefused(errno.EINVAL, f"{part.name} is not a whole MP4: {exc}") from None
        return
    try:
        found = picturecheck.check(fd, size).content_type
    except picturecheck.NotPicture as exc:
        raise PartRefused(errno.EINVAL, f"{part.name} is not a whole picture: {exc}") from None
    if found != output.content_type:
        raise PartRefused(
            errno.EINVAL, f"{part.name} is {found}, the sidecar says {output.content_type}"
        )


def _owns_task_file(record: TaskRecord, ours: bool) -> bool:
    """A job that ended before it had a task has no `.task`: one there is a producer's."""
    return ours and not (record.job and not record.task_id)


@dataclass
class Moves:
    """The moves (2)-(5) not yet done, in order (what is still in place, its suffix), and
    the files already at their published place under `published_as` (`placed`)."""

    todo: list[tuple[Path, str]]
    placed: list[tuple[Path, str]]


def _pending(folders: Folders, record: TaskRecord, ours: bool) -> Moves:
    """What is left to move. A file whose `.part` is gone was moved already: it is
    `placed` when it is still there (a consumer may have taken it since)."""
    name = record.name
    moves = Moves([], [])
    dest = folders.destination(record)
    if record.state == "succeeded":
        chosen = record.published_as
        parts = parts_of(folders, record)
        for part, output, suffix in zip(parts, record.outputs, file_suffixes(record), strict=False):
            if _is_file(part):
                _check_part(part, output)
                moves.todo.append((part, suffix))
            elif chosen and _is_file(dest / f"{chosen}{suffix}"):
                moves.placed.append((dest / f"{chosen}{suffix}", suffix))
    steps = moves.todo
    if ours and record.job and os.path.lexists(folders.job(name)):
        steps.append((folders.job(name), JOB_SUFFIX))
    if _owns_task_file(record, ours) and os.path.lexists(folders.task(name)):
        steps.append((folders.task(name), TASK_SUFFIX))
    if os.path.lexists(folders.sidecar(name)):
        steps.append((folders.sidecar(name), sidecar.SUFFIX))
    return moves


def _usable(chosen: str, dest: Path, steps: list[tuple[Path, str]]) -> bool:
    """`published_as` is a plain name and nothing took its remaining files' places."""
    try:
        names.check_published(chosen)
    except (names.BadName, TypeError, AttributeError):
        return False
    return not any(os.path.lexists(dest / f"{chosen}{suffix}") for _, suffix in steps)


def resume(
    folders: Folders,
    record: TaskRecord,
    task_file_is_ours: bool,
    others: frozenset[str] = frozenset(),
) -> Path:
    """Steps (2) to (5) from wherever they stopped; returns the published sidecar's path.

    `task_file_is_ours` is False when the `.task` had already gone: then a `.task` or
    `.job` of the same name in the inbox is a new one the user dropped (a retry).
    `published_as` is checked again here (a plain name), and if something took one of
    its places meanwhile (a file, a link, even a dangling one), the group moves to a
    newly chosen free name, recorded in the inbox sidecar first: the moves still to do,
    and the files already moved, so that the group stays under one name. `others`:
    `.part` names another live task downloads into (a failed task leaves them).
    """
    dest = folders.destination(record)
    folders.check(folders.inbox, folders.outbox, folders.failed)
    if record.state != "succeeded":
        drop_parts(folders, record, others)  # our own partial downloads, never published
    for _ in range(ATTEMPTS):
        moves = _pending(folders, record, task_file_is_ours)
        chosen = record.published_as
        if chosen is None or not _usable(chosen, dest, moves.todo):
            _choose_again(folders, record, moves)
            continue
        try:
            for src, suffix in moves.todo:
                move_durable(src, dest / f"{chosen}{suffix}")
        except FileExistsError:
            continue  # taken between the check and the move: choose again
        fsync_dir(dest)
        return dest / f"{chosen}{sidecar.SUFFIX}"
    raise FileExistsError(f"{dest}: the names chosen for {record.name} were taken meanwhile")


def _choose_again(folders: Folders, record: TaskRecord, moves: Moves) -> None:
    """A new free name for the whole group, written to the journal before any move; the
    files already published under the old name follow it there."""
    dest = folders.destination(record)
    chosen = free_name(dest, stem(record.name), file_suffixes(record))
    record.published_as = chosen
    if record.state == "succeeded":
        _name_outputs(record, chosen)
    if any(suffix == sidecar.SUFFIX for _, suffix in moves.todo):
        sidecar.write(folders.sidecar(record.name), record)
    for src, suffix in moves.placed:
        move_durable(src, dest / f"{chosen}{suffix}")


def drop_parts(folders: Folders, record: TaskRecord, others: frozenset[str]) -> None:
    """Unlink the task's `.part` files (the name, never through a link), but those
    another live task downloads into now."""
    for part in {*parts_of(folders, record), folders.part(record.name)}:
        if part.name not in others:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()


def publish(folders: Folders, record: TaskRecord, others: frozenset[str] = frozenset()) -> Path:
    """Finalize and move: the whole publish, in order."""
    finalize(folders, record)
    return resume(folders, record, task_file_is_ours=True, others=others)


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
        chosen = _refused_to_failed(folders, path, suffix, record)
    except OSError as exc:  # gone meanwhile, or failed/ unwritable: the next scan tries again
        logger.error(event, name=shown, error=reason, detail=f"not moved: {exc.strerror or exc}")
        return Refused(record, None)
    logger.warning(event, name=shown, file=names.escape(path.name), error=reason, code=code)
    return Refused(record, folders.failed / f"{chosen}{sidecar.SUFFIX}")


def _refused_to_failed(folders: Folders, path: Path, suffix: str, record: TaskRecord) -> str:
    """Move a refused file to `failed/` under a free name, its sidecar beside it; the name.
    A name taken meanwhile (the file's or the sidecar's) is never written over: the file
    moves on to the next free name."""
    for _ in range(ATTEMPTS):
        target = move_to_free(path, folders.failed, stem(record.name), suffix)
        record.published_as = chosen = target.name.removesuffix(suffix)
        try:
            sidecar.write(folders.failed / f"{chosen}{sidecar.SUFFIX}", record, new=True)
            return chosen
        except FileExistsError:
            path = target
    raise FileExistsError(f"{folders.failed}: the names chosen for {record.name} were taken")


def move_to_free(src: Path, folder: Path, name: str, suffix: str) -> Path:
    """Move `src` to `folder/NAME[-k]SUFFIX`, the first free name (`free_name`); where it
    went. A name taken between the choice and the move is never written over (the move
    fails on it), and the next free name is chosen."""
    for _ in range(ATTEMPTS):
        target = folder / f"{free_name(folder, name)}{suffix}"
        with contextlib.suppress(FileExistsError):
            move_durable(src, target)
            return target
    raise FileExistsError(f"{folder}: the names chosen for {src.name} were taken meanwhile")


# -- the end of a task's way ------------------------------------------------------------------
def finish(
    folders: Folders,
    record: TaskRecord,
    wall: float,
    logger: Any,
    others: frozenset[str] = frozenset(),
) -> ev.Event | None:
    """Publish (or finish publishing) an ended task; the event that says so, or None when
    the disk refused: then the inbox sidecar keeps the decision and a restart carries it on.
    `others`: `.part` names another live task downloads into (not this one's to drop)."""
    try:
        if record.published_as:
            final = resume(folders, record, task_file_is_ours=True, others=others)
        else:
            final = publish(folders, record, others)
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
        files = tuple(str(final.parent / o.path) for o in record.outputs)
        video = record.video
        return ev.TaskSucceeded(
            at=wall,
            name=record.name,
            task_id=str(record.task_id),
            published_as=chosen,
            video=str(final.parent / video.path) if video is not None else None,
            sidecar=str(final),
            polls=record.polls,
            path=files[0] if files else "",
            outputs=files,
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


def forget_files(folders: Folders, name: str, parts: tuple[Path, ...] = ()) -> None:
    """A removed task's sidecar and partial downloads (its video's, and `parts`): ours,
    and no longer wanted."""
    for path in {folders.sidecar(name), folders.part(name), *parts}:
        if folders.replaced(path.parent):
            continue  # not through a swapped folder: the next start-up drops them
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
