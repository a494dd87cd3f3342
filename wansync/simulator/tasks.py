"""The task API: `GET /api/v1/tasks/{id}` (the poll) and `POST /api/v1/tasks/{id}/cancel`.

A poll steps its task's script (PENDING → RUNNING → its outcome); it answers as
docs/development.md shows: a SUCCEEDED task carries a signed video URL and `usage`
matching the file served, or (a picture task) its pictures in `results[]` or `choices[]`.
Cancel works as the vendor documents it: only a PENDING task can be canceled.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from wansync.remote.api import api_time

from . import faults
from .model import SimTask
from .reply import Reply
from .state import SimState

TASK_PREFIX = "/api/v1/tasks/"
CANCEL_SUFFIX = "/cancel"
SCRIPTED_PROMPT = "a simulated prompt"  # orig_prompt of a task not made by the create endpoint


def _refused(reply: Reply, state: SimState, fault: Any) -> bool:
    """A scripted fault, or a wrong key, answers first: True if one did."""
    if fault and faults.apply(reply, fault, state.video):
        return True
    if not reply.authorized(state.key):
        reply.reply_error(401, "InvalidApiKey", "Invalid API-key provided.")
        return True
    return False


def poll(reply: Reply, state: SimState, task_id: str) -> None:
    """Answer one poll (faults and the key check first); every poll is recorded."""
    reply.log_as(state.record, kind="task", task_id=task_id, method=reply.command)
    reply.note(task_status=None)
    try:
        if not _refused(reply, state, state.take_fault("task", task_id)):
            _report(reply, state, task_id)
    finally:
        reply.logged()


def _report(reply: Reply, state: SimState, task_id: str) -> None:
    now = time.time()
    with state._lock:
        task = state.tasks.get(task_id) or state.auto_task(task_id)
        task.polls += 1
        if task.first_poll is None:
            task.first_poll = now
        status = task.status(now)
    if status == "SUCCEEDED" and task.shape != "video_url" and not state.pictures.made(task):
        status = "FAILED"  # the vendor: SUCCEEDED if at least one picture was made
    output: dict[str, Any] = {"task_id": task.answers_as or task_id, "task_status": status}
    if status != "UNKNOWN":
        output["submit_time"] = api_time(state.api_clock(task.created))
    if status in ("RUNNING", "SUCCEEDED", "FAILED"):
        scheduled = task.first_poll or now
        if task.run_seconds is not None:
            scheduled = task.created + (task.queue_seconds or 0.0)
        output["scheduled_time"] = api_time(state.api_clock(scheduled))
    if status in ("SUCCEEDED", "FAILED", "CANCELED"):
        output["end_time"] = api_time(state.api_clock(task.end_time or now))
    usage = None
    if status == "SUCCEEDED":
        usage = _succeeded(reply, state, task, output)
    elif status == "FAILED":
        if task.code:
            output["code"] = task.code
        if task.message:
            output["message"] = task.message
    reply.note(task_status=status)
    reply.reply_json(200, {"request_id": secrets.token_hex(8), "output": output, "usage": usage})


def _succeeded(reply: Reply, state: SimState, task: SimTask, output: dict[str, Any]) -> Any:
    """The files of a SUCCEEDED task in its shape (a video, or pictures); its `usage`."""
    base = f"{state.scheme}://{reply.headers.get('Host') or state.netloc}"
    if task.shape != "video_url":
        return state.pictures.report(task, base, output)
    output["orig_prompt"] = task.prompt if task.prompt is not None else SCRIPTED_PROMPT
    if task.with_url:
        output["video_url"] = task.video_url or state.video.signed_url(task, base)
    return _usage(state, task)


def _usage(state: SimState, task: SimTask) -> dict[str, Any]:
    """Billing as the API reports it; every duration is the served file's real one."""
    seconds = state.video.seconds(task)
    return {
        "duration": seconds,
        "video_duration": seconds,
        "input_video_duration": 0,
        "output_video_duration": seconds,
        "video_count": 1,
        "SR": task.resolution,
    }


def cancel(reply: Reply, state: SimState, task_id: str) -> None:
    """PENDING → CANCELED with 200 `{"request_id"}`; any other task, or none, is refused.

    The real refusal's shape is not documented anywhere we could read: HTTP 400
    `UnsupportedOperation` with a message naming the task's status is our stand-in.
    """
    fields = {"kind": "cancel", "task_id": task_id, "method": reply.command, "path": reply.path}
    reply.log_as(state.record, **fields)
    try:
        if _refused(reply, state, state.take_fault("cancel", task_id)):
            return
        now = time.time()
        with state._lock:  # an unseen id is made as a poll would make it (see auto_task)
            task = state.tasks.get(task_id) or state.auto_task(task_id)
            current = task.status(now)
            if current == "PENDING":
                task.canceled_at = now
        if current != "PENDING":
            reply.reply_error(400, "UnsupportedOperation", _refusal(task_id, current))
            return
        reply.reply_json(200, {"request_id": secrets.token_hex(8)})
    finally:
        reply.logged()


def _refusal(task_id: str, status: str) -> str:
    if status == "UNKNOWN":
        return f"Task {task_id} does not exist (or is older than 24 h); it cannot be canceled."
    return f"Task {task_id} is {status}, not PENDING; only a PENDING task can be canceled."
