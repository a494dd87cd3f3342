"""The simulator's state: scripted tasks, pending faults and stalls, and the request log.

Shared by every endpoint module under one lock; the HTTP server (`server.py`) is built on
top of it, so the endpoints depend on this module and never on the server.
"""

from __future__ import annotations

import random
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import faults
from .model import Fault, SimTask
from .pictures import PictureStore
from .reply import Reply
from .video import VideoStore

STALL_POINTS = {"create": ("before", "after")}
STALL_LIMIT = 120.0  # seconds a stalled request is held at most


@dataclass
class Stall:
    """One request taken in and never answered, until the client hangs up.

    For the crash tests: the daemon waits for an answer that does not come, the test sees
    `reached` and kills it there. `before` holds a create before the task is made, `after`
    once it is made. Plain HTTP only: over TLS the hang-up cannot be peeked at,
    so the hold ends at once.
    """

    endpoint: str
    when: str
    reached: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def hold(self, reply: Reply) -> None:
        """Wait (no answer) until the client's side of the connection closes, or release."""
        self.reached.set()
        conn = reply.connection
        deadline = time.monotonic() + STALL_LIMIT
        while not self.released.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([conn], [], [], 0.1)
            if not readable:
                continue
            try:
                if not conn.recv(1, socket.MSG_PEEK):
                    break  # EOF: the client is gone (killed, or it gave up)
            except (OSError, ValueError):  # a reset, or TLS (no MSG_PEEK): stop holding
                break
            time.sleep(0.1)  # bytes of a next request: not ours to read; keep holding
        reply.close_connection = True


class SimState:
    """Tasks by id, faults to apply, stalls to hold, and every request taken in."""

    def __init__(
        self, key: str, auto: bool, defaults: dict[str, Any], chaos: float, seed: int
    ) -> None:
        self.key = key
        self.auto = auto
        self.defaults = defaults
        self.chaos = chaos  # share of requests that get a random fault (load tests)
        self._chaos_rng = random.Random(seed)
        self.tasks: dict[str, SimTask] = {}
        self.faults: list[Fault] = []
        self.stalls: list[Stall] = []
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.video = VideoStore()
        self.pictures = PictureStore(self.video)
        self.scheme = "http"  # the server sets these two once it is bound
        self.netloc = "127.0.0.1"
        # Seconds the API's clock is ahead of this machine's (negative: behind): its `Date`
        # headers, the times in its answers and the task list's filter all move by it,
        # as if the daemon's clock were that far behind (docs/what-happens.md).
        self.clock_offset = 0.0

    def api_clock(self, ts: float) -> float:
        """A time on this machine's clock, as the simulated API's clock shows it."""
        return ts + self.clock_offset

    # -- scripting ---------------------------------------------------------------------
    def add_task(self, task_id: str, **spec: Any) -> SimTask:
        task = SimTask(task_id, **{**self.defaults, **spec})
        with self._lock:
            self.tasks[task_id] = task
        return task

    def add_fault(self, target: str, kind: str, **spec: Any) -> Fault:
        return self.add(Fault(target, kind, **spec))

    def add(self, fault: Fault) -> Fault:
        """Script `fault` (one checked by `faults.from_json`, or made by a test)."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def stall(self, endpoint: str, when: str = "before") -> Stall:
        """Hold the next `endpoint` request unanswered (`create`: `before` or `after` the
        task is made) until the client hangs up; `.reached` is set once it is held."""
        if when not in STALL_POINTS.get(endpoint, ()):
            raise ValueError(f"cannot stall {endpoint!r} {when!r}; points: {STALL_POINTS}")
        stall = Stall(endpoint, when)
        with self._lock:
            self.stalls.append(stall)
        return stall

    def take_stall(self, endpoint: str, when: str) -> Stall | None:
        with self._lock:
            for stall in self.stalls:
                if stall.endpoint == endpoint and stall.when == when:
                    self.stalls.remove(stall)
                    return stall
        return None

    def release_stalls(self) -> None:
        with self._lock:
            stalls, self.stalls = self.stalls, []
        for stall in stalls:
            stall.released.set()

    def requests(self, kind: str | None = None, task_id: str | None = None) -> list[dict[str, Any]]:
        """The requests taken in, in the order their answers started (each was logged just
        before its answer's first byte); `t` and `wall` are when each arrived."""
        with self._lock:
            return [
                r
                for r in self.log
                if (kind is None or r["kind"] == kind)
                and (task_id is None or r["task_id"] == task_id)
            ]

    # -- tasks -------------------------------------------------------------------------
    def task(self, task_id: str) -> SimTask:
        with self._lock:
            return self.tasks.get(task_id) or self.auto_task(task_id)

    def auto_task(self, task_id: str) -> SimTask:
        """Unscripted ids behave by keyword: fail, cancel, unknown; anything else succeeds,
        with a video, or with two pictures in `results[]` ("pictures") or one in
        `choices[]` ("choices").

        Called with the lock held.
        """
        lowered = task_id.lower()
        outcome = "SUCCEEDED"
        if not self.auto or "unknown" in lowered:
            outcome = "UNKNOWN"
        elif "fail" in lowered:
            outcome = "FAILED"
        elif "cancel" in lowered:
            outcome = "CANCELED"
        shape: dict[str, Any] = {}
        if "pictures" in lowered:
            shape = {"shape": "results", "pictures": 2}
        elif "choices" in lowered:
            shape = {"shape": "choices"}
        task = SimTask(task_id, outcome=outcome, **{**self.defaults, **shape})
        self.tasks[task_id] = task
        return task

    def video_sha256(self, task_id: str) -> str:
        return self.video.sha256(self.task(task_id))

    def picture_sha256s(self, task_id: str) -> list[str]:
        """The sha256 of each picture a picture task made, in the order it reports them."""
        task = self.task(task_id)
        return [self.pictures.sha256(task, k) for k in self.pictures.made(task)]

    # -- per request -------------------------------------------------------------------
    def take_fault(self, target: str, task_id: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.target == target and fault.task_id in (None, task_id):
                    fault.count -= 1
                    return fault
            if self.chaos and self._chaos_rng.random() < self.chaos:
                return faults.random_fault(self._chaos_rng, target)
        return None

    def record(self, entry: dict[str, Any]) -> None:
        """One request into the log (`Reply.log_as` says when and what it holds)."""
        with self._lock:
            self.log.append(entry)
