"""The end of a task's way: the publish (publish.py's ordered moves), and its event.

Also what a removed task leaves behind: its sidecar and partial video are ours to drop.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from wansync.core import events as ev
from wansync.files.folderguard import FolderReplaced
from wansync.run import publish
from wansync.run.publish import Folders


def publish_task(folders: Folders, data: dict[str, Any], logger: Any) -> Path | None:
    """Publish (or finish publishing) a terminal task; its final sidecar, or None when the
    disk refused: then the inbox sidecar keeps the decision and a restart carries it on."""
    try:
        if data.get("published_as"):
            return publish.resume(folders, data, task_file_is_ours=True)
        return publish.publish(folders, data)
    except FolderReplaced:
        return None  # the guard said so once for the folder, not once per task
    except OSError as exc:
        logger.error(
            "task.publish_error",
            name=data["name"],
            task_id=data.get("task_id"),
            error=f"{type(exc).__name__}: {exc.strerror or exc}",
        )
        return None


def ended(data: dict[str, Any], final: Path, wall: float) -> ev.Event:
    """The event of a published task: `final` is its sidecar in outbox/ or failed/."""
    chosen = data["published_as"]
    if data["state"] == "succeeded":
        video = final.parent / f"{chosen}.mp4"
        return ev.TaskSucceeded(
            at=wall,
            name=data["name"],
            task_id=data["task_id"],
            published_as=chosen,
            video=str(video),
            sidecar=str(final),
            polls=data["polls"],
            path=str(video),
        )
    error = data["error"] or {}
    return ev.TaskFailed(
        at=wall,
        name=data["name"],
        task_id=data.get("task_id"),
        published_as=chosen,
        sidecar=str(final),
        code=error.get("code", ""),
        message=error.get("message", ""),
        path=str(final),
    )


def forget_files(folders: Folders, name: str) -> None:
    """A removed task's sidecar and partial download: ours, and no longer wanted."""
    for path in (folders.sidecar(name), folders.part(name)):
        if folders.replaced(path.parent):
            continue  # not through a swapped folder: the next start-up drops them
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
