"""The status sidecar `NAME.status.json`: its schema, timestamps, and atomic read/write."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from .fsutil import write_json_atomic

SCHEMA_VERSION = 1
SUFFIX = ".status.json"
TERMINAL_STATES = ("succeeded", "failed")

# A job is `queued` then `submitting`; from `polling` on, a job and a task are the same.
State = Literal["queued", "submitting", "polling", "downloading", "succeeded", "failed"]


def set_state(data: dict[str, Any], state: State) -> None:
    """The one place a sidecar's `state` is assigned (so every transition is typed)."""
    data["state"] = state


def utc_iso(ts: float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and a `Z`: `2026-11-28T18:00:00.000Z`."""
    moment = datetime.fromtimestamp(time.time() if ts is None else ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> float | None:
    """The inverse of `utc_iso`, tolerant of anything unreadable (returns None)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def new(name: str, task_id: str | None, meta: dict[str, Any], now: float) -> dict[str, Any]:
    """A fresh sidecar for a task seen for the first time."""
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "task_id": task_id,
        "meta": meta,
        "state": "polling",  # the start of every task's way (see set_state)
        "task_status": None,
        "polls": 0,
        "first_seen": utc_iso(now),
        "last_polled": None,
        "next_poll": None,
        "finished": None,
        "request_id": None,
        "error": None,
        "output": None,
        "usage": None,
        "expires": None,
        "video": None,
    }


def error(code: str, message: str, transient: bool) -> dict[str, Any]:
    """The sidecar's `error` object."""
    return {"code": code, "message": message, "transient": transient}


def download(etag: str | None, done: int = 0, total: int | None = None) -> dict[str, Any]:
    """The sidecar's `download` object: `etag` is what a resume must match; `bytes` of
    `total` are on disk so far (`wansync status` shows it)."""
    return {"etag": etag, "bytes": done, "total": total}


def path_for(folder: Path, name: str) -> Path:
    return folder / f"{name}{SUFFIX}"


def write(path: Path, data: dict[str, Any], durable: bool = True) -> None:
    """Atomically replace the sidecar; `durable=False` skips fsync for progress-only updates."""
    write_json_atomic(path, data, durable=durable)


def read(path: Path) -> dict[str, Any] | None:
    """The sidecar at `path`, or None when it is missing or not a wansync sidecar."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        return None
    return data
