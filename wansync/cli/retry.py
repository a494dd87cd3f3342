"""`wansync retry NAME`: the latest failed record of NAME goes back to the inbox as NAME.

A task that fails twice leaves `failed/NAME.*` and `failed/NAME-2.*` (wansync never
overwrites); both sidecars keep `"name": "NAME"`. So a record is found by the sidecar's
`name` (and by file name for a sidecar-less one), the newest by `finished`, and its file
is moved back under the original name: retrying never grows `NAME-2-2`.

Three records are not simply moved back (docs/commands.md, `retry`):
- a task DashScope itself FAILED: polling the same id again cannot change that, and a
  job sent again is a new paid task that may fail the same way. Refused (exit 1), saying
  what can help, unless `--force`.
- a job that ended `SubmitUncertain`: a task may exist that wansync could not find. It
  goes back with its journal in state `submitting` and the search window it recorded,
  so the daemon searches the task list again and takes a task it finds there instead of
  creating a second one; `--force` sends it anew without searching.
- a job that ended `TaskFileRemoved`: its task exists; `wansync add ID` follows it with
  no new task, while the job sent again would be a second paid one. Refused (exit 1),
  saying so, unless `--force`.

A file to move back that is a symbolic link (or a folder, a FIFO) is never followed nor
moved: exit 2 naming it (`plain_file`), `--force` or not.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from wansync.config import Config
from wansync.core.errors import TASK_FILE_REMOVED, SubmitAmbiguous, WansyncError
from wansync.core.record import TaskRecord
from wansync.files import names, sidecar
from wansync.files.fsutil import move_durable
from wansync.files.jobfile import JOB_SUFFIX
from wansync.files.taskfile import TASK_SUFFIX

UNCERTAIN = SubmitAmbiguous.code


class NothingToRetry(WansyncError):
    """No failed record to move back: exit 2 with the reason."""


class RetryRefused(WansyncError):
    """A record that retrying cannot help (DashScope FAILED it): exit 1, unless `--force`."""


@dataclass(frozen=True)
class Record:
    """One ended task in outbox/ or failed/: its files' stem, its name and its sidecar."""

    folder: Path
    stem: str
    name: str
    finished: float
    record: TaskRecord

    def file(self) -> Path | None:
        """The `.job` (submitted anew) or else the `.task` (polled again), if still here,
        whatever it is now (`plain_file` refuses a link or anything but a file)."""
        for suffix in (JOB_SUFFIX, TASK_SUFFIX):
            path = self.folder / f"{self.stem}{suffix}"
            if os.path.lexists(path):
                return path
        return None


class NotAPlainFile(NothingToRetry):
    """The file to move back is a link, a folder or a FIFO: exit 2 naming it."""


def plain_file(path: Path) -> Path:
    """`path` if it is a regular file (looked at with `lstat`: a link is never followed),
    else `NotAPlainFile` saying what it is and what to do."""
    mode = os.lstat(path).st_mode
    if stat.S_ISREG(mode):
        return path
    what = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
    raise NotAPlainFile(
        f"{path} is {what}; wansync never follows or moves back a link it did not make. "
        f"Put the file itself at {path} (a copy of what it should hold), then retry"
    )


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
        if os.path.lexists(cfg.inbox / f"{name}{suffix}"):
            return cfg.inbox / f"{name}{suffix}"
    return None


def retry(cfg: Config, asked: str, force: bool = False) -> tuple[Path, str]:
    """Move the latest failed record's file back; returns (new path, what was done)."""
    name, record, had_records = _latest_failed(cfg, asked)
    if record is None:
        return _without_sidecar(cfg, name, had_records)
    found = record.file()
    assert found is not None
    src = plain_file(found)
    dst = cfg.inbox / f"{name}{src.suffix}"
    if not force and (refusal := refused(name, record, src.suffix)):
        raise RetryRefused(refusal)
    error = record.record.error
    if not force and src.suffix == JOB_SUFFIX and error and error.code == UNCERTAIN:
        return _search_again(cfg, name, record, src, dst)
    move_durable(src, dst)
    why = f"{error.code}: {error.message}" if error else "no error recorded"
    again = "submitted anew (a new task)" if src.suffix == JOB_SUFFIX else "polled again"
    return dst, f"moved {src} to {dst}; it will be {again} (it had failed with {why})"


def _latest_failed(cfg: Config, asked: str) -> tuple[str, Record | None, bool]:
    """The task's name, its latest failed record that still has a file to move back, and
    whether it had failed records at all; `NothingToRetry` when it is not failed."""
    asked = asked.removesuffix(TASK_SUFFIX).removesuffix(JOB_SUFFIX)
    name, records = _lookup(cfg, asked)
    if (queued := _already_in_inbox(cfg, name)) is not None:
        raise NothingToRetry(f"{name}: {queued} is already in the inbox (see `wansync status`)")
    latest = max(records, key=lambda r: r.finished, default=None)
    if latest is not None and latest.folder == cfg.outbox:
        raise NothingToRetry(f"{name}: it succeeded; {_where(cfg, latest.record, latest.stem)}")
    failed = sorted((r for r in records if r.folder == cfg.failed), key=lambda r: -r.finished)
    return name, next((r for r in failed if r.file() is not None), None), bool(failed)


def _search_again(cfg: Config, name: str, record: Record, src: Path, dst: Path) -> tuple[Path, str]:
    """A `SubmitUncertain` job back with its journal in `submitting`: searched, not sent."""
    journal = sidecar.path_for(cfg.inbox, names.stem(name))
    sidecar.write(journal, search_again(record.record))  # first: the daemon reads it
    try:
        move_durable(src, dst)
    except OSError:
        journal.unlink(missing_ok=True)  # ours, just written: no job without its file
        raise
    return dst, (
        f"moved {src} to {dst}; the daemon searches the task list again for the task "
        f"its create may have made, and takes it if it is there; only if it is not does "
        f"the job end {UNCERTAIN} again (then `wansync retry {name} --force` creates "
        f"a new task)"
    )


def refused(name: str, record: Record, suffix: str) -> str | None:
    """Why retrying `record` cannot help, or None: DashScope itself FAILED its task, or a
    job's task exists and was only left (its `.task` removed): sending the job again would
    pay for a second task where `add` follows the first."""
    error = record.record.error
    task_id = record.record.task_id
    if suffix == JOB_SUFFIX and error and error.code == TASK_FILE_REMOVED and task_id:
        return (
            f"{name}: its task {task_id} exists (its .task was removed while it was "
            f"followed); `wansync add {task_id} --name {name}` follows it again with no new "
            f"task. Retrying the job sends it anew as a second, paid task: "
            f"`wansync retry {name} --force` does that"
        )
    if record.record.task_status != "FAILED":
        return None
    said = f"{error.code}: {error.message}" if error else "no reason given"
    head = f"{name}: DashScope ended task {record.record.task_id} as FAILED ({said})"
    if suffix == JOB_SUFFIX:
        return (
            f"{head}; polling it again cannot change that, and retrying the job sends it "
            f"anew as a new, paid task that may fail the same way. Fix what the reason "
            f"names in {record.folder / (record.stem + JOB_SUFFIX)} (or keep it as it is), "
            f"then `wansync retry {name} --force` submits it anew"
        )
    return (
        f"{head}; polling the same id again cannot change a FAILED task. Make a new task "
        f"(`wansync submit`, or a .job) and drop its id; `wansync retry {name} --force` "
        f"polls the old one again anyway"
    )


def search_again(ended: TaskRecord) -> TaskRecord:
    """The inbox journal of a `SubmitUncertain` job sent back: `submitting` again, so the
    daemon searches the task list (over the window it recorded) and never creates first."""
    message = "wansync retry: searching the task list again for the task the create may have made"
    return dataclasses.replace(
        ended,
        state="submitting",
        task_id=None,
        task_status=None,
        next_poll=None,
        finished=None,
        published_as=None,
        hook=None,
        error=sidecar.error(UNCERTAIN, message, True),
    )


def _where(cfg: Config, record: TaskRecord, stem: str) -> str:
    """Where a succeeded task's files are, in a few words: its video, its one file, or
    its files (a sidecar from before `outputs`: the video its stem names)."""
    files = [str(cfg.outbox / o.path) for o in record.outputs]
    if not files:
        return f"the video is {cfg.outbox / f'{stem}.mp4'}"
    if len(files) == 1:
        return f"the {'video' if record.outputs[0].is_video else 'file'} is {files[0]}"
    return f"its {len(files)} files are {', '.join(files)}"


def _without_sidecar(cfg: Config, name: str, had_records: bool) -> tuple[Path, str]:
    """A failed file with no readable sidecar (moved there by hand) is moved back as is."""
    for suffix in (JOB_SUFFIX, TASK_SUFFIX):
        src = cfg.failed / f"{name}{suffix}"
        if os.path.lexists(src):
            dst = cfg.inbox / f"{name}{suffix}"
            move_durable(plain_file(src), dst)
            return dst, f"moved {src} to {dst}"
    if had_records:
        raise NothingToRetry(
            f"{name}: its failed records in {cfg.failed} have no .task or .job left to move back"
        )
    raise NothingToRetry(f"{name}: no failed task or job of that name in {cfg.failed}")
