"""A local DashScope-compatible server: the task API and video hosting with signed URLs.

Used by `wansync simulate`, the demo, the tests and the benchmarks, so that nothing
needs a real key or the internet. It speaks SPEC §1: Bearer key check, tasks going
PENDING → RUNNING → SUCCEEDED (or FAILED / CANCELED / UNKNOWN), and videos served with
`Range`, `If-Range`, `ETag` and URLs that expire (403 with an XML body after). Faults
are scripted per request (429, 5xx, resets, stalls, truncated or HTML bodies) and every
request is recorded, so tests can assert what the daemon actually sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import secrets
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import SUBMIT_PATH, api_time
from .simulator_submit import OSS_PATH, SubmitDesk

TASK_PREFIX = "/api/v1/tasks/"
VIDEO_PREFIX = "/videos/"
PATTERN_SIZE = 1024 * 1024


def sample_video() -> bytes:
    """The small, real, playable MP4 that ships in the package."""
    return resources.files("wansync").joinpath("data/sample.mp4").read_bytes()


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
    content_type: str = "video/mp4"
    created: float = field(default_factory=time.time)
    polls: int = 0
    first_poll: float | None = None
    end_time: float | None = None

    def status(self, now: float) -> str:
        if self.outcome == "UNKNOWN":
            return "UNKNOWN"
        if self.run_seconds is not None:
            elapsed = now - self.created
            queue = self.queue_seconds or 0.0
            if elapsed < queue:
                return "PENDING"
            if elapsed < queue + self.run_seconds:
                return "RUNNING"
            self.end_time = self.created + queue + self.run_seconds
            return self.outcome
        if self.seconds is not None:
            start = self.first_poll if self.first_poll is not None else now
            elapsed = now - start
            if elapsed < self.seconds / 3:
                return "PENDING"
            if elapsed < self.seconds:
                return "RUNNING"
        else:
            if self.polls <= self.pending_polls:
                return "PENDING"
            if self.polls <= self.pending_polls + self.running_polls:
                return "RUNNING"
        if self.end_time is None:
            self.end_time = now
        return self.outcome


@dataclass
class Fault:
    """Applied to the next `count` requests that match `target` (and `task_id`, if set).

    kinds: status (answer `status` with an error body), reset (close without answering),
    slow (wait `delay`, then answer normally), malformed (200, not JSON; or `body` as
    JSON), truncate (a video body cut after `at` bytes), html (a 200 HTML page instead of
    the video), expired (403), redirect (302 to `body`), endless (a video that never ends).
    """

    target: str  # "task" | "video" | "submit" | "list"
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


class Simulator:
    """The server; `start()` runs it on a background thread, `url` is its base URL."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        key: str = "sim-key",
        auto: bool = True,
        pending_polls: int = 1,
        running_polls: int = 1,
        seconds: float | None = None,
        chaos: float = 0.0,
        seed: int = 1,
        tls: tuple[str, str] | None = None,
        max_in_progress: int = 5,
    ) -> None:
        self.key = key
        self.chaos = chaos  # share of requests that get a random fault (load tests)
        self._chaos_rng = random.Random(seed)
        self.auto = auto
        self.defaults = {
            "pending_polls": pending_polls,
            "running_polls": running_polls,
            "seconds": seconds,
        }
        self.tasks: dict[str, SimTask] = {}
        self.faults: list[Fault] = []
        self.log: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(16)
        self._sample = sample_video()
        self._pattern = random.Random(7).randbytes(PATTERN_SIZE)
        self._server = ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.sim = self  # type: ignore[attr-defined]
        self.scheme = "http"
        if tls:  # HTTPS with the given certificate and key files, as the real service
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        self._thread: threading.Thread | None = None
        self.desk = SubmitDesk(self, max_in_progress)

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # -- scripting ---------------------------------------------------------------------
    def add_task(self, task_id: str, **spec: Any) -> SimTask:
        task = SimTask(task_id, **{**self.defaults, **spec})
        with self._lock:
            self.tasks[task_id] = task
        return task

    def add_fault(self, target: str, kind: str, **spec: Any) -> Fault:
        fault = Fault(target, kind, **spec)
        with self._lock:
            self.faults.append(fault)
        return fault

    def requests(self, kind: str | None = None, task_id: str | None = None) -> list[dict]:
        with self._lock:
            return [
                r
                for r in self.log
                if (kind is None or r["kind"] == kind)
                and (task_id is None or r["task_id"] == task_id)
            ]

    def task(self, task_id: str) -> SimTask:
        with self._lock:
            task = self.tasks.get(task_id)
            if task is None:
                task = self._auto_task(task_id)
            return task

    def _auto_task(self, task_id: str) -> SimTask:
        """Unscripted ids behave by keyword: fail, cancel, unknown; anything else succeeds."""
        lowered = task_id.lower()
        outcome = "SUCCEEDED"
        if not self.auto or "unknown" in lowered:
            outcome = "UNKNOWN"
        elif "fail" in lowered:
            outcome = "FAILED"
        elif "cancel" in lowered:
            outcome = "CANCELED"
        task = SimTask(task_id, outcome=outcome, **self.defaults)
        self.tasks[task_id] = task
        return task

    # -- videos ------------------------------------------------------------------------
    def video_length(self, task: SimTask) -> int:
        return len(self._sample) if task.video_size is None else task.video_size

    def video_bytes(self, task: SimTask, start: int = 0, end: int | None = None):
        """The body bytes [start, end) in chunks; synthetic bodies are an MP4 header + noise."""
        length = self.video_length(task)
        end = length if end is None else min(end, length)
        if task.video_size is None:
            body = self._sample
            for pos in range(start, end, 256 * 1024):
                yield body[pos : min(end, pos + 256 * 1024)]
            return
        # An ftyp box, then the ETag version (so a changed object has other bytes), then noise.
        header = struct.pack(">I4s4sI", 32, b"ftyp", b"isom", 512) + b"isomiso2mp41" + b"\0" * 4
        header += task.etag_version.to_bytes(4, "big")
        pos = start
        while pos < end:
            offset = pos % PATTERN_SIZE
            take = min(end - pos, PATTERN_SIZE - offset, 256 * 1024)
            chunk = self._pattern[offset : offset + take]
            if pos < len(header):
                n = min(len(header) - pos, take)
                chunk = header[pos : pos + n] + chunk[n:]
            yield chunk
            pos += take

    def video_sha256(self, task_id: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.video_bytes(self.task(task_id)):
            digest.update(chunk)
        return digest.hexdigest()

    def etag(self, task: SimTask) -> str:
        return '"' + hashlib.md5(f"{task.task_id}:{task.etag_version}".encode()).hexdigest() + '"'  # noqa: S324

    def sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}:{expires}".encode(), "sha256").hexdigest()

    def signed_url(self, task: SimTask, base: str) -> str:
        expires = int((task.end_time or time.time()) + task.url_ttl)
        signature = self.sign(task.task_id, expires)
        return (
            f"{base}{VIDEO_PREFIX}{task.task_id}.mp4"
            f"?Expires={expires}&OSSAccessKeyId=sim&Signature={signature}"
        )

    def take_fault(self, target: str, task_id: str | None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.count > 0 and fault.target == target and fault.task_id in (None, task_id):
                    fault.count -= 1
                    return fault
            if self.chaos and self._chaos_rng.random() < self.chaos:
                return self._random_fault(target)
        return None

    def _random_fault(self, target: str) -> Fault:
        kinds = [
            ("status", {"status": 429, "retry_after": "0.2"}),
            ("status", {"status": 500}),
            ("status", {"status": 503}),
            ("reset", {}),
            ("slow", {"delay": 0.3}),
        ]
        if target == "video":
            kinds += [("truncate", {"at": 4096}), ("truncate", {"at": 100})]
        else:
            kinds += [("malformed", {})]
        kind, spec = self._chaos_rng.choice(kinds)
        return Fault(target, kind, **spec)

    def record(self, **entry: Any) -> None:
        entry["t"] = time.monotonic()
        entry["wall"] = time.time()
        with self._lock:
            self.log.append(entry)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wansync-simulator"

    def log_message(self, *_: Any) -> None:  # quiet: tests read the request log instead
        pass

    @property
    def sim(self) -> Simulator:
        return self.server.sim  # type: ignore[attr-defined]

    # -- helpers -----------------------------------------------------------------------
    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._json(
            status, {"request_id": secrets.token_hex(8), "code": code, "message": message}, headers
        )

    def _reset(self) -> None:
        """Drop the connection with a TCP RST, no answer at all."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _apply(self, fault: Fault) -> bool:
        """Apply a fault that replaces the answer; False for `slow` (answer normally)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.kind == "slow":
            return False
        if fault.kind == "reset":
            self._reset()
        elif fault.kind == "malformed":
            if fault.body is None:
                self._send(200, b"<html>not json</html>", "text/html")
            else:
                self._send(200, fault.body, "application/json")
        elif fault.kind == "redirect":
            self._send(302, b"", headers={"Location": (fault.body or b"/").decode()})
        elif fault.kind == "endless":
            self._endless()
        elif fault.kind == "html":
            self._send(200, b"<html><body>Access page</body></html>", "text/html")
        elif fault.kind == "expired":
            self._expired()
        else:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            code = fault.code or {
                429: "Throttling.RateQuota",
                401: "InvalidApiKey",
                400: "InvalidParameter",
            }.get(fault.status, "InternalError")
            self._error(fault.status, code, f"simulated {fault.status}", headers)
        return True

    def _endless(self) -> None:
        """A 200 video with no length that never ends (until the client hangs up)."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        task = SimTask("endless", video_size=1 << 62)
        for chunk in self.sim.video_bytes(task):
            self.wfile.write(chunk)

    def _expired(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
            b"<Message>Request has expired.</Message></Error>"
        )
        self._send(403, body, "application/xml")

    # -- routes ------------------------------------------------------------------------
    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        try:
            if parts.path.startswith(TASK_PREFIX):
                self._task(parts.path[len(TASK_PREFIX) :])
            elif parts.path.startswith(VIDEO_PREFIX) and parts.path.endswith(".mp4"):
                self._video(parts.path[len(VIDEO_PREFIX) : -4], parse_qs(parts.query))
            elif parts.path == "/_sim/requests":
                query = parse_qs(parts.query)
                kind = query.get("kind", [None])[0]
                since = float(query.get("since", ["0"])[0])
                self._json(200, [r for r in self.sim.requests(kind) if r["t"] >= since])
            elif parts.path == "/api/v1/tasks":
                self.sim.desk.list_tasks(self, parse_qs(parts.query))
            elif parts.path == "/api/v1/uploads":
                self.sim.desk.policy(self, parse_qs(parts.query))
            elif parts.path == "/_sim/created":
                with self.sim._lock:
                    desk = self.sim.desk
                    self._json(
                        200,
                        {
                            "created": desk.created,
                            "most_in_progress": desk.most_in_progress,
                            "rejected_busy": desk.rejected_busy,
                        },
                    )
            elif parts.path == "/_sim/tasks":
                with self.sim._lock:
                    tasks = [vars(t).copy() for t in self.sim.tasks.values()]
                self._json(200, tasks)
            else:
                self._error(404, "NotFound", "no such path")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = urlsplit(self.path).path
        if path == SUBMIT_PATH:
            self.sim.desk.submit(self, raw)
            return
        if path == OSS_PATH:
            self.sim.desk.oss_upload(self, raw)
            return
        body = json.loads(raw or b"{}")
        if self.path == "/_sim/tasks":  # one task, or {"tasks": [...]} in bulk
            for spec in body.get("tasks", [body]):
                self.sim.add_task(spec.pop("task_id"), **spec)
            self._json(200, {"ok": True})
        elif self.path == "/_sim/faults":
            self.sim.add_fault(body.pop("target"), body.pop("kind"), **body)
            self._json(200, {"ok": True})
        else:
            self._error(404, "NotFound", "no such path")

    def _task(self, task_id: str) -> None:
        sim = self.sim
        self._reported = None
        auth = self.headers.get("Authorization", "")
        fault = sim.take_fault("task", task_id)
        status_code = 200
        try:
            if fault and self._apply(fault):
                status_code = -1
                return
            if auth != f"Bearer {sim.key}":
                status_code = 401
                self._error(401, "InvalidApiKey", "Invalid API-key provided.")
                return
            self._task_report(task_id)
        finally:
            sim.record(
                kind="task",
                task_id=task_id,
                method=self.command,
                status=fault.kind if status_code == -1 and fault else status_code,
                task_status=self._reported,
            )

    _reported: str | None = None  # the task_status answered, for the request log

    def _task_report(self, task_id: str) -> None:
        sim = self.sim
        now = time.time()
        with sim._lock:
            task = sim.tasks.get(task_id) or sim._auto_task(task_id)
            task.polls += 1
            if task.first_poll is None:
                task.first_poll = now
            status = task.status(now)
        self._reported = status
        output: dict[str, Any] = {"task_id": task_id, "task_status": status}
        if status != "UNKNOWN":
            output["submit_time"] = api_time(task.created)
        if status in ("RUNNING", "SUCCEEDED", "FAILED"):
            scheduled = task.first_poll or now
            if task.run_seconds is not None:
                scheduled = task.created + (task.queue_seconds or 0.0)
            output["scheduled_time"] = api_time(scheduled)
        if status in ("SUCCEEDED", "FAILED", "CANCELED"):
            output["end_time"] = api_time(task.end_time or now)
        usage = None
        if status == "SUCCEEDED":
            output["orig_prompt"] = "a simulated prompt"
            if task.with_url:
                host = self.headers.get("Host") or f"127.0.0.1:{sim.port}"
                base = f"{sim.scheme}://{host}"
                output["video_url"] = task.video_url or sim.signed_url(task, base)
            usage = {
                "duration": 5,
                "input_video_duration": 0,
                "output_video_duration": 5,
                "video_count": 1,
                "SR": 720,
            }
        elif status == "FAILED":
            if task.code:
                output["code"] = task.code
            if task.message:
                output["message"] = task.message
        self._json(200, {"request_id": secrets.token_hex(8), "output": output, "usage": usage})

    def _video(self, task_id: str, query: dict[str, list[str]]) -> None:
        sim = self.sim
        rng = self.headers.get("Range")
        entry: dict[str, Any] = {
            "kind": "video",
            "task_id": task_id,
            "method": self.command,
            "range": rng,
            "if_range": self.headers.get("If-Range"),
        }
        try:
            fault = sim.take_fault("video", task_id)
            if fault and fault.kind != "truncate" and self._apply(fault):
                entry["status"] = fault.kind
                return
            entry["status"] = self._serve_video(task_id, query, rng, fault)
        finally:
            sim.record(**entry)

    def _serve_video(
        self, task_id: str, query: dict[str, list[str]], rng: str | None, fault: Fault | None
    ) -> int:
        sim = self.sim
        task = sim.tasks.get(task_id)
        try:
            expires = int(query.get("Expires", ["0"])[0])
        except ValueError:
            expires = 0
        signature = query.get("Signature", [""])[0]
        valid = hmac.compare_digest(signature, sim.sign(task_id, expires))
        if task is None or not valid or time.time() > expires:
            self._expired()
            return 403
        length = sim.video_length(task)
        etag = sim.etag(task)
        start, status = 0, 200
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            if_range = self.headers.get("If-Range")
            if if_range is None or if_range == etag:
                start = int(rng[6:-1])
                status = 206
        if start >= length and status == 206:
            self._send(416, b"", headers={"Content-Range": f"bytes */{length}"})
            return 416
        self.send_response(status)
        self.send_header("Content-Type", task.content_type)
        self.send_header("Content-Length", str(length - start))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{length - 1}/{length}")
        self.end_headers()
        if self.command == "HEAD":
            return status
        cut = start + fault.at if fault and fault.kind == "truncate" else None
        sent = start
        began = time.monotonic()
        for chunk in sim.video_bytes(task, start, cut):
            self.wfile.write(chunk)
            sent += len(chunk)
            if task.video_rate:
                ahead = (sent - start) / task.video_rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        if cut is not None:  # a clean close short of Content-Length: the bytes sent arrive
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.close_connection = True
        return status
