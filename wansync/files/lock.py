"""The inbox lock: one wansync per inbox, and the kernel releases it if we die."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path

from wansync.core.errors import ConfigError, InboxLocked

LOCK_NAME = ".wansync.lock"


class InboxLock:
    """An exclusive `flock` on `inbox/.wansync.lock`, released by the kernel if we die."""

    def __init__(self, inbox: Path) -> None:
        self.path = inbox / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        # Never through a planted link (truncating its target), never a FIFO or a folder.
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
            raise ConfigError(f"{self.path}: is a symbolic link; remove it") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError(f"{self.path}: is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InboxLocked(f"{self.path}: another wansync is running on this inbox") from None
        # The PID is for people (the "locked" message names it); a full disk must not stop
        # the daemon from starting: the lock itself is the flock, not the file's content.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
