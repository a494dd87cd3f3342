"""DashScope task API client: one keep-alive `requests.Session`, timeouts, errors → types.

A poll is exactly one HTTP request: no transport-level retries here, because the
scheduler owns pacing and a hidden retry would break the account-wide rate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from . import __version__
from .errors import AuthRejected, MalformedResponse, RateLimited, RemoteUnavailable, TaskFailed
from .log import scrub

MAX_BODY = 1024 * 1024
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
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def make_session(pool_size: int, retries: Retry | int = 0) -> requests.Session:
    """A session whose pool fits `pool_size` concurrent requests (one per worker thread)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=retries)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"wansync/{__version__}"
    session.trust_env = False  # no ~/.netrc: it would override the Authorization header
    return session


def _read_bounded(resp: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise MalformedResponse(f"answer larger than {MAX_BODY // 1024} KiB")
        chunks.append(chunk)
    return b"".join(chunks)


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
        self._session = make_session(pool_size)
        self._auth = {"Authorization": f"Bearer {key}"}

    def close(self) -> None:
        self._session.close()

    def set_key(self, key: str) -> None:
        """A new key (SIGHUP re-read the key file); used from the next request on."""
        self._auth = {"Authorization": f"Bearer {key}"}

    def fetch(self, task_id: str) -> TaskReport:
        url = f"{self.base_url}/api/v1/tasks/{task_id}"
        try:
            with self._session.get(
                url, headers=self._auth, timeout=self.timeout, stream=True
            ) as resp:
                body = _read_bounded(resp)
                return self._interpret(resp, body)
        except requests.RequestException as exc:
            raise RemoteUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None

    def _interpret(self, resp: requests.Response, body: bytes) -> TaskReport:
        status = resp.status_code
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
