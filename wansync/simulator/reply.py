"""The simulator's HTTP handler base: how an answer (or a refusal to answer) is sent.

Every endpoint module takes a `Reply` and calls these; routing lives in `server.py`.
A request's log entry (`Reply.log_as`) is logged when its answer starts, before the
first byte goes out: a client holding an answer always finds its request logged.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

Entry = dict[str, Any]

EXPIRED_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Request has expired.</Message></Error>"
)


class Reply(BaseHTTPRequestHandler):
    """One request being answered: JSON, an API error body, raw bytes, or a reset."""

    protocol_version = "HTTP/1.1"
    server_version = "wansync-simulator"
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the
    # client's delayed ACK of the headers, 40 ms on Linux, so one keep-alive connection
    # could not ask more than ~22 times a second (the benchmarks' baselines need 200).
    disable_nagle_algorithm = True

    arrived: tuple[float, float] = (0.0, 0.0)
    _entry: Entry | None = None
    _record: Callable[[Entry], None] | None = None

    def log_message(self, *_: Any) -> None:  # quiet: tests read the request log instead
        pass

    def parse_request(self) -> bool:
        """Its request line is read: the moment the request arrived (monotonic, wall)."""
        self.arrived = (time.monotonic(), time.time())
        self._entry = None
        return super().parse_request()

    # -- the request log ---------------------------------------------------------------
    def log_as(self, record: Callable[[Entry], None], **fields: Any) -> None:
        """This request's log entry: `fields`, `t`/`wall` when it arrived, `answered` when
        its answer started (None: it had none), and `status` (a fault's kind or a stall's
        point, set by `note`; else the answer's HTTP status). `record` takes it when the
        answer starts, or at `logged()` if none does."""
        self._entry = {**fields, "t": self.arrived[0], "wall": self.arrived[1]}
        self._record = record

    def note(self, **fields: Any) -> None:
        """More about this request for its log entry, before its answer starts."""
        if self._entry is not None:
            self._entry.update(fields)

    def logged(self, status: int | None = None, answered: bool = False) -> None:
        """Hand the entry to the log now (once; later calls do nothing)."""
        entry, self._entry = self._entry, None
        if entry is None or self._record is None:
            return
        entry.setdefault("status", status)
        entry["answered"] = time.monotonic() if answered else None
        self._record(entry)

    def send_response(self, code: int, message: str | None = None) -> None:
        """Every answer starts here: its request is logged first."""
        self.logged(code, answered=True)
        super().send_response(code, message)

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The `Date` header, on the simulated API's clock (`SimState.clock_offset`)."""
        state = getattr(self.server, "sim", None)
        if timestamp is None and state is not None:
            timestamp = state.api_clock(time.time())
        return super().date_time_string(timestamp)

    def authorized(self, key: str) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {key}"

    def reply(
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

    def reply_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(obj).encode(), headers=headers)

    def reply_error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """An API error as DashScope sends one: `{"request_id", "code", "message"}`."""
        body = {"request_id": secrets.token_hex(8), "code": code, "message": message}
        self.reply_json(status, body, headers)

    def reset(self) -> None:
        """Drop the connection with a TCP RST, no answer at all."""
        self.logged(answered=True)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def expired(self) -> None:
        """What object storage answers for a signed URL past its `Expires`."""
        self.reply(403, EXPIRED_BODY, "application/xml")
