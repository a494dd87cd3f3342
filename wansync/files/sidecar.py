"""The status sidecar `NAME.status.json`: its schema, timestamps, and atomic read/write.

A sidecar read back is as untrusted as a producer's file (anyone in the group may edit
it, a disk may cut it short): `read` caps its size, bounds its depth, and checks the
type of every field wansync reads back, so a wrong one makes it absent (the task's
sidecar is then rebuilt from its `.task`), never a crash or a write outside the folders.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from wansync import log
from wansync.files import bounded, names
from wansync.files.fsutil import NotARegularFile, read_small, write_json_atomic

SCHEMA_VERSION = 1
SUFFIX = names.SIDECAR_SUFFIX
TERMINAL_STATES = ("succeeded", "failed")
STATES = ("queued", "submitting", "polling", "downloading", *TERMINAL_STATES)
MAX_BYTES = 1024 * 1024
TIME_AHEAD = 300.0  # seconds a time read back may lie in the future (clock skew)
TIME_PAST = 30 * 86400.0  # seconds a time read back may lie in the past
MAX_DEPTH = bounded.MAX_DEPTH + 1  # a task's meta (64 deep) sits one level down
SAFE_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")  # goes into the task URL's path as is

# A job is `queued` then `submitting`; from `polling` on, a job and a task are the same.
State = Literal["queued", "submitting", "polling", "downloading", "succeeded", "failed"]


def set_state(data: dict[str, Any], state: State) -> None:
    """The one place a sidecar's `state` is assigned (so every transition is typed)."""
    data["state"] = state


def utc_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a `Z`: `2026-11-28T18:00:00.000Z`.

    Never raises: a time from the remote (a URL's `Expires=1e20`, `nan`) is clamped to
    what a date can show (`bounded.wall_time`), so no single value can stop the loop.
    """
    moment = datetime.fromtimestamp(bounded.wall_time(time.time() if ts is None else ts), tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> float | None:
    """The inverse of `utc_iso`, tolerant of anything unreadable (returns None)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def read_time(text: str | None, now: float) -> float | None:
    """A time read back from a sidecar, within what it could truly be, else None.

    Anyone in the group may edit a sidecar: a `submit_started` in year 9999 must not make
    every later step raise (or wait for ever). Later than `now` by more than a clock's
    skew is absent; earlier than `TIME_PAST` ago is clamped to that (a task lives 24 h).
    """
    ts = parse_iso(text)
    if ts is None or ts > now + TIME_AHEAD:
        return None
    return max(ts, now - TIME_PAST)


def new(name: str, task_id: str | None, meta: dict[str, Any], now: float) -> dict[str, Any]:
    """A fresh sidecar for a task seen for the first time."""
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "task_id": task_id,
        "meta": meta,
        "state": "polling",  # the start of every task's way (see set_state)
        "task_status": None,
        "polls": 0,
        "first_seen": utc_iso(now),
        "last_polled": None,
        "next_poll": None,
        "finished": None,
        "request_id": None,
        "error": None,
        "output": None,
        "usage": None,
        "expires": None,
        "video": None,
    }


def error(code: str, message: str, transient: bool) -> dict[str, Any]:
    """The sidecar's `error` object. Code and message may be the remote's own words (a key
    echoed back, a signed URL, 900 KB): scrubbed and capped here, whoever passes them."""
    return {
        "code": log.clean(code, log.CODE_CHARS),
        "message": log.clean(message, log.MESSAGE_CHARS),
        "transient": transient,
    }


def download(etag: str | None, done: int = 0, total: int | None = None) -> dict[str, Any]:
    """The sidecar's `download` object: `etag` is what a resume must match; `bytes` of
    `total` are on disk so far (`wansync status` shows it)."""
    return {"etag": etag, "bytes": done, "total": total}


def path_for(folder: Path, name: str) -> Path:
    return folder / f"{name}{SUFFIX}"


def write(path: Path, data: dict[str, Any], durable: bool = True) -> None:
    """Atomically replace the sidecar; `durable=False` skips fsync for progress-only updates."""
    write_json_atomic(path, data, durable=durable)


def load(path: Path) -> dict[str, Any] | None:
    """The JSON object at `path` as it is, for showing (`wansync status`); else None.

    Capped, depth-bounded, never through a link or a FIFO, but not type-checked: a
    display shows a hand-edited value; only `read` decides what wansync acts on.
    """
    try:
        data = _load(path)
    except (OSError, NotARegularFile, UnicodeDecodeError, bounded.Unparsable):
        return None
    return data if isinstance(data, dict) else None


def _load(path: Path) -> Any:
    return bounded.json_loads(read_small(path, MAX_BYTES).decode("utf-8"), MAX_DEPTH)


def read(path: Path, published: bool = False) -> dict[str, Any] | None:
    """The sidecar at `path`, or None when it is missing or not a valid wansync sidecar.

    Opened without following a link or blocking, at most 1 MiB (by `fstat`, before
    reading), depth-bounded, every field type-checked (`problem`). A sidecar that is
    there but refused is logged (`sidecar.invalid`) with the reason. `published`: a
    final sidecar in outbox/ or failed/ (named `published_as`); else a live one in the
    inbox, which must be named after its own task (`stem(name)`): a sidecar planted
    under another name must not make wansync publish or drop that task's files.
    """
    try:
        data = _load(path)
        why = problem(data, path.name, published)
    except FileNotFoundError:
        return None
    except (OSError, NotARegularFile, UnicodeDecodeError, bounded.Unparsable) as exc:
        why = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or "unreadable"
        if isinstance(exc, UnicodeDecodeError):
            why = "not UTF-8"
    if why is None:
        return {**new("", None, {}, 0.0), "first_seen": None, **data}  # missing: default
    if structlog.is_configured():  # the daemon; a command's output must stay its own
        log.get("wansync.sidecar").warning(
            "sidecar.invalid", file=names.escape(path.name), error=why, detail="ignored"
        )
    return None


# -- what a sidecar read back must hold ---------------------------------------------------
def _text(v: Any) -> bool:
    return isinstance(v, str)


def _maybe_text(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _maybe_count(v: Any) -> bool:
    return v is None or _count(v)


def _plain_name(v: Any) -> bool:
    try:
        names.check_published(v)
    except (names.BadName, TypeError, AttributeError):
        return False
    return True


def _record(
    fields: dict[str, Callable[[Any], bool]], optional: tuple[str, ...] = ()
) -> Callable[[Any], bool]:
    """A check for a JSON object whose listed fields pass their checks (extra keys are fine)."""

    def check(v: Any) -> bool:
        return isinstance(v, dict) and all(
            (key in v and ok(v[key])) or (key in optional and key not in v)
            for key, ok in fields.items()
        )

    return check


def _or_none(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


_ERROR = _record({"code": _text, "message": _text, "transient": lambda v: isinstance(v, bool)})
_VIDEO = _record(
    {"path": _plain_name, "bytes": _count, "sha256": _text, "content_type": _text},
    optional=("sha256", "content_type"),
)
_DOWNLOAD = _record(
    {"etag": _maybe_text, "bytes": _count, "total": _maybe_count}, optional=("bytes", "total")
)
_JOB = _record(
    {
        "file": _text,
        "model": _maybe_text,
        "attempts": _count,
        "submit_started": _maybe_text,
        "submitted": _maybe_text,
        "found_by": _maybe_text,
    }
)
FIELDS: dict[str, tuple[bool, Callable[[Any], bool], str]] = {
    # key: (required, check, what it must be); a missing field reads as its default
    "schema": (True, lambda v: v == SCHEMA_VERSION and not isinstance(v, bool), "1"),
    "name": (True, lambda v: _text(v) and v and "/" not in v and "\0" not in v, "a name"),
    "task_id": (False, lambda v: v is None or (_text(v) and bool(SAFE_ID.match(v))), "an id"),
    "meta": (False, lambda v: isinstance(v, dict), "a mapping"),
    "state": (True, lambda v: v in STATES, f"one of {', '.join(STATES)}"),
    "task_status": (False, _maybe_text, "text or null"),
    "polls": (False, _count, "a whole number >= 0"),
    "first_seen": (False, _maybe_text, "text or null"),
    "last_polled": (False, _maybe_text, "text or null"),
    "next_poll": (False, _maybe_text, "text or null"),
    "finished": (False, _maybe_text, "text or null"),
    "request_id": (False, _maybe_text, "text or null"),
    "error": (False, _or_none(_ERROR), "null or {code, message, transient}"),
    "output": (False, lambda v: v is None or isinstance(v, dict), "null or a mapping"),
    "usage": (False, lambda v: v is None or isinstance(v, dict), "null or a mapping"),
    "expires": (False, _maybe_text, "text or null"),
    "video": (False, _or_none(_VIDEO), "null or {path, bytes, sha256, content_type}"),
    "download": (False, _or_none(_DOWNLOAD), "null or {etag}"),
    "published_as": (False, _or_none(_plain_name), "null or a plain file name"),
    "job": (False, _or_none(_JOB), "null or the job's record"),
}


def problem(data: Any, filename: str, published: bool = False) -> str | None:
    """What is wrong with `data` as the sidecar file `filename`, or None if nothing is."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, (required, ok, what) in FIELDS.items():
        if key in data:
            if not ok(data[key]):
                return f"{key} must be {what}"
        elif required:
            return f"{key} is missing"
    if why := _names_problem(data, filename, published):
        return why
    return _state_problem(data)


def _names_problem(data: dict[str, Any], filename: str, published: bool) -> str | None:
    """The file's name, `name`, `published_as` and `video.path` agree as wansync wrote them.

    A live sidecar is `stem(name).status.json`; a published one `published_as.status.json`
    where `published_as` is `stem(name)` or `stem(name)-k`, and a video is `published_as.mp4`.
    """
    base, chosen = names.stem(data["name"]), data.get("published_as")
    own = {f"{base}{SUFFIX}"} | ({f"{chosen}{SUFFIX}"} if chosen and published else set())
    if filename not in own:
        return f"name {data['name'][:80]!r} is not this file's task"
    if chosen and not _published_name_of(chosen, base):
        return f"published_as {chosen[:80]!r} is not a name of task {data['name'][:80]!r}"
    video = data.get("video")
    if chosen and data["state"] == "succeeded" and video and video["path"] != f"{chosen}.mp4":
        return f"video.path {video['path'][:80]!r} is not {chosen[:80]!r}.mp4"
    return None


def _published_name_of(chosen: str, base: str) -> bool:
    """`chosen` is `base` or `base-k` (k from 2 to MAX_K): what `publish.free_name` picks."""
    if chosen == base:
        return True
    head, dash, k = chosen.rpartition("-")
    return (
        bool(dash)
        and head == base
        and k.isascii()
        and k.isdigit()
        and k[0] != "0"
        and (2 <= int(k) <= names.MAX_K)
    )


def _state_problem(data: dict[str, Any]) -> str | None:
    """Fields that a state needs in order to go on from it."""
    state, output = data["state"], data.get("output")
    if state == "downloading" and output is not None and not _text(output.get("video_url")):
        return "state downloading needs output.video_url as text"  # (or none: poll again)
    if state == "failed" and data.get("error") is None:
        return "state failed needs an error"
    if state == "succeeded" and data.get("video") is None:
        return "state succeeded needs a video"
    if state in ("queued", "submitting"):
        job = data.get("job")
        if not job or (state == "submitting" and not isinstance(job["model"], str)):
            return f"state {state} needs the job's record (with its model)"
    return None
