"""The `.part` file a download grows in: opened without following links, checked by descriptor.

The outbox is shared with other programs (group-writable under `UMask=0002`), so a link or
a hard link planted at `.NAME.mp4.part` must never make wansync write through it, nor end
up published. The name is ours; whatever else sits there is removed (the name, never
what it points at) and a fresh file is created with `O_EXCL`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path

from wansync.core.errors import DownloadInterrupted, TaskFailed
from wansync.files import folderguard

_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _ours(fd: int) -> bool:
    """A regular file with no other name: what we created ourselves."""
    st = os.fstat(fd)
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1


def open_part(part: Path) -> int:
    """A read-write descriptor on `part`, which is then a regular file only we name.

    An existing regular `.part` is kept (its bytes may be resumed). A symlink, FIFO,
    socket, device node or hard link there is unlinked and replaced by a new empty file;
    a folder there is `DownloadRejected` (it is not ours to remove).
    """
    if folderguard.replaced(part.parent):  # the outbox swapped for a link: not there
        raise DownloadInterrupted(f"{part.parent} was replaced; not downloading into it")
    for _ in range(3):  # a racing planter gets three chances to lose
        try:
            fd = os.open(part, _FLAGS)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise TaskFailed(
                    "DownloadRejected", f"{part.name} in the outbox is a folder, not a download"
                ) from None
            if exc.errno != errno.ELOOP:
                raise DownloadInterrupted(f"cannot open {part.name}: {exc.strerror}") from None
            _unlink(part)  # a symlink: remove the link itself
        else:
            if _ours(fd):
                return fd
            os.close(fd)
            _unlink(part)
        try:
            fd = os.open(part, _FLAGS | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise DownloadInterrupted(f"cannot create {part.name}: {exc.strerror}") from None
        if _ours(fd):
            return fd
        os.close(fd)
    raise DownloadInterrupted(f"{part.name} keeps being replaced by something else")


def _unlink(part: Path) -> None:
    try:
        os.unlink(part)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise DownloadInterrupted(
            f"cannot remove what sits at {part.name}: {exc.strerror}"
        ) from None


def write_all(fd: int, data: bytes | memoryview) -> None:
    """`os.write` until every byte is written (a short write is not an error)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's `sync_file_range` through ctypes (the stdlib has none); None elsewhere."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _sync_file_range()
_WAIT_BEFORE, _WRITE, _WAIT_AFTER = 1, 2, 4
WRITEBACK_STEP = 8 << 20


class Writeback:
    """Sends written bytes to disk while the download goes on, and drops them from the page
    cache once they are there.

    Why: the one fsync at the end then has ~16 MiB left to wait for instead of the whole
    video (0.6 s per GiB here), and the kernel recycles the same few pages instead of
    filling memory with fresh ones, which halved the CPU a 1 GiB download costs. Errors
    are left to the final fsync, which reports them. A no-op where Linux's call is missing.
    """

    def __init__(self, fd: int, start: int) -> None:
        self.fd = fd
        self.kicked = start  # bytes before this have been handed to the disk
        self.in_flight: deque[tuple[int, int]] = deque()

    def advance(self, written: int) -> None:
        """Everything up to `written` is in the file: push the new part, settle the old."""
        if _SYNC_FILE_RANGE is None or written - self.kicked < WRITEBACK_STEP:
            return
        _SYNC_FILE_RANGE(self.fd, self.kicked, written - self.kicked, _WRITE)
        self.in_flight.append((self.kicked, written))
        self.kicked = written
        while len(self.in_flight) > 1:
            start, end = self.in_flight.popleft()
            _SYNC_FILE_RANGE(self.fd, start, end - start, _WAIT_BEFORE | _WRITE | _WAIT_AFTER)
            os.posix_fadvise(self.fd, start, end - start, os.POSIX_FADV_DONTNEED)
