"""Read and validate one `.task` file: a bare task id, or a JSON object with `task_id`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wansync.core.errors import TaskFileError
from wansync.files import bounded, names
from wansync.files.fsutil import FileTooLarge, NotARegularFile, read_small

TASK_SUFFIX = names.TASK_SUFFIX
MAX_BYTES = 64 * 1024
TASK_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{7,127}\Z")  # \Z: no newline after it
LONGEST_ID = "A" * 128  # the longest id the API may hand back, for size checks


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
        shown = task_id if len(task_id) <= 80 else task_id[:77] + "..."
        raise TaskFileError(f"{shown!r} is not a valid task id (8-128 letters, digits, '-' or '_')")
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
    if "task_id" not in obj:
        raise TaskFileError("JSON object has no task_id")
    task_id = obj["task_id"]
    if not isinstance(task_id, str):
        raise TaskFileError(f"task_id must be a string, not {type(task_id).__name__}")
    meta = {k: v for k, v in obj.items() if k != "task_id"}
    return TaskSpec(check_task_id(task_id), meta)


def render(task_id: str, meta: dict[str, Any]) -> bytes:
    """The `.task` wansync writes for a job's new task (what a producer would have dropped).

    A job is checked against exactly these bytes before its create request is sent, so a
    task that exists can always be written and read back.
    """
    text = json.dumps({**meta, "task_id": task_id}, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def read(path: Path) -> TaskSpec:
    """Read a task file from disk: a name wansync can build on, at most 64 KiB, no link
    (symbolic or hard)."""
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
    return parse(data)
