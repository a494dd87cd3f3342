"""`wansync retry NAME`: the latest failed record of NAME goes back to the inbox as NAME.

A task that fails twice leaves `failed/NAME.*` and `failed/NAME-2.*` (wansync never
overwrites); both sidecars keep `"name": "NAME"`. So a record is found by the sidecar's
`name` (and by file name for a sidecar-less one), the newest by `finished`, and its file
is moved back under the original name: retrying never grows `NAME-2-2`.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from wansync.config import Config
from wansync.core.errors import WansyncError
from wansync.core.record import TaskRecord
from wansync.files import sidecar
from wansync.files.fsutil import move_durable
from wansync.files.jobfile import JOB_SUFFIX
from wansync.files.taskfile import TASK_SUFFIX


class NothingToRetry(WansyncError):
    """No failed record to move back: exit 2 with the reason."""


@dataclass(frozen=True)
class Record:
    """One ended task in outbox/ or failed/: its files' stem, its name and its sidecar."""

    folder: Path
    stem: str
    name: str
    finished: float
    record: TaskRecord

    def file(self) -> Path | None:
        """The `.job` (submitted anew) or else the `.task` (polled again), if still here."""
        for suffix in (JOB_SUFFIX, TASK_SUFFIX):
            path = self.folder / f"{self.stem}{suffix}"
            if path.is_file() and not path.is_symlink():
                return path
        return None


def _records(folder: Path, name: str) -> list[Record]:
    """Every record in `folder` that belongs to `name` (as `NAME` or as `NAME-k`)."""
    found = []
    own = re.compile(re.escape(name) + r"(-\d+)?")
    for path in folder.glob(f"{glob.escape(name)}*{sidecar.SUFFIX}"):
        stem = path.name[: -len(sidecar.SUFFIX)]
        record = sidecar.read(path, published=True)
        if record is None or not own.fullmatch(stem):
            continue
        finished = sidecar.parse_iso(record.finished) or path.stat().st_mtime
        found.append(Record(folder, stem, record.name or stem, finished, record))
    return found


def _lookup(cfg: Config, asked: str) -> tuple[str, list[Record]]:
    """The task's name and its records; `NAME-2` (a file stem) means the task NAME."""
    records = [r for f in (cfg.outbox, cfg.failed) for r in _records(f, asked)]
    mine = [r for r in records if r.name == asked]
    if mine:
        return asked, mine
    by_stem = [r for r in records if r.stem == asked]
    if by_stem:  # e.g. `retry clip-2`, a record of task `clip`
        real = by_stem[0].name
        return real, [r for f in (cfg.outbox, cfg.failed) for r in _records(f, real)]
    return asked, []


def _already_in_inbox(cfg: Config, name: str) -> Path | None:
    for suffix in (TASK_SUFFIX, JOB_SUFFIX):
        if (cfg.inbox / f"{name}{suffix}").exists():
            return cfg.inbox / f"{name}{suffix}"
    return None


def retry(cfg: Config, asked: str) -> tuple[Path, str]:
    """Move the latest failed record's file back; returns (new path, what was done)."""
    asked = asked.removesuffix(TASK_SUFFIX).removesuffix(JOB_SUFFIX)
    name, records = _lookup(cfg, asked)
    if (queued := _already_in_inbox(cfg, name)) is not None:
        raise NothingToRetry(f"{name}: {queued} is already in the inbox (see `wansync status`)")
    latest = max(records, key=lambda r: r.finished, default=None)
    if latest is not None and latest.folder == cfg.outbox:
        video = latest.record.video.path if latest.record.video else f"{latest.stem}.mp4"
        raise NothingToRetry(f"{name}: it succeeded; the video is {cfg.outbox / video}")
    failed = sorted((r for r in records if r.folder == cfg.failed), key=lambda r: -r.finished)
    record = next((r for r in failed if r.file() is not None), None)
    if record is None:
        return _without_sidecar(cfg, name, bool(failed))
    src = record.file()
    assert src is not None
    dst = cfg.inbox / f"{name}{src.suffix}"
    move_durable(src, dst)
    error = record.record.error
    why = f"{error.code}: {error.message}" if error else "no error recorded"
    again = "submitted anew (a new task)" if src.suffix == JOB_SUFFIX else "polled again"
    return dst, f"moved {src} to {dst}; it will be {again} (it had failed with {why})"


def _without_sidecar(cfg: Config, name: str, had_records: bool) -> tuple[Path, str]:
    """A failed file with no readable sidecar (moved there by hand) is moved back as is."""
    for suffix in (JOB_SUFFIX, TASK_SUFFIX):
        src = cfg.failed / f"{name}{suffix}"
        if src.is_file() and not src.is_symlink():
            dst = cfg.inbox / f"{name}{suffix}"
            move_durable(src, dst)
            return dst, f"moved {src} to {dst}"
    if had_records:
        raise NothingToRetry(
            f"{name}: its failed records in {cfg.failed} have no .task or .job left to move back"
        )
    raise NothingToRetry(f"{name}: no failed task or job of that name in {cfg.failed}")
