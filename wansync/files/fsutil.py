"""Durable file primitives: every JSON write is temp + fsync + rename, every move a rename."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wansync.core.errors import NotARegularFile as NotARegularFile  # re-exported: taskfile, jobfile
from wansync.files import folderguard, jsontext
from wansync.files.names import TEMP_SUFFIX, producer_temp, scratch_temp

SCRATCH = ".wansync"  # hidden folder beside the files we rewrite often (not watched)
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
AT_FDCWD = -100  # <fcntl.h>: a path relative to the current folder
RENAME_NOREPLACE = 1  # <linux/fs.h>: renameat2 fails with EEXIST instead of replacing
UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP)  # "not here": fall back
NO_LINK = (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS)  # no hard link here


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry itself must reach the disk)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def producer_temp_path(target: Path) -> Path:
    """`.NAME.task.PID.tmp`: the producers' convention (docs/folders.md), never swept."""
    return target.with_name(producer_temp(target.name, os.getpid()))


def _scratch_dir(folder: Path) -> int:
    """An open descriptor of `folder/.wansync`, made if missing, never through a link.

    Under `UMask=0002` the folders are group-writable: a link planted at `.wansync`
    would send every sidecar's temp file elsewhere. What is there and is not a real
    folder is moved aside (kept, as every file found in our folders is) and replaced.
    """
    path = folder / SCRATCH
    for _ in range(3):
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):
                os.mkdir(path, 0o777)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            aside = folder / f"{SCRATCH}.not-ours.{secrets.token_hex(4)}"
            with contextlib.suppress(FileNotFoundError):
                rename_noreplace(path, aside)
    raise FileExistsError(errno.EEXIST, f"cannot make the scratch folder {path}")


def _write_new(dir_fd: int | None, name: str | Path, payload: bytes, durable: bool) -> None:
    """Create `name` (never an existing file, never through a link) holding `payload`.

    A write that fails (ENOSPC) removes what it created: a full disk must not leave one
    empty temp file per retry behind (they would fill the folder's listing, and a job's
    `.task` temp sits in the inbox, where no sweep looks).
    """
    fd = os.open(name, CREATE_FLAGS, 0o666, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise


def write_json_atomic(target: Path, data: Any, durable: bool = True, new: bool = False) -> None:
    """Replace `target` with `data` as JSON in one rename; readers see old or new, never half.
    `new`: create it at a name chosen as free, never replacing what appeared there since
    (`FileExistsError`).

    Strict JSON (`allow_nan=False`): what other programs read must parse anywhere.
    """
    payload = jsontext.indented(data).encode() + b"\n"
    _via_scratch(target, payload, durable, replace=not new)


def write_new_file(target: Path, data: bytes) -> None:
    """Create `target` holding `data` (the `.task` of a job's task); `FileExistsError` when
    anything is there already, which is left as it is.

    Through the scratch folder, like a sidecar: a crash mid-write leaves its temp file
    where the start-up sweep removes it, never beside the producers' own temp files.
    """
    _via_scratch(target, data, durable=True, replace=False)


def _via_scratch(target: Path, payload: bytes, durable: bool, replace: bool) -> None:
    """Write `payload` to a temp file in `target`'s scratch folder, then rename it onto
    `target` (`replace`), or to `target` only if nothing is there.

    The temp file is created with O_EXCL | O_NOFOLLOW under a random name, in a folder
    opened without following links, so nothing planted there is written through.
    """
    folderguard.check(target.parent)
    dir_fd = _scratch_dir(target.parent)
    try:
        tmp = scratch_temp(target.name, secrets.token_hex(4))
        _write_new(dir_fd, tmp, payload, durable)
        try:
            if replace:
                os.replace(tmp, target, src_dir_fd=dir_fd)
            else:
                rename_noreplace(tmp, target, src_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    finally:
        os.close(dir_fd)
    if durable:
        fsync_dir(target.parent)


def write_bytes_atomic(target: Path, data: bytes) -> None:
    """Create `target` holding `data` in one rename, as a producer does (`wansync add`);
    `FileExistsError` when anything is there already (even one that appeared a moment
    ago, from a second `wansync add`), which is left as it is.

    The temp name is guessable (docs/folders.md), so it is created with O_EXCL |
    O_NOFOLLOW: a link planted there makes this write fail, never go through it.
    """
    folderguard.check(target.parent)
    tmp = producer_temp_path(target)
    try:
        _write_new(None, tmp, data, durable=True)
    except FileExistsError:  # not ours (a crash of a process with our pid, or planted)
        tmp = tmp.with_name(producer_temp(f"{target.name}.{secrets.token_hex(4)}", os.getpid()))
        _write_new(None, tmp, data, durable=True)
    try:
        rename_noreplace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)


@functools.cache
def _libc_renameat2() -> Callable[..., int] | None:
    """glibc's `renameat2` (2.28 and later), or None where the C library has none."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    function.restype = ctypes.c_int
    return function


def renameat2(
    src_dir_fd: int, src: str | Path, dst_dir_fd: int, dst: str | Path, flags: int
) -> None:
    """The `renameat2` system call; `OSError(ENOSYS)` where the C library lacks it."""
    function = _libc_renameat2()
    if function is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    if function(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(dst))


def rename_noreplace(src: str | Path, dst: Path, src_dir_fd: int | None = None) -> None:
    """Rename `src` to `dst` unless something (a file, a link, even a dangling one) is at
    `dst`: then `FileExistsError`, and both stay as they are. Atomic: a file another
    process puts at `dst` at the same moment is never replaced.

    `renameat2(RENAME_NOREPLACE)`; on a filesystem without it (NFS, some FUSE: EINVAL),
    `link` then `unlink` (a link never replaces either; a crash between the two leaves
    `src` as a second name of the file); where hard links are refused too, a check then
    a rename, which only a writer in the instant between the two can beat.
    """
    at = AT_FDCWD if src_dir_fd is None else src_dir_fd
    try:
        renameat2(at, src, AT_FDCWD, dst, RENAME_NOREPLACE)
        return
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise _taken(dst) from None
        if exc.errno not in UNSUPPORTED:
            raise
    try:
        os.link(src, dst, src_dir_fd=src_dir_fd, follow_symlinks=False)
    except FileExistsError:
        raise _taken(dst) from None
    except OSError as exc:
        if exc.errno not in NO_LINK:
            raise
    else:
        os.unlink(src, dir_fd=src_dir_fd)
        return
    if os.path.lexists(dst):
        raise _taken(dst)
    os.rename(src, dst, src_dir_fd=src_dir_fd)


def _taken(dst: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, f"{dst.name} already exists", str(dst))


def move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` on one filesystem, never onto anything at `dst`.

    Callers pick `dst` names that are free; `rename_noreplace` keeps a file that
    appeared there meanwhile (`FileExistsError`: the caller takes the next free name).
    """
    folderguard.check(src.parent, dst.parent)
    rename_noreplace(src, dst)


def move_durable(src: Path, dst: Path) -> None:
    """`move`, then fsync both folders so the move survives a power cut."""
    move(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


class FileTooLarge(NotARegularFile):
    """A file over the size its reader accepts, refused before it is read.

    A kind of `NotARegularFile` ("not a file we will read"), so every reader that
    already refuses links and FIFOs refuses this too.
    """


def open_regular(path: Path, single_link: bool = False) -> tuple[int, os.stat_result]:
    """Open `path` for reading without following a link or blocking; it must be a file
    (with `single_link`, one no other name links to: a hard link to a key file is not
    a producer's task).

    The decision is made on the descriptor (`fstat`), not on the path, so a file swapped
    for a link or a FIFO after any earlier check is still refused. The caller closes it.
    """
    try:
        fd = os.open(path, READ_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotARegularFile("is a symbolic link; wansync does not follow links") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotARegularFile("is not a regular file")
    if single_link and st.st_nlink > 1:
        os.close(fd)
        raise NotARegularFile("is a hard link; copy the file instead")
    return fd, st


def read_small(path: Path, limit: int, single_link: bool = False) -> bytes:
    """The content of a regular file of at most `limit` bytes, opened by `open_regular`.

    A FIFO would block the daemon forever and a link could point outside the inbox,
    so both are refused, and so is a file over `limit` (by `fstat`, before reading; a
    file still growing is cut at `limit + 1` bytes, so the caller sees it is too large).
    The caller turns each refusal into its own error.
    """
    fd, st = open_regular(path, single_link)
    with os.fdopen(fd, "rb") as fh:
        if st.st_size > limit:
            raise FileTooLarge(f"is larger than {_size(limit)}")
        return fh.read(limit + 1)


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB"


def sweep_temp_files(folder: Path) -> list[Path]:
    """Remove wansync's own half-written temp files left by a crash; returns what it removed.

    Only in our own scratch folder (producers write their temp files beside the tasks),
    and only if it is a real folder: through a planted link this would delete elsewhere.
    """
    removed: list[Path] = []
    try:
        fd = os.open(folder / SCRATCH, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # none yet, or not ours
        return removed
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                if entry.name.endswith(TEMP_SUFFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
                        removed.append(folder / SCRATCH / entry.name)
    finally:
        os.close(fd)
    return removed
