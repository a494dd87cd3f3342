"""`wansync status`: every task and job in inbox, outbox and failed, from the files alone."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import sidecar
from .config import Config
from .jobfile import is_job_name, job_name
from .taskfile import TASK_SUFFIX, is_task_name


def _row(where: str, name: str, data: dict[str, Any] | None, now: float) -> dict[str, Any]:
    data = data or {}
    first = sidecar.parse_iso(data.get("first_seen"))
    error = data.get("error") or None
    return {
        "where": where,
        "name": name,
        "task_id": data.get("task_id"),
        "state": data.get("state") or ("queued" if where == "inbox" else "unknown"),
        "task_status": data.get("task_status"),
        "polls": data.get("polls", 0),
        "age_seconds": round(now - first, 1) if first else None,
        "error": error,
        "video": data.get("video"),
    }


def collect(cfg: Config) -> list[dict[str, Any]]:
    """One row per task: inbox tasks (with their live sidecar), then outbox, then failed."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    if cfg.inbox.is_dir():
        names = {e.name for e in os.scandir(cfg.inbox)}
        for filename in sorted(names):
            if is_task_name(filename):
                name = filename[: -len(TASK_SUFFIX)]
            elif is_job_name(filename) and f"{job_name(Path(filename))}{TASK_SUFFIX}" not in names:
                name = job_name(Path(filename))  # a job still waiting for its task
            else:
                continue
            rows.append(_row("inbox", name, sidecar.read(sidecar.path_for(cfg.inbox, name)), now))
    for where, folder in (("outbox", cfg.outbox), ("failed", cfg.failed)):
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.endswith(sidecar.SUFFIX) and not entry.name.startswith("."):
                name = entry.name[: -len(sidecar.SUFFIX)]
                rows.append(_row(where, name, sidecar.read(Path(entry.path)), now))
    return rows


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def render(rows: list[dict[str, Any]]) -> str:
    """A plain table for people; `--json` gives the same rows for programs."""
    header = ("WHERE", "NAME", "TASK ID", "STATE", "POLLS", "AGE", "ERROR")
    table = [header]
    for r in rows:
        err = r["error"]
        table.append(
            (
                r["where"],
                r["name"],
                r["task_id"] or "-",
                r["state"],
                str(r["polls"]),
                _age(r["age_seconds"]),
                f"{err['code']}: {err['message']}" if err else "",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)
