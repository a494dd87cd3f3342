"""The HTTP server behind `/metrics` and `/healthz`: one thread, bounded in every way.

Anyone who can reach the port may connect, so no client may cost the daemon more than a
fixed share, whatever it does:

- one thread serves every connection (a selector), never a thread per client;
- at most `MAX_CONNECTIONS` are open: one more closes the connection open the longest
  (a scraper sends its request at once; one that has sent nothing is the one to lose);
- the request line and headers must be complete within `HEAD_SECONDS` of the accept (a
  client trickling a byte every few seconds is cut) and fit `MAX_HEAD` bytes; the answer
  must be taken within `SEND_SECONDS`; one request per connection (`Connection: close`:
  after the answer our side is shut and what the client still sends is read and dropped
  for at most `DRAIN_SECONDS`, so an early answer, a 431, is not lost to a reset);
- when `accept` fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS,
  ENOMEM), the connection open the longest is closed (its descriptor is the daemon's
  again) and the port is left alone for `ACCEPT_PAUSE` s instead of being retried in a
  busy loop; one warning a minute says so;
- a client that hangs up or resets is closed quietly: nothing a client does writes to
  the log, and our own errors are one JSON line each, never a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, NamedTuple
from urllib.parse import urlsplit

MAX_CONNECTIONS = 32
HEAD_SECONDS = 5.0
SEND_SECONDS = 10.0
DRAIN_SECONDS = 1.0
MAX_HEAD = 8192
ACCEPT_PAUSE = 1.0
ACCEPT_BATCH = 8  # accepts per turn: reads of those already open are not starved
BACKLOG = 128
WARN_EVERY = 60.0
STARVED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

Answer = tuple[int, bytes, str]  # status, body, content type


class Request(NamedTuple):
    """What an answer depends on: the path (no query) and the Accept header."""

    path: str
    accept: str


Respond = Callable[[Request], Answer]


@dataclass(eq=False)
class _Conn:
    """One client: its request head so far, then the answer left to send, then (`drain`)
    what it still sends, dropped until it closes."""

    sock: socket.socket
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    out: memoryview | None = None
    drain: bool = False


def parse_head(head: bytes) -> Request | Answer:
    """The request of a complete request head, or the error answer to give instead."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return 400, b"bad request\n", "text/plain"
    if parts[0] != "GET":
        return 405, b"only GET\n", "text/plain"
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    return Request(urlsplit(parts[1]).path, accept)


def render(status: int, body: bytes, content_type: str) -> bytes:
    """The whole HTTP/1.1 answer; the connection closes after it."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n"
    )
    if status == 405:
        head += "Allow: GET\r\n"
    return f"{head}\r\n".encode("latin-1") + body


class ScrapeServer:
    """Listens on `address`; `serve()` is the server thread's whole life, `stop()` ends it."""

    def __init__(self, address: tuple[str, int], family: int, respond: Respond, log: Any) -> None:
        self.respond = respond
        self.log = log
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(BACKLOG)
            self.listener.setblocking(False)
        except OSError:
            self.listener.close()
            raise
        self.server_address: tuple[Any, ...] = self.listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._conns: OrderedDict[_Conn, None] = OrderedDict()  # oldest first
        self._paused_until: float | None = None
        self._last_warning = -WARN_EVERY
        self._stopping = False

    # -- the thread --------------------------------------------------------------------
    def serve(self) -> None:
        """Serve until `stop()`; nothing a client does ends this loop."""
        while not self._stopping:
            try:
                self._turn(time.monotonic())
            except Exception as exc:  # our own bug: one line, a breath, and serve on
                self.log.error("metrics.server_error", error=f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)
        self._close_all()

    def stop(self) -> None:
        """Ask the thread to end (it closes every socket on its way out)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _turn(self, now: float) -> None:
        """Wait for sockets (or the nearest deadline), serve what is ready, cut the late."""
        for key, mask in self._selector.select(self._wait_time(now)):
            if key.fileobj is self.listener:
                self._accept(time.monotonic())
            elif key.fileobj is self._wake_r:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(64)
            elif mask & selectors.EVENT_WRITE:
                self._send(key.data)
            else:
                self._receive(key.data)
        now = time.monotonic()
        for conn in [c for c in self._conns if c.deadline <= now]:
            self._close(conn)
        if self._paused_until is not None and now >= self._paused_until:
            self._paused_until = None
            self._selector.register(self.listener, selectors.EVENT_READ)

    def _wait_time(self, now: float) -> float:
        marks = [c.deadline for c in self._conns]
        if self._paused_until is not None:
            marks.append(self._paused_until)
        return max(0.0, min([now + 1.0, *marks]) - now)

    # -- connections -------------------------------------------------------------------
    def _accept(self, now: float) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in STARVED:
                    self._pause(now, exc)
                    return
                continue  # ECONNABORTED and the like: that client is gone already
            sock.setblocking(False)
            if len(self._conns) >= MAX_CONNECTIONS:
                self._close(next(iter(self._conns)))
            conn = _Conn(sock, now + HEAD_SECONDS)
            self._conns[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _pause(self, now: float, exc: OSError) -> None:
        """No descriptor or memory for a new connection: give one back, and leave the port
        alone a while."""
        if self._conns:
            self._close(next(iter(self._conns)))
        self._selector.unregister(self.listener)
        self._paused_until = now + ACCEPT_PAUSE
        if now - self._last_warning >= WARN_EVERY:
            self._last_warning = now
            self.log.warning(
                "metrics.accept_paused",
                error=exc.strerror or str(exc),
                detail=f"new connections wait {ACCEPT_PAUSE:g} s; said at most once a minute",
            )

    def _receive(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)  # the client hung up (or reset), or read its answer
            return
        if conn.drain:
            return
        conn.head += data
        end = conn.head.find(b"\r\n\r\n")
        if end < 0 and len(conn.head) <= MAX_HEAD:
            return
        if end < 0 or end > MAX_HEAD:
            answer: Answer = (431, b"request head too large\n", "text/plain")
        else:
            answer = self._answer(bytes(conn.head[:end]))
        conn.out = memoryview(render(*answer))
        conn.deadline = time.monotonic() + SEND_SECONDS
        self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
        self._send(conn)

    def _answer(self, head: bytes) -> Answer:
        parsed = parse_head(head)
        if not isinstance(parsed, Request):
            return parsed
        try:
            return self.respond(parsed)
        except Exception as exc:  # a broken collector is a 500 and one line, not a traceback
            self.log.error("metrics.probe_error", error=f"{type(exc).__name__}: {exc}")
            return 500, b"internal error\n", "text/plain"

    def _send(self, conn: _Conn) -> None:
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # BrokenPipeError, ConnectionResetError: the scraper hung up
            self._close(conn)
            return
        conn.out = conn.out[sent:]
        if not conn.out:
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                self._close(conn)
                return
            conn.drain, conn.deadline = True, time.monotonic() + DRAIN_SECONDS
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _close_all(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        self._selector.close()
        for sock in (self.listener, self._wake_r, self._wake_w):
            sock.close()
