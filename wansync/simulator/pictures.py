"""Picture hosting and the answers of picture tasks: `results[]` and `choices[]`.

A picture task (`SimTask.shape` "results" or "choices") makes `pictures` real pictures
(`imagefiles.py`), of which the first `failed_results` are failed sub-results: in
`results[]` an element with `code`/`message` and no `url`, as the vendor reports a picture
it could not make (a task all of whose pictures failed is FAILED, as the vendor's is). In
`choices[]` a failed picture is simply absent. Each picture is served behind its own
signed, expiring URL (`/pictures/{task_id}/{k}.{ext}`) with `Range`, `If-Range` and an
`ETag`, like the videos; a URL past its `Expires` gets storage's 403.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from typing import Any

from . import imagefiles
from .model import Fault, SimTask
from .reply import Reply
from .video import VideoStore

PREFIX = "/pictures/"
WIDTH, HEIGHT = 64, 48  # small, and whole 8x8 blocks for the JPEG encoder
TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
SUB_FAILURE = {
    "code": "InternalError.Timeout",
    "message": "An internal timeout error has occured during execution, please try again "
    "later or contact service support.",
}


class PictureStore:
    """The bytes of each picture (made once, then kept), their ETags and signed URLs."""

    def __init__(self, signer: VideoStore) -> None:
        self._signer = signer
        self._made: dict[tuple[str, int, str, int], bytes] = {}
        self._lock = threading.Lock()

    @staticmethod
    def format(task: SimTask, k: int) -> str:
        """png, jpeg or webp; "mixed" alternates png and jpeg."""
        if task.picture_format == "mixed":
            return "png" if k % 2 == 0 else "jpeg"
        return task.picture_format if task.picture_format in TYPES else "png"

    def body(self, task: SimTask, k: int) -> bytes:
        fmt = self.format(task, k)
        key = (task.task_id, k, fmt, task.etag_version)
        with self._lock:
            made = self._made.get(key)
        if made is None:
            name = f"{task.task_id}/{k}/{task.etag_version}".encode()
            seed = int(hashlib.sha256(name).hexdigest()[:6], 16)
            if fmt == "webp":
                made = imagefiles.webp(WIDTH, HEIGHT, (seed % 256, seed // 256 % 256, 128))
            else:
                pixels = imagefiles.gradient(WIDTH, HEIGHT, seed)
                made = imagefiles.png(pixels) if fmt == "png" else imagefiles.jpeg(pixels)
            with self._lock:
                self._made[key] = made
        return made

    def sha256(self, task: SimTask, k: int) -> str:
        return hashlib.sha256(self.body(task, k)).hexdigest()

    def etag(self, task: SimTask, k: int) -> str:
        tag = hashlib.md5(f"{task.task_id}/{k}:{task.etag_version}".encode()).hexdigest()  # noqa: S324
        return f'"{tag}"'

    def url(self, task: SimTask, k: int, base: str) -> str:
        expires = int((task.end_time or time.time()) + task.url_ttl)
        signature = self._signer.sign(f"{task.task_id}/{k}", expires)
        name = f"{k}.{EXTENSIONS[self.format(task, k)]}"
        return (
            f"{base}{PREFIX}{task.task_id}/{name}"
            f"?Expires={expires}&OSSAccessKeyId=sim&Signature={signature}"
        )

    def valid(self, task_id: str, k: int, query: dict[str, list[str]]) -> bool:
        return self._signer.valid(f"{task_id}/{k}", query)

    # -- the answer of a SUCCEEDED picture task -------------------------------------------
    def made(self, task: SimTask) -> list[int]:
        """Indexes of the pictures that were made (the first `failed_results` were not)."""
        return list(range(min(task.failed_results, task.pictures), task.pictures))

    def report(self, task: SimTask, base: str, output: dict[str, Any]) -> dict[str, Any]:
        """Fill `output` with the task's pictures in its shape; return its `usage`."""
        made = self.made(task)
        urls = task.picture_urls or [self.url(task, k, base) for k in made]
        if not task.with_url:  # a broken answer: SUCCEEDED naming no file at all
            return {"image_count": len(made)}
        if task.shape == "choices":
            output["choices"] = [_choice(u) for u in urls]
            output["finished"] = True
            return {"image_count": len(urls), "size": f"{WIDTH}*{HEIGHT}"}
        prompt = task.prompt if task.prompt is not None else "a simulated prompt"
        output["results"] = [dict(SUB_FAILURE) for _ in range(task.pictures - len(made))] + [
            {"orig_prompt": prompt, "actual_prompt": prompt, "url": u} for u in urls
        ]
        output["task_metrics"] = {
            "TOTAL": task.pictures,
            "SUCCEEDED": len(made),
            "FAILED": task.pictures - len(made),
        }
        return {"image_count": len(made)}


def _choice(image_url: str) -> dict[str, Any]:
    content = [{"type": "image", "image": image_url}]
    return {"finish_reason": "stop", "message": {"role": "assistant", "content": content}}


def split_path(rest: str) -> tuple[str, int] | None:
    """`{task_id}/{k}.{ext}` -> (task_id, k), or None."""
    task_id, _, name = rest.partition("/")
    index, dot, ext = name.partition(".")
    if not task_id or not dot or not index.isdigit() or ext not in EXTENSIONS.values():
        return None
    return task_id, int(index)


def serve(
    reply: Reply,
    store: PictureStore,
    task: SimTask | None,
    k: int,
    query: dict[str, list[str]],
    cut: Fault | None,
) -> int:
    """Answer a GET/HEAD of a picture URL; `cut` (a truncate fault) ends the body early."""
    if task is None or k not in store.made(task) or not store.valid(task.task_id, k, query):
        reply.expired()
        return 403
    body, etag = store.body(task, k), store.etag(task, k)
    start, status = 0, 200
    rng = reply.headers.get("Range") or ""
    resumable = rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit()
    if resumable and reply.headers.get("If-Range") in (None, etag):
        start, status = int(rng[6:-1]), 206
    if status == 206 and start >= len(body):
        reply.reply(416, b"", headers={"Content-Range": f"bytes */{len(body)}"})
        return 416
    ctype = task.picture_content_type or TYPES[store.format(task, k)]
    reply.send_response(status)
    reply.send_header("Content-Type", ctype)
    reply.send_header("Content-Length", str(len(body) - start))
    reply.send_header("ETag", etag)
    reply.send_header("Accept-Ranges", "bytes")
    if status == 206:
        reply.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    reply.end_headers()
    if reply.command != "HEAD":
        end = start + cut.at if cut else len(body)
        reply.wfile.write(body[start:end])
        if cut:  # a clean close short of Content-Length: the bytes sent arrive
            reply.wfile.flush()
            reply.connection.shutdown(socket.SHUT_WR)
            reply.close_connection = True
    return status
