"""Can the inbox's daemon read a job's local file? `submit` asks before it writes the job.

A producer's picture is usually in their home (`~/pics/a.png`), which the service
cannot see: the units set `ProtectHome=yes` and `PrivateTmp=yes`, and a home folder is
often mode 0700 anyway. `submit` checks as the producer, so without this the job would
pass here and fail in the daemon later. So it asks who will read the file: the daemon
that runs (or last ran) the inbox, from its `.wansync.live`, which also says which
folders it cannot see; or, without one, the owner of the inbox's lock. The path is then
walked as the kernel would walk it for that user (`reach.first_block`). A file it cannot
reach is refused at once, with the reason and a place that works (docs/jobs.md).

Refuse, not copy: a copy needs an owner for its whole life (it must outlive the job
for `retry`, and the daemon moves only `.task`/`.job` files), so it would be left
behind once per submit.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from pathlib import Path

from wansync.cli import reach
from wansync.files import liveness
from wansync.files.lock import LOCK_NAME, Found


@dataclass(frozen=True)
class Reader:
    """Who will open a job's files: a user, what its unit hides, the temp folders it sees."""

    user: reach.User
    hidden: reach.Hidden = reach.NOTHING_HIDDEN
    temps: dict[str, str] = field(default_factory=dict)  # "/tmp": "dev:ino" as it sees it


def reader_of(inbox: Path) -> Reader | None:
    """The daemon's user for this inbox, when it is not this process's; None if this
    process (or root) is the one that would read the file, or no one is known yet."""
    found = Found.at(inbox / LOCK_NAME)
    record = liveness.read(inbox)
    if record is not None and found is not None and record.uid in (found.uid, 0):
        if record.uid == os.geteuid() and not record.cannot_see and not record.temp_folders:
            return None
        user = reach.User(record.user, record.uid, frozenset(record.gids))
        hidden = reach.Hidden(
            tuple(Path(p) for p in record.cannot_see), "the unit's ProtectHome=yes"
        )
        return Reader(user, hidden, record.temp_folders)
    if found is None or found.kind != "file" or found.uid in (os.geteuid(), 0):
        return None
    try:
        return Reader(reach.User.named(pwd.getpwuid(found.uid).pw_name))
    except KeyError:
        return Reader(reach.User(str(found.uid), found.uid, frozenset()))


def _folder_id(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}"


def blocked(path: Path, reader: Reader) -> str | None:
    """Why `reader` cannot read `path` (absolute, resolved), or None if it can."""
    for folder, seen in reader.temps.items():
        if (path == Path(folder) or Path(folder) in path.parents) and _folder_id(folder) != seen:
            return f"{folder}: the unit's PrivateTmp=yes gives the service a {folder} of its own"
    stop = reach.first_block(reader.user, path, reach.READ, reader.hidden)
    return None if stop is None else f"{stop.path}: {stop.why}"
