"""A tiny real video host for hostile-download tests: `http.server` on a thread.

The simulator serves honest videos; this one serves what a test scripts — a lying
`Content-Length`, a body that trickles — on any loopback address (127.0.0.2 too), and
records every request it gets, so a test can assert that nothing reached it.
"""

from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

SAMPLE = resources.files("wansync").joinpath("data/sample.mp4").read_bytes()
ETAG = '"videohost-1"'


class VideoHost:
    """Serves `body` at every path with Range/If-Range; the first `trickle_requests`
    answers send `fast` bytes, then one byte every `trickle` seconds."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        body: bytes = SAMPLE,
        trickle: float | None = None,
        fast: int = 4000,
        trickle_requests: int = 1,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.body, self.trickle, self.fast = body, trickle, fast
        self.trickle_requests = trickle_requests
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.host = self  # type: ignore[attr-defined]
        if tls:  # HTTPS with this certificate and key (files), as object storage serves
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def __enter__(self) -> VideoHost:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        host: VideoHost = self.server.host  # type: ignore[attr-defined]
        rng, if_range = self.headers.get("Range"), self.headers.get("If-Range")
        host.requests.append(
            {"path": self.path, "range": rng, "if_range": if_range, "host": self.headers["Host"]}
        )
        start, status = 0, 200
        if rng and rng.startswith("bytes=") and rng.endswith("-") and if_range == ETAG:
            start, status = int(rng[6:-1]), 206
        body = host.body[start:]
        self.send_response(status)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", ETAG)
        if status == 206:
            self.send_header(
                "Content-Range", f"bytes {start}-{len(host.body) - 1}/{len(host.body)}"
            )
        self.end_headers()
        try:
            if host.trickle and len(host.requests) <= host.trickle_requests:
                self.wfile.write(body[: host.fast])
                self.wfile.flush()
                for i in range(host.fast, len(body)):
                    time.sleep(host.trickle)
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client hung up: what a cut looks like here
