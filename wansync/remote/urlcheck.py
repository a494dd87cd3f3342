"""Which video URLs wansync may fetch, read exactly the way the HTTP client reads them.

`urllib.parse` and urllib3 disagree on some URLs: `http://127.0.0.2:1\\@8.8.8.8/x` is host
8.8.8.8 to `urlsplit` and 127.0.0.2 to urllib3. So a URL is parsed once, with urllib3's
own parser, the connection is opened from that parse (`Target`), and anything the two
parsers would read differently — a backslash, userinfo, a percent sign or a space in the
host, an IP written as `0x7f.1`, `2130706433` or `127.1` — is refused before anything is sent.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from wansync.config import DownloadConfig
from wansync.core.errors import DownloadInterrupted, TaskFailed
from wansync.core.times import url_expires as url_expires  # where it was; pure, in core

_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")  # controls, space, backslash: parsers split here
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")  # a last label resolvers read as a number
DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_ADDRESSES = 16  # of one host's answer: checked and tried in order, the rest ignored

Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses, as text


def rejected(message: str) -> TaskFailed:
    return TaskFailed("DownloadRejected", message)


@dataclass(frozen=True)
class Target:
    """One parse of a video URL: what the connection is opened to, and what is asked for."""

    scheme: str
    host: str  # as urllib3 connects to it: lower case, an IPv6 address in brackets
    port: int | None
    request_uri: str  # path and query, sent as they were given

    @property
    def hostname(self) -> str:
        """The host without IPv6 brackets: what allowed_hosts patterns match."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def port_number(self) -> int:
        return self.port or DEFAULT_PORTS[self.scheme]


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Shell-style match on the host name alone, case-insensitively."""
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, p) for p in patterns)


def _check_ip_notation(host: str) -> None:
    """A host that resolvers would read as a number must be a plain IP address."""
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise rejected(f"video host {host!r} is not a valid IPv6 address") from None
        return
    if _NUMERIC_LABEL.fullmatch(host.rstrip(".").rsplit(".", 1)[-1]):
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host:
            raise rejected(f"video host {host!r} is an IP address in an unusual notation")


def parse(url: str, cfg: DownloadConfig) -> Target:
    """The one parse of `url`; `DownloadRejected` unless wansync may fetch it (scheme, host)."""
    if not isinstance(url, str) or not url.isascii() or _UNSAFE.search(url):
        raise rejected("video URL holds a space, a backslash, a control or non-ASCII character")
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise rejected("video URL cannot be parsed") from None
    scheme = (parsed.scheme or "").lower()
    allowed_schemes = ("https",) if cfg.require_https else ("https", "http")
    if scheme not in allowed_schemes:
        raise rejected(f"video URL scheme {scheme or 'none'!r} is not allowed")
    if "@" in split.netloc or parsed.auth is not None:
        raise rejected("video URL carries a user name or password (userinfo)")
    if "%" in split.netloc:
        raise rejected("video URL host holds a percent sign")
    host = parsed.host or ""
    if not host:
        raise rejected("video URL has no host")
    target = Target(scheme, host, parsed.port, parsed.request_uri)
    if (split.hostname or "") != target.hostname or split_port != parsed.port:
        raise rejected("video URL reads differently to different parsers")
    _check_ip_notation(host)
    if not host_allowed(target.hostname, cfg.allowed_hosts):
        raise rejected(f"video host {target.hostname!r} is not in download.allowed_hosts")
    return target


def check_url(url: str, cfg: DownloadConfig) -> None:
    """Raise `DownloadRejected` unless `url` is one wansync may fetch (scheme, host)."""
    parse(url, cfg)


def _literal_entry(host: str, patterns: tuple[str, ...]) -> bool:
    return host.lower().rstrip(".") in {p for p in patterns if not any(c in p for c in "*?[")}


def resolve(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the system resolver's order: the one DNS lookup of a
    video request (`Downloader(resolver=...)` replaces it in tests)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(target: Target, cfg: DownloadConfig, resolver: Resolver) -> tuple[str, ...]:
    """Resolve `target`'s host once; the addresses to connect to, every one of them checked.

    Private, loopback, link-local, multicast and other non-public addresses are refused
    if *any* address of the answer is one: a wildcard like `*.aliyuncs.com` must not
    become a way into the local network (DNS rebinding, metadata endpoints). Only a host
    listed literally in allowed_hosts may be internal (the simulator on 127.0.0.1, an
    internal mirror); it too is connected to at exactly the addresses looked up here.
    """
    host = target.hostname
    try:
        found = resolver(host, target.port_number)[:MAX_ADDRESSES]
    except (OSError, UnicodeError) as exc:
        raise DownloadInterrupted(f"cannot resolve video host {host!r}: {exc}") from None
    if not found:
        raise DownloadInterrupted(f"video host {host!r} resolves to no address")
    if _literal_entry(host, cfg.allowed_hosts):
        return tuple(found)
    for text in found:
        try:
            address = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            raise rejected(f"video host {host!r} resolves to {text[:60]!r}, not an IP") from None
        if not address.is_global or address.is_multicast:
            raise rejected(
                f"video host {host!r} resolves to a non-public address ({address}); "
                "list it literally in download.allowed_hosts to allow it"
            )
    return tuple(found)
