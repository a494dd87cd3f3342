"""The ordered moves that end a task in `outbox/` or `failed/`; a crash between any two is harmless.

Order, success: (1) the final sidecar, naming the chosen file, is written in the inbox;
(2) `.NAME.mp4.part` → `outbox/X.mp4`; (3) a job's `.job` → `outbox/X.job`; (4) the
`.task` → `outbox/X.task`; (5) the sidecar → `outbox/X.status.json`. Failure skips (2)
and drops the `.part`; a job that failed before it had a task has no `.task`.
The inbox sidecar is the journal: while it is there and terminal, the publish is not
finished, and `resume` carries it on from wherever it stopped. Every step is idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sidecar
from .fsutil import fsync_dir, move_durable
from .jobfile import JOB_SUFFIX
from .taskfile import TASK_SUFFIX

MP4 = ".mp4"
MAX_STEM_BYTES = 200  # leaves room for ".status.json", "-k", ".part" and temp suffixes


def stem(name: str) -> str:
    """The base of every file wansync makes for task `name`.

    It is `name` itself, unless that would push a derived name (`.NAME.mp4.part`,
    `NAME-2.status.json`) past the 255-byte limit of most filesystems; then a shortened
    name plus a hash of the full one. The sidecar's `name` always keeps the full name.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_STEM_BYTES:
        return name
    cut = raw[: MAX_STEM_BYTES - 10].decode("utf-8", "ignore")
    return f"{cut}~{hashlib.sha256(raw).hexdigest()[:8]}"


@dataclass(frozen=True)
class Folders:
    inbox: Path
    outbox: Path
    failed: Path

    def part(self, name: str) -> Path:
        """Where a download grows: hidden, in the outbox, so the final rename is atomic."""
        return self.outbox / f".{stem(name)}{MP4}.part"

    def task(self, name: str) -> Path:
        return self.inbox / f"{name}{TASK_SUFFIX}"

    def job(self, name: str) -> Path:
        return self.inbox / f"{name}{JOB_SUFFIX}"

    def sidecar(self, name: str) -> Path:
        return sidecar.path_for(self.inbox, stem(name))

    def destination(self, data: dict[str, Any]) -> Path:
        return self.outbox if data["state"] == "succeeded" else self.failed


def free_name(folder: Path, name: str) -> str:
    """`name`, or the smallest `name-k` (k ≥ 2) none of whose files exist in `folder`."""
    for candidate in itertools.chain([name], (f"{name}-{k}" for k in itertools.count(2))):
        suffixes = (MP4, sidecar.SUFFIX, TASK_SUFFIX, JOB_SUFFIX)
        if not any((folder / f"{candidate}{s}").exists() for s in suffixes):
            return candidate
    raise AssertionError("unreachable")


def finalize(folders: Folders, data: dict[str, Any]) -> None:
    """Step (1): choose the published name and write the terminal sidecar durably."""
    name = data["name"]
    dest = folders.destination(data)
    chosen = free_name(dest, stem(name))
    data["published_as"] = chosen
    if data["state"] == "succeeded" and data.get("video"):
        data["video"]["path"] = f"{chosen}{MP4}"
    sidecar.write(folders.sidecar(name), data)


def resume(folders: Folders, data: dict[str, Any], task_file_is_ours: bool) -> Path:
    """Steps (2) to (5) from wherever they stopped; returns the published sidecar's path.

    `task_file_is_ours` is False when the `.task` had already gone: then a `.task` or
    `.job` of the same name in the inbox is a new one the user dropped (a retry).
    """
    name, chosen = data["name"], data["published_as"]
    dest = folders.destination(data)
    part = folders.part(name)
    if data["state"] == "succeeded":
        video = dest / f"{chosen}{MP4}"
        if part.exists() and not video.exists():
            move_durable(part, video)
    else:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()  # our own partial download, never published
    job = folders.job(name)
    if task_file_is_ours and data.get("job") and job.exists():
        move_durable(job, dest / f"{chosen}{JOB_SUFFIX}")
    task = folders.task(name)
    if task_file_is_ours and task.exists():
        move_durable(task, dest / f"{chosen}{TASK_SUFFIX}")
    final = dest / f"{chosen}{sidecar.SUFFIX}"
    src = folders.sidecar(name)
    if src.exists():
        move_durable(src, final)
    fsync_dir(dest)
    return final


def publish(folders: Folders, data: dict[str, Any]) -> Path:
    """Finalize and move: the whole publish, in order."""
    finalize(folders, data)
    return resume(folders, data, task_file_is_ours=True)
