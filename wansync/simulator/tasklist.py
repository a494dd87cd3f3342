"""The task list, `GET /api/v1/tasks`: an account's tasks, filtered and paged, newest first.

Query parameters, as the vendor's SDK sends them: `start_time` and `end_time`
(`YYYYMMDDhhmmss`, in the API's own zone, UTC+8, like every time it shows), `status`
(PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED), `model_name`, `page_no` (from 1) and
`page_size` (1 to 100, default 10). A value it cannot read is 400 `InvalidParameter`
naming the parameter. Each row: `task_id`, `model_name`, `status`, `gmt_create` (and
`end_time` once ended), times as the API writes them, without a zone; the answer also has
`total`, `total_page`, `page_no` and `page_size`.

Knobs: a task without a `model`, or with `listed=False`, is not shown (a list that lags
behind the task API); faults with target "list" (429, 500, malformed) answer instead.

A real task moves on with time whether or not anyone looks. A scripted task whose
progress counts polls (the simulator's default: PENDING for so many polls, then
RUNNING) moves on by one step each time a page shows it, as at a poll; else a list that
sees it would never see it end, and a client that trusts the list would wait on it.
"""

from __future__ import annotations

import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from wansync.remote.api import API_ZONE, api_time

from . import faults
from .model import SimTask
from .reply import Reply
from .state import SimState

PATH = "/api/v1/tasks"
STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
MAX_PAGE_SIZE = 100


class BadQuery(ValueError):
    """A query parameter the list cannot read; the message names it."""


def list_tasks(reply: Reply, state: SimState, query: dict[str, list[str]]) -> None:
    """Answer one list request (a fault, the key, the query, then the page)."""
    reply.log_as(state.record, kind="list", task_id=None, method="GET", query=query)
    try:
        fault = state.take_fault("list", None)
        if fault and faults.apply(reply, fault, state.video):
            return
        if not reply.authorized(state.key):
            reply.reply_error(401, "InvalidApiKey", "Invalid API-key provided.")
            return
        try:
            answer = _page(state, _Query(query))
        except BadQuery as exc:
            reply.reply_error(400, "InvalidParameter", str(exc))
            return
        reply.reply_json(200, {"request_id": secrets.token_hex(8), **answer})
    finally:
        reply.logged()


class _Query:
    """The query, read and checked."""

    def __init__(self, query: dict[str, list[str]]) -> None:
        self.start = _moment(query, "start_time", -math.inf)
        self.end = _moment(query, "end_time", math.inf) + 1.0  # whole seconds: inclusive
        self.model = _one(query, "model_name")
        self.status = _one(query, "status")
        if self.status is not None and self.status not in STATUSES:
            raise BadQuery(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")
        self.page = _number(query, "page_no", 1, 1, 1_000_000)
        self.size = _number(query, "page_size", 10, 1, MAX_PAGE_SIZE)

    def keeps(self, task: SimTask, status: str, made: float) -> bool:
        """`made`: the task's creation time on the API's clock (`SimState.clock_offset`)."""
        return (
            (self.model is None or task.model == self.model)
            and (self.status is None or status == self.status)
            and self.start <= made < self.end
        )


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name) or [""]
    return values[0] or None


def _moment(query: dict[str, list[str]], name: str, default: float) -> float:
    text = _one(query, name)
    if text is None:
        return default
    try:
        parsed = datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        raise BadQuery(f"{name}: {text!r} is not a time like 20250925110728") from None
    return (parsed - API_ZONE).timestamp()


def _number(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = _one(query, name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadQuery(f"{name}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


def _page(state: SimState, query: _Query) -> dict[str, Any]:
    now = time.time()
    with state._lock:
        found = [
            task
            for task in state.tasks.values()
            if task.model is not None
            and task.listed
            and query.keeps(task, task.status(now), state.api_clock(task.created))
        ]
        found.sort(key=lambda t: (t.created, t.task_id), reverse=True)  # newest first
        first = (query.page - 1) * query.size
        shown = found[first : first + query.size]
        for task in shown:
            if task.counts_polls:  # a row is a look at the task, as a poll is: it moves on
                task.polls += 1
        data = [_row(state, task, task.status(now)) for task in shown]
    return {
        "data": data,
        "total": len(found),
        "total_page": max(1, math.ceil(len(found) / query.size)),
        "page_no": query.page,
        "page_size": query.size,
    }


def _row(state: SimState, task: SimTask, status: str) -> dict[str, Any]:
    row = {
        "task_id": task.task_id,
        "model_name": task.model,
        "status": status,
        "gmt_create": api_time(state.api_clock(task.created)),
    }
    if task.end_time is not None and status in ("SUCCEEDED", "FAILED", "CANCELED"):
        row["end_time"] = api_time(state.api_clock(task.end_time))
    return row
