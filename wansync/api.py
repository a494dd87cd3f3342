"""DashScope task API client: one keep-alive connection pool, timeouts, errors → types.

A poll is exactly one HTTP request: no transport-level retries here, because the
scheduler owns pacing and a hidden retry would break the account-wide rate.

It speaks through urllib3 directly rather than requests: the poll is the hot path,
and requests' per-call machinery (sessions, hooks, cookies) doubled its CPU cost
(see the README's benchmark table). Downloads, few and long, use requests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3

from . import __version__
from .errors import AuthRejected, MalformedResponse, RateLimited, RemoteUnavailable, TaskFailed
from .log import scrub

MAX_BODY = 1024 * 1024
USER_AGENT = f"wansync/{__version__}"
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")


@dataclass(frozen=True)
class TaskReport:
    """One answer of the task API, already checked for shape."""

    status: str
    request_id: str | None
    output: dict[str, Any]
    usage: dict[str, Any] | None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _read_bounded(resp: urllib3.BaseHTTPResponse) -> bytes:
    """At most 1 MiB of body: a huge answer must not cost memory (or hang us)."""
    body = resp.read(MAX_BODY + 1, decode_content=True)
    if len(body) > MAX_BODY:
        raise MalformedResponse(f"answer larger than {MAX_BODY // 1024} KiB")
    return body


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    code, message = obj.get("code"), obj.get("message")
    return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)


class TaskApi:
    """`fetch(task_id)` → `TaskReport`, or one of the errors the main loop knows how to treat."""

    def __init__(self, base_url: str, key: str, timeout: float, pool_size: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        self.set_key(key)

    def close(self) -> None:
        self._pool.clear()

    def set_key(self, key: str) -> None:
        """A new key (SIGHUP re-read the key file); used from the next request on."""
        self._headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip, deflate",
        }

    def fetch(self, task_id: str) -> TaskReport:
        url = f"{self.base_url}/api/v1/tasks/{task_id}"
        try:
            resp = self._pool.request(
                "GET", url, headers=self._headers, preload_content=False, redirect=False
            )
            try:
                body = _read_bounded(resp)
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None
        return self._interpret(resp, body)

    def _interpret(self, resp: urllib3.BaseHTTPResponse, body: bytes) -> TaskReport:
        status = resp.status
        if status == 200:
            return self._parse_report(body)
        code, message = _error_fields(body)
        detail = scrub(message or resp.reason or "no message")
        if status == 429:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise RateLimited(f"HTTP 429: {detail}", retry_after, code or "Throttling")
        if status in (401, 403):
            raise AuthRejected(f"HTTP {status}: {detail}", code or "InvalidApiKey")
        if status == 400:
            raise TaskFailed(code or "InvalidParameter", detail)
        raise RemoteUnavailable(f"HTTP {status}: {detail}", code or f"HTTP{status}")

    @staticmethod
    def _parse_report(body: bytes) -> TaskReport:
        try:
            obj = json.loads(body)
        except ValueError:
            raise MalformedResponse("answer is not JSON") from None
        output = obj.get("output") if isinstance(obj, dict) else None
        if not isinstance(output, dict):
            raise MalformedResponse("answer has no output object")
        task_status = output.get("task_status")
        if task_status not in STATUSES:
            raise MalformedResponse(f"unknown task_status {scrub(str(task_status))[:40]!r}")
        request_id = obj.get("request_id")
        usage = obj.get("usage")
        return TaskReport(
            status=task_status,
            request_id=request_id if isinstance(request_id, str) else None,
            output=output,
            usage=usage if isinstance(usage, dict) else None,
        )
