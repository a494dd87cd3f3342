"""A task API that trickles: `http.server` on a thread, for the answer-deadline tests.

`GET …/tasks/slow…` gets headers at once (Content-Length 1,000,000) and then one byte
every `gap` seconds, for as long as the client listens; every other request is passed
to `upstream` (the simulator) as it is, so normal tasks beside the slow ones finish.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TrickleApi:
    def __init__(self, upstream: str | None = None, gap: float = 1.0) -> None:
        self.upstream, self.gap = upstream, gap
        self.stopping = threading.Event()
        self.slow_requests = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.api = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TrickleApi:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        api: TrickleApi = self.server.api  # type: ignore[attr-defined]
        if "/tasks/slow" in self.path:
            api.slow_requests += 1
            self._trickle(api)
        elif api.upstream:
            self._forward(api.upstream)
        else:
            self.send_error(404)

    def _trickle(self, api: TrickleApi) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        try:
            self.wfile.write(b'{"output": ')
            self.wfile.flush()
            while not api.stopping.wait(api.gap):
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            return  # the client gave up: what the deadline is for

    def _forward(self, upstream: str) -> None:
        headers = {"Authorization": self.headers.get("Authorization", "")}
        request = urllib.request.Request(upstream + self.path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status, body = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
