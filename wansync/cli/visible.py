"""Can the inbox's daemon read a job's local file? `submit` asks before it writes the job.

A producer's picture is usually in their home (`~/pics/a.png`), which the service
cannot see: the units set `ProtectHome=yes` and `PrivateTmp=yes`, and a home folder is
often mode 0700 anyway. `submit` checks as the producer, so without this the job would
pass here and fail in the daemon later. So it asks who will read the file: the daemon
that runs (or last ran) the inbox, from its `.wansync.live`, which also says which
folders it cannot see; or, without one, the owner of the inbox's lock. It then walks
the path as the kernel would for that user. A file it cannot reach is refused at once,
with the reason and a place that works (docs/jobs.md: where pictures must live).

Refuse, not copy: a copy needs an owner for its whole life (it must outlive the job
for `retry`, and the daemon moves only `.task`/`.job` files), so it would be left
behind once per submit. POSIX ACLs are not evaluated: a folder or file that carries one
is taken as passable (no false refusal; the daemon still has the last word).
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

from wansync.files import liveness
from wansync.files.lock import LOCK_NAME, Found

ACL_XATTR = "system.posix_acl_access"
READ, SEARCH = 4, 1


@dataclass(frozen=True)
class Reader:
    """Who will open a job's files: a user, its groups, and what it cannot see."""

    user: str
    uid: int
    gids: frozenset[int]
    hidden: tuple[str, ...] = ()  # folders its sandbox hides (`ProtectHome=`)
    temps: dict[str, str] = field(default_factory=dict)  # "/tmp": "dev:ino" it sees


def reader_of(inbox: Path) -> Reader | None:
    """The daemon's user for this inbox, when it is not this process's; None if this
    process (or root) is the one that would read the file, or no one is known yet."""
    found = Found.at(inbox / LOCK_NAME)
    record = liveness.read(inbox)
    if record is not None and found is not None and record.uid in (found.uid, 0):
        if record.uid == os.geteuid() and not record.cannot_see and not record.temp_folders:
            return None
        gids = frozenset(record.gids)
        return Reader(record.user, record.uid, gids, record.cannot_see, record.temp_folders)
    if found is None or found.kind != "file" or found.uid in (os.geteuid(), 0):
        return None
    name = _user(found.uid)
    return Reader(name, found.uid, _groups(name, found.uid))


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _groups(name: str, uid: int) -> frozenset[int]:
    try:
        gid = pwd.getpwuid(uid).pw_gid
        return frozenset(os.getgrouplist(name, gid))
    except (KeyError, OSError):
        return frozenset()


def _under(path: Path, folder: str) -> bool:
    return path == Path(folder) or Path(folder) in path.parents


def _folder_id(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def allows(st: os.stat_result, who: Reader, bit: int) -> bool:
    """The mode bits let `who` do `bit` (READ or SEARCH), as the kernel decides."""
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in who.gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _has_acl(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return ACL_XATTR in os.listxattr(path, follow_symlinks=False)
    return False


def blocked(path: Path, who: Reader) -> str | None:
    """Why `who` cannot read `path` (an absolute, resolved path), or None if it can."""
    for folder in who.hidden:
        if _under(path, folder):
            return f"{folder} is hidden from it (the unit's ProtectHome=yes)"
    for folder, seen in who.temps.items():
        if _under(path, folder) and _folder_id(folder) != seen:
            return f"it has its own {folder} (the unit's PrivateTmp=yes)"
    for step in [*reversed(path.parents), path]:
        try:
            st = os.stat(step)
        except OSError:
            return None  # the job check names a missing file; not ours to judge
        bit = SEARCH if stat.S_ISDIR(st.st_mode) else READ
        if not allows(st, who, bit) and not _has_acl(step):
            verb = "enter" if bit == SEARCH else "read"
            return (
                f"it may not {verb} {step} (mode {stat.S_IMODE(st.st_mode):04o}, "
                f"owner {_user(st.st_uid)}, group {_group(st.st_gid)})"
            )
    return None


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
