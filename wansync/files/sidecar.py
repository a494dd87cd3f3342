"""The status sidecar `NAME.status.json`: the only module that knows its JSON keys.

`to_json` and `from_json` turn a `TaskRecord` (core/record.py) into the sidecar's JSON
object and back; `read` and `write` do it atomically on disk. The bytes on disk are what
wansync has always written (schema 1): the same keys, in the same order, with the same
values. A sidecar read back is rewritten byte for byte as it was, even one that holds
more than a record says (an older shape, a key wansync does not know): see `from_json`.

A sidecar read back is as untrusted as a producer's file (anyone in the group may edit
it, a disk may cut it short): `read` caps its size, bounds its depth, and checks the
type of every field wansync reads back, so a wrong one makes it absent (the task's
sidecar is then rebuilt from its `.task`), never a crash or a write outside the folders.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import structlog

from wansync import log
from wansync.core import times
from wansync.core.record import (
    EXTENSIONS,
    FOUND_BY,
    SCHEMA_VERSION,
    STATES,
    TERMINAL_STATES,
    DownloadState,
    ErrorInfo,
    FileDownload,
    HookRecord,
    JobRecord,
    Output,
    State,
    TaskRecord,
)
from wansync.core.shapes import MAX_FILES, Outputs, outputs_of
from wansync.core.times import TIME_AHEAD, TIME_PAST, parse_iso, read_time
from wansync.files import bounded, names
from wansync.files.fsutil import NotARegularFile, read_small, write_json_atomic

__all__ = [
    "MAX_BYTES",
    "SCHEMA_VERSION",
    "STATES",
    "SUFFIX",
    "TERMINAL_STATES",
    "TIME_AHEAD",
    "TIME_PAST",
    "State",
    "parse_iso",
    "read_time",
]

SUFFIX = names.SIDECAR_SUFFIX
MAX_BYTES = 1024 * 1024
MAX_DEPTH = bounded.MAX_DEPTH + 1  # a task's meta (64 deep) sits one level down
SAFE_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")  # goes into the task URL's path as is
SHA256 = re.compile(r"[0-9a-f]{64}")  # a job's `sha256` (of its `.job`) and `prompt_sha256`
HOOK_EVENTS = ("succeeded", "failed")
HOOK_STATES = ("pending", "done", "failed")


def utc_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a `Z` (`times.utc_iso`); now if `ts` is None."""
    return times.utc_iso(time.time() if ts is None else ts)


def new(name: str, task_id: str | None, meta: dict[str, Any], now: float) -> TaskRecord:
    """A fresh record for a task seen for the first time (state `polling`)."""
    return TaskRecord(name, task_id, meta, first_seen=utc_iso(now))


def error(code: str, message: str, transient: bool) -> ErrorInfo:
    """A task's error. Code and message may be the remote's own words (a key echoed
    back, a signed URL, 900 KB): scrubbed and capped here, whoever passes them."""
    return ErrorInfo(
        log.clean(code, log.CODE_CHARS), log.clean(message, log.MESSAGE_CHARS), transient
    )


# -- the record as JSON ---------------------------------------------------------------------
_UNKNOWN: Final = object()  # `verbatim` marker of a key no field holds
_TAIL = ("job", "found_by", "download", "hook", "published_as")  # after the base keys, once set


def to_json(record: TaskRecord) -> dict[str, Any]:
    """The sidecar's JSON object for `record`, its keys in the order wansync always wrote
    them: the 18 keys every sidecar has, then the ones a task gains on its way (as read
    back, in the file's order; then any newly set, in the order of `_TAIL`).

    `outputs` (every published file, in file order; null until success) came with task
    kinds that make several files: a sidecar written before it gains it on its next
    write, right after `video` (the MP4 among them, or null for pictures)."""
    out: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "name": record.name,
        "task_id": record.task_id,
        "meta": record.meta,
        "state": record.state,
        "task_status": record.task_status,
        "polls": record.polls,
        "first_seen": record.first_seen,
        "last_polled": record.last_polled,
        **({"followed": record.followed} if record.followed is not None else {}),
        "next_poll": record.next_poll,
        "finished": record.finished,
        "request_id": record.request_id,
        "error": _kept(record, "error"),
        "output": record.output,
        "usage": record.usage,
        "expires": record.expires,
        "video": _kept(record, "video"),
        "outputs": _kept(record, "outputs"),
    }
    for key, (_, raw) in record.verbatim.items():
        if key not in out:
            value = raw if key not in _TAIL else _kept(record, key)
            if value is not None or raw is None:
                out[key] = value
    for key in _TAIL:
        if key not in out and (value := _kept(record, key)) is not None:
            out[key] = value
    return out


def _kept(record: TaskRecord, key: str) -> Any:
    """The JSON of the record's `key`: as it was read while that part is unchanged."""
    value = _part(record, key)
    kept = record.verbatim.get(key)
    if kept is not None and kept[0] == value:
        return kept[1]
    return None if value is None else _DUMPS[key](value)


def _part(record: TaskRecord, key: str) -> Any:
    if key == "video":
        return record.video
    if key == "outputs":
        return list(record.outputs) or None
    return getattr(record, key)


def _error_json(e: ErrorInfo) -> dict[str, Any]:
    return {"code": e.code, "message": e.message, "transient": e.transient}


def _output_json(o: Output) -> dict[str, Any]:
    out: dict[str, Any] = {"path": o.path, "bytes": o.bytes}
    if o.sha256 is not None:
        out["sha256"] = o.sha256
    if o.content_type is not None:
        out["content_type"] = o.content_type
    return out


def _outputs_json(outputs: list[Output]) -> list[dict[str, Any]]:
    return [_output_json(o) for o in outputs]


def _download_json(d: DownloadState) -> dict[str, Any]:
    out: dict[str, Any] = {"etag": d.etag, "bytes": d.bytes, "total": d.total}
    if d.files:
        out["files"] = [{"etag": f.etag, "bytes": f.bytes, "total": f.total} for f in d.files]
    return out


def hook_json(h: HookRecord) -> dict[str, Any]:
    return {"event": h.event, "state": h.state, "attempts": h.attempts, "exit_code": h.exit_code}


def _job_json(j: JobRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "file": j.file,
        "model": j.model,
        "attempts": j.attempts,
        "submit_started": j.submit_started,
        "submitted": j.submitted,
        "found_by": j.found_by,
    }
    if j.search_window is not None:
        out["search_window"] = list(j.search_window)
    if j.sha256 is not None:
        out["sha256"] = j.sha256
    if j.prompt_sha256 is not None:
        out["prompt_sha256"] = j.prompt_sha256
    return out


_DUMPS: dict[str, Callable[[Any], Any]] = {
    "error": _error_json,
    "video": _output_json,
    "outputs": _outputs_json,
    "download": _download_json,
    "hook": hook_json,
    "job": _job_json,
    "found_by": str,
    "published_as": str,
}


def from_json(data: dict[str, Any]) -> TaskRecord:
    """The record a sidecar's JSON object holds; `ValueError` if a field is of a wrong type.

    A missing field reads as its default. What the typed fields cannot say is kept in
    `record.verbatim` and written back by `to_json` as it was: a key wansync does not
    know, an object in an older shape (a `download` with only its `etag`), a `null` where
    wansync writes nothing; and the order of the keys after the base ones. A kept object
    is replaced once the record changes that part (and dropped when it is set to None).
    """
    if (why := _fields_problem(data)) is not None:
        raise ValueError(why)
    return _record_of(data)


def _record_of(data: dict[str, Any]) -> TaskRecord:
    """`from_json` of an object whose fields were checked (`_fields_problem`)."""
    get = data.get
    e, video, dl, job = get("error"), get("video"), get("download"), get("job")
    files = get("outputs") or ([video] if video else [])  # an older sidecar: its video
    record = TaskRecord(
        name=data["name"],
        task_id=get("task_id"),
        meta=get("meta", {}),
        state=data["state"],
        task_status=get("task_status"),
        polls=get("polls", 0),
        first_seen=get("first_seen"),
        last_polled=get("last_polled"),
        followed=get("followed"),
        next_poll=get("next_poll"),
        finished=get("finished"),
        request_id=get("request_id"),
        error=ErrorInfo(e["code"], e["message"], e["transient"]) if e else None,
        output=get("output"),
        usage=get("usage"),
        expires=get("expires"),
        outputs=[_output_of(o) for o in files],
        download=_download_of(dl) if dl else None,
        published_as=get("published_as"),
        hook=_hook_of(get("hook")),
        job=_job_of(job) if job else None,
        found_by=get("found_by"),
    )
    for key, raw in data.items():
        if key in _TAIL or key in ("error", "video", "outputs"):
            value = _part(record, key)
            if key in _TAIL or not _same(_DUMPS[key](value) if value is not None else None, raw):
                record.verbatim[key] = (value, raw)
        elif key not in FIELDS:
            record.verbatim[key] = (_UNKNOWN, raw)
    return record


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON text: the same keys in the same order, the same values of one type."""
    if a is b:
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


_JOB_KEYS = ("file", "model", "attempts", "submit_started", "submitted", "found_by")


def _job_of(job: dict[str, Any]) -> JobRecord:
    """The `job` object as a record. A `search_window` that is not two texts is read as
    none (a fresh window is then placed), a `prompt_sha256` that is not 64 hex digits as
    none (a task taken from the list is then not checked): a job being submitted must
    never lose its journal over it, or it would be sent again."""
    window = job.get("search_window")
    kept = None
    if isinstance(window, list) and len(window) == 2 and all(_text(t) for t in window):
        kept = (window[0], window[1])
    digest = job.get("sha256")
    sha256 = digest if isinstance(digest, str) and SHA256.fullmatch(digest) else None
    prompt = job.get("prompt_sha256")
    prompt_sha256 = prompt if isinstance(prompt, str) and SHA256.fullmatch(prompt) else None
    return JobRecord(
        **{k: job[k] for k in _JOB_KEYS},
        search_window=kept,
        sha256=sha256,
        prompt_sha256=prompt_sha256,
    )


def _output_of(v: dict[str, Any]) -> Output:
    return Output(v["path"], v["bytes"], v.get("sha256"), v.get("content_type"))


def _download_of(v: dict[str, Any]) -> DownloadState:
    files = tuple(FileDownload(f["etag"], f["bytes"], f["total"]) for f in v.get("files", ()))
    return DownloadState(v["etag"], v.get("bytes", 0), v.get("total"), files)


def _hook_of(v: Any) -> HookRecord | None:
    """The `hook` object as a record, or None if it is not one (it is then kept as is)."""
    if not isinstance(v, dict) or v.get("event") not in HOOK_EVENTS:
        return None
    if v.get("state") not in HOOK_STATES:
        return None
    tries, code = v.get("attempts"), v.get("exit_code")
    if not isinstance(tries, int) or isinstance(tries, bool) or tries < 0:
        tries = 0
    if not isinstance(code, int) or isinstance(code, bool):
        code = None
    return HookRecord(v["event"], v["state"], tries, code)


def path_for(folder: Path, name: str) -> Path:
    return folder / f"{name}{SUFFIX}"


def write(path: Path, record: TaskRecord, durable: bool = True, new: bool = False) -> None:
    """Atomically replace the sidecar; `durable=False` skips fsync for progress-only updates,
    `new` never replaces anything (`FileExistsError`: a name chosen as free was taken)."""
    write_json_atomic(path, to_json(record), durable=durable, new=new)


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


def read(path: Path, published: bool = False) -> TaskRecord | None:
    """The record in the sidecar at `path`, or None when it is missing or not a valid
    wansync sidecar.

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
        return _record_of(data)  # a missing field: its default
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


def _maybe_seconds(v: Any) -> bool:
    """Null, or a finite number of seconds from 0 to 100 years."""
    if v is None:
        return True
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 3.2e9


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
_OUTPUT = _record(
    {
        "path": _plain_name,
        "bytes": _count,
        "sha256": _text,
        "content_type": lambda v: v in EXTENSIONS,
    },
    optional=("sha256", "content_type"),
)
_FILE_DOWNLOAD = _record({"etag": _maybe_text, "bytes": _count, "total": _maybe_count})


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A list of 1 to `MAX_FILES` items (a task's files at most) that each pass `check`."""
    return lambda v: isinstance(v, list) and 0 < len(v) <= MAX_FILES and all(map(check, v))


_DOWNLOAD = _record(
    {
        "etag": _maybe_text,
        "bytes": _count,
        "total": _maybe_count,
        "files": _list_of(_FILE_DOWNLOAD),
    },
    optional=("bytes", "total", "files"),
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
    "followed": (False, _maybe_seconds, "seconds >= 0 or null"),
    "next_poll": (False, _maybe_text, "text or null"),
    "finished": (False, _maybe_text, "text or null"),
    "request_id": (False, _maybe_text, "text or null"),
    "error": (False, _or_none(_ERROR), "null or {code, message, transient}"),
    "output": (False, lambda v: v is None or isinstance(v, dict), "null or a mapping"),
    "usage": (False, lambda v: v is None or isinstance(v, dict), "null or a mapping"),
    "expires": (False, _maybe_text, "text or null"),
    "video": (False, _or_none(_VIDEO), "null or {path, bytes, sha256, content_type}"),
    "outputs": (
        False,
        _or_none(_list_of(_OUTPUT)),
        f"null or a list of 1 to {MAX_FILES} {{path, bytes, sha256, content_type}}",
    ),
    "download": (False, _or_none(_DOWNLOAD), "null or {etag}"),
    "published_as": (False, _or_none(_plain_name), "null or a plain file name"),
    "job": (False, _or_none(_JOB), "null or the job's record"),
    "found_by": (False, lambda v: v is None or v in FOUND_BY, '"list", "poll" or null'),
}


def problem(data: Any, filename: str, published: bool = False) -> str | None:
    """What is wrong with `data` as the sidecar file `filename`, or None if nothing is."""
    if why := _fields_problem(data):
        return why
    if why := _names_problem(data, filename, published):
        return why
    return _state_problem(data)


def _fields_problem(data: Any) -> str | None:
    """Which field of `data` is missing or of a wrong type, or None."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, (required, ok, what) in FIELDS.items():
        if key in data:
            if not ok(data[key]):
                return f"{key} must be {what}"
        elif required:
            return f"{key} is missing"
    return None


def _names_problem(data: dict[str, Any], filename: str, published: bool) -> str | None:
    """The file's name, `name`, `published_as` and the files' paths agree as wansync
    wrote them.

    A live sidecar is `stem(name).status.json`; a published one `published_as.status.json`
    where `published_as` is `stem(name)` or `stem(name)-k`; a succeeded task's files are
    its published group: `published_as.EXT`, or `published_as.k.EXT` for file k of several
    (EXT what its `content_type` says), and `video` is the MP4 among them.
    """
    base, chosen = names.stem(data["name"]), data.get("published_as")
    own = {f"{base}{SUFFIX}"} | ({f"{chosen}{SUFFIX}"} if chosen and published else set())
    if filename not in own:
        return f"name {data['name'][:80]!r} is not this file's task"
    if chosen and not _published_name_of(chosen, base):
        return f"published_as {chosen[:80]!r} is not a name of task {data['name'][:80]!r}"
    video, outputs = data.get("video"), data.get("outputs")
    if video and outputs is not None and video not in outputs:
        return "video is not one of outputs"
    if chosen and data["state"] == "succeeded":
        files = outputs if outputs is not None else [video] if video else []
        return _group_problem(chosen, files)
    return None


def _group_problem(chosen: str, files: list[dict[str, Any]]) -> str | None:
    """Each file's `path` is its place in the group published as `chosen`, or what is wrong."""
    for k, file in enumerate(files):
        extension = EXTENSIONS.get(file.get("content_type") or "video/mp4", "mp4")
        want = f"{chosen}{names.group_suffix(k, len(files), extension)}"
        if file["path"] != want:
            where = "video" if len(files) == 1 else f"outputs[{k}]"
            return f"{where}.path {file['path'][:80]!r} is not {want[:90]!r}"
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
    if state == "downloading" and output is not None:
        found = outputs_of(output)
        if not (isinstance(found, Outputs) and found.files):  # (no output: poll again)
            return "state downloading needs an output that names a file to fetch"
    if state == "failed" and data.get("error") is None:
        return "state failed needs an error"
    if state == "succeeded" and not (data.get("video") or data.get("outputs")):
        return "state succeeded needs its files (outputs, or a video)"
    if state in ("queued", "submitting"):
        job = data.get("job")
        if not job or (state == "submitting" and not isinstance(job["model"], str)):
            return f"state {state} needs the job's record (with its model)"
    return None


def hook_problem(data: dict[str, Any]) -> str | None:
    """What makes the `hook` of a valid sidecar's object one wansync did not write, or None."""
    hook = data.get("hook")
    if not isinstance(hook, dict) or hook.get("event") not in HOOK_EVENTS:
        return "hook must be {event: succeeded|failed, state, attempts}"
    if hook.get("state") not in HOOK_STATES:
        return f"hook.state must be one of {', '.join(HOOK_STATES)}"
    if hook["event"] != data["state"]:
        return f"a {hook['event']} hook for a task that {data['state']}"
    return None


# -- for showing, not acting on --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Shown:
    """A sidecar's fields as they are, for a display (`wansync status`, `cancel`).

    Not type-checked (a hand-edited value is shown as it is): each field may be anything
    JSON holds, or None when the key is missing. Only `read` decides what wansync acts on.
    """

    name: Any
    task_id: Any
    state: Any
    task_status: Any
    polls: Any
    first_seen: Any
    error: Any
    video: Any
    download: Any
    job: Any
    outputs: Any = None


def show(data: dict[str, Any]) -> Shown:
    """The fields of `data` (what `load` returned) that a display shows."""
    get = data.get
    return Shown(
        get("name"),
        get("task_id"),
        get("state"),
        get("task_status"),
        get("polls", 0),
        get("first_seen"),
        get("error"),
        get("video"),
        get("download"),
        get("job"),
        get("outputs"),
    )
