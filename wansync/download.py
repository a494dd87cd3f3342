"""Stream a signed video URL to `outbox/.NAME.mp4.part`: Range resume, verify, fsync.

Runs in a worker thread. It never publishes: it returns what it verified, and the
publisher renames. Memory stays constant (1 MiB chunks) whatever the video's size.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .api import USER_AGENT, parse_retry_after
from .config import DownloadConfig
from .errors import DownloadInterrupted, Stopping, TaskFailed, UrlRefused
from .log import strip_query

CHUNK = 256 * 1024  # what a broken read loses at most; small enough, big enough
MAX_REDIRECTS = 5
REJECTED_TYPES = ("text/", "html", "json", "xml")


def make_session(pool_size: int, retries: Retry | int = 0) -> requests.Session:
    """A session whose pool fits `pool_size` concurrent requests (one per worker thread)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=retries)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = False  # no ~/.netrc: it would override the Authorization header
    return session


@dataclass(frozen=True)
class Downloaded:
    """A complete, verified `.part` file, fsynced and ready to be renamed into place."""

    bytes: int
    sha256: str
    content_type: str
    etag: str | None


def rejected(message: str) -> TaskFailed:
    return TaskFailed("DownloadRejected", message)


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Shell-style match on the host name alone, case-insensitively."""
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, p) for p in patterns)


def check_url(url: str, cfg: DownloadConfig) -> None:
    """Raise `DownloadRejected` unless `url` is one wansync may fetch (scheme, host)."""
    parts = urlsplit(url)
    allowed_schemes = ("https",) if cfg.require_https else ("https", "http")
    if parts.scheme.lower() not in allowed_schemes:
        raise rejected(f"video URL scheme {parts.scheme or 'none'!r} is not allowed")
    host = parts.hostname
    if not host:
        raise rejected("video URL has no host")
    if not host_allowed(host, cfg.allowed_hosts):
        raise rejected(f"video host {host!r} is not in download.allowed_hosts")


def _literal_entry(host: str, patterns: tuple[str, ...]) -> bool:
    return host.lower().rstrip(".") in {p for p in patterns if not any(c in p for c in "*?[")}


def check_address(url: str, cfg: DownloadConfig) -> None:
    """Refuse hosts that resolve to private, loopback or link-local addresses.

    A wildcard like `*.aliyuncs.com` must not become a way into the local network (DNS
    rebinding, metadata endpoints); only a host listed literally in allowed_hosts may
    be internal (the simulator on 127.0.0.1, an internal mirror).
    """
    host = urlsplit(url).hostname or ""
    if _literal_entry(host, cfg.allowed_hosts):
        return
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise DownloadInterrupted(f"cannot resolve video host {host!r}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            raise rejected(
                f"video host {host!r} resolves to a non-public address ({address}); "
                "list it literally in download.allowed_hosts to allow it"
            )


def url_expires(url: str) -> float | None:
    """The signed URL's deadline from its `Expires=<unix seconds>` parameter, if any."""
    values = parse_qs(urlsplit(url).query).get("Expires")
    try:
        return float(values[0]) if values else None
    except ValueError:
        return None


def _content_range_start(header: str | None) -> int | None:
    # "bytes 100-199/200"
    if not header or not header.startswith("bytes "):
        return None
    try:
        return int(header[6:].split("-", 1)[0])
    except ValueError:
        return None


class Downloader:
    """One per daemon; `fetch` is safe to call from several worker threads at once."""

    def __init__(
        self,
        cfg: DownloadConfig | Callable[[], DownloadConfig],
        timeout: float,
        stop: threading.Event,
        max_seconds: float = 3600,
    ) -> None:
        # A callable is read at each use, so a reload applies to every hop of a redirect.
        self._cfg = cfg if callable(cfg) else (lambda: cfg)
        self.timeout = timeout
        self.stop = stop
        self.max_seconds = max_seconds
        retry = Retry(
            total=3,
            connect=3,
            read=0,
            redirect=0,
            status=3,
            status_forcelist=(500, 502, 503, 504),
            backoff_factor=0.5,
            allowed_methods=("GET",),
            raise_on_status=False,
            respect_retry_after_header=True,
        )
        self._session = make_session(max(2, self.cfg.concurrency), retries=retry)

    @property
    def cfg(self) -> DownloadConfig:
        """The download settings now (the daemon's live config after a reload)."""
        return self._cfg()

    def close(self) -> None:
        self._session.close()

    def _open(self, url: str, headers: dict[str, str]) -> requests.Response:
        """GET with every redirect hop checked against the same rules as the first URL."""
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url, self.cfg)
            check_address(url, self.cfg)
            try:
                resp = self._session.get(
                    url, headers=headers, timeout=self.timeout, stream=True, allow_redirects=False
                )
            except requests.RequestException as exc:
                raise DownloadInterrupted(
                    f"cannot reach video host: {type(exc).__name__}: {strip_query(str(exc))}"
                ) from None
            if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                continue
            return resp
        raise rejected(f"more than {MAX_REDIRECTS} redirects")

    def fetch(
        self,
        url: str,
        part: Path,
        etag: str | None,
        on_start: Callable[[str | None], None] | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> Downloaded:
        """Download (or resume) into `part`; `etag` is what the existing bytes came from."""
        offset = part.stat().st_size if part.exists() else 0
        if offset and not etag:
            offset = 0  # cannot prove the bytes on disk match the object: start over
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = etag  # type: ignore[assignment]
        resp = self._open(url, headers)
        with resp:
            status = resp.status_code
            if status in (403, 404, 410):
                raise UrlRefused(f"storage answered HTTP {status}")
            if status == 416:
                total = resp.headers.get("Content-Range", "").rpartition("/")[2]
                if offset and total.isdigit() and int(total) == offset:
                    return self._verify_complete(part, offset, etag)  # killed after the end
                part.unlink(missing_ok=True)
                raise DownloadInterrupted("storage refused the range; starting over")
            if status == 429 or status >= 500:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                raise DownloadInterrupted(
                    f"storage answered HTTP {status}", retry_after=retry_after
                )
            if status not in (200, 206):
                raise rejected(f"storage answered HTTP {status}")
            if status == 206 and _content_range_start(resp.headers.get("Content-Range")) != offset:
                offset = 0
                part.unlink(missing_ok=True)
                raise DownloadInterrupted("storage answered a different range; starting over")
            if status == 200:
                offset = 0
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if any(t in content_type for t in REJECTED_TYPES):
                raise rejected(f"storage sent {content_type!r} instead of a video")
            length = resp.headers.get("Content-Length")
            expected = offset + int(length) if length and length.isdigit() else None
            if expected is not None and expected > self.cfg.max_bytes:
                raise rejected(
                    f"video is {expected} bytes, over download.max_bytes ({self.cfg.max_bytes})"
                )
            new_etag = resp.headers.get("ETag")
            if on_start:
                on_start(new_etag)
            return self._stream(
                resp, part, offset, expected, content_type or "video/mp4", new_etag, on_progress
            )

    def _verify_complete(self, part: Path, size: int, etag: str | None) -> Downloaded:
        """The `.part` already holds the whole object: hash it instead of fetching again."""
        digest = hashlib.sha256()
        with part.open("rb") as fh:
            head = fh.read(8)
            digest.update(head)
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        if len(head) < 8 or head[4:8] != b"ftyp":
            raise rejected("body is not an MP4 (no ftyp box)")
        return Downloaded(size, digest.hexdigest(), "video/mp4", etag)

    def _stream(self, resp, part, offset, expected, content_type, etag, on_progress) -> Downloaded:
        digest = hashlib.sha256()
        deadline = time.monotonic() + self.max_seconds
        try:
            fh = part.open("r+b" if offset else "wb")
        except OSError as exc:
            raise DownloadInterrupted(f"cannot open {part.name}: {exc.strerror}") from None
        with fh:
            if offset:
                head = b""
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    head = head or chunk[:8]
                fh.seek(offset)
                fh.truncate()
                if len(head) >= 8 and head[4:8] != b"ftyp":
                    raise rejected("body is not an MP4 (no ftyp box)")
            received = offset
            head = b""
            try:
                for chunk in resp.iter_content(CHUNK):
                    if self.stop.is_set():
                        raise Stopping("shutting down")
                    if received < 8:
                        head = (head + chunk)[:8]
                        if len(head) >= 8 and head[4:8] != b"ftyp":
                            raise rejected("body is not an MP4 (no ftyp box)")
                    received += len(chunk)
                    if received > self.cfg.max_bytes:
                        raise rejected(f"video is over download.max_bytes ({self.cfg.max_bytes})")
                    fh.write(chunk)
                    digest.update(chunk)
                    if on_progress:
                        on_progress(received, expected)
                    if time.monotonic() > deadline:
                        raise DownloadInterrupted("download took too long; will resume")
            except requests.RequestException as exc:
                raise DownloadInterrupted(
                    f"video stream broke off at {received} bytes: {type(exc).__name__}"
                ) from None
            except OSError as exc:
                raise DownloadInterrupted(f"cannot write {part.name}: {exc.strerror}") from None
            finally:
                try:
                    fh.flush()
                    os.fsync(fh.fileno())
                except OSError:
                    pass
        if expected is not None and received != expected:
            raise DownloadInterrupted(f"got {received} of {expected} bytes; will resume")
        if received < 8:
            raise rejected("body is not an MP4 (too short)")
        return Downloaded(received, digest.hexdigest(), content_type, etag)
