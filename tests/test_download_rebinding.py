"""DNS rebinding (issue 21, finding 4): a video host's name is looked up once per request,
every address is checked, and the connection goes to exactly the checked address.

A name cannot be made to resolve differently on demand without a DNS server of our own,
so the resolver is the test's: injected at the one place that resolves (`Downloader(
resolver=...)`), or, for the real daemon, `socket.getaddrinfo` replaced by a
`sitecustomize` on the daemon's path. The "public" address is never really contacted:
an audit hook refuses every connect to it and notes the attempt. The local service is a
real HTTP server on 127.0.0.1 that records every request: it must get none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import certifi
import pytest

from tests.helpers import drop
from tests.videohost import SAMPLE, VideoHost
from wansync.config import DownloadConfig
from wansync.core.errors import DownloadInterrupted, TaskFailed
from wansync.remote.download import Downloader
from wansync.remote.urlcheck import Target, checked_addresses

NAME = "video.rebind.aliyuncs.com"
PUBLIC = "1.2.3.4"  # global, so the check passes; the audit hook keeps it off the network
BLOCKED: list[tuple[str, int]] = []  # connects the audit hook refused (all to PUBLIC)


def _refuse_public(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] == PUBLIC:
        BLOCKED.append(args[1][:2])
        raise ConnectionRefusedError(111, "refused by the test (no real network)")


sys.addaudithook(_refuse_public)  # for the whole test process; it only ever matches PUBLIC


class Rebinding:
    """A name that answers PUBLIC to the 1st, 3rd … lookup and 127.0.0.1 to the others:
    what an attacker's DNS server with a zero TTL does."""

    def __init__(self, name: str = NAME) -> None:
        self.name = name
        self.lookups = 0

    def __call__(self, host: str, port: int) -> list[str]:
        if host != self.name:
            return ["127.0.0.1"]  # the literal 127.0.0.1 of a first hop
        self.lookups += 1
        return [PUBLIC] if self.lookups % 2 else ["127.0.0.1"]


def cfg(*allowed: str, https: bool = False) -> DownloadConfig:
    return DownloadConfig(1, allowed or ("*.aliyuncs.com",), 10**9, https, 1.0, 30.0)


@pytest.fixture
def local() -> Iterator[VideoHost]:
    """The internal service a rebinding would reach: a valid video, every request noted."""
    BLOCKED.clear()
    with VideoHost("127.0.0.1") as host:
        yield host


class _Redirect(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_rebinding_name_is_looked_up_once_and_only_the_checked_address_is_dialled(
    local, tmp_path
):
    """Public when checked, 127.0.0.1 when connected: the local service gets no request."""
    resolver = Rebinding()
    downloader = Downloader(cfg(), 1.0, threading.Event(), resolver=resolver)
    url = f"http://{NAME}:{local.port}/v.mp4"
    try:
        with pytest.raises(DownloadInterrupted, match="cannot reach video host"):
            downloader.fetch(url, tmp_path / ".v.mp4.part", None)
    finally:
        downloader.close()
    assert local.requests == []
    assert resolver.lookups == 1, "the name was looked up again after the check"
    assert BLOCKED and set(BLOCKED) == {(PUBLIC, local.port)}  # urllib3's retries: same address


def test_the_next_request_looks_up_again_and_a_private_answer_is_refused(local, tmp_path):
    """The second fetch resolves anew; 127.0.0.1 for a wildcard host is DownloadRejected."""
    resolver = Rebinding()
    downloader = Downloader(cfg(), 1.0, threading.Event(), resolver=resolver)
    url = f"http://{NAME}:{local.port}/v.mp4"
    try:
        with pytest.raises(DownloadInterrupted):
            downloader.fetch(url, tmp_path / ".v.mp4.part", None)
        with pytest.raises(TaskFailed, match="non-public address") as refused:
            downloader.fetch(url, tmp_path / ".v.mp4.part", None)
    finally:
        downloader.close()
    assert refused.value.code == "DownloadRejected"
    assert local.requests == [] and resolver.lookups == 2


def test_every_redirect_hop_is_pinned_too(local, tmp_path):
    """A literal 127.0.0.1 first hop redirects to the rebinding name: still no local read."""
    redirector = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    redirector.location = f"http://{NAME}:{local.port}/v.mp4"  # type: ignore[attr-defined]
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    resolver = Rebinding()
    downloader = Downloader(
        cfg("127.0.0.1", "*.aliyuncs.com"), 1.0, threading.Event(), resolver=resolver
    )
    try:
        with pytest.raises(DownloadInterrupted, match="cannot reach video host"):
            downloader.fetch(
                f"http://127.0.0.1:{redirector.server_address[1]}/start",
                tmp_path / ".v.mp4.part",
                None,
            )
    finally:
        downloader.close()
        redirector.shutdown()
        redirector.server_close()
    assert local.requests == [] and resolver.lookups == 1
    assert set(BLOCKED) == {(PUBLIC, local.port)}


@pytest.mark.parametrize(
    "answer",
    [["8.8.8.8", "127.0.0.1"], ["8.8.8.8", "169.254.169.254"], ["::ffff:127.0.0.1"], ["fe80::1%2"]],
)
def test_one_private_address_in_the_answer_refuses_the_host(answer):
    """Every address of the one lookup is checked, not only the first."""
    target = Target("https", NAME, None, "/v.mp4")
    with pytest.raises(TaskFailed, match="non-public address"):
        checked_addresses(target, cfg(), lambda host, port: list(answer))


def test_a_literal_entry_may_be_internal_and_is_connected_to_as_resolved():
    """`127.0.0.1` (the tests' simulator) and a listed mirror name keep working."""
    lookups: list[tuple[str, int]] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append((host, port))
        return ["10.0.0.5"]

    target = Target("https", "mirror.internal", None, "/v.mp4")
    assert checked_addresses(target, cfg("mirror.internal"), resolver) == ("10.0.0.5",)
    assert lookups == [("mirror.internal", 443)]
    with pytest.raises(TaskFailed, match="non-public"):
        checked_addresses(target, cfg("*.internal"), resolver)


def test_a_failed_lookup_is_transient_and_names_the_host():
    def broken(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    with pytest.raises(DownloadInterrupted, match="cannot resolve video host"):
        checked_addresses(Target("https", NAME, None, "/"), cfg(), broken)
    with pytest.raises(DownloadInterrupted, match="no address"):
        checked_addresses(Target("https", NAME, None, "/"), cfg(), lambda h, p: [])


# -- HTTPS: the pinned connection still checks the certificate against the name ----------
def _certificate(folder: Path, name: str) -> tuple[str, str]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("served_as", ["videos.mirror.test", "someone.else.test"])
def test_https_to_a_pinned_address_sends_sni_and_checks_the_name(tmp_path, monkeypatch, served_as):
    """127.0.0.1 dialled, but TLS and Host say `videos.mirror.test`: its certificate
    passes; a certificate for another name fails as it would without pinning."""
    cert, key = _certificate(tmp_path, served_as)
    monkeypatch.setattr(certifi, "where", lambda: cert)  # trust the test's own CA only
    name = "videos.mirror.test"
    with VideoHost("127.0.0.1", tls=(cert, key)) as host:
        downloader = Downloader(
            cfg(name, https=True), 2.0, threading.Event(), resolver=lambda h, p: ["127.0.0.1"]
        )
        url = f"https://{name}:{host.port}/v.mp4"
        try:
            if served_as == name:
                fetched = downloader.fetch(url, tmp_path / ".v.mp4.part", None)
                assert fetched.bytes == len(SAMPLE)
                assert host.requests[0]["host"] == f"{name}:{host.port}"
            else:
                with pytest.raises(DownloadInterrupted, match=r"CERTIFICATE_VERIFY_FAILED|match"):
                    downloader.fetch(url, tmp_path / ".v.mp4.part", None)
                assert host.requests == []
        finally:
            downloader.close()


# -- the real daemon, its resolver replaced under it --------------------------------------
SITECUSTOMIZE = """
import os, socket, sys
NAME, PUBLIC, LOG = {name!r}, {public!r}, {log!r}
_real = socket.getaddrinfo
_lookups = [0]

def _note(line):
    with open(LOG, "a") as fh:
        fh.write(line + "\\n")

def getaddrinfo(host, port, *args, **kwargs):
    if isinstance(host, str) and host.rstrip(".").lower() == NAME:
        _lookups[0] += 1
        host = PUBLIC if _lookups[0] % 2 else "127.0.0.1"
        _note("lookup " + host)
    return _real(host, port, *args, **kwargs)

def _refuse(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] == PUBLIC:
        _note("refused " + PUBLIC)
        raise ConnectionRefusedError(111, "refused by the test (no real network)")

socket.getaddrinfo = getaddrinfo
sys.addaudithook(_refuse)
"""


def test_the_daemon_never_publishes_a_local_service_behind_a_rebinding_name(
    env, sim, local, tmp_path, monkeypatch
):
    """`wansync run` with DNS that says public, then 127.0.0.1, then public …: the task
    fails DownloadRejected; the local service got no request; nothing is published."""
    site, log = tmp_path / "site", tmp_path / "dns.log"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        SITECUSTOMIZE.format(name=NAME, public=PUBLIC, log=str(log))
    )
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    env.configure(download={"allowed_hosts": ["*.aliyuncs.com"], "require_https": False})
    sim.add_task("rebind-task-0001", video_url=f"http://{NAME}:{local.port}/v.mp4")
    drop(env.inbox, "clip", "rebind-task-0001")
    daemon = env.start()
    ended = env.wait_ended("clip", timeout=60)["clip"]
    assert daemon.stop() == 0
    assert local.requests == [], "the local service was read through the rebinding name"
    assert ended["state"] == "failed" and ended["error"]["code"] == "DownloadRejected"
    assert "non-public address (127.0.0.1)" in ended["error"]["message"]
    assert not list(env.outbox.glob("*.mp4"))
    notes = log.read_text().splitlines()
    assert notes[:2] == [f"lookup {PUBLIC}", f"refused {PUBLIC}"]  # the checked address only
    assert "lookup 127.0.0.1" in notes
