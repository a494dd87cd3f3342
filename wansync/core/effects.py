"""What the task path asks the daemon to do: effects, returned, never done by the decider.

`Pipeline` (run/pipeline.py) changes state on the main thread (the tracker, the
scheduler, a task's record) and returns a list of these for everything beyond that: a
request for a worker, a file to move or drop, an event for the bus. The daemon carries
them out in order (`run/carry.py`, the `Carrier`), so a test can drive the pipeline and
read what it asked for without threads, sockets or files.

The journal (run/journal.py) writes live tasks' sidecars: it follows the events, and
`WriteSidecars` names the records that changed without an event of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wansync.core import events as ev
from wansync.core.listpoll import ListRequest
from wansync.core.tracker import Slot, Task


@dataclass(frozen=True, slots=True)
class StartPoll:
    """Ask the task API about `task_id` (a poll worker); `started`: monotonic, `started_wall`."""

    name: str
    task_id: str
    started: float
    started_wall: float


@dataclass(frozen=True, slots=True)
class StartList:
    """Ask the task list for one page (the list worker, run/listing.py)."""

    request: ListRequest


@dataclass(frozen=True, slots=True)
class StartDownload:
    """Fetch `url` into `part` (a download worker), resuming if the ETag still matches,
    and check it is a `kind` (a whole MP4, or a PNG/JPEG/WebP picture); `slot` is the
    ticket the tracker gave it, for file `slot.index` of the task's group."""

    name: str
    url: str
    etag: str | None
    part: Path
    slot: Slot
    kind: Literal["video", "picture"] = "video"


@dataclass(frozen=True, slots=True)
class Publish:
    """Move an ended task's files into outbox/ or failed/ (publish.py), then emit its end.

    `others`: `.part` paths another live task downloads into now (a name such as
    `.clip.1.png.part` may be `clip`'s first picture or `clip.1`'s only one): a failed
    task leaves those alone.
    """

    task: Task
    others: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ForgetFiles:
    """A removed task's sidecar and partial downloads (`parts`): ours to drop."""

    name: str
    parts: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True)
class WriteSidecars:
    """These records changed with no event of their own (an auth pause shows on every
    polling task): the journal writes them with its next batch."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReloadKey:
    """Read the API key again before the probe of an auth pause (a fixed key file counts)."""


@dataclass(frozen=True, slots=True)
class Emit:
    """Hand `event` to the bus: the journal, the log, the job slots, hooks, metrics."""

    event: ev.Event


Effect = (
    StartPoll | StartList | StartDownload | Publish | ForgetFiles | WriteSidecars | ReloadKey | Emit
)
