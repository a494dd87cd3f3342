"""Video hosting: the bytes of each task's MP4 and serving them behind expiring signed URLs.

Bodies are the shipped sample MP4, or a synthetic body of any size (`ftyp`, `moov`, then
an `mdat` of noise) for large-download tests. Served with `Range`, `If-Range` and an `ETag`;
a URL past its `Expires`, or with a wrong signature, gets storage's 403.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

from .model import Fault, SimTask, mp4_seconds, sample_video
from .reply import Reply

VIDEO_PREFIX = "/videos/"
PATTERN_SIZE = 1024 * 1024
CHUNK = 256 * 1024


class VideoStore:
    """What each task's video is, how long, its ETag, and its signed URL."""

    def __init__(self) -> None:
        self._secret = secrets.token_bytes(16)
        self.sample = sample_video()
        self.sample_seconds = mp4_seconds(self.sample)
        self._pattern = random.Random(7).randbytes(PATTERN_SIZE)

    def length(self, task: SimTask) -> int:
        return len(self.sample) if task.video_size is None else task.video_size

    def seconds(self, task: SimTask) -> int:
        """The duration `usage` reports: the sample's real one (a synthetic body has none)."""
        return round(self.sample_seconds)

    def chunks(self, task: SimTask, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The body bytes [start, end) in chunks; synthetic bodies are an MP4 header + noise."""
        length = self.length(task)
        end = length if end is None else min(end, length)
        if task.video_size is None:
            for pos in range(start, end, CHUNK):
                yield self.sample[pos : min(end, pos + CHUNK)]
            return
        # Boxes that tile the file (ftyp, a moov holding the ETag version so a changed object
        # has other bytes, an mdat of noise to the end), as the downloader's box walk wants.
        header = struct.pack(">I4s4sI", 32, b"ftyp", b"isom", 512) + b"isomiso2mp41" + b"\0" * 4
        header += struct.pack(">I4sI4x", 16, b"moov", task.etag_version)
        mdat = length - len(header)
        header += (
            struct.pack(">I4s", mdat, b"mdat")
            if mdat < 2**32
            else struct.pack(">I4sQ", 1, b"mdat", mdat)
        )
        pos = start
        while pos < end:
            offset = pos % PATTERN_SIZE
            take = min(end - pos, PATTERN_SIZE - offset, CHUNK)
            chunk = self._pattern[offset : offset + take]
            if pos < len(header):
                n = min(len(header) - pos, take)
                chunk = header[pos : pos + n] + chunk[n:]
            yield chunk
            pos += take

    def sha256(self, task: SimTask) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks(task):
            digest.update(chunk)
        return digest.hexdigest()

    def etag(self, task: SimTask) -> str:
        tag = hashlib.md5(f"{task.task_id}:{task.etag_version}".encode()).hexdigest()  # noqa: S324
        return f'"{tag}"'

    def sign(self, task_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{task_id}:{expires}".encode(), "sha256").hexdigest()

    def signed_url(self, task: SimTask, base: str) -> str:
        expires = int((task.end_time or time.time()) + task.url_ttl)
        signature = self.sign(task.task_id, expires)
        return (
            f"{base}{VIDEO_PREFIX}{task.task_id}.mp4"
            f"?Expires={expires}&OSSAccessKeyId=sim&Signature={signature}"
        )

    def valid(self, task_id: str, query: dict[str, list[str]]) -> bool:
        """A signature that matches and an `Expires` still ahead."""
        try:
            expires = int(query.get("Expires", ["0"])[0])
        except ValueError:
            return False
        signature = query.get("Signature", [""])[0]
        return hmac.compare_digest(signature, self.sign(task_id, expires)) and (
            time.time() <= expires
        )

    def endless(self, reply: Reply) -> None:
        """A 200 video with no length that never ends (until the client hangs up)."""
        reply.send_response(200)
        reply.send_header("Content-Type", "video/mp4")
        reply.send_header("Connection", "close")
        reply.end_headers()
        reply.close_connection = True
        for chunk in self.chunks(SimTask("endless", video_size=1 << 62)):
            reply.wfile.write(chunk)


def serve(
    reply: Reply, store: VideoStore, task: SimTask | None, query: dict[str, Any], cut: Fault | None
) -> int:
    """Answer a GET/HEAD of a video URL; `cut` (a truncate fault) ends the body early."""
    if task is None or not store.valid(task.task_id, query):
        reply.expired()
        return 403
    length = store.length(task)
    etag = store.etag(task)
    start, status = 0, 200
    rng = reply.headers.get("Range")
    if rng and rng.startswith("bytes=") and rng.endswith("-"):
        if_range = reply.headers.get("If-Range")
        if if_range is None or if_range == etag:
            start = int(rng[6:-1])
            status = 206
    if start >= length and status == 206:
        reply.reply(416, b"", headers={"Content-Range": f"bytes */{length}"})
        return 416
    reply.send_response(status)
    reply.send_header("Content-Type", task.content_type)
    reply.send_header("Content-Length", str(length - start))
    reply.send_header("ETag", etag)
    reply.send_header("Accept-Ranges", "bytes")
    if status == 206:
        reply.send_header("Content-Range", f"bytes {start}-{length - 1}/{length}")
    reply.end_headers()
    if reply.command != "HEAD":
        _stream(reply, store, task, start, start + cut.at if cut else None)
    return status


def _stream(reply: Reply, store: VideoStore, task: SimTask, start: int, cut: int | None) -> None:
    """Write the body, paced to `task.video_rate`; a cut closes cleanly short of the length."""
    sent = start
    began = time.monotonic()
    for chunk in store.chunks(task, start, cut):
        reply.wfile.write(chunk)
        sent += len(chunk)
        if task.video_rate:
            ahead = (sent - start) / task.video_rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
    if cut is not None:  # a clean close short of Content-Length: the bytes sent arrive
        reply.wfile.flush()
        reply.connection.shutdown(socket.SHUT_WR)
        reply.close_connection = True
