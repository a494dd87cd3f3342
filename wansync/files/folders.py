"""The three folders and the path of every file of a task NAME in them.

Everything a task's files are called is derived here from NAME (through `names.stem`,
so no derived name passes 255 bytes), for every layer that reads or writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wansync.core.record import TaskRecord
from wansync.files import folderguard, names, sidecar
from wansync.files.names import JOB_SUFFIX, TASK_SUFFIX, stem


@dataclass(frozen=True)
class Folders:
    """The inbox, the outbox and failed/ (on one filesystem: every move is a rename)."""

    inbox: Path
    outbox: Path
    failed: Path

    def check(self, *folders: Path) -> None:
        """`FolderReplaced` (an OSError: the work stays pending) if one was replaced."""
        folderguard.check(*folders)

    def replaced(self, folder: Path) -> bool:
        """A folder swapped for a link or another folder while the daemon runs."""
        return folderguard.replaced(folder)

    def part(self, name: str, index: int = 0, count: int = 1, extension: str = "mp4") -> Path:
        """Where file `index` of a task's `count` downloads grows (`.NAME[.k].EXT.part`):
        hidden, in the outbox, so the final rename is atomic."""
        return self.outbox / names.part_name(name, index, count, extension)

    def task(self, name: str) -> Path:
        return self.inbox / f"{name}{TASK_SUFFIX}"

    def job(self, name: str) -> Path:
        return self.inbox / f"{name}{JOB_SUFFIX}"

    def sidecar(self, name: str) -> Path:
        return sidecar.path_for(self.inbox, stem(name))

    def destination(self, record: TaskRecord) -> Path:
        return self.outbox if record.state == "succeeded" else self.failed
