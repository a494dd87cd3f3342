"""The typed events of a task's life, and the bus that hands them to small consumers.

The task path emits one event per transition (run/pipeline.py returns them as `Emit`
effects); it writes no sidecar, status line, metric or hook itself. Consumers (the
journal, the log, the job slots, metrics, hooks) subscribe to the bus and take what
they need. Events are emitted on the main thread only,
so a consumer needs no lock; a consumer must be quick (hand slow work to a thread) and a
consumer that raises is logged and skipped, never allowed to stop the loop.

Every event carries `at`, the wall-clock time (`time.time()`) the loop passed in, so a
consumer can measure durations between two events without reading the clock itself.
Fields named `name` and `task_id` mean the task's; a URL is already stripped of its query.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base: the log event name and level are class attributes (None: not logged)."""

    EVENT: ClassVar[str] = "event"
    LEVEL: ClassVar[str | None] = "info"

    at: float

    def fields(self) -> dict[str, Any]:
        """The event's fields except `at` (the log has its own timestamp)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "at"}


# -- tasks -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDiscovered(Event):
    EVENT = "task.discovered"
    name: str
    task_id: str
    state: str
    resumed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskPolled(Event):
    """An answer of the task API for a task (any `task_status`); `seconds`: the request;
    `started`: when the daemon started the poll (ISO UTC, as the sidecar's `last_polled`),
    which tells a poll already out when the account was paused from one started later."""

    EVENT = "task.polled"
    name: str
    task_id: str
    task_status: str
    polls: int
    seconds: float
    changed: bool  # task_status differs from the previous poll's (the log says it at info)
    url: str | None = None  # SUCCEEDED: the video URL, without its query string
    found_by: str | None = None  # the poll that first saw the end: "list" or "poll"
    started: str | None = None  # None only in events made by hand (tests)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskTransientError(Event):
    """Something went wrong that may work later; the task goes on after `retry_in`."""

    EVENT = "task.transient_error"
    LEVEL = "warning"
    name: str
    task_id: str
    code: str
    message: str
    errors_in_row: int
    retry_in: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(Event):
    """The task's files and its records are in the outbox, under `published_as`."""

    EVENT = "task.succeeded"
    name: str
    task_id: str
    published_as: str
    video: str | None  # absolute path of the MP4 (None: the task made pictures)
    sidecar: str  # absolute path of the final sidecar
    polls: int
    path: str = ""  # its first file's path (the log's field)
    outputs: tuple[str, ...] = ()  # absolute paths of every file published, in order


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(Event):
    """The task (or job, or unreadable file) and its sidecar are in `failed/`."""

    EVENT = "task.failed"
    LEVEL = "warning"
    name: str
    task_id: str | None
    published_as: str
    sidecar: str  # absolute path of the final sidecar
    code: str
    message: str
    path: str = ""  # the failed sidecar's path (the log's field)


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputsCapped(Event):
    """A SUCCEEDED answer named more files than a task may fetch: the first `files` come
    down, `dropped` more are not fetched."""

    EVENT = "task.outputs_capped"
    LEVEL = "warning"
    name: str
    task_id: str
    files: int
    dropped: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRemoved(Event):
    EVENT = "task.removed"
    LEVEL = "warning"
    name: str
    task_id: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskInvalid(Event):
    """The `.task` cannot be read (`InvalidTaskFile`); a `task.failed` follows."""

    EVENT = "task.invalid"
    LEVEL = "warning"
    name: str
    file: str
    error: str


# -- downloads ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadStarted(Event):
    """File `file` of the task's `files` (from 1) is coming down."""

    EVENT = "download.started"
    name: str
    task_id: str
    url: str  # without its query string
    resume_from: int
    file: int = 1
    files: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadProgress(Event):
    """`bytes` on disk so far of `total`; `written`: bytes written since the last report."""

    EVENT = "download.progress"
    name: str
    task_id: str
    bytes: int
    total: int | None
    written: int
    file: int = 1
    files: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadCompleted(Event):
    """One file verified and fsynced (published with the task's others); `written`: since
    the last progress; `content_type`: what its bytes are."""

    EVENT = "download.completed"
    name: str
    task_id: str
    bytes: int
    sha256: str
    seconds: float
    written: int
    file: int = 1
    files: int = 1
    content_type: str = "video/mp4"


# -- the account -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ApiAnswered(Event):
    """One HTTP request to the DashScope API ended; `status` None: no HTTP answer at all."""

    EVENT = "api.answered"
    LEVEL = None
    endpoint: str  # "task" | "submit" | "list" | "upload" | "cancel"
    status: int | None
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthRejected(Event):
    EVENT = "auth.rejected"
    LEVEL = "error"
    code: str
    message: str
    pause: float
    detail: str = ""
    probe: bool = False  # the probe poll after a pause was refused too (a new pause)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthResumed(Event):
    EVENT = "auth.resumed"
    detail: str = "the API accepts the key again"


# -- the task list (run/listing.py) ---------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ListPage(Event):
    """A page of the task list answered: `rows` on it, `shown` of them tracked tasks,
    `ended` of those polled at once because the list says they ended."""

    EVENT = "list.page"
    LEVEL = "debug"
    window: int
    page_no: int
    rows: int
    shown: int
    ended: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ListPaused(Event):
    """A list request failed: the list waits `retry_in` s, and every task is polled as
    without it meanwhile. Logged at warning for the first failure of a pause, then debug."""

    EVENT = "list.paused"
    LEVEL = "warning"
    code: str
    message: str
    errors_in_row: int
    retry_in: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ListResumed(Event):
    """A page answered after a pause: tasks the list shows are watched again."""

    EVENT = "list.resumed"
    detail: str = "the task list answers again"


@dataclass(frozen=True, slots=True, kw_only=True)
class ListCut(Event):
    """A bound cut a pass (the window's span, the pages per pass); the tasks left out
    are polled as without the list."""

    EVENT = "list.cut"
    LEVEL = "debug"
    reason: str


# -- jobs (a `.job` before its task exists; then it is a task like any other) --------------
@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(Event):
    EVENT = "job.queued"
    name: str
    model: str
    uploads: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobInvalid(Event):
    """The `.job` cannot be sent as written; a `task.failed` (InvalidJobFile) follows."""

    EVENT = "job.invalid"
    LEVEL = "warning"
    name: str
    file: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitting(Event):
    """`submitting` is on disk; the create request goes out now."""

    EVENT = "job.submitting"
    name: str
    model: str
    uploads: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSubmitted(Event):
    """The job's task exists (`found_by`: None for an answer, "task list" for a search)."""

    EVENT = "job.submitted"
    name: str
    task_id: str
    found_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRetryLater(Event):
    """No task was made (429, 401, could not connect…): the job waits `retry_in` s."""

    EVENT = "job.retry_later"
    LEVEL = "warning"
    name: str
    code: str
    message: str
    retry_in: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JobUncertain(Event):
    """The create's answer was lost: never sent again; the task list is searched."""

    EVENT = "job.submit_uncertain"
    LEVEL = "warning"
    name: str
    message: str
    detail: str = "not sending again; searching the task list"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRemoved(Event):
    EVENT = "job.removed"
    LEVEL = "warning"
    name: str
    detail: str = "job file was removed before submit"


# -- hooks -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class HookRan(Event):
    """One hook command finished a try (`ok`), or was given up (`failed`)."""

    EVENT = "hook.ran"
    name: str
    hook_event: str  # "succeeded" | "failed"
    result: str  # "ok" | "failed"
    exit_code: int | None
    attempts: int


Consumer = Callable[[Event], None]


class EventBus:
    """Hands each event to every consumer, in the order they subscribed; a consumer that
    raises is reported to `logger` (`events.consumer_error`) and the others still run."""

    def __init__(self, logger: Any) -> None:
        self._consumers: list[Consumer] = []
        self._log = logger

    def subscribe(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    def emit(self, event: Event) -> None:
        for consumer in self._consumers:
            try:
                consumer(event)
            except Exception as exc:  # a consumer's bug must not stop the loop
                self._log.error(
                    "events.consumer_error",
                    consumer=getattr(consumer, "__qualname__", repr(consumer)),
                    event_name=event.EVENT,
                    error=f"{type(exc).__name__}: {exc}",
                )


def log_consumer(logger: Any, enabled: Callable[[str], bool] = lambda level: True) -> Consumer:
    """Every event with a LEVEL becomes one structured log line, named by its EVENT.

    `enabled(level)`: whether a line at that level would be written at all; most polls
    are a debug line, and building one only for the level filter to drop it was a
    measurable part of a poll's CPU (docs/performance.md).
    """

    def consume(event: Event) -> None:
        level = event.LEVEL
        if level is None:
            return
        if isinstance(event, TaskPolled) and not event.changed:
            level = "debug"
        if isinstance(event, ListPaused) and event.errors_in_row > 1:
            level = "debug"  # the pause was said once; each further failure only extends it
        if enabled(level):
            getattr(logger, level)(event.EVENT, **event.fields())

    return consume
