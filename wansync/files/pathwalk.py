"""Open a user-given path one folder at a time, never through a link: a job's local file.

`O_NOFOLLOW` guards only a path's last component: `inbox/d/private.png` with `d` a
link to another folder, or `../../elsewhere/private.png`, would upload a file from
outside what the job's writer may reach. So a relative path is taken from the inbox and
may not hold `..`; every folder on the way is opened with `O_PATH | O_NOFOLLOW |
O_DIRECTORY` from the one before (`openat`), and the file itself with `O_NOFOLLOW |
O_NONBLOCK`, then decided on by `fstat`: a regular file with one link (a hard link
makes another user's file look like ours).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from wansync.core.errors import NotARegularFile
from wansync.files.fsutil import READ_FLAGS

DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
ROOT = Path("/")


class BadPath(ValueError):
    """A path wansync will not open (`..`, nothing in it); the message says why."""


def split(raw: str, base: Path) -> tuple[Path, tuple[str, ...]]:
    """`(root, parts)`: where the walk starts (`/`, or `base` for a relative path) and the
    names it takes from there. `~` is the user's home; `..` is refused, `.` skipped."""
    text = os.path.expanduser(raw)
    root = ROOT if text.startswith("/") else base
    parts = tuple(p for p in text.split("/") if p not in ("", "."))
    if ".." in parts:
        raise BadPath("'..' is not allowed in a path")
    if not parts:
        raise BadPath("names no file")
    return root, parts


def _refusal(name: str, dir_fd: int) -> NotARegularFile:
    """Why folder `name` (in `dir_fd`) could not be opened: a link, or not a folder."""
    try:
        mode = os.lstat(name, dir_fd=dir_fd).st_mode
    except OSError:
        mode = 0
    if stat.S_ISLNK(mode):
        return NotARegularFile(
            f"goes through {name!r}, a symbolic link; wansync does not follow links"
        )
    return NotARegularFile(f"goes through {name!r}, which is not a folder")


def open_beneath(root: Path, parts: tuple[str, ...]) -> tuple[int, os.stat_result]:
    """Open `root/parts…` for reading, never through a link; a regular file, one link.

    The caller closes the descriptor. `NotARegularFile` says what was refused; any
    other `OSError` (missing, no permission) is raised as it is.
    """
    dir_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the inbox (config)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, DIR_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refusal(part, dir_fd) from None
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        try:
            fd = os.open(parts[-1], READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise NotARegularFile("is a symbolic link; wansync does not follow links") from None
            raise
    finally:
        os.close(dir_fd)
    try:
        return fd, checked(os.fstat(fd))
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise


def checked(st: os.stat_result) -> os.stat_result:
    """`st` if it is a regular file with one link, else `NotARegularFile`."""
    if not stat.S_ISREG(st.st_mode):
        raise NotARegularFile("is not a regular file")
    if st.st_nlink > 1:
        raise NotARegularFile("is a hard link; copy the file instead")
    return st
