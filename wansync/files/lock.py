"""The inbox lock: one wansync per inbox, held by the service's user alone.

`inbox/.wansync.lock` is created mode 0600: only its owner (the user the first daemon
ran as: the service's) and root can open it, so no one else can take a `flock` on it
and keep the service from (re)starting, whatever the inbox's mode (docs/security.md).
Whoever may only read the inbox learns whether a daemon runs from `.wansync.live`
(liveness.py), which the daemon writes once it holds the lock.

What is found at the lock's name decides what happens (`judge`, a pure function):
- nothing: create it (O_EXCL), mode 0600;
- a regular file with one name, ours (or the inbox owner's, and we are root): `flock` it;
  held: exit 3;
- a link, a FIFO, a folder or a file with other names: never a lock wansync made;
  moved aside (`.wansync.lock.not-ours.XXXX`, kept, as every file found in our folders
  is) and replaced;
- another user's file: held by that user's running wansync (its `.wansync.live` names
  this very file and a live process): exit 3 naming it. Otherwise, if we own the inbox
  folder (or are root), it is a leftover or a plant: moved aside and replaced. If we do
  not, it is the inbox owner's lock: exit 3 saying whose it is (a producer's `once`
  never takes the service's inbox).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import pwd
import secrets
import stat
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from wansync.core.errors import ConfigError, InboxLocked
from wansync.core.times import utc_iso
from wansync.files import liveness
from wansync.files.liveness import LOCK_NAME

__all__ = ["LOCK_NAME", "Found", "InboxLock", "Verdict", "judge"]
MODE = 0o600
ATTEMPTS = 3  # looks at the lock's name before giving up (it keeps changing)
OPEN_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


@dataclass(frozen=True)
class Found:
    """What is at the lock's name (`lstat`): its kind, owner, names and inode."""

    kind: str  # "file", "link", "fifo", "folder", "other"
    uid: int
    nlink: int
    inode: int

    @classmethod
    def at(cls, path: Path) -> Found | None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        return cls(_kind(st.st_mode), st.st_uid, st.st_nlink, st.st_ino)

    def what(self) -> str:
        """For messages: `a FIFO`, `a file of user nobody (uid 65534)`…"""
        if self.kind != "file":
            return {"link": "a symbolic link", "fifo": "a FIFO", "folder": "a folder"}.get(
                self.kind, "not a regular file"
            )
        if self.nlink != 1:
            return f"a file with {self.nlink} names (a hard link)"
        return f"a file of {user_name(self.uid)}"


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISREG, "file"), (stat.S_ISLNK, "link"), (stat.S_ISFIFO, "fifo")):
        if test(mode):
            return kind
    return "folder" if stat.S_ISDIR(mode) else "other"


def user_name(uid: int) -> str:
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class Verdict(Enum):
    CREATE = "create"
    USE = "use"
    REPLACE = "replace"
    FOREIGN_HELD = "held by another user's wansync"
    FOREIGN = "the inbox owner's"


def judge(found: Found | None, me: int, inbox_owner: int, holder_alive: bool) -> Verdict:
    """What to do with what is at the lock's name, for user `me`. `holder_alive`: a running
    wansync's `.wansync.live` names this very file (its owner and inode) and a live process."""
    if found is None:
        return Verdict.CREATE
    ours = found.uid == me or (me == 0 and found.uid == inbox_owner)
    if found.kind == "file" and found.nlink == 1 and ours:
        return Verdict.USE
    if found.kind != "file" or found.nlink != 1:
        return Verdict.REPLACE  # wansync never makes these: nobody's lock
    if holder_alive:
        return Verdict.FOREIGN_HELD
    return Verdict.REPLACE if me in (0, inbox_owner) else Verdict.FOREIGN


class InboxLock:
    """An exclusive `flock` on `inbox/.wansync.lock`, released by the kernel if we die."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self.path = inbox / LOCK_NAME
        self._fd: int | None = None
        self._record: liveness.Record | None = None
        self.replaced: list[str] = []  # what was moved aside, for the start-up log line

    def acquire(self) -> None:
        """Take the lock (exit 3 when another wansync holds it), then say so in
        `.wansync.live`. `ConfigError` when the inbox refuses us (names the problem)."""
        try:
            fd = self._take()
        except PermissionError as exc:
            raise ConfigError(f"inbox: cannot lock {self.path}: {exc.strerror}") from None
        self._fd = fd
        inode = os.fstat(fd).st_ino
        # The PID is for whoever may open the file; a full disk must not stop the daemon
        # from starting: the lock itself is the flock, not the file's content.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._record = liveness.describe_self(inode, utc_iso(time.time()))
        with contextlib.suppress(OSError):
            liveness.write(self.inbox, self._record)

    def _take(self) -> int:
        for _ in range(ATTEMPTS):
            found = Found.at(self.path)
            holder = liveness.running(self.inbox)
            alive = (
                holder is not None
                and found is not None
                and (holder.uid, holder.lock_inode) == (found.uid, found.inode)
            )
            verdict = judge(found, os.geteuid(), os.stat(self.inbox).st_uid, alive)
            if verdict in (Verdict.CREATE, Verdict.USE):
                fd = self._open(found)
                if fd is not None:
                    self._refuse_a_second_self(fd)
                    return fd
            elif verdict is Verdict.REPLACE:
                assert found is not None
                self._move_aside(found)
            else:
                raise InboxLocked(self._foreign_message(verdict, found, holder))
        raise InboxLocked(f"{self.path}: it kept changing while wansync tried to lock it")

    def _open(self, found: Found | None) -> int | None:
        """Open (or create) and flock the file judged usable; None if it changed meanwhile."""
        try:
            create = os.O_CREAT | os.O_EXCL if found is None else 0
            fd = os.open(self.path, OPEN_FLAGS | create, MODE)
        except (FileExistsError, FileNotFoundError):
            return None  # someone else made or removed it meanwhile: look again
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None  # swapped for a link since the look: look again
            raise
        try:
            st = os.fstat(fd)
            usable = stat.S_ISREG(st.st_mode) and st.st_nlink == 1
            if not usable or (found is not None and st.st_ino != found.inode):
                os.close(fd)
                return None
            if found is None and os.geteuid() == 0:
                # root's `once` on the service's inbox: the lock stays the inbox owner's
                with contextlib.suppress(OSError):
                    os.fchown(fd, os.stat(self.inbox).st_uid, -1)
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != MODE:
                os.fchmod(fd, MODE)  # made 0644 by wansync before 0600 was the rule
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InboxLocked(self._held_message()) from None
            if Found.at(self.path) != Found("file", os.fstat(fd).st_uid, 1, st.st_ino):
                os.close(fd)  # the name was moved or replaced between our open and flock
                return None
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return fd

    def _refuse_a_second_self(self, fd: int) -> None:
        """Our lock, but our own user's daemon still runs by its record: someone removed
        the lock file under it (anyone in the group may). Two daemons must not run."""
        other = liveness.read(self.inbox)
        if (
            other is not None
            and other.uid == os.geteuid()
            and liveness.alive(other, other.lock_inode)  # this user's /proc is ours to read
        ):
            os.close(fd)
            raise InboxLocked(
                f"{self.path}: another wansync (PID {other.pid}) is running on this inbox "
                f"(its lock file was removed meanwhile; stop it before starting another)"
            )

    def _held_message(self) -> str:
        holder = liveness.read(self.inbox)
        pid = f" (PID {holder.pid})" if holder is not None and holder.stopped is None else ""
        return f"{self.path}: another wansync{pid} is running on this inbox"

    def _foreign_message(
        self, verdict: Verdict, found: Found | None, holder: liveness.Record | None
    ) -> str:
        assert found is not None
        if verdict is Verdict.FOREIGN_HELD and holder is not None:
            return (
                f"{self.path}: another wansync (PID {holder.pid}, {user_name(holder.uid)}) "
                f"is running on this inbox"
            )
        return (
            f"{self.path} belongs to {user_name(found.uid)}, who runs the daemon of this "
            f"inbox (the service); no other user's wansync runs here. `wansync status` "
            f"says whether it runs; if not, start the service"
        )

    def _move_aside(self, found: Found) -> None:
        """A lock file that is not one: kept under another hidden name, never followed."""
        aside = self.inbox / f"{LOCK_NAME}.not-ours.{secrets.token_hex(4)}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # gone meanwhile: look again
        self.replaced.append(f"{found.what()}, moved to {aside.name}")

    def release(self) -> None:
        """Let go of the lock; `.wansync.live` says the daemon stopped (a crash skips
        this: readers see its pid is gone)."""
        if self._fd is None:
            return
        if self._record is not None and liveness.read(self.inbox) == self._record:
            stopped = dataclasses.replace(self._record, stopped=utc_iso(time.time()))
            with contextlib.suppress(OSError):
                liveness.write(self.inbox, stopped)
        os.close(self._fd)
        self._fd = None
        self._record = None
