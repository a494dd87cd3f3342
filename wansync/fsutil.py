"""Durable file primitives: every JSON write is temp + fsync + rename, every move a rename."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import NotARegularFile as NotARegularFile  # re-exported: taskfile, jobfile

TEMP_SUFFIX = ".wansync-tmp"
SCRATCH = ".wansync"  # hidden folder beside the files we rewrite often (not watched)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself must reach the disk)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def producer_temp_path(target: Path) -> Path:
    """`.NAME.task.PID.tmp`: the producers' convention (SPEC §2), never swept by a daemon."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def scratch_path(target: Path) -> Path:
    """Where `target`'s next version is written before the rename.

    A hidden subfolder, not a dotfile beside it: the inbox is watched, and a temp file
    there would cost the watcher three events (create, close, move) on every poll;
    a rename from the subfolder costs one.
    """
    folder = target.parent / SCRATCH
    if not folder.is_dir():
        folder.mkdir(exist_ok=True)
    return folder / f"{target.name}{TEMP_SUFFIX}"


def write_json_atomic(target: Path, data: Any, durable: bool = True) -> None:
    """Replace `target` with `data` as JSON in one rename; readers see old or new, never half."""
    tmp = scratch_path(target)
    payload = json.dumps(data, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(target.parent)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Create `target` holding `data` in one rename, as a producer does (`wansync add`)."""
    tmp = producer_temp_path(target)
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` on one filesystem, refusing to overwrite anything at `dst`.

    Callers pick `dst` names that are free; the check guards against a writer that
    appeared meanwhile (a plain rename would silently clobber its file).
    """
    if os.path.lexists(dst):
        raise FileExistsError(f"{dst.name} already exists")
    os.rename(src, dst)


def move_durable(src: Path, dst: Path) -> None:
    """`move`, then fsync both folders so the move survives a power cut."""
    move(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


def read_small(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of a regular file, without following a link or blocking.

    A FIFO would block the daemon forever and a link could point outside the inbox,
    so both are refused; the caller turns the refusal into its own error.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile("is a symbolic link; wansync does not follow links") from None
        raise
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile("is not a regular file")
        return fh.read(limit + 1)


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove wansync's own half-written temp files left by a crash; returns what it removed."""
    removed = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder / SCRATCH):  # only our own folder: producers write
            if entry.name.endswith(TEMP_SUFFIX):  # their temp files beside the tasks
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
