"""The task-creating side: the create endpoints of every kind, and temporary file uploads.

A create is checked as the real service checks it, by the kinds table (`core/kinds.py`):
the endpoint must be the model's, and `input`/`parameters` must hold that kind's fields
(else 400 `InvalidParameter` naming the field). The task made answers in the kind's shape
(a video, `results[]` or `choices[]`); a prompt holding `[fail]` makes a task that fails,
`[2 failed]` one with two failed sub-results, `[jpeg]` (`[webp]`, `[mixed]`) pictures
of that format.

Its own state: the tasks created per request (so tests can prove a job made exactly one),
the account's in-progress limit, and the uploaded objects. It reads the shared state
(`state.py`) and never the server, so the import graph runs one way.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import secrets
import time
import uuid
from typing import Any

from wansync.core import jobcheck, kinds

from . import faults
from .reply import Reply
from .state import SimState

OSS_PATH = "/_oss"
FAILED_PICTURES = re.compile(r"\[(\d{1,2}) failed\]")  # in a prompt: that many sub-results fail
PICTURE_FORMATS = ("jpeg", "webp", "mixed")  # "[jpeg]" in a prompt: pictures of that format


class Rejected(Exception):
    """An answer that creates nothing: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SubmitDesk:
    """The create endpoint and what goes with it: uploads and the task list."""

    def __init__(self, state: SimState, max_in_progress: int) -> None:
        self.state = state
        self.max_in_progress = max_in_progress
        self.created: list[dict[str, Any]] = []  # one entry per task made by a submit
        self.most_in_progress = 0  # the highest in-progress count a submit ever saw
        self.rejected_busy = 0  # submits answered 429 for the in-progress limit
        self.objects: dict[str, bytes] = {}  # uploaded files by OSS key
        self.models: dict[str, str] = {}  # models the table does not know: endpoint (add_model)
        self._upload_dirs: set[str] = set()

    # -- POST /api/v1/services/{endpoint}: create a task ---------------------------------
    def submit(self, reply: Reply, raw: bytes, endpoint: str = kinds.VIDEO_GENERATION) -> None:
        """Check, make the task, answer; faults and stalls may intervene before or after."""
        fault = self.state.take_fault("submit", None)
        reply.log_as(
            self.state.record,
            kind="submit",
            method="POST",
            task_id=None,
            endpoint=endpoint,
            body=_logged(raw),
        )
        try:
            if fault and not fault.created and faults.apply(reply, fault, self.state.video):
                return
            if self._held(reply, "before"):
                return
            task_id = self._create(*self._check(reply, raw, endpoint))
            reply.note(task_id=task_id)
            if self._held(reply, "after"):
                return
            if fault and faults.apply(reply, fault, self.state.video):  # made, answer lost
                return
            answer = {"task_id": task_id, "task_status": "PENDING"}
            reply.reply_json(200, {"request_id": secrets.token_hex(8), "output": answer})
        except Rejected as exc:
            reply.reply_error(exc.status, exc.code, exc.message)
        finally:
            reply.logged()

    def add_model(self, model: str, endpoint: str) -> None:
        """Take `model` at `endpoint` as a model the kinds table does not know yet: its
        requests are not checked field by field, and its tasks answer with a video."""
        with self.state._lock:
            self.models[model.lower()] = endpoint

    def _held(self, reply: Reply, when: str) -> bool:
        """A scripted stall at this point: hold the request unanswered; True if it was."""
        stall = self.state.take_stall("create", when)
        if stall is None:
            return False
        reply.note(status=f"stalled-{when}")
        stall.hold(reply)
        return True

    def _create(self, body: dict[str, Any], kind: kinds.Kind | None, fields: dict[str, Any]) -> str:
        """Make the task (within the account's in-progress limit) and remember it."""
        state = self.state
        with state._lock:
            running = self._in_progress()
            if running >= self.max_in_progress:
                self.rejected_busy += 1
                raise Rejected(
                    429,
                    "Throttling.AllocationQuota",
                    f"Too many tasks in progress: {running} (the limit is "
                    f"{self.max_in_progress}); retry when one has finished.",
                )
            task_id = str(uuid.uuid4())
            self.most_in_progress = max(self.most_in_progress, running + 1)
        prompt = fields.get("prompt") or ""
        state.add_task(
            task_id,
            outcome="FAILED" if "[fail]" in prompt else "SUCCEEDED",
            prompt=prompt,
            model=body["model"],
            **_shape(kind, fields, prompt),
        )
        with state._lock:
            self.created.append(
                {"task_id": task_id, "model": body["model"], "prompt": prompt, "body": body}
            )
        return task_id

    def _in_progress(self) -> int:
        now = time.time()
        tasks = [self.state.tasks.get(c["task_id"]) for c in self.created]
        return sum(1 for t in tasks if t and t.status(now) in ("PENDING", "RUNNING"))

    def _check(
        self, reply: Reply, raw: bytes, endpoint: str
    ) -> tuple[dict[str, Any], kinds.Kind | None, dict[str, Any]]:
        """What the real service checks before it makes a task: the body, its kind's fields."""
        if not reply.authorized(self.state.key):
            raise Rejected(401, "InvalidApiKey", "Invalid API-key provided.")
        if reply.headers.get("X-DashScope-Async") != "enable":
            raise Rejected(
                403, "AccessDenied", "current user api does not support synchronous calls"
            )
        try:
            body = json.loads(raw)
        except ValueError:
            raise Rejected(400, "InvalidParameter", "request body is not JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            raise Rejected(400, "InvalidParameter", "model is required")
        if self.models.get(body["model"].lower()) == endpoint:  # a model added by a test
            inputs = body.get("input")
            prompt = inputs.get("prompt") if isinstance(inputs, dict) else None
            return body, None, {"prompt": prompt} if isinstance(prompt, str) else {}
        kind = kinds.kind_for(body["model"])
        if kind is None or kind.endpoint != endpoint:  # as DashScope answers a model it lacks
            raise Rejected(400, "InvalidParameter", "Model not exist.")
        if problems := jobcheck.check_request(kind, body):
            raise Rejected(400, "InvalidParameter", "; ".join(problems[:3]))
        fields, _ = jobcheck.request_fields(kind, body)
        resolve = reply.headers.get("X-DashScope-OssResourceResolve") == "enable"
        for _, url in jobcheck.url_values(kind, fields):
            self._check_url(url, resolve)
        return body, kind, fields

    def _check_url(self, url: Any, resolve: bool) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://", "oss://")):
            raise Rejected(400, "InvalidParameter", "url error, please check url!")
        if url.startswith("oss://"):
            if not resolve:
                raise Rejected(400, "InvalidParameter", "oss:// needs OssResourceResolve")
            if url[len("oss://") :] not in self.objects:
                raise Rejected(400, "InvalidParameter.DataInspection", "file not found")

    # -- GET /api/v1/uploads?action=getPolicy ---------------------------------------------
    def policy(self, reply: Reply, query: dict[str, list[str]]) -> None:
        reply.log_as(self.state.record, kind="policy", task_id=None, method="GET")
        if reply.headers.get("Authorization", "") != f"Bearer {self.state.key}":
            reply.reply_error(401, "InvalidApiKey", "Invalid API-key provided.")
            return
        if query.get("action") != ["getPolicy"] or not query.get("model"):
            reply.reply_error(400, "InvalidParameter", "action=getPolicy and model are required")
            return
        upload_dir = f"dashscope-instant/{secrets.token_hex(8)}"
        with self.state._lock:
            self._upload_dirs.add(upload_dir)
        host = reply.headers.get("Host") or self.state.netloc
        data = {
            "policy": "c2ltdWxhdGVkLXBvbGljeQ==",
            "signature": "sim-signature",
            "upload_dir": upload_dir,
            "upload_host": f"{self.state.scheme}://{host}{OSS_PATH}",
            "expire_in_seconds": 300,
            "max_file_size_mb": 100,
            "capacity_limit_mb": 999999,
            "oss_access_key_id": "sim-access-key-id",
            "x_oss_object_acl": "private",
            "x_oss_forbid_overwrite": "true",
        }
        reply.reply_json(200, {"request_id": secrets.token_hex(8), "data": data})

    # -- POST {upload_host}: an OSS form upload -------------------------------------------
    def oss_upload(self, reply: Reply, raw: bytes) -> None:
        reply.log_as(self.state.record, kind="upload", task_id=None, method="POST")
        ctype = reply.headers.get("Content-Type", "")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {ctype}\r\n\r\n".encode() + raw
        )
        fields: dict[str, bytes] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str):
                fields[name] = payload if isinstance(payload, bytes) else b""
        key = fields.get("key", b"").decode()
        status = 200
        with self.state._lock:
            allowed = any(key.startswith(d + "/") for d in self._upload_dirs)
            if fields.get("Signature") != b"sim-signature" or not allowed or "file" not in fields:
                status = 403
            elif key in self.objects:
                status = 409  # x-oss-forbid-overwrite
            else:
                self.objects[key] = fields["file"]
        reply.note(key=key)
        if status == 200:
            reply.reply(200, b"", "text/plain")
        else:
            body = f"<Error><Code>Refused{status}</Code></Error>".encode()
            reply.reply(status, body, "application/xml")


def _logged(raw: bytes) -> Any:
    """A create's body as the request log keeps it: the JSON, or None."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _shape(kind: kinds.Kind | None, fields: dict[str, Any], prompt: str) -> dict[str, Any]:
    """How the task made for `fields` answers: a video of the resolution asked, or pictures
    (a model added by a test, of no kind, answers with a video)."""
    if kind is None or kind.files == "mp4":
        resolution = str(fields.get("resolution", "720P"))
        return {"resolution": int(resolution.rstrip("Pp")) if resolution[:-1].isdigit() else 720}
    failed = FAILED_PICTURES.search(prompt)
    picture_format = next((f for f in PICTURE_FORMATS if f"[{f}]" in prompt), "png")
    return {
        "shape": kind.output,
        "pictures": fields.get("n", kind.default_n),
        "failed_results": int(failed[1]) if failed else 0,
        "picture_format": picture_format,
    }
