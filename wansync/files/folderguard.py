"""The three folders stay the folders the daemon started with, or it stops using them.

The folders' parent is group-writable under `UMask=0002`, so anyone in the group can
`mv inbox inbox.old; ln -s /home/them/stuff inbox` while wansync runs. Every later
path through `inbox/…` would then read, move and create files in their folder. So the
identity (st_dev, st_ino) of each folder is recorded once at start-up (a path that is
a link *then* is the operator's choice: its target is recorded), and before a folder is
used it must still be that folder: not a link it was not, not another directory. A
replaced folder is refused (one `folder.replaced` line), its work stays pending, and
everything goes on by itself once the real folder is back. A folder that is simply
gone is not "replaced": the OS errors of using it are what they always were, and the
inbox is recreated by wansync itself (`record` its new identity).

One guard per process (`GUARD`): the daemon records its folders at start-up, and the
few places every write and move goes through (fsutil's atomic writes and moves, the
`.part` opener) ask it, so no caller can forget. A folder never recorded (a command
line tool's) is never refused.

What is left: the check and the use are two steps; a swap between them (microseconds)
is not seen. Closing that needs every file operation relative to an open folder
descriptor.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

from wansync import log


class FolderReplaced(OSError):
    """A folder is no longer the one wansync started with: use it later, not now.

    An `OSError`, so every caller that already leaves work pending on a full disk or a
    vanished folder does the same here.
    """


class FolderGuard:
    """Identities of the folders, recorded once; `check` before using one."""

    def __init__(self) -> None:
        self._ids: dict[Path, tuple[int, int, bool]] = {}  # path -> (dev, ino, was a link)
        self._reported: set[Path] = set()
        self._lock = threading.Lock()  # hooks and download workers check too
        self.log = log.get("wansync.daemon")

    def record(self, folder: Path) -> None:
        """Remember what `folder` is now (start-up, or a folder wansync just made)."""
        link = stat.S_ISLNK(os.lstat(folder).st_mode)
        st = os.stat(folder)
        with self._lock:
            self._ids[folder] = (st.st_dev, st.st_ino, link)
            self._reported.discard(folder)

    def problem(self, folder: Path) -> str | None:
        """Why `folder` is not the one recorded (a link, another folder), else None.

        None too when it is gone or not a folder at all: nothing can be read through
        those, and the caller's own OS error says what happened.
        """
        with self._lock:
            known = self._ids.get(folder)
        if known is None:
            return None
        dev, ino, was_link = known
        try:
            st = os.lstat(folder)
            if stat.S_ISLNK(st.st_mode):
                if not was_link:
                    return "is now a symbolic link"
                st = os.stat(folder)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        if (st.st_dev, st.st_ino) != (dev, ino):
            return "is another folder than the one wansync started with"
        return None

    def replaced(self, folder: Path) -> bool:
        """True (and one `folder.replaced` line per replacement) if `folder` is not ours."""
        why = self.problem(folder)
        with self._lock:
            first = why is not None and folder not in self._reported
            back = why is None and folder in self._reported
            if first:
                self._reported.add(folder)
            elif back:
                self._reported.discard(folder)
        if first:
            self.log.error(
                "folder.replaced",
                path=str(folder),
                error=why,
                detail="not reading, moving or creating anything there; work stays pending "
                "until the original folder is back",
            )
        elif back:
            self.log.warning("folder.restored", path=str(folder), detail="in use again")
        return why is not None

    def check(self, *folders: Path) -> None:
        """Raise `FolderReplaced` if any of `folders` is not the one recorded."""
        for folder in folders:
            if self.replaced(folder):
                raise FolderReplaced(errno.EXDEV, f"{folder} was replaced; not used")


GUARD = FolderGuard()


def check(*folders: Path) -> None:
    """`GUARD.check`: raise `FolderReplaced` if a recorded folder was replaced."""
    GUARD.check(*folders)


def replaced(folder: Path) -> bool:
    return GUARD.replaced(folder)
