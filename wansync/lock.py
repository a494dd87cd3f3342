"""The inbox lock: one wansync per inbox, and the kernel releases it if we die."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import InboxLocked

LOCK_NAME = ".wansync.lock"


class InboxLock:
    """An exclusive `flock` on `inbox/.wansync.lock`, released by the kernel if we die."""

    def __init__(self, inbox: Path) -> None:
        self.path = inbox / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InboxLocked(f"{self.path}: another wansync is running on this inbox") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
