"""Local files to DashScope's temporary storage, as the official SDK does it.

The protocol (from `dashscope/utils/oss_utils.py`): GET an upload policy for the
model, POST the file as a multipart form to the policy's `upload_host` with the
policy's fields, and refer to it as `oss://{upload_dir}/{file name}` in the submit,
with the header `X-DashScope-OssResourceResolve: enable`. Uploading creates no task,
so any failure here is safe to retry.

A local file is opened without following a link or blocking, must be the very file the
job check saw (same device, inode and size), and is streamed from that descriptor, never
more than its checked size: a file swapped for a FIFO or a link to `/dev/zero` after the
check is refused, and a 2 GiB video costs 64 KiB of memory, not 2 GiB.
"""

from __future__ import annotations

import mimetypes
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from urllib3.fields import RequestField

from wansync.core.errors import RemoteUnavailable, TaskFailed
from wansync.files import pathwalk
from wansync.files.fsutil import NotARegularFile, open_regular
from wansync.files.jobfile import LocalFile
from wansync.log import scrub
from wansync.remote.api import USER_AGENT, TaskApi

CHUNK = 64 * 1024


class FileChanged(Exception):
    """The local file is not (or no longer) the one the job check saw."""


class MultipartBody:
    """A `multipart/form-data` body that reads its file part from a descriptor as sent.

    requests sends an object with `read` and `__len__` as it is, with a Content-Length
    (no chunked encoding, which storage may refuse), in the blocks it asks for; the
    framing is urllib3's own (`RequestField`), so names are escaped as it escapes them.
    """

    def __init__(self, fields: dict[str, str], part: RequestField, fd: int, size: int) -> None:
        self.boundary = secrets.token_hex(16)
        sep = f"--{self.boundary}\r\n".encode()
        head = b""
        for name, value in fields.items():
            field = RequestField(name=name, data=value)
            field.make_multipart()
            head += sep + field.render_headers().encode() + value.encode() + b"\r\n"
        self._head = head + sep + part.render_headers().encode()
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._fd, self._size, self._sent = fd, size, 0
        self.content_type = f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, n: int = -1) -> bytes:
        """The next piece of the body; the file part is never more than `size` bytes."""
        if self._head:
            out, self._head = self._head, b""
            return out
        if self._sent < self._size:
            want = min(CHUNK if n is None or n < 0 else max(n, 1), self._size - self._sent)
            data = os.read(self._fd, want)
            if not data:
                raise FileChanged(f"it shrank to {self._sent} bytes while being sent")
            self._sent += len(data)
            return data
        out, self._tail = self._tail, b""
        return out


def open_checked(local: LocalFile | Path) -> tuple[int, int]:
    """(descriptor, size) of a job's local file, refused unless it is what was checked."""
    try:
        if isinstance(local, LocalFile) and local.parts:  # as checked: no link on the way
            fd, st = pathwalk.open_beneath(local.root, local.parts)
        else:
            fd, st = open_regular(local.path if isinstance(local, LocalFile) else local)
    except NotARegularFile as exc:
        raise FileChanged(str(exc)) from None
    if isinstance(local, LocalFile) and (st.st_dev, st.st_ino, st.st_size) != (
        local.dev,
        local.ino,
        local.size,
    ):
        os.close(fd)
        raise FileChanged("it was replaced or changed since the job was checked")
    return fd, st.st_size


class Uploader:
    def __init__(self, api: TaskApi, timeout: float) -> None:
        self.api = api
        self.timeout = timeout

    def upload_all(self, model: str, files: Sequence[LocalFile | Path]) -> list[str]:
        """Upload `files` under one policy; returns their `oss://` URLs in the same order."""
        if not files:
            return []
        policy = self.api.upload_policy(model)
        urls = []
        paths = [f.path if isinstance(f, LocalFile) else f for f in files]
        names = [p.name for p in paths]
        for i, (local, path) in enumerate(zip(files, paths, strict=True)):
            # The SDK keys by file name alone; two files of one job may share a name.
            name = path.name if names.count(path.name) == 1 else f"{i}-{path.name}"
            urls.append(self._post(policy, local, path, f"{policy['upload_dir']}/{name}"))
        return urls

    def _post(self, policy: dict[str, str], local: LocalFile | Path, path: Path, key: str) -> str:
        form = {
            "OSSAccessKeyId": policy["oss_access_key_id"],
            "Signature": policy["signature"],
            "policy": policy["policy"],
            "key": key,
            "x-oss-object-acl": policy.get("x_oss_object_acl", "private"),
            "x-oss-forbid-overwrite": policy.get("x_oss_forbid_overwrite", "true"),
            "success_action_status": "200",
            "x-oss-content-type": mimetypes.guess_type(path.name)[0] or "application/octet-stream",
        }
        import requests  # only a job with a local file needs it: not loaded by an idle daemon

        part = RequestField(name="file", data=b"", filename=path.name)
        part.make_multipart(content_type=form["x-oss-content-type"])
        try:
            fd, size = open_checked(local)
            try:
                body = MultipartBody(form, part, fd, size)
                resp = requests.post(
                    policy["upload_host"],
                    data=body,
                    headers={
                        "User-Agent": USER_AGENT,
                        "Accept": "application/json",
                        "Content-Type": body.content_type,
                    },
                    timeout=(self.timeout, max(self.timeout, 300.0)),
                    allow_redirects=False,
                )
            finally:
                os.close(fd)
        except FileChanged as exc:
            raise TaskFailed("UploadFailed", f"{path.name}: not sent: {exc}") from None
        except OSError as exc:
            if isinstance(exc, requests.RequestException):
                detail = f"upload of {path.name}: {type(exc).__name__}"
                raise RemoteUnavailable(detail, "UploadFailed") from None
            raise TaskFailed("UploadFailed", f"{path.name}: {exc.strerror or exc}") from None
        if resp.status_code == 200:
            return f"oss://{key}"
        if resp.status_code >= 500 or resp.status_code == 429:
            raise RemoteUnavailable(
                f"upload of {path.name}: HTTP {resp.status_code}", "UploadFailed"
            )
        body_text = scrub(resp.text[:200].strip()) or resp.reason
        raise TaskFailed(
            "UploadFailed", f"{path.name}: storage answered HTTP {resp.status_code}: {body_text}"
        )
