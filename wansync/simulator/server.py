"""The simulator's HTTP server: routes requests to the endpoint modules; start and stop.

`Simulator` is the object tests, the demo and `wansync simulate` hold: the shared state
(`state.py`) plus a threaded HTTP(S) server on a background thread, `url` its base URL.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wansync.core import kinds

from . import faults, pictures, tasklist, tasks, video
from .reply import Reply
from .state import SimState
from .submit import OSS_PATH, SubmitDesk


class Simulator(SimState):
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
        tls: tuple[str, str | None] | None = None,
        max_in_progress: int = 5,
    ) -> None:
        defaults = {"pending_polls": pending_polls, "running_polls": running_polls}
        super().__init__(key, auto, {**defaults, "seconds": seconds}, chaos, seed)
        try:
            self._server = ThreadingHTTPServer((host, port), _Handler)
        except OSError as exc:  # in use, no such address: one line naming the address
            problem = (exc.strerror or str(exc)).lower()
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {problem}") from None
        self._server.daemon_threads = True
        self._server.sim = self  # type: ignore[attr-defined]
        if tls:  # HTTPS with the given certificate and key files, as the real service
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*tls)
            except BaseException:
                self._server.server_close()
                raise
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self.scheme = "https"
        self.netloc = f"{self._server.socket.getsockname()[0]}:{self.port}"
        self._thread: threading.Thread | None = None
        self.desk = SubmitDesk(self, max_in_progress)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.5)

    def stop(self) -> None:
        self.release_stalls()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()


class _Handler(Reply):
    """Routing only: each path goes to the module that owns it."""

    @property
    def sim(self) -> Simulator:
        return self.server.sim  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        try:
            if path.startswith(tasks.TASK_PREFIX):
                tasks.poll(self, self.sim, path[len(tasks.TASK_PREFIX) :])
            elif path.startswith(video.VIDEO_PREFIX) and path.endswith(".mp4"):
                self._video(path[len(video.VIDEO_PREFIX) : -4], query)
            elif path.startswith(pictures.PREFIX):
                self._picture(path[len(pictures.PREFIX) :], query)
            elif path == tasklist.PATH:
                tasklist.list_tasks(self, self.sim, query)
            elif path == "/api/v1/uploads":
                self.sim.desk.policy(self, query)
            elif path.startswith("/_sim/"):
                self._inspect(path, query)
            else:
                self.reply_error(404, "NotFound", "no such path")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_HEAD = do_GET

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = urlsplit(self.path).path
        endpoint = path.removeprefix(kinds.SERVICES)
        known = endpoint in kinds.ENDPOINTS or endpoint in self.sim.desk.models.values()
        if path.startswith(kinds.SERVICES) and known:
            self.sim.desk.submit(self, raw, endpoint)
        elif path == OSS_PATH:
            self.sim.desk.oss_upload(self, raw)
        elif path.startswith(tasks.TASK_PREFIX) and path.endswith(tasks.CANCEL_SUFFIX):
            tasks.cancel(self, self.sim, path[len(tasks.TASK_PREFIX) : -len(tasks.CANCEL_SUFFIX)])
        elif path == "/_sim/tasks":  # one task, or {"tasks": [...]} in bulk
            try:
                body = json.loads(raw or b"{}")
                for spec in body.get("tasks", [body]):
                    self.sim.add_task(spec.pop("task_id"), **spec)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                self.reply_error(400, "InvalidParameter", f"/_sim/tasks: {exc!r}")
                return
            self.reply_json(200, {"ok": True})
        elif path == "/_sim/faults":
            try:
                self.sim.add(faults.from_json(raw))
            except faults.BadFault as exc:  # said, and the server goes on
                self.reply_error(400, "InvalidParameter", f"/_sim/faults: {exc}")
                return
            self.reply_json(200, {"ok": True})
        else:
            self.reply_error(404, "NotFound", "no such path")

    def _inspect(self, path: str, query: dict[str, list[str]]) -> None:
        """`/_sim/…`: what the simulator saw and made, for tests and the benchmarks."""
        sim = self.sim
        if path == "/_sim/requests":
            kind = query.get("kind", [None])[0]
            since = float(query.get("since", ["0"])[0])
            self.reply_json(200, [r for r in sim.requests(kind) if r["t"] >= since])
            return
        with sim._lock:
            if path == "/_sim/created":
                desk = sim.desk
                made = {
                    "created": desk.created,
                    "most_in_progress": desk.most_in_progress,
                    "rejected_busy": desk.rejected_busy,
                }
                self.reply_json(200, made)
            elif path == "/_sim/tasks":
                self.reply_json(200, [vars(t).copy() for t in sim.tasks.values()])
            else:
                self.reply_error(404, "NotFound", "no such path")

    def _video(self, task_id: str, query: dict[str, list[str]]) -> None:
        sim = self.sim
        self.log_as(
            sim.record,
            kind="video",
            task_id=task_id,
            method=self.command,
            range=self.headers.get("Range"),
            if_range=self.headers.get("If-Range"),
        )
        try:
            fault = sim.take_fault("video", task_id)
            if fault and fault.kind != "truncate" and faults.apply(self, fault, sim.video):
                return
            video.serve(self, sim.video, sim.tasks.get(task_id), query, fault)
        finally:
            self.logged()

    def _picture(self, rest: str, query: dict[str, list[str]]) -> None:
        sim = self.sim
        where = pictures.split_path(rest)
        task_id, k = where if where else (rest, -1)
        fields = {"kind": "picture", "task_id": task_id, "index": k, "method": self.command}
        self.log_as(sim.record, **fields, range=self.headers.get("Range"))
        try:
            fault = sim.take_fault("picture", task_id)
            if fault and fault.kind != "truncate" and faults.apply(self, fault, sim.video):
                return
            pictures.serve(self, sim.pictures, sim.tasks.get(task_id), k, query, fault)
        finally:
            self.logged()
