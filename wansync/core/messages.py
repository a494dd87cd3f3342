"""What worker threads tell the main loop: one frozen dataclass per kind of result.

Workers do I/O only and post these into the `Mailbox`; the loop takes them out and
dispatches on the type with `match`. An outcome is the step's value or the error it
ended with (see `workers.attempt`), never a raised exception.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wansync.core import events as ev
from wansync.core.errors import TransientError, WansyncError
from wansync.core.listpoll import ListRequest, Page
from wansync.core.tracker import Task


@dataclass(frozen=True)
class TaskReport:
    """One answer of the task API, already checked for shape (remote/api.py)."""

    status: str
    request_id: str | None
    output: dict[str, Any]
    usage: dict[str, Any] | None
    # the prompt the answer echoes, as `jobmatch.digest` (read before `output` was cleaned,
    # which cuts long text); None when it echoes none
    prompt_sha256: str | None = None


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: the new task's id."""

    task_id: str
    request_id: str | None


@dataclass(frozen=True)
class Downloaded:
    """A complete, verified `.part` file, fsynced and ready to be renamed into place;
    `content_type` is what its bytes are (`video/mp4`, `image/png` …), not what the
    server said."""

    bytes: int
    sha256: str
    content_type: str
    etag: str | None


@dataclass(frozen=True, slots=True)
class PollDone:
    """One answer of the task API; `started`: monotonic, `started_wall`: wall clock."""

    name: str
    task_id: str
    started: float
    started_wall: float
    seconds: float
    outcome: TaskReport | WansyncError


@dataclass(frozen=True, slots=True)
class DownloadStarted:
    """A file's answer came: the sidecar must know its ETag before much is on disk.
    `index`: which file of the task's group (from 0)."""

    name: str
    slot: int
    url: str
    etag: str | None
    resume_from: int
    index: int = 0


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """Bytes of file `index` on disk so far (sent at most every few seconds)."""

    name: str
    slot: int
    bytes: int
    total: int | None
    index: int = 0


@dataclass(frozen=True, slots=True)
class DownloadDone:
    """File `index` of the task's group came down (or did not)."""

    name: str
    slot: int
    url: str
    seconds: float
    outcome: Downloaded | WansyncError
    index: int = 0


@dataclass(frozen=True, slots=True)
class UploadDone:
    """A job's local images are uploaded: their `oss://` URLs, in order."""

    name: str
    outcome: list[str] | WansyncError


@dataclass(frozen=True, slots=True)
class PostDone:
    """The create request's answer."""

    name: str
    outcome: Submitted | WansyncError


@dataclass(frozen=True, slots=True)
class LookupDone:
    """A task-list search; `known`: ids of our tasks that ended in the last day;
    `window`: the [from, to] searched, Unix seconds on the server's clock; `said`: the
    candidates polled, each with the digest of the prompt its answer echoes (None: none)."""

    name: str
    outcome: list[dict[str, Any]] | WansyncError
    known: frozenset[str]
    window: tuple[float, float] | None = None
    said: Mapping[str, str | None] = field(default_factory=dict)


JobStepDone = UploadDone | PostDone | LookupDone


@dataclass(frozen=True, slots=True)
class ListDone:
    """One page of the task list (`request`), or the error it ended with (run/listing.py)."""

    request: ListRequest
    seconds: float
    outcome: Page | TransientError


# -- what the submitter hands to the loop (returned, not posted: it runs on the loop) ----
@dataclass(frozen=True, slots=True)
class Adopt:
    """Hand-over: the job's task exists and its `.task` is written; track `task` like any.

    `job`: the job's own name, which `task.name` is unless a producer's `.task` took it.
    """

    task: Task
    job: str


@dataclass(frozen=True, slots=True)
class End:
    """Hand-over: publish this job (failed, or a publish cut short) like any task."""

    task: Task


Handover = Adopt | End

# An `ev.Event` posted by a thread (an API answer, a hook's result) is emitted by the loop.
Message = (
    PollDone | DownloadStarted | DownloadProgress | DownloadDone | JobStepDone | ListDone | ev.Event
)


class Mailbox:
    """Results from every worker to the main loop; posting wakes the loop."""

    def __init__(
        self, wake: Callable[[], None], nudge: Callable[[float], None] | None = None
    ) -> None:
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._wake = wake
        self._nudge = nudge

    def post(self, message: Message, within: float | None = None) -> None:
        """Queue `message` and wake the loop; with `within`, only if the loop would not
        wake by itself within that many seconds (`Waker.nudge`: a result that can wait)."""
        self._queue.put(message)
        if within is not None and self._nudge is not None:
            self._nudge(within)
        else:
            self._wake()

    def note(self, event: ev.Event) -> None:
        """An event from a thread, emitted at the loop's next tick; it does not wake the
        loop (an API answer is followed by its own result, which does)."""
        self._queue.put(event)

    def drain(self) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out
