"""Stream a signed file URL to its `.part` (`outbox/.NAME.mp4.part`, `.NAME.1.png.part`
…): Range resume, verify, fsync.

Runs in a worker thread, one file at a time. It never publishes: it returns what it
verified (what the bytes are: a whole MP4 by its box walk, or a PNG, JPEG or WebP picture
by its signature and end), and the publisher renames. The first bytes are checked as
they arrive, so an HTML page or a video sent for a picture is refused at once. It reads
with urllib3 directly (one parse of the URL, the one the connection is made from; one
lookup of its host, whose checked addresses are the ones connected to), 512 KiB at a
time, hashing in a second thread so the hash of one chunk overlaps the read of the next;
memory stays a few MiB whatever the size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urljoin

import certifi
import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from wansync.config import DownloadConfig
from wansync.core.errors import DownloadInterrupted, Stopping, UrlRefused
from wansync.core.messages import Downloaded
from wansync.files.partfile import Writeback, open_part, write_all
from wansync.log import strip_query
from wansync.remote import mp4check, picturecheck
from wansync.remote.api import USER_AGENT
from wansync.remote.headers import header_int, parse_retry_after
from wansync.remote.pinned import PinnedPools
from wansync.remote.urlcheck import (
    Resolver,
    check_url,
    checked_addresses,
    parse,
    rejected,
    resolve,
    url_expires,
)

__all__ = ["Downloaded", "Downloader", "SpeedGuard", "check_url", "url_expires"]

READ_SIZE = 512 << 10  # one read, one write, one hash step (1 MiB measured more RSS, no gain)
HASH_QUEUE = 4  # chunks in flight to the hashing thread: bounds memory to ~2 MiB
MAX_REDIRECTS = 5
REJECTED_TYPES = ("text/", "html", "json", "xml")
REDIRECTS = (301, 302, 303, 307, 308)

HEAD_BYTES = 12  # enough to tell an MP4 (`ftyp` at 4-8) and every picture signature
Kind = Literal["video", "picture"]
VIDEO: Kind = "video"
PICTURE: Kind = "picture"

ConfigSource = DownloadConfig | Callable[[], DownloadConfig]
OnStart = Callable[[str | None], None] | None
OnProgress = Callable[[int, int | None], None] | None


class SpeedGuard:
    """curl's low-speed rule: under `limit` bytes/s averaged over the last `window` seconds
    (once a download is that old) cuts it, so a trickling host cannot hold a slot."""

    def __init__(self, limit: float, window: float, now: float) -> None:
        self.limit, self.window = limit, window
        self.total = 0
        self.samples: deque[tuple[float, int]] = deque([(now, 0)])

    def too_slow(self, received: int, now: float) -> bool:
        """Record `received` more bytes at `now`; True once the rule is broken."""
        self.total += received
        if now - self.samples[-1][0] >= self.window / 16:
            self.samples.append((now, self.total))
        while len(self.samples) > 1 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        since, then = self.samples[0]
        return now - since >= self.window and self.total - then < self.limit * (now - since)


class Sink:
    """The second thread: hashes each chunk the reader has written and pushes it to disk
    (`Writeback`). hashlib and the writeback release the GIL, so this overlaps the next
    read; the bounded queue keeps memory to a few MiB and slows the reader if it lags."""

    def __init__(self, digest: hashlib._Hash, fd: int, offset: int) -> None:
        self.digest = digest
        self.writeback = Writeback(fd, offset)
        self.written = offset
        self._queue: queue.Queue[bytes | None] = queue.Queue(HASH_QUEUE)
        self._thread = threading.Thread(target=self._run, name="download-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.digest.update(chunk)
            self.written += len(chunk)
            self.writeback.advance(self.written)

    def update(self, chunk: bytes) -> None:
        """`chunk` has been written to the file after everything fed before it."""
        self._queue.put(chunk)

    def close(self) -> None:
        """Wait until every chunk fed is hashed."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _content_range_start(header: str | None) -> int | None:
    # "bytes 100-199/200"
    if not header or not header.startswith("bytes "):
        return None
    return header_int(header[6:].split("-", 1)[0])


def _head_problem(head: bytes, kind: Kind) -> str | None:
    """Why a body starting with `head` cannot be a `kind` (None: it may be, or too few
    bytes to tell yet)."""
    if kind == VIDEO:
        return (
            "body is not an MP4 (no ftyp box)" if len(head) >= 8 and head[4:8] != b"ftyp" else None
        )
    if len(head) >= HEAD_BYTES and picturecheck.sniff(head) is None:
        return f"body is not a PNG, JPEG or WebP picture (it starts with {head[:8].hex(' ')})"
    return None


def _verified(fd: int, length: int, kind: Kind) -> str:
    """What the first `length` bytes of `fd` are (a content type), or `DownloadRejected`
    unless they are a whole `kind`."""
    if kind == PICTURE:
        try:
            return picturecheck.check(fd, length).content_type
        except picturecheck.NotPicture as exc:
            raise rejected(f"body is not a whole picture: {exc}") from None
    try:
        mp4check.check(fd, length)
    except mp4check.NotMp4 as exc:
        raise rejected(f"body is not a complete MP4: {exc}") from None
    return "video/mp4"


class Downloader:
    """One per daemon; `fetch` is safe to call from several worker threads at once.

    `cfg` is the `DownloadConfig`, or a callable returning the current one: each fetch
    reads it afresh, so a reloaded configuration applies to the next download.
    `resolver` is the one DNS lookup of every hop (tests pass their own).
    """

    def __init__(
        self,
        cfg: ConfigSource,
        timeout: float,
        stop: threading.Event,
        max_seconds: float = 3600,
        resolver: Resolver = resolve,
    ) -> None:
        self._cfg: Callable[[], DownloadConfig] = cfg if callable(cfg) else (lambda: cfg)
        self.timeout = timeout
        self.stop = stop
        self.max_seconds = max_seconds
        self.resolver = resolver
        # Connection failures are retried here; statuses are not (an error body from a
        # hostile host is never read, and Retry-After is capped by the caller, not slept).
        retry = Retry(total=3, connect=3, read=0, redirect=0, status=0, backoff_factor=0.5)
        self._pools = PinnedPools(
            certifi.where(),
            maxsize=max(2, self.cfg.concurrency),
            retries=retry,
        )

    @property
    def cfg(self) -> DownloadConfig:
        return self._cfg()

    def close(self) -> None:
        self._pools.clear()

    def _open(
        self, url: str, headers: dict[str, str], cfg: DownloadConfig, kind: Kind = VIDEO
    ) -> urllib3.BaseHTTPResponse:
        """GET with every redirect hop parsed once, its host looked up once, every address
        checked, and the connection made to exactly those addresses."""
        read_timeout = min(self.timeout, cfg.low_speed_time)
        timeout = urllib3.Timeout(connect=self.timeout, read=read_timeout)
        for _ in range(MAX_REDIRECTS + 1):
            target = parse(url, cfg)
            addresses = checked_addresses(target, cfg, self.resolver)
            try:
                pool = self._pools.get(target.scheme, target.host, target.port, addresses)
                resp = pool.urlopen(
                    "GET",
                    target.request_uri,
                    headers={"User-Agent": USER_AGENT, **headers},
                    redirect=False,
                    preload_content=False,
                    decode_content=False,
                    timeout=timeout,
                    assert_same_host=False,
                )
            except (HTTPError, OSError) as exc:
                raise DownloadInterrupted(
                    f"cannot reach {kind} host: {type(exc).__name__}: {strip_query(str(exc))}"
                ) from None
            location = resp.headers.get("Location")
            if resp.status in REDIRECTS and location:
                _discard(resp)
                url = urljoin(url, location)
                continue
            return resp
        raise rejected(f"more than {MAX_REDIRECTS} redirects")

    def fetch(
        self,
        url: str,
        part: Path,
        etag: str | None,
        on_start: OnStart = None,
        on_progress: OnProgress = None,
        kind: Kind = VIDEO,
    ) -> Downloaded:
        """Download (or resume) into `part`; `etag` is what the existing bytes came from;
        the file must be a whole `kind` (a video, or a picture)."""
        cfg = self.cfg
        fd = open_part(part)
        try:
            offset = os.fstat(fd).st_size if etag else 0  # no ETag: cannot prove the bytes
            headers = {"Accept-Encoding": "identity"}
            if offset and etag:
                headers["Range"] = f"bytes={offset}-"
                headers["If-Range"] = etag
            resp = self._open(url, headers, cfg, kind)
            try:
                done = self._answer(resp, fd, part, offset, etag, cfg, on_start, on_progress, kind)
            except BaseException:
                _discard(resp)
                raise
            if resp.length_remaining == 0 or done.bytes > offset:
                resp.release_conn()  # read to its end: the connection can serve again
            else:
                _discard(resp)
            return done
        finally:
            os.close(fd)

    def _answer(
        self,
        resp: urllib3.BaseHTTPResponse,
        fd: int,
        part: Path,
        offset: int,
        etag: str | None,
        cfg: DownloadConfig,
        on_start: OnStart,
        on_progress: OnProgress,
        kind: Kind = VIDEO,
    ) -> Downloaded:
        """Decide on the status and headers, then stream the body."""
        status = resp.status
        if status in (403, 404, 410):
            raise UrlRefused(f"storage answered HTTP {status}")
        if status == 416:
            total = header_int(resp.headers.get("Content-Range", "").rpartition("/")[2])
            if offset and total == offset:
                return _verify_complete(fd, offset, etag, kind)  # killed after the end
            os.ftruncate(fd, 0)
            raise DownloadInterrupted("storage refused the range; starting over")
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            raise DownloadInterrupted(f"storage answered HTTP {status}", retry_after=retry_after)
        if status not in (200, 206):
            raise rejected(f"storage answered HTTP {status}")
        if status == 206 and _content_range_start(resp.headers.get("Content-Range")) != offset:
            os.ftruncate(fd, 0)
            raise DownloadInterrupted("storage answered a different range; starting over")
        if status == 200:
            offset = 0
        content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if any(t in content_type for t in REJECTED_TYPES):
            raise rejected(f"storage sent {content_type!r} instead of a {kind}")
        length = header_int(resp.headers.get("Content-Length"))
        expected = offset + length if length is not None else None
        if expected is not None and expected > cfg.max_bytes:
            raise rejected(f"{kind} is {expected} bytes, over download.max_bytes ({cfg.max_bytes})")
        new_etag = resp.headers.get("ETag")
        if on_start:
            on_start(new_etag)
        digest = _hash_prefix(fd, offset, kind)
        stream = _Stream(resp, fd, part, expected, digest, cfg, on_progress, kind)
        received = self._stream(stream, offset)
        is_type = _verified(fd, received, kind)
        return Downloaded(received, digest.hexdigest(), is_type, new_etag)

    def _stream(self, stream: _Stream, offset: int) -> int:
        """Append the body to the file from `offset`; the number of bytes it then holds."""
        sink = Sink(stream.digest, stream.fd, offset)
        try:
            received = self._loop(stream, offset, sink)
        except BaseException:
            sink.close()
            with contextlib.suppress(OSError):
                os.fsync(stream.fd)  # what did arrive is kept for the resume
            raise
        sink.close()
        try:
            os.fsync(stream.fd)  # one fsync, at the end
        except OSError as exc:
            raise DownloadInterrupted(f"cannot sync {stream.part.name}: {exc.strerror}") from None
        if stream.expected is not None and received != stream.expected:
            raise DownloadInterrupted(f"got {received} of {stream.expected} bytes; will resume")
        if received < 8 and stream.kind == VIDEO:
            raise rejected("body is not an MP4 (too short)")
        return received

    def _loop(self, stream: _Stream, received: int, sink: Sink) -> int:
        """Read, check, write and hash until the body ends; the bytes the file then holds."""
        cfg, kind = stream.cfg, stream.kind
        now = time.monotonic()
        deadline = now + self.max_seconds
        guard = SpeedGuard(cfg.low_speed_limit, cfg.low_speed_time, now)
        head = b""
        while True:
            if self.stop.is_set():
                raise Stopping("shutting down")
            try:
                chunk = stream.resp.read1(READ_SIZE)
            except (HTTPError, OSError) as exc:
                raise DownloadInterrupted(
                    f"{kind} stream broke off at {received} bytes: {type(exc).__name__}"
                ) from None
            if not chunk:
                return received
            if received < HEAD_BYTES:  # the body's first bytes say what it is
                head = (head + chunk)[:HEAD_BYTES]
                if problem := _head_problem(head, kind):
                    raise rejected(problem)
            received += len(chunk)
            if received > cfg.max_bytes:
                raise rejected(f"{kind} is over download.max_bytes ({cfg.max_bytes})")
            try:
                write_all(stream.fd, chunk)
            except OSError as exc:
                raise DownloadInterrupted(
                    f"cannot write {stream.part.name}: {exc.strerror}"
                ) from None
            sink.update(chunk)
            if stream.on_progress:
                stream.on_progress(received, stream.expected)
            now = time.monotonic()
            if guard.too_slow(len(chunk), now):
                raise DownloadInterrupted(
                    f"slower than download.low_speed_limit ({cfg.low_speed_limit:g} B/s) "
                    f"for {cfg.low_speed_time:g} s; will resume"
                )
            if now > deadline:
                raise DownloadInterrupted("download took too long; will resume")


@dataclass(frozen=True, slots=True)
class _Stream:
    """One body being written: where to, how long it should be, and what it must be."""

    resp: urllib3.BaseHTTPResponse
    fd: int
    part: Path
    expected: int | None
    digest: hashlib._Hash
    cfg: DownloadConfig
    on_progress: OnProgress
    kind: Kind


def _discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Close a response whose body we will not read (an error page, a redirect, a stream
    cut short): reading it would let a hostile host hold us; the pool reconnects."""
    resp.close()
    resp.release_conn()


def _hash_prefix(fd: int, offset: int, kind: Kind = VIDEO) -> hashlib._Hash:
    """The hash of the bytes already in the `.part` (a resume), and the file cut to `offset`."""
    digest = hashlib.sha256()
    pos = 0
    while pos < offset:
        chunk = os.pread(fd, min(READ_SIZE, offset - pos), pos)
        if not chunk:
            break
        if pos == 0 and (problem := _head_problem(chunk[:HEAD_BYTES], kind)):
            raise rejected(problem)
        digest.update(chunk)
        pos += len(chunk)
    os.ftruncate(fd, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return digest


def _verify_complete(fd: int, size: int, etag: str | None, kind: Kind = VIDEO) -> Downloaded:
    """The `.part` already holds the whole object: check and hash it instead of fetching."""
    digest = _hash_prefix(fd, size, kind)
    return Downloaded(size, digest.hexdigest(), _verified(fd, size, kind), etag)
