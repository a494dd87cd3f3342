"""`wansync status`: every task and job in inbox, outbox and failed, from the files alone."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, TextIO

from wansync import log
from wansync.cli.screen import LiveBlock, cut, pad, width
from wansync.config import Config
from wansync.core.errors import OutOfResources, TaskFileError
from wansync.files import sidecar, taskfile
from wansync.files.jobfile import is_job_name, job_name
from wansync.files.taskfile import TASK_SUFFIX, is_task_name

MB = 1_000_000
WAITING = "waiting"  # a .task or .job in the inbox the daemon has not picked up yet
HEADER = ("WHERE", "NAME", "TASK ID", "STATE", "FILES", "POLLS", "AGE", "ERROR")
NAME, TASK_ID, STATE, FILES, POLLS, AGE, ERROR = 1, 2, 3, 4, 5, 6, 7  # columns of HEADER
MAX_SHOWN_FILES = 16  # a hand-edited sidecar's list is shown this far
GAP = 2  # spaces between columns
DROP = -1
# How a table narrower than the terminal gives way, step by step: (column, least width,
# or DROP for the whole column). The task id, the value people copy, goes last.
GIVE_WAY = (
    (ERROR, 32),
    (NAME, 16),
    (FILES, 8),
    (AGE, DROP),
    (POLLS, DROP),
    (FILES, DROP),
    (NAME, 12),
    (ERROR, 16),
    (NAME, 8),
    (ERROR, 8),
    (STATE, 15),  # "polling RUNNING" whole
    (NAME, 5),
    (ERROR, 5),
    (STATE, 8),
    (TASK_ID, 13),
)


def natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key for names: `bad` before `bad-2`, `clip-2` before `clip-10`."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def _text(value: Any, cap: int = 200) -> str | None:
    """A sidecar string for the table, or None: a hand-edited sidecar may hold anything."""
    if value is None:
        return None
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:cap]


def _clean(text: str) -> str:
    """No control character reaches the terminal (a file name may hold ESC, an error a
    bidi override): each is shown escaped (`\\x1b`), as `log.visible` writes it."""
    return log.visible(text)


def _error(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    if not isinstance(value, dict):
        return {"code": "?", "message": _text(value), "transient": None}
    return {**value, "code": _text(value.get("code")), "message": _text(value.get("message"))}


def _row(where: str, name: str, data: dict[str, Any] | None, now: float) -> dict[str, Any]:
    shown = sidecar.show(data or {})
    first = sidecar.parse_iso(shown.first_seen)
    polls = shown.polls
    return {
        "where": where,
        "name": name,
        "task_id": _text(shown.task_id),
        "state": _text(shown.state) or (WAITING if where == "inbox" else "unknown"),
        "task_status": _text(shown.task_status),
        "polls": polls if isinstance(polls, int) and not isinstance(polls, bool) else 0,
        "age_seconds": round(max(0.0, now - first), 1) if first else None,
        "error": _error(shown.error),
        "video": shown.video,
        "outputs": _outputs(shown.outputs, shown.video),
        "download": _progress(shown.download),
    }


def _outputs(outputs: Any, video: Any) -> list[dict[str, Any]] | None:
    """The task's published files as its sidecar lists them (an older sidecar: its
    video), each `{path, bytes, sha256, content_type}`; None before success."""
    files = outputs if isinstance(outputs, list) else [video] if isinstance(video, dict) else []
    shown = [
        {k: f.get(k) for k in ("path", "bytes", "sha256", "content_type")}
        for f in files[:MAX_SHOWN_FILES]
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    ]
    return shown or None


def _files(row: dict[str, Any]) -> str:
    """The FILES cell: the one file's name, or how many (`4 files`); `-` before success."""
    outputs = row.get("outputs") or []
    if len(outputs) == 1:
        return str(outputs[0]["path"])[:200]
    return f"{len(outputs)} files" if outputs else "-"


def _progress(download: Any) -> dict[str, int | None] | None:
    """`bytes`/`total` of a download in progress, if the sidecar carries sane numbers."""
    if not isinstance(download, dict):
        return None
    done, total = download.get("bytes"), download.get("total")
    if not isinstance(done, int) or isinstance(done, bool) or done < 0:
        return None
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        total = None
    return {"bytes": done, "total": total}


def _queued_task_id(path: Path) -> str | None:
    """The id in a `.task` the daemon has not picked up yet (read capped, links refused)."""
    try:
        return taskfile.read(path).task_id
    except (OSError, TaskFileError, OutOfResources):
        return None


def collect(cfg: Config) -> list[dict[str, Any]]:
    """One row per task: inbox tasks (with their live sidecar), then outbox, then failed."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    if cfg.inbox.is_dir():
        names = {e.name for e in os.scandir(cfg.inbox)}
        for filename in sorted(names, key=lambda n: natural(n.rsplit(".", 1)[0])):
            if is_task_name(filename):
                name = filename[: -len(TASK_SUFFIX)]
            elif is_job_name(filename) and f"{job_name(Path(filename))}{TASK_SUFFIX}" not in names:
                name = job_name(Path(filename))  # a job still waiting for its task
            else:
                continue
            row = _row("inbox", name, sidecar.load(sidecar.path_for(cfg.inbox, name)), now)
            if row["task_id"] is None and is_task_name(filename):
                row["task_id"] = _queued_task_id(cfg.inbox / filename)
            rows.append(row)
    for where, folder in (("outbox", cfg.outbox), ("failed", cfg.failed)):
        if not folder.is_dir():
            continue
        found = [
            (entry.name[: -len(sidecar.SUFFIX)], Path(entry.path))
            for entry in os.scandir(folder)
            if entry.name.endswith(sidecar.SUFFIX) and not entry.name.startswith(".")
        ]
        for name, path in sorted(found, key=lambda item: natural(item[0])):  # by NAME alone
            rows.append(_row(where, name, sidecar.load(path), now))
    return rows


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _state(row: dict[str, Any]) -> str:
    """The state; while polling, what the API said last (`polling PENDING`, `polling
    RUNNING`); for a download in progress, its bytes and percent."""
    progress = row.get("download")
    if row["state"] == "polling" and row.get("task_status"):
        return f"polling {row['task_status']}"
    if row["state"] != "downloading" or not progress:
        return str(row["state"])
    done, total = progress["bytes"], progress["total"]
    if total is None:
        return f"downloading {done / MB:.1f} MB"
    percent = min(100, done * 100 // total)
    return f"downloading {done / MB:.1f} MB/{total / MB:.1f} MB {percent}%"


def render(rows: list[dict[str, Any]], columns: int | None = None) -> str:
    """A plain table for people; `--json` gives the same rows for programs.

    Widths are display widths (a Chinese name takes two columns a character). With
    `columns` (a terminal's width) every line fits: columns give way in `GIVE_WAY`'s
    order, the task id last; cut text ends in `…`.
    """
    table: list[tuple[str, ...]] = [HEADER]
    for r in rows:
        err = r["error"]
        table.append(
            (
                r["where"],
                r["name"],
                r["task_id"] or "-",
                _state(r),
                _files(r),
                str(r["polls"]),
                _age(r["age_seconds"]),
                f"{err['code']}: {err['message']}" if err else "",
            )
        )
    table = [tuple(_clean(str(cell)) for cell in row) for row in table]
    widths = [max(width(row[i]) for row in table) for i in range(len(HEADER))]
    if columns is not None:
        widths = _fit_widths(widths, columns - 1)
    lines = [
        (" " * GAP).join(pad(cut(c, w), w) for c, w in zip(row, widths, strict=True) if w)
        for row in table
    ]
    return "\n".join(line.rstrip() for line in lines)


def _fit_widths(widths: list[int], room: int) -> list[int]:
    """Column widths within `room` (0: the column is left out), in `GIVE_WAY`'s order."""
    widths = list(widths)
    over = sum(widths) + GAP * (len(widths) - 1) - room
    for col, least in GIVE_WAY:
        if over <= 0:
            break
        if least == DROP:
            over -= widths[col] + GAP
            widths[col] = 0
            continue
        give = min(over, max(widths[col] - least, 0))
        widths[col] -= give
        over -= give
    return widths


def frame(rows: list[dict[str, Any]], now: float, columns: int | None = None) -> str:
    """One `--watch` frame: the time, a count, and the table."""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    count = f"{len(rows)} task" + ("" if len(rows) == 1 else "s")
    return f"{clock}  {count}  (Ctrl-C to stop)\n{render(rows, columns)}"


def watch(cfg: Config, out: TextIO, interval: float = 1.0) -> None:
    """Redraw the table every `interval` s (in place on a terminal) until Ctrl-C."""
    block = LiveBlock(out)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            block.draw(frame(collect(cfg), time.time(), block.columns()))
            time.sleep(interval)
