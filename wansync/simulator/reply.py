"""The simulator's HTTP handler base: how an answer (or a refusal to answer) is sent.

Every endpoint module takes a `Reply` and calls these; routing lives in `server.py`.
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

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

    def log_message(self, *_: Any) -> None:  # quiet: tests read the request log instead
        pass

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
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def expired(self) -> None:
        """What object storage answers for a signed URL past its `Expires`."""
        self.reply(403, EXPIRED_BODY, "application/xml")
