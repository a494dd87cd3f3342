"""A `.job` whose NAME a producer's task holds is left alone until it is renamed.

docs/jobs.md ("Other rules"): a `.job` that arrives while `NAME.task` is in the inbox or
tracked (or that is still waiting to be sent when such a file comes) is never sent. Two
producers chose one name; sending the job once the task has ended would make a paid
task nobody asked to wait for, published as `NAME-k`. So the job stays in the inbox,
untouched, `job.name_taken` (an error) is logged once, and only a new name (the user
renames it) or a new file at that name makes it a job again.

Remembered two ways, so a rescan or a restart never sends it later:
- in this run, the held file's identity (device, inode, ctime): seen again, it is
  passed over without being read;
- from the files alone (a restart, or the task ended a moment before the job was
  read): a job file last changed before a task of its name ended — that task's
  `finished` in outbox/ or failed/, a task that was no job's — came while that task
  held the name (`came_while_held`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wansync.core.times import parse_iso
from wansync.files import names, sidecar
from wansync.files.folders import Folders

FileId = tuple[int, int, int]  # st_dev, st_ino, st_ctime_ns
MAX_PROBED = 64  # published names looked at per job: NAME, NAME-2, … NAME-64


def file_id(path: Path) -> FileId | None:
    """What identifies this very file (a rename onto the name, or a rewrite, changes it)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_ctime_ns)


def came_while_held(changed: float, ended: Iterable[float]) -> bool:
    """A job file last changed at `changed` was there while a task of its name was, if
    that task ended at or after `changed`."""
    return any(changed <= end for end in ended)


def ended_times(folders: Folders, name: str) -> list[float]:
    """When the tasks named `name` that were no job's ended, from their final sidecars:
    `NAME`, then `NAME-2`, `NAME-3` … in outbox/ and failed/ while one of them is there."""
    base = names.stem(name)
    ended: list[float] = []
    for k in range(1, MAX_PROBED + 1):
        stem = base if k == 1 else f"{base}-{k}"
        paths = [sidecar.path_for(f, stem) for f in (folders.outbox, folders.failed)]
        present = [p for p in paths if os.path.lexists(p)]
        if not present and k > 1:
            break
        ended += [end for p in present if (end := _ended_at(p, name)) is not None]
    return ended


def _ended_at(path: Path, name: str) -> float | None:
    """When the task of this final sidecar ended, if it is a task named `name` that was
    no job's (a job's own task ended with its `.job` beside it, not in the inbox)."""
    record = sidecar.read(path, published=True)
    if record is None or record.name != name or record.job is not None:
        return None
    return parse_iso(record.finished)


class NameHolds:
    """The jobs left alone because a task holds their name, and the one error line each."""

    def __init__(self, folders: Folders, log: Any) -> None:
        self.folders = folders
        self.log = log
        self._held: dict[str, FileId] = {}  # name -> the file that was left alone

    def still(self, name: str, path: Path) -> bool:
        """The file at `path` is the one already left alone under `name`."""
        held = self._held.get(name)
        return held is not None and held == file_id(path)

    def why(self, name: str, path: Path, beside: bool, busy: bool) -> str | None:
        """Why job `name` must be left alone now, or None when its name is free.

        `beside`: `NAME.task` is in the inbox; `busy`: a task (no job's) is tracked
        under NAME, whose file may be on its way to the outbox.
        """
        if beside:
            return f"{name}.task is in the inbox: a task holds the name {name}"
        if busy:
            return f"a task named {name} is being fetched"
        try:
            changed = os.lstat(path).st_ctime
        except OSError:
            return None  # gone: reading it says so
        if came_while_held(changed, ended_times(self.folders, name)):
            return f"it came while a task named {name} was being fetched (that task has ended)"
        return None

    def hold(self, name: str, path: Path, reason: str) -> None:
        """Leave the job alone; the error is said once per file, not at every rescan."""
        found = file_id(path)
        if found is not None and self._held.get(name) == found:
            return
        if found is not None:
            self._held[name] = found
        self.log.error(
            "job.name_taken",
            name=name,
            file=path.name,
            detail=f"{path.name} is left alone and nothing is sent: {reason}; "
            f"rename it (a new name) to send it",
        )

    def forget(self, name: str) -> None:
        """The `.job` left the inbox: a new file at that name is judged anew."""
        self._held.pop(name, None)
