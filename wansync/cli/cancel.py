"""`wansync cancel NAME_OR_TASK_ID`: ask DashScope to cancel a task that has not started.

The vendor cancels only PENDING tasks; a canceled task then answers `CANCELED`, and the
daemon files it in `failed/` as `TaskCanceled` at its next poll. A NAME is looked up in the
inbox first (its `.task`, else its sidecar's `task_id`: a job's task has one before its
`.task` exists), so the name a user dropped is enough.
"""

from __future__ import annotations

import os
from pathlib import Path

from wansync import log
from wansync.cli.say import out, say
from wansync.config import Config
from wansync.core.errors import TaskFileError, WansyncError
from wansync.files import sidecar, taskfile
from wansync.files.sidecar import SUFFIX as SIDECAR_SUFFIX
from wansync.remote.api import TaskApi

EXIT_OK, EXIT_REFUSED = 0, 1
UNTRACKED = "{arg}: not a task in the inbox; sent as a task id"


class NotATask(WansyncError):
    """The argument names nothing in the inbox and is not a task id (a usage error)."""


class NoTaskYet(WansyncError):
    """The name is a job still waiting to be submitted: there is no task to cancel."""


def find_task_id(inbox: Path, arg: str) -> tuple[str, str]:
    """The task id `arg` stands for, and how to show it.

    `NAME (id)` for a name in the inbox, or for an id one of its files holds; an id no file
    here tracks is shown as such, so a mistyped name is not taken for a cancel that worked.
    """
    name = arg.removesuffix(taskfile.TASK_SUFFIX)
    if name and "/" not in name and not name.startswith("."):
        task_file = inbox / f"{name}{taskfile.TASK_SUFFIX}"
        if task_file.exists() or task_file.is_symlink():
            try:
                task_id = taskfile.read(task_file).task_id
            except (TaskFileError, OSError) as exc:
                raise NotATask(f"{task_file}: {exc}") from None
            return task_id, f"{name} ({task_id})"
        recorded = _sidecar_task_id(inbox / f"{name}{SIDECAR_SUFFIX}")
        if recorded is not None:
            return recorded, f"{name} ({recorded})"
    try:
        task_id = taskfile.check_task_id(arg)
    except TaskFileError as exc:
        raise NotATask(f"nothing named {name!r} in {inbox}, and {exc}") from None
    holder = _holder(inbox, task_id)
    if holder is not None:
        return task_id, f"{holder} ({task_id})"
    return task_id, UNTRACKED.format(arg=arg)


def _holder(inbox: Path, task_id: str) -> str | None:
    """The name of the `.task` in the inbox that holds `task_id`, if one does."""
    try:
        entries = list(os.scandir(inbox))
    except OSError:
        return None
    for entry in entries:
        if taskfile.is_task_name(entry.name):
            try:
                if taskfile.read(Path(entry.path)).task_id == task_id:
                    return entry.name[: -len(taskfile.TASK_SUFFIX)]
            except (TaskFileError, OSError):
                continue
    return None


def _sidecar_task_id(path: Path) -> str | None:
    """The sidecar's `task_id` (bounded read, no links); NoTaskYet for a job still queued."""
    data = sidecar.load(path)
    if data is None:
        return None
    shown = sidecar.show(data)
    task_id = shown.task_id
    if isinstance(task_id, str) and taskfile.TASK_ID.fullmatch(task_id):
        return task_id
    if isinstance(shown.job, dict):
        raise NoTaskYet(
            f"{path.name[: -len(SIDECAR_SUFFIX)]} is a job with no task yet (state: "
            f"{shown.state}); remove its .job from the inbox to drop it"
        )
    return None


def run(cfg: Config, key: str, arg: str) -> int:
    """Send the cancel; 0 and one line when accepted, 1 with the API's message otherwise."""
    try:
        task_id, shown = find_task_id(cfg.inbox, arg)
    except NoTaskYet as exc:
        say(f"wansync: cancel: {exc}")
        return EXIT_REFUSED
    api = TaskApi(cfg.api.base_url, key, cfg.api.timeout)
    try:
        api.cancel(task_id)
    except WansyncError as exc:
        message = getattr(exc, "message", None) or str(exc)
        say(f"wansync: cancel {shown}: {log.scrub(message)}")
        return EXIT_REFUSED
    finally:
        api.close()
    if shown == UNTRACKED.format(arg=arg):  # say so: no task here will end as TaskCanceled
        out(f"{shown}: cancel accepted (no task file here tracks it)")
    else:
        out(f"{shown}: cancel accepted; the task will end in failed/ as TaskCanceled")
    return EXIT_OK
