"""What the simulator scripts: tasks and faults, as plain data (no HTTP, no threads).

The leaf of the simulator's import graph: every other module reads these, none of them
is read from here.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from importlib import resources


def sample_video() -> bytes:
    """The small, real, playable MP4 that ships in the package."""
    return resources.files("wansync").joinpath("data/sample.mp4").read_bytes()


def mp4_seconds(data: bytes) -> float:
    """The duration an MP4's `moov/mvhd` box states (0.0 if it has none): what players show."""
    moov = _box(data, b"moov")
    mvhd = _box(moov, b"mvhd") if moov else b""
    if len(mvhd) < 32:
        return 0.0
    if mvhd[0] == 1:  # version 1: 64-bit times and duration
        scale, duration = struct.unpack(">IQ", mvhd[20:32])
    else:
        scale, duration = struct.unpack(">II", mvhd[12:20])
    return duration / scale if scale else 0.0


def _box(data: bytes, kind: bytes) -> bytes:
    """The payload of the first top-level box of `kind` in `data` (b"" if none)."""
    pos = 0
    while pos + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8:
            return b""
        if name == kind:
            return data[pos + 8 : pos + size]
        pos += size
    return b""


@dataclass
class SimTask:
    """One scripted task. Progress counts polls, or seconds if `seconds` is set."""

    task_id: str
    outcome: str = "SUCCEEDED"  # SUCCEEDED | FAILED | CANCELED | UNKNOWN
    pending_polls: int = 1
    running_polls: int = 1
    seconds: float | None = None  # time-based: PENDING for a third, then RUNNING
    queue_seconds: float | None = None  # realistic: PENDING this long after `created`,
    run_seconds: float | None = None  # then RUNNING this long (times as the API reports)
    video_size: int | None = None  # None: the sample MP4; else a synthetic body of this size
    video_rate: float | None = None  # bytes per second when serving the video
    url_ttl: float = 86400.0
    code: str | None = "InternalError.Algo"
    message: str | None = "Generation failed (simulated)."
    etag_version: int = 1
    with_url: bool = True  # False: SUCCEEDED without a video_url (a broken answer)
    video_url: str | None = None  # override the URL handed out (other host, scheme, …)
    answers_as: str | None = None  # polls answer naming this other task id (a mixed-up answer)
    content_type: str = "video/mp4"
    prompt: str | None = None  # the prompt sent, for a task made by the create endpoint
    resolution: int = 720  # the `SR` reported in `usage`
    shape: str = "video_url"  # what SUCCEEDED reports: video_url | results | choices
    pictures: int = 1  # pictures a picture task makes (its `n`)
    failed_results: int = 0  # of them, this many are failed sub-results (code, no url)
    picture_format: str = "png"  # png | jpeg | webp | mixed (png and jpeg by turns)
    picture_urls: list[str] | None = None  # override the picture URLs handed out
    picture_content_type: str | None = None  # override the Content-Type pictures get
    model: str | None = None  # the model, as the task list shows it (None: not listed)
    listed: bool = True  # False: the task list does not show it (yet)
    created: float = field(default_factory=time.time)
    polls: int = 0
    first_poll: float | None = None
    end_time: float | None = None
    canceled_at: float | None = None  # set by the cancel endpoint (PENDING tasks only)

    @property
    def counts_polls(self) -> bool:
        """Its progress counts the looks at it (polls, list rows), not time."""
        return self.run_seconds is None and self.seconds is None

    def status(self, now: float) -> str:
        """The task_status at `now`; the first terminal answer also fixes `end_time`."""
        if self.outcome == "UNKNOWN":
            return "UNKNOWN"
        if self.canceled_at is not None:
            self.end_time = self.canceled_at
            return "CANCELED"
        progress = self._progress(now)
        if progress is not None:
            return progress
        if self.end_time is None:
            self.end_time = now
        return self.outcome

    def _progress(self, now: float) -> str | None:
        """PENDING or RUNNING while the script says so, else None (finished)."""
        if self.run_seconds is not None:
            elapsed = now - self.created
            queue = self.queue_seconds or 0.0
            if elapsed < queue:
                return "PENDING"
            if elapsed < queue + self.run_seconds:
                return "RUNNING"
            self.end_time = self.created + queue + self.run_seconds
            return None
        if self.seconds is not None:
            start = self.first_poll if self.first_poll is not None else now
            elapsed = now - start
            if elapsed < self.seconds / 3:
                return "PENDING"
            return "RUNNING" if elapsed < self.seconds else None
        if self.polls <= self.pending_polls:
            return "PENDING"
        if self.polls <= self.pending_polls + self.running_polls:
            return "RUNNING"
        return None


@dataclass
class Fault:
    """Applied to the next `count` requests that match `target` (and `task_id`, if set).

    targets: task, video, picture, submit, list, cancel.
    kinds: status (answer `status` with an error body), reset (close without answering),
    slow (wait `delay`, then answer normally), malformed (200, not JSON; or `body` as
    JSON), truncate (a video body cut after `at` bytes), html (a 200 HTML page instead of
    the video), expired (403), redirect (302 to `body`), endless (a video that never ends);
    truncate and the HTML page apply to pictures too.
    """

    target: str  # "task" | "video" | "picture" | "submit" | "list" | "cancel"
    kind: str
    task_id: str | None = None
    count: int = 1
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    at: int = 0
    code: str | None = None
    body: bytes | None = None
    created: bool = False  # "submit" only: make the task first, then answer with the fault
