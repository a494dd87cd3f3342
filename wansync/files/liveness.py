"""`inbox/.wansync.live`: who runs this inbox's daemon, for anyone who may read the inbox.

The lock file is the service user's alone (mode 0600, lock.py): no one else can open
it, so no one else can hold or block it. Producers in the group still need to know
whether a daemon runs (`submit --wait` follows it instead of running the job itself;
`status` says so), so the daemon that holds the lock writes this record beside it,
atomically: its pid, its process's start time (pid reuse), the boot it runs in, the
lock file's inode, and what it cannot see (the unit's `ProtectHome=`, `PrivateTmp=`),
so that `submit` can tell before a job is written whether the daemon can read its
picture. A clean stop rewrites it with `stopped`; after a crash it stays, and `running`
sees through it (the pid is gone, or is another process now). `one_shot` says the holder
is a `once` or a `submit --wait` run, not the daemon: it takes only the files it found
when it started and then exits, so a `submit --wait` that follows it must be ready to run
its own job once it has gone.

A reader trusts none of it blindly: the file may be planted by anyone who can write the
inbox. It only ever decides whom a command *follows*, never whether a daemon may start
(that is the lock's job).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wansync.files import bounded
from wansync.files.fsutil import NotARegularFile, read_small, write_json_atomic

LIVE_NAME = ".wansync.live"
LOCK_NAME = ".wansync.lock"
MAX_BYTES = 8192
SCHEMA = 1
HOME_FOLDERS = ("/home", "/root", "/run/user")  # what `ProtectHome=yes` hides
TEMP_FOLDERS = ("/tmp", "/var/tmp")  # noqa: S108  # what `PrivateTmp=yes` replaces


@dataclass(frozen=True)
class Record:
    """What the daemon of an inbox says about itself."""

    pid: int
    uid: int
    user: str
    gids: tuple[int, ...]  # its groups: what it may read
    started: str  # ISO 8601 UTC, for people
    proc_start: int | None  # field 22 of /proc/PID/stat: the same pid, the same process
    boot_id: str | None  # None where /proc/sys is hidden (`ProcSubset=pid`)
    lock_inode: int
    cannot_see: tuple[str, ...]  # folders hidden from it (`ProtectHome=`)
    temp_folders: dict[str, str]  # "/tmp": "dev:ino" as it sees them (`PrivateTmp=`)
    stopped: str | None = None
    one_shot: bool = False  # `once` or `submit --wait`: ends when what it found is done


def _read_text(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("ascii", "replace")
    except OSError:
        return None


def boot_id() -> str | None:
    text = _read_text("/proc/sys/kernel/random/boot_id", 64)
    return text.strip() if text else None


def proc_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), or None if it cannot be read."""
    text = _read_text(f"/proc/{pid}/stat")
    if not text or ")" not in text:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the name in (…) may hold spaces
    try:
        return int(fields[19])  # field 22; fields[0] is field 3
    except (IndexError, ValueError):
        return None


def _folder_id(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def describe_self(lock_inode: int, started: str, one_shot: bool = False) -> Record:
    """This process, as the daemon of an inbox whose lock file has inode `lock_inode`
    (`one_shot`: a `once` or `submit --wait` run, which ends when what it found is done)."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    hidden = tuple(p for p in HOME_FOLDERS if os.path.isdir(p) and not os.access(p, os.X_OK))
    temps = {p: i for p in TEMP_FOLDERS if (i := _folder_id(p)) is not None}
    return Record(
        pid=os.getpid(),
        uid=uid,
        user=user,
        gids=tuple(sorted({os.getegid(), *os.getgroups()})),
        started=started,
        proc_start=proc_start(os.getpid()),
        boot_id=boot_id(),
        lock_inode=lock_inode,
        cannot_see=hidden,
        temp_folders=temps,
        one_shot=one_shot,
    )


def write(inbox: Path, record: Record) -> None:
    """Replace the record in one rename (readers see the old one or the new one). Not
    fsynced: after a crash readers judge it by its PID anyway, and a start waits less."""
    data = {"schema": SCHEMA, **dataclasses.asdict(record)}
    write_json_atomic(inbox / LIVE_NAME, data, durable=False)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _text(v: Any) -> bool:
    return isinstance(v, str)


def _maybe(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


FIELDS: dict[str, Callable[[Any], bool]] = {
    "pid": _whole,
    "uid": _whole,
    "user": _text,
    "gids": _list_of(_whole),
    "started": _text,
    "proc_start": _maybe(_whole),
    "boot_id": _maybe(_text),
    "lock_inode": _whole,
    "cannot_see": _list_of(_text),
    "temp_folders": lambda v: isinstance(v, dict) and all(_text(x) for x in v.values()),
    "stopped": _maybe(_text),
}
OPTIONAL: dict[str, Callable[[Any], bool]] = {  # absent from the records of older wansyncs
    "one_shot": lambda v: isinstance(v, bool),
}


def _parse(data: Any) -> Record | None:
    """The record, if every field has the type it must (else None: not ours, or edited)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        return None
    if not all(key in data and ok(data[key]) for key, ok in FIELDS.items()):
        return None
    fields = {key: data[key] for key in FIELDS}
    for key, ok in OPTIONAL.items():
        if key in data:
            if not ok(data[key]):
                return None
            fields[key] = data[key]
    fields.update(gids=tuple(fields["gids"]), cannot_see=tuple(fields["cannot_see"]))
    return Record(**fields)


def read(inbox: Path) -> Record | None:
    """The record as written, or None (missing, unreadable, planted junk, over 8 KiB)."""
    try:
        raw = read_small(inbox / LIVE_NAME, MAX_BYTES)
        return _parse(bounded.json_loads(raw.decode("utf-8"), 4))
    except (OSError, NotARegularFile, UnicodeDecodeError, bounded.Unparsable):
        return None


def pid_exists(pid: int) -> bool:
    """`kill(pid, 0)`: a process of another user answers EPERM, and it exists."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def alive(record: Record, lock_inode: int | None) -> bool:
    """The record's daemon still runs: not stopped, the lock file it names is still the
    one at the path, and its pid is the same process in the same boot (as far as this
    process can see: `ProtectProc=` or `hidepid=` may hide another user's /proc)."""
    if record.stopped is not None or lock_inode != record.lock_inode:
        return False
    if record.pid == os.getpid() or not pid_exists(record.pid):
        return False
    if record.boot_id and (mine := boot_id()) and mine != record.boot_id:
        return False
    seen = proc_start(record.pid)
    return record.proc_start is None or seen is None or seen == record.proc_start


def running(inbox: Path) -> Record | None:
    """The daemon that runs this inbox now, as far as its record and this process can
    tell; None when none does (or the record is gone, stale or not believable)."""
    record = read(inbox)
    if record is None:
        return None
    lock_inode = None
    with contextlib.suppress(OSError):
        lock_inode = os.lstat(inbox / LOCK_NAME).st_ino
    return record if alive(record, lock_inode) else None
