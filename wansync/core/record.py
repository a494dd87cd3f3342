"""`TaskRecord`: the whole state of one task or job, typed; its sidecar is this, on disk.

Only `files/sidecar.py` turns a record into JSON and back; every other module reads and
assigns attributes, so a misspelt field or a wrong type is a mypy error, not a sidecar
that is wrong on disk. The parts that are values of their own (`ErrorInfo`, `Output`,
`DownloadState`, `HookRecord`, `JobRecord`) are frozen: a change is a new value
(`dataclasses.replace`), so sidecar.py can tell a part that changed from one that did not.

Times are kept as the ISO 8601 text the sidecar holds (`times.utc_iso`), not as floats:
a time is written once and read back rarely (`first_seen` before each poll, a job's
`submit_started`), and text keeps a sidecar byte for byte what it was when it is read
and written again, whatever its writer's precision; `times.read_time` bounds it on use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SCHEMA_VERSION = 1
TERMINAL_STATES = ("succeeded", "failed")
STATES = ("queued", "submitting", "polling", "downloading", *TERMINAL_STATES)
VIDEO_TYPE = "video/mp4"
# What a published file's bytes are -> its extension (docs/folders.md, Outputs)
EXTENSIONS = {VIDEO_TYPE: "mp4", "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}

# A job is `queued` then `submitting`; from `polling` on, a job and a task are the same.
State = Literal["queued", "submitting", "polling", "downloading", "succeeded", "failed"]
# How the task's end was learned: the task list said it ended (and a poll then saw it),
# or a poll of its own did (docs/folders.md).
FoundBy = Literal["list", "poll"]
FOUND_BY: tuple[FoundBy, ...] = ("list", "poll")


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why a task failed, or the transient error it waits out (`transient`)."""

    code: str
    message: str
    transient: bool


@dataclass(frozen=True, slots=True)
class Output:
    """One published file of a task: its name in outbox/, size, hash and type.

    `sha256` and `content_type` are None only in a sidecar written before they were
    recorded (such an output is the task's video).
    """

    path: str
    bytes: int
    sha256: str | None = None
    content_type: str | None = None

    @property
    def is_video(self) -> bool:
        return self.content_type in (VIDEO_TYPE, None)

    @property
    def extension(self) -> str:
        """`mp4`, `png`, `jpg` or `webp`: what its bytes are (an unrecorded type: mp4)."""
        return EXTENSIONS.get(self.content_type or VIDEO_TYPE, "mp4")


@dataclass(frozen=True, slots=True)
class FileDownload:
    """One file of a group on its way down: `etag` what a resume must match, `bytes` of
    `total` on disk so far."""

    etag: str | None
    bytes: int = 0
    total: int | None = None


@dataclass(frozen=True, slots=True)
class DownloadState:
    """`etag`: what a resume must match; `bytes` of `total` are on disk so far.

    A task of one file keeps that file's state here; a task of several keeps each file's
    in `files` (in file order) and the sums in `bytes` and `total` (None while a size is
    unknown), with no `etag` of its own.
    """

    etag: str | None
    bytes: int = 0
    total: int | None = None
    files: tuple[FileDownload, ...] = ()

    def file(self, index: int, count: int) -> FileDownload:
        """File `index` of a group of `count`: its own state (nothing yet if unknown)."""
        if count == 1:
            return FileDownload(self.etag, self.bytes, self.total)
        return self.files[index] if index < len(self.files) else FileDownload(None)

    def with_file(self, index: int, count: int, state: FileDownload) -> DownloadState:
        """This state with file `index` of `count` replaced by `state`."""
        if count == 1:
            return DownloadState(state.etag, state.bytes, state.total)
        files = [self.file(k, count) for k in range(count)]
        files[index] = state
        totals = [f.total for f in files]
        total = None if None in totals else sum(t or 0 for t in totals)
        return DownloadState(None, sum(f.bytes for f in files), total, tuple(files))


@dataclass(frozen=True, slots=True)
class HookRecord:
    """The user's hook for an ended task: `pending` until it ran (`done`) or gave up."""

    event: str  # the task's ending: succeeded | failed
    state: str = "pending"  # pending | done | failed
    attempts: int = 0
    exit_code: int | None = None


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A `.job`'s submit journal: the file, the model, and when the create went out."""

    file: str
    model: str | None
    attempts: int = 0
    submit_started: str | None = None  # written durably before the create request
    submitted: str | None = None
    found_by: str | None = None  # "task list": the answer was lost, the search found it
    # the task-list window for a lost answer, on the API's clock (ISO 8601 UTC, from, to):
    # recorded with the create or at the first search, so a restart or `retry` reuses it
    search_window: tuple[str, str] | None = None
    # the digest of the `.job` as read for the request: a file put in its place is not it
    sha256: str | None = None
    # the prompt the create carried, as `jobmatch.digest` (written with `submit_started`):
    # a task taken from the task list must echo it (None: a sidecar from before it was kept)
    prompt_sha256: str | None = None


@dataclass(slots=True)
class TaskRecord:
    """One task's (or job's) whole state: what its sidecar says, and nothing else."""

    name: str
    task_id: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    state: State = "polling"  # the start of every task's way
    task_status: str | None = None  # the API's last answer (PENDING, RUNNING, ...)
    polls: int = 0
    first_seen: str | None = None
    last_polled: str | None = None
    # seconds wansync had followed the task at `last_polled`, by the monotonic clock: what a
    # restart counts `give_up_after` on, so a wall-clock step between two runs ages nothing
    followed: float | None = None
    next_poll: str | None = None
    finished: str | None = None
    request_id: str | None = None
    error: ErrorInfo | None = None
    output: dict[str, Any] | None = None  # the API's `output`, as it answered
    usage: dict[str, Any] | None = None  # the API's `usage`, as it answered
    expires: str | None = None  # the earliest deadline among the files' signed URLs
    outputs: list[Output] = field(default_factory=list)  # the published files, once done
    download: DownloadState | None = None
    published_as: str | None = None  # the name chosen in outbox/ or failed/
    hook: HookRecord | None = None
    job: JobRecord | None = None
    found_by: FoundBy | None = None  # set by the poll that first saw the task's end
    # sidecar.py's own: JSON read that the fields above do not say (see sidecar.from_json)
    verbatim: dict[str, tuple[Any, Any]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def video(self) -> Output | None:
        """The task's video: its first output that is an MP4."""
        return next((o for o in self.outputs if o.is_video), None)

    @property
    def video_url(self) -> str | None:
        """The API's video URL, if its last answer gave one as text."""
        url = (self.output or {}).get("video_url")
        return url if isinstance(url, str) else None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL_STATES
