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
- another user's file in an inbox folder that is not in its place (`Inbox.in_place`:
  it is neither root's nor the user's whose folder it is in, so whoever could write that
  parent put it there): if the parent is ours, the inbox was replaced under us by a
  folder holding a lock its owner can hold; the folder is moved aside whole
  (`INBOX.not-ours.XXXX`, kept) and a new inbox made. Else exit 2 naming the lock, the
  folders, their owners and what to do: a lock another user can hold never stops us
  as if a wansync held it;
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
from wansync.files.fsutil import rename_noreplace
from wansync.files.liveness import LOCK_NAME

__all__ = ["LOCK_NAME", "Found", "Inbox", "InboxLock", "Verdict", "judge"]
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


OVERFLOW_UID = 65534  # how a user namespace shows every uid it does not map


def _in_a_user_namespace() -> bool:
    """Runs where only some users are mapped (the unit's `PrivateUsers=yes`): there every
    other user's file looks like uid 65534's, whoever made it."""
    try:
        with open("/proc/self/uid_map") as fh:
            return fh.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def user_name(uid: int) -> str:
    """`user NAME (uid N)`, for messages; under `PrivateUsers=` uid 65534 is said to be
    any user the unit does not map (naming it "nobody" would blame no one)."""
    if uid == OVERFLOW_UID and _in_a_user_namespace():
        return (
            f"another user (uid {uid} as the unit's PrivateUsers=yes shows every user it does "
            f"not map; `ls -l` outside the unit names them)"
        )
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


@dataclass(frozen=True)
class Inbox:
    """Who owns the inbox folder and the folder it is in, and whether its path is a link:
    enough to tell who may have put it where it is."""

    owner: int
    parent_owner: int
    link: bool = False

    @classmethod
    def at(cls, inbox: Path) -> Inbox:
        return cls(os.stat(inbox).st_uid, os.stat(inbox.parent).st_uid, inbox.is_symlink())

    def in_place(self) -> bool:
        """Root's, or the user's whose folder it is in. Any other user's folder was put
        there by someone who may write that parent (a group member under `UMask=0002`),
        in place of what was there: its owner is not who runs this inbox."""
        return self.owner in (0, self.parent_owner)


class Verdict(Enum):
    CREATE = "create"
    USE = "use"
    REPLACE = "replace"
    INBOX_REPLACED = "a folder of another user put in place of the inbox"
    NOT_IN_PLACE = "another user's lock in a folder not in its place"
    FOREIGN_HELD = "held by another user's wansync"
    FOREIGN = "the inbox owner's"


def judge(found: Found | None, me: int, inbox: Inbox, holder_alive: bool) -> Verdict:
    """What to do with what is at the lock's name, for user `me`. `holder_alive`: a running
    wansync's `.wansync.live` names this very file (its owner and inode) and a live process."""
    if found is None:
        return Verdict.CREATE
    if found.kind != "file" or found.nlink != 1:
        return Verdict.REPLACE  # wansync never makes these: nobody's lock
    if found.uid == me or (me == 0 and found.uid == inbox.owner):
        return Verdict.USE
    owns_the_inbox = me in (0, inbox.owner)
    if not owns_the_inbox and not inbox.in_place():
        if me == inbox.parent_owner and not inbox.link:
            return Verdict.INBOX_REPLACED  # in our own folder: ours to put back in order
        if not holder_alive:
            return Verdict.NOT_IN_PLACE
    if holder_alive:
        return Verdict.FOREIGN_HELD
    return Verdict.REPLACE if owns_the_inbox else Verdict.FOREIGN


class InboxLock:
    """An exclusive `flock` on `inbox/.wansync.lock`, released by the kernel if we die."""

    def __init__(self, inbox: Path) -> None:
        self.inbox = inbox
        self.path = inbox / LOCK_NAME
        self._fd: int | None = None
        self._record: liveness.Record | None = None
        self.replaced: list[str] = []  # what was moved aside, for the start-up log line
        self.inbox_moved: dict[str, str] | None = None  # a replaced inbox moved aside: what

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
            inbox = Inbox.at(self.inbox)
            verdict = judge(found, os.geteuid(), inbox, alive)
            if verdict in (Verdict.CREATE, Verdict.USE):
                fd = self._open(found)
                if fd is not None:
                    self._refuse_a_second_self(fd)
                    return fd
            elif verdict is Verdict.REPLACE:
                assert found is not None
                self._move_aside(found)
            elif verdict is Verdict.INBOX_REPLACED:
                assert found is not None
                self._move_inbox_aside(found, inbox)
            elif verdict is Verdict.NOT_IN_PLACE:
                assert found is not None
                raise ConfigError(self._not_in_place_message(found, inbox))
            else:
                raise InboxLocked(self._foreign_message(verdict, found, holder, inbox))
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
        self, verdict: Verdict, found: Found | None, holder: liveness.Record | None, inbox: Inbox
    ) -> str:
        assert found is not None
        if verdict is Verdict.FOREIGN_HELD and holder is not None:
            return (
                f"{self.path}: another wansync (PID {holder.pid}, {user_name(holder.uid)}) "
                f"is running on this inbox"
            )
        if found.uid != inbox.owner:  # a third user's file in the service's inbox
            return (
                f"{self.path} is {found.what()}, in an inbox of {user_name(inbox.owner)}, and "
                f"no wansync of that user runs here: only the inbox owner's wansync (the "
                f"service) or root replaces it. Start the service (it moves that file "
                f"aside), or have {user_name(found.uid)} or root remove it"
            )
        return (
            f"{self.path} belongs to {user_name(found.uid)}, who runs the daemon of this "
            f"inbox (the service); no other user's wansync runs here. `wansync status` "
            f"says whether it runs; if not, start the service"
        )

    def _not_in_place_message(self, found: Found, inbox: Inbox) -> str:
        """Another user's lock in a folder that user put where it is not theirs to put."""
        me, owner, parent_owner = (
            user_name(u) for u in (os.geteuid(), inbox.owner, inbox.parent_owner)
        )
        return (
            f"inbox: {self.path} is {found.what()}, in {self.inbox}, a folder of {owner} "
            f"inside {self.inbox.parent}, which is {parent_owner}'s; no wansync of that user "
            f"runs there, and wansync (here {me}) never waits on a lock another user can "
            f"hold. If this is the inbox you meant, have {user_name(found.uid)} or root "
            f"remove that file, or give the folder to {me} (chown); if it was put in place "
            f"of the inbox, move it aside (as {parent_owner} or root: mv {self.inbox} "
            f"{self.inbox}.replaced) and start wansync again: it makes a new inbox"
        )

    def _move_inbox_aside(self, found: Found, inbox: Inbox) -> None:
        """The inbox is another user's folder, in ours, holding a lock that user can hold:
        someone put it in place of ours. Kept whole under another name; a new inbox made."""
        aside = self.inbox.with_name(f"{self.inbox.name}.not-ours.{secrets.token_hex(4)}")
        try:
            rename_noreplace(self.inbox, aside)
        except FileNotFoundError:
            return  # gone meanwhile: look again
        except OSError as exc:
            raise ConfigError(
                f"{self._not_in_place_message(found, inbox)} (wansync could not move it: "
                f"{exc.strerror or exc})"
            ) from None
        with contextlib.suppress(FileExistsError):  # made again meanwhile: look again
            os.mkdir(self.inbox, 0o777)
        self.inbox_moved = {
            "path": str(self.inbox),
            "owner": user_name(inbox.owner),
            "lock": found.what(),
            "moved_to": str(aside),
        }

    def _move_aside(self, found: Found) -> None:
        """A lock file that is not one: kept under another hidden name, never followed."""
        aside = self.inbox / f"{LOCK_NAME}.not-ours.{secrets.token_hex(4)}"
        try:
            rename_noreplace(self.path, aside)
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
