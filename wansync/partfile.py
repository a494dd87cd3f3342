"""The `.part` file a download grows in: opened without following links, checked by descriptor.

The outbox is shared with other programs (group-writable under `UMask=0002`), so a link or
a hard link planted at `.NAME.mp4.part` must never make wansync write through it, nor end
up published. The name is ours; whatever else sits there is removed (the name, never
what it points at) and a fresh file is created with `O_EXCL`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import DownloadInterrupted, TaskFailed

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
