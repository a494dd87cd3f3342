"""Keep-alive connections for the task API's GETs, on the standard library's `http.client`.

A poll is the daemon's hot path: one small GET every few milliseconds at the account's
limit. urllib3's per-request machinery (URL parsing, pool keys, timeout objects, the
response wrapper and its decoders) cost about 40% of a poll's CPU over HTTPS; a plain
`http.client` connection reused from a short list does the same request for the rest
(docs/performance.md). Requests that are rare and need urllib3's finer error types
(a task's creation, a cancel) stay on urllib3.

What is kept from urllib3's behaviour: a connection that the server closed while idle is
noticed before it is reused (one zero-timeout `poll`), a connection whose answer was not
read to the end is never reused, and there are no retries of any kind. As in api.py's
urllib3 reads, the whole body must be in by a deadline (a trickle cannot hold a worker).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.util import wait_for_read


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP answer: its status, reason, `Retry-After` header and (bounded) body."""

    status: int
    reason: str
    retry_after: str | None
    body: bytes  # at most the caller's `limit + 1` bytes: more means "too large"
    date: str | None = None  # the server's clock (serverclock.py)


class TooSlow(Exception):
    """The answer (status `status`) was not complete by the deadline."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}: the answer was not complete in time")
        self.status = status


def _read_by(
    resp: http.client.HTTPResponse,
    sock: socket.socket | None,
    limit: int,
    deadline: float,
    timeout: float,
) -> bytes:
    """At most `limit + 1` body bytes, all by `deadline` (monotonic), else `TooSlow`."""
    body = bytearray()
    while len(body) <= limit:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TooSlow(resp.status)
        if left < timeout and sock is not None:
            sock.settimeout(max(0.001, left))
        try:
            chunk = resp.read1(limit + 1 - len(body))
        except TimeoutError:
            if time.monotonic() < deadline:
                raise
            continue  # the deadline's own timeout: said as such above
        if not chunk:
            break
        body += chunk
        if resp.length == 0:
            break
    if resp.length == 0:
        resp.close()  # all read: mark it done (read1 leaves that to the next read)
    return bytes(body)


class Connections:
    """Up to `maxsize` idle keep-alive connections to one origin, shared by threads."""

    def __init__(self, base_url: str, timeout: float, maxsize: int) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.maxsize = maxsize
        self._tls = ssl.create_default_context() if parts.scheme == "https" else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _new(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self._tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _take(self) -> http.client.HTTPConnection:
        """An idle connection still open at the other end, or a new (unconnected) one."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._new()
            if conn.sock is not None and not wait_for_read(conn.sock, timeout=0.0):
                return conn  # nothing to read on an idle connection: still open
            conn.close()  # closed by the server (EOF readable) or never connected

    def _give_back(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def get(self, path: str, headers: dict[str, str], limit: int, deadline: float) -> Answer:
        """GET `path` (below the base URL's path); reads at most `limit + 1` body bytes,
        all of them by `deadline` (monotonic).

        Raises `TooSlow`, or `OSError` or `http.client.HTTPException` when there is no
        complete answer.
        """
        conn = self._take()
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self.timeout)  # a deadline may have shortened it
            conn.request("GET", self.prefix + path, headers=headers)
            resp = conn.getresponse()
            body = _read_by(resp, conn.sock, limit, deadline, self.timeout)
            answer = Answer(
                resp.status,
                resp.reason,
                resp.getheader("Retry-After"),
                body,
                resp.getheader("Date"),
            )
        except BaseException:
            conn.close()
            raise
        # http.client closes the response once its body is all read: only then is the
        # connection free for the next request (a body cut at `limit` leaves it unusable)
        if resp.isclosed() and not resp.will_close:
            self._give_back(conn)
        else:
            conn.close()
        return answer

    def clear(self) -> None:
        """Close every idle connection (at shutdown)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
