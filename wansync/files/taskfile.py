"""Read and validate one `.task` file: a bare task id, or a JSON object with `task_id`
(or DashScope's own create answer, saved as it came: the id in `output.task_id`)."""

from __future__ import annotations

import errno
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wansync.core.errors import OutOfResources, TaskFileError
from wansync.files import bounded, names
from wansync.files.fsutil import FileTooLarge, NotARegularFile, read_small

TASK_SUFFIX = names.TASK_SUFFIX
MAX_BYTES = 64 * 1024
TASK_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{7,127}\Z")  # \Z: no newline after it
LONGEST_ID = "A" * 128  # the longest id the API may hand back, for size checks
# The system, not the file: no descriptor (EMFILE, ENFILE), no memory, or "try again".
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM})


@dataclass(frozen=True)
class TaskSpec:
    """What a valid task file says: the id to poll and the user's own extra keys."""

    task_id: str
    meta: dict[str, Any] = field(default_factory=dict)


def is_visible(filename: str, suffix: str) -> bool:
    """A visible `NAME{suffix}`; dotfiles (writers' temp files) are never ours to read."""
    return filename.endswith(suffix) and not filename.startswith(".") and filename != suffix


def is_task_name(filename: str) -> bool:
    return is_visible(filename, TASK_SUFFIX)


def task_name(path: Path) -> str:
    """`inbox/clip-001.task` → `clip-001`, the name every file of the task is built from."""
    return path.name[: -len(TASK_SUFFIX)]


def check_task_id(task_id: str) -> str:
    """Return the id if it has the shape DashScope ids have, else raise `TaskFileError`."""
    if not TASK_ID.fullmatch(task_id):
        raise TaskFileError(
            f"{_shown(task_id)!r} is not a valid task id (8-128 letters, digits, '-' or '_')"
        )
    return task_id


def parse(data: bytes) -> TaskSpec:
    """Parse a task file's bytes; every failure says in plain words what was wrong."""
    if len(data) > MAX_BYTES:
        raise TaskFileError(f"file is larger than {MAX_BYTES // 1024} KiB")
    if b"\x00" in data:
        raise TaskFileError("file is binary, expected a task id as text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise TaskFileError("file is not UTF-8 text") from None
    stripped = text.strip()
    if not stripped:
        raise TaskFileError("file is empty, expected a task id")
    if stripped[0] in '{["':  # JSON of any kind: only an object is valid
        return _parse_json(stripped)
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1:
        raise TaskFileError(f"file holds {len(lines)} lines, expected exactly one task id")
    return TaskSpec(check_task_id(lines[0]))


def _parse_json(text: str) -> TaskSpec:
    try:
        obj = bounded.json_loads(text, unique_keys=True)
    except bounded.Unparsable as exc:
        raise TaskFileError(f"file is {exc}" if str(exc).startswith("not ") else str(exc)) from None
    if not isinstance(obj, dict):
        raise TaskFileError("JSON must be an object with a task_id")
    task_id = _json_task_id(obj)
    meta = {k: v for k, v in obj.items() if k != "task_id"}
    return TaskSpec(check_task_id(task_id), meta)


def _json_task_id(obj: dict[str, Any]) -> str:
    """`task_id`, or `output.task_id` (the create answer `curl … > clip.task` saves);
    given both, they must agree. Everything else in the file stays the task's meta."""
    given = {"task_id": obj["task_id"]} if "task_id" in obj else {}
    output = obj.get("output")
    if isinstance(output, dict) and "task_id" in output:
        given["output.task_id"] = output["task_id"]
    if not given:
        raise TaskFileError("JSON object has no task_id (nor output.task_id)")
    for key, value in given.items():
        if not isinstance(value, str):
            raise TaskFileError(f"{key} must be a string, not {type(value).__name__}")
    top, inner = given.get("task_id"), given.get("output.task_id")
    if top is not None and inner is not None and top != inner:
        raise TaskFileError(
            f"task_id {_shown(top)!r} and output.task_id {_shown(inner)!r} differ; "
            "keep the one of the task you mean"
        )
    return str(top if top is not None else inner)


def _shown(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def render(task_id: str, meta: dict[str, Any]) -> bytes:
    """The `.task` wansync writes for a job's new task (what a producer would have dropped).

    A job is checked against exactly these bytes before its create request is sent, so a
    task that exists can always be written and read back.
    """
    text = json.dumps({**meta, "task_id": task_id}, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def read(path: Path) -> TaskSpec:
    """Read a task file from disk: a name wansync can build on, at most 64 KiB, no link
    (symbolic or hard). `OutOfResources` when the system, not the file, is at fault."""
    try:
        names.check(task_name(path))
    except names.BadName as exc:
        raise TaskFileError(str(exc)) from None
    try:
        data = read_small(path, MAX_BYTES, single_link=True)
    except FileTooLarge:
        raise TaskFileError(f"file is larger than {MAX_BYTES // 1024} KiB") from None
    except NotARegularFile as exc:
        raise TaskFileError(str(exc)) from None
    except OSError as exc:
        raise out_of_resources(exc, path) from None
    return parse(data)


def out_of_resources(exc: OSError, path: Path) -> OSError | OutOfResources:
    """What to raise for an `OSError` while reading `path`: `OutOfResources` for the
    errnos that are the system's (the file is fine: read it again later), else `exc`."""
    if exc.errno in RESOURCE_ERRNOS:
        return OutOfResources(f"{path.name}: {(exc.strerror or str(exc)).lower()}")
    return exc
