"""DashScope task API client: one keep-alive connection pool, timeouts, errors → types.

A poll is exactly one HTTP request: no transport-level retries here, because the
scheduler owns pacing and a hidden retry would break the account-wide rate.

GETs (the poll is the hot path) go through `keepalive.Connections`, plain `http.client`
connections kept alive: requests' per-call machinery doubled a poll's CPU cost, and
urllib3's still added about half (see docs/performance.md). The rare POSTs
(create, cancel) use urllib3, whose error types tell "not sent" from "maybe sent".
Downloads, few and long, use requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.client import HTTPException
from typing import Any
from urllib.parse import urlencode

import urllib3

from wansync import __version__
from wansync.core import jobmatch, listpoll
from wansync.core.errors import (
    AuthRejected,
    MalformedResponse,
    RateLimited,
    RemoteUnavailable,
    SubmitAmbiguous,
    TaskFailed,
    TransientError,
)
from wansync.core.kinds import SERVICES, VIDEO_GENERATION
from wansync.core.messages import Submitted as Submitted  # the typed answers: core's
from wansync.core.messages import TaskReport as TaskReport
from wansync.core.shapes import FileUrl, Outputs, outputs_of
from wansync.files.bounded import json_loads, wall_time
from wansync.files.taskfile import TASK_ID
from wansync.log import CODE_CHARS, MESSAGE_CHARS, cap, clean, clean_tree, scrub
from wansync.remote.headers import MAX_RETRY_AFTER as MAX_RETRY_AFTER
from wansync.remote.headers import header_int as header_int
from wansync.remote.headers import parse_retry_after
from wansync.remote.keepalive import Answer, Connections, TooSlow
from wansync.remote.serverclock import ServerClock

MAX_BODY = 1024 * 1024
DEADLINE_TIMEOUTS = 2  # a whole answer, headers and body, within this many api.timeout
TOO_SLOW = "the answer was not complete in time"
USER_AGENT = f"wansync/{__version__}"
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN")
SUBMIT_PATH = SERVICES + VIDEO_GENERATION  # image-to-video's: the default create endpoint
LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 10
API_ZONE = timedelta(hours=8)  # the API's times are Beijing time (assumed for the task list)


def api_time(ts: float, compact: bool = False) -> str:
    """A wall time as the API writes it: `2025-09-25 11:07:28.590`, or `20250925110728`.

    Never raises: `ts` may come from a hand-edited sidecar (year 9999 + 8 h overflows).
    """
    moment = datetime.fromtimestamp(wall_time(ts), tz=UTC) + API_ZONE
    if compact:
        return moment.strftime("%Y%m%d%H%M%S")
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _read_bounded(resp: urllib3.BaseHTTPResponse, deadline: float) -> bytes:
    """At most 1 MiB of body, all of it by `deadline` (monotonic), else `RemoteUnavailable`.

    The per-read timeout alone lets a server that sends a byte every `timeout - 1` s hold
    a poll worker for days (1 MiB of such bytes); a few such task ids would stall every
    poll. So each read waits at most until the deadline, and the whole answer must be in.
    """
    body = bytearray()
    while len(body) <= MAX_BODY:
        left = deadline - time.monotonic()
        if left <= 0:
            resp.close()  # never reused: the rest of its answer may still come
            raise RemoteUnavailable(TOO_SLOW, "AnswerTooSlow")
        _wait_at_most(resp, left)
        try:
            chunk = resp.read1(MAX_BODY + 1 - len(body), decode_content=True)
        except urllib3.exceptions.ReadTimeoutError:
            if time.monotonic() < deadline:
                raise
            continue  # the deadline's own timeout: said as such above
        if not chunk:
            return bytes(body)
        body += chunk
    resp.close()
    raise MalformedResponse(f"answer larger than {MAX_BODY // 1024} KiB")


def _wait_at_most(resp: urllib3.BaseHTTPResponse, seconds: float) -> None:
    """Let the next socket read wait no longer than `seconds` (the time left)."""
    sock = getattr(getattr(resp, "connection", None), "sock", None)
    if sock is None:
        return
    timeout = sock.gettimeout()
    if timeout is not None and seconds < timeout:
        sock.settimeout(max(0.001, seconds))


def _error_fields(body: bytes) -> tuple[str | None, str | None]:
    try:
        obj = json_loads(body)
    except ValueError:
        return None, None
    if not isinstance(obj, dict):
        return None, None
    code, message = obj.get("code"), obj.get("message")
    return (
        clean(code, CODE_CHARS) if isinstance(code, str) else None,
        clean(message, MESSAGE_CHARS) if isinstance(message, str) else None,
    )


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        obj = json_loads(body)  # bounded: its output is written into sidecars as is
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _answer(resp: urllib3.BaseHTTPResponse, body: bytes) -> Answer:
    return Answer(resp.status, resp.reason or "", resp.headers.get("Retry-After"), body)


def _status_error(answer: Answer) -> TaskFailed | TransientError:
    """The error a non-200 answer means, by status: the main loop treats each type its way."""
    status = answer.status
    code, message = _error_fields(answer.body)
    detail = scrub(message or answer.reason or "no message")
    if status == 429:
        retry_after = parse_retry_after(answer.retry_after)
        return RateLimited(f"HTTP 429: {detail}", retry_after, code or "Throttling")
    if status in (401, 403):
        return AuthRejected(f"HTTP {status}: {detail}", code or "InvalidApiKey")
    if status == 400:
        return TaskFailed(code or "InvalidParameter", detail)
    return RemoteUnavailable(f"HTTP {status}: {detail}", code or f"HTTP{status}")


Observer = Callable[[str, int | None, float], None]  # endpoint, HTTP status, seconds


def _unobserved(endpoint: str, status: int | None, seconds: float) -> None:
    """No one is counting (the CLI's one-off calls)."""


class TaskApi:
    """`fetch(task_id)` → `TaskReport`, or one of the errors the main loop knows how to treat."""

    def __init__(
        self,
        base_url: str,
        key: str,
        timeout: float,
        pool_size: int = 4,
        observe: Observer | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.observe = observe or _unobserved
        self.clock = ServerClock()  # every answer's `Date`: the task list's clock
        self._gets = Connections(self.base_url, timeout, pool_size)
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=pool_size,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
        )
        self.set_key(key)

    def close(self) -> None:
        self._gets.clear()
        self._pool.clear()

    def _deadline(self, started: float) -> float:
        """When an answer begun at `started` must be complete (monotonic)."""
        return started + DEADLINE_TIMEOUTS * self.timeout

    def set_key(self, key: str) -> None:
        """A new key (SIGHUP re-read the key file); used from the next request on."""
        self._headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "gzip, deflate",
        }
        # GETs decode nothing: an answer of a few hundred bytes gains nothing from gzip
        self._get_headers = {k: v for k, v in self._headers.items() if k != "Accept-Encoding"}

    def _get_json(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """GET an API object; errors become the usual types (never `TaskFailed` here)."""
        endpoint = "upload" if path.endswith("uploads") else "list"
        answer = self._get(f"{path}?{urlencode(params)}", endpoint)
        if answer.status != 200:
            error = _status_error(answer)
            if isinstance(error, TaskFailed):
                raise RemoteUnavailable(f"HTTP {answer.status}: {error.message}", error.code)
            raise error
        obj = _json_object(answer.body)
        if obj is None:
            raise MalformedResponse("answer is not a JSON object")
        return obj

    def upload_policy(self, model: str) -> dict[str, Any]:
        """A temporary-storage upload policy (`GET /api/v1/uploads?action=getPolicy`)."""
        data = self._get_json("/api/v1/uploads", {"action": "getPolicy", "model": model})
        policy = data.get("data")
        needed = ("upload_host", "upload_dir", "policy", "signature", "oss_access_key_id")
        if not isinstance(policy, dict) or not all(isinstance(policy.get(k), str) for k in needed):
            raise MalformedResponse("upload policy answer lacks upload_host/policy/signature")
        return policy

    def list_tasks(self, model: str, start: float, end: float) -> list[dict[str, Any]]:
        """Tasks of `model` created between two wall times (`GET /api/v1/tasks`), all pages."""
        found: list[dict[str, Any]] = []
        for page in range(1, LIST_MAX_PAGES + 1):
            params = {
                "model_name": model,
                "start_time": api_time(start, compact=True),
                "end_time": api_time(end, compact=True),
                "page_no": page,
                "page_size": LIST_PAGE_SIZE,
            }
            data = self._get_json("/api/v1/tasks", params)
            rows = data.get("data")
            if not isinstance(rows, list):
                raise MalformedResponse("task list answer has no data list")
            found.extend(
                r
                for r in rows
                if isinstance(r, dict)
                and isinstance(r.get("task_id"), str)
                and TASK_ID.fullmatch(r["task_id"])  # it may become a sidecar's and a URL's
            )
            total_pages = data.get("total_page")
            if (
                len(rows) < LIST_PAGE_SIZE
                or not isinstance(total_pages, int)
                or page >= total_pages
            ):
                return found
        return found

    def list_page(self, params: dict[str, str | int]) -> listpoll.Page:
        """One page of the task list (`GET /api/v1/tasks`, endpoint `list`), checked for
        shape (`listpoll.read_page`): a list pass asks one page per request, each a slot
        of `poll.max_per_second` (run/listing.py)."""
        size = params.get("page_size", listpoll.PAGE_SIZE)
        data = self._get_json("/api/v1/tasks", params)
        return listpoll.read_page(data, size if isinstance(size, int) else listpoll.PAGE_SIZE)

    def submit(
        self, body: dict[str, Any], resolve_oss: bool, endpoint: str = VIDEO_GENERATION
    ) -> Submitted:
        """Create a task at `endpoint` (under `/api/v1/services/`: the model's kind says
        which). Errors say whether a task may exist:

        `RateLimited`, `AuthRejected`, `RemoteUnavailable` (could not connect) and
        `TaskFailed` (4xx) prove nothing was created; `SubmitAmbiguous` does not.
        """
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "X-DashScope-Async": "enable",
            # A fresh connection: a stale keep-alive one fails *after* sending, which
            # would turn a harmless hiccup into an uncertain submit.
            "Connection": "close",
        }
        if resolve_oss:
            headers["X-DashScope-OssResourceResolve"] = "enable"
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        started, sent, status = time.monotonic(), time.time(), None
        try:
            resp = self._pool.request(
                "POST",
                f"{self.base_url}{SERVICES}{endpoint}",
                body=payload,
                headers=headers,
                preload_content=False,
                redirect=False,
            )
            status = resp.status
            self.clock.observe(resp.headers.get("Date"), sent, time.time())
            try:
                answer = _read_bounded(resp, self._deadline(started))
            finally:
                resp.release_conn()
                self.observe("submit", status, time.monotonic() - started)
        except urllib3.exceptions.ConnectTimeoutError as exc:  # also NewConnectionError
            raise RemoteUnavailable(scrub(f"could not connect: {type(exc).__name__}")) from None
        except (urllib3.exceptions.HTTPError, MalformedResponse, RemoteUnavailable) as exc:
            if status is None:
                self.observe("submit", None, time.monotonic() - started)
            raise SubmitAmbiguous(scrub(f"no answer after sending: {type(exc).__name__}")) from None
        if resp.status == 200:
            return self._parse_submitted(answer)
        if resp.status >= 500 or resp.status in (408, 409):
            _, message = _error_fields(answer)
            detail = scrub(message or resp.reason or "no message")
            raise SubmitAmbiguous(f"HTTP {resp.status}: {detail}")
        error = _status_error(_answer(resp, answer))
        if isinstance(error, RateLimited) or resp.status == 401:
            raise error  # the account's limit, or the key: nothing made, try again later
        # 403 (this model or call is not allowed) and other 4xx: nothing made, and final
        raise TaskFailed(error.code, error.message)

    @staticmethod
    def _parse_submitted(body: bytes) -> Submitted:
        obj = _json_object(body)
        output = obj.get("output") if obj else None
        task_id = output.get("task_id") if isinstance(output, dict) else None
        if obj is None or not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            raise SubmitAmbiguous("HTTP 200 but the answer has no task_id")
        request_id = obj.get("request_id")
        request_id = clean(request_id, CODE_CHARS) if isinstance(request_id, str) else None
        return Submitted(task_id, request_id)

    def cancel(self, task_id: str) -> str | None:
        """Ask for a PENDING task to be canceled (`POST …/tasks/{id}/cancel`, as the SDK's
        `VideoSynthesis.cancel`); the request id when accepted, else the status's error."""
        started = time.monotonic()
        try:
            resp = self._pool.request(
                "POST",
                f"{self.base_url}/api/v1/tasks/{task_id}/cancel",
                headers=self._headers,
                preload_content=False,
                redirect=False,
            )
            try:
                body = _read_bounded(resp, self._deadline(started))
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None
        if resp.status != 200:
            raise _status_error(_answer(resp, body))
        request_id = (_json_object(body) or {}).get("request_id")
        return request_id if isinstance(request_id, str) else None

    def fetch(self, task_id: str) -> TaskReport:
        answer = self._get(f"/api/v1/tasks/{task_id}", "task")
        if answer.status == 200:
            return self._parse_report(answer.body, task_id)
        raise _status_error(answer)

    def _get(self, path: str, endpoint: str) -> Answer:
        """One GET below the base URL, its body bounded (all of it within the deadline);
        no complete answer (refused, reset, timed out, not HTTP) is `RemoteUnavailable`."""
        started, sent, status = time.monotonic(), time.time(), None
        try:
            answer = self._gets.get(path, self._get_headers, MAX_BODY, self._deadline(started))
            status = answer.status
            self.clock.observe(answer.date, sent, time.time())
        except TooSlow as exc:
            status = exc.status
            raise RemoteUnavailable(TOO_SLOW, "AnswerTooSlow") from None
        except (OSError, HTTPException) as exc:
            raise RemoteUnavailable(scrub(f"{type(exc).__name__}: {exc}")) from None
        finally:
            self.observe(endpoint, status, time.monotonic() - started)
        if len(answer.body) > MAX_BODY:
            raise MalformedResponse(f"answer larger than {MAX_BODY // 1024} KiB")
        return answer

    @staticmethod
    def _parse_report(body: bytes, asked: str) -> TaskReport:
        """The answer to a poll of `asked`; one about any other task is malformed: its
        video must never be published under this task's name."""
        obj = _json_object(body)
        if obj is None:
            raise MalformedResponse("answer is not a JSON object")
        output = obj.get("output")
        if not isinstance(output, dict):
            raise MalformedResponse("answer has no output object")
        answered = output.get("task_id")
        if answered != asked:
            named = answered if isinstance(answered, str) and TASK_ID.fullmatch(answered) else None
            raise MalformedResponse(
                f"answer is about task {named!r}, not {asked!r}"
                if named
                else f"answer is not about task {asked!r} (no valid output.task_id)"
            )
        task_status = output.get("task_status")
        if task_status not in STATUSES:
            raise MalformedResponse(f"unknown task_status {scrub(str(task_status))[:40]!r}")
        request_id = obj.get("request_id")
        usage = obj.get("usage")
        # Everything here lands in a sidecar and a log: scrubbed of the key and query
        # strings, capped (an echoed key, a 900 KB `code`). The signed URLs of the files
        # a SUCCEEDED answer names (shapes.py: at most 16) are kept whole.
        found = outputs_of(output) if task_status == "SUCCEEDED" else None
        echoed = jobmatch.said_digest(output)  # before the cleaning cuts a long prompt
        output = clean_tree(output, keep=("video_url",))
        if isinstance(found, Outputs):
            _put_back(output, found.files)
        if isinstance(output.get("code"), str):
            output["code"] = cap(output["code"], CODE_CHARS)
        if isinstance(output.get("message"), str):
            output["message"] = cap(output["message"], MESSAGE_CHARS)
        return TaskReport(
            status=task_status,
            request_id=clean(request_id, CODE_CHARS) if isinstance(request_id, str) else None,
            output=output,
            usage=clean_tree(usage) if isinstance(usage, dict) else None,
            prompt_sha256=echoed,
        )


def _put_back(output: dict[str, Any], files: tuple[FileUrl, ...]) -> None:
    """Each file's signed URL, whole, where the answer had it: `clean_tree` keeps the
    shape (the same lists; keys cleaned, which changes no plain word). Two keys that
    clean to one (`url` and `url?x=1`) may have changed it: then that URL stays cleaned,
    and the file is not fetched from a URL the sidecar does not show."""
    for file in files:
        node: Any = output
        try:
            for step in file.path[:-1]:
                node = node[step]
            if isinstance(node, dict) and file.path[-1] in node:
                node[file.path[-1]] = file.url
        except (KeyError, IndexError, TypeError):
            continue
