"""Metrics and health (docs/monitoring.md): events in, the real HTTP endpoint scraped and parsed."""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tests.helpers import TEST_KEY, wait_until
from wansync import config
from wansync.config import MetricsConfig
from wansync.core.errors import ConfigError
from wansync.core.events import (
    ApiAnswered,
    AuthRejected,
    DownloadCompleted,
    DownloadProgress,
    HookRan,
    TaskFailed,
    TaskPolled,
    TaskRemoved,
    TaskSucceeded,
)
from wansync.outlets import scrapeserver
from wansync.outlets.metrics import Metrics, health_of

T = "task-0001-abcdef"


class Probe:
    """What the daemon would answer: health and task counts, changeable by the test."""

    def __init__(self) -> None:
        self.ok, self.reason = True, "ok"
        self.counts: dict[str, int] = {"queued": 0, "polling": 0, "downloading": 0}

    def health(self) -> tuple[bool, str]:
        return self.ok, self.reason


@pytest.fixture
def probe():
    return Probe()


@pytest.fixture
def metrics(probe):
    m = Metrics(MetricsConfig(listen=("127.0.0.1", 0)), probe.health, lambda: probe.counts)
    m.start()
    yield m
    m.stop()


def get(metrics: Metrics, path: str) -> tuple[int, str]:
    host, port = metrics.address
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    status, text = get(metrics, "/metrics")
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_every_spec_metric_starts_at_zero(metrics):
    """A fresh daemon shows docs/monitoring.md's metrics, counters at 0 with their labels there."""
    s = scrape(metrics)
    for state in ("queued", "polling", "downloading"):
        assert value(s, "wansync_tasks", state=state) == 0
    for outcome in ("succeeded", "failed"):
        assert value(s, "wansync_tasks_finished_total", outcome=outcome) == 0
    for result in ("ok", "failed"):
        assert value(s, "wansync_hook_runs_total", result=result) == 0
    for name in ("polls", "rate_limited", "download_bytes"):
        assert value(s, f"wansync_{name}_total") == 0
    assert value(s, "wansync_healthy") == 1


def test_task_gauge_is_current_when_scraped(metrics, probe):
    """wansync_tasks reads the daemon's counts at each scrape."""
    probe.counts = {"queued": 2, "polling": 40, "downloading": 3}
    s = scrape(metrics)
    assert [value(s, "wansync_tasks", state=k) for k in ("queued", "polling", "downloading")] == [
        2,
        40,
        3,
    ]
    probe.counts = {"polling": 1}
    assert value(scrape(metrics), "wansync_tasks", state="downloading") == 0


def test_events_become_counters_and_histograms(metrics):
    """API answers, bytes, finishes and hook runs are counted as docs/monitoring.md says."""
    for status, endpoint, seconds in [
        (200, "task", 0.1),
        (200, "task", 0.2),
        (200, "task", 0.3),
        (None, "task", 2.0),
        (429, "task", 0.05),
        (429, "submit", 0.1),
        (200, "upload", 0.5),
    ]:
        metrics.consume(ApiAnswered(at=0, endpoint=endpoint, status=status, seconds=seconds))
    dl = dict(name="clip", task_id=T, total=None)
    metrics.consume(DownloadProgress(at=0, bytes=100, written=100, **dl))
    metrics.consume(DownloadProgress(at=0, bytes=300, written=200, **dl))
    metrics.consume(
        DownloadCompleted(
            at=0, name="clip", task_id=T, bytes=350, sha256="x", seconds=7.5, written=50
        )
    )
    metrics.consume(
        TaskFailed(
            at=0,
            name="b",
            task_id=None,
            published_as="b",
            sidecar="/f/b",
            code="InvalidTaskFile",
            message=f"key {TEST_KEY}",
        )
    )
    for result in ("ok", "ok", "failed"):
        metrics.consume(
            HookRan(
                at=0, name="clip", hook_event="succeeded", result=result, exit_code=0, attempts=1
            )
        )
    metrics.consume(AuthRejected(at=0, code="InvalidApiKey", message="no", pause=60))
    s = scrape(metrics)
    assert value(s, "wansync_polls_total") == 5
    assert value(s, "wansync_rate_limited_total") == 2
    assert value(s, "wansync_api_responses_total", endpoint="task", status="200") == 3
    assert value(s, "wansync_api_responses_total", endpoint="task", status="none") == 1
    assert value(s, "wansync_api_responses_total", endpoint="submit", status="429") == 1
    assert value(s, "wansync_poll_duration_seconds_count") == 5
    assert value(s, "wansync_poll_duration_seconds_bucket", le="0.25") == 3
    assert value(s, "wansync_download_bytes_total") == 350
    assert value(s, "wansync_download_duration_seconds_sum") == 7.5
    assert value(s, "wansync_tasks_finished_total", outcome="failed") == 1
    assert value(s, "wansync_hook_runs_total", result="ok") == 2
    assert value(s, "wansync_hook_runs_total", result="failed") == 1
    assert value(s, "wansync_auth_rejected_total") == 1


def test_time_from_succeeded_seen_to_published(metrics):
    """The first SUCCEEDED poll starts the clock, the publish stops it; others are not timed."""
    polled = dict(name="clip", polls=3, seconds=0.1, changed=True)
    metrics.consume(TaskPolled(at=100.0, task_id=T, task_status="RUNNING", **polled))
    metrics.consume(TaskPolled(at=110.0, task_id=T, task_status="SUCCEEDED", **polled))
    metrics.consume(TaskPolled(at=115.0, task_id=T, task_status="SUCCEEDED", **polled))
    done = dict(name="clip", published_as="clip", video="/o/clip.mp4", sidecar="/o/c", polls=4)
    metrics.consume(TaskSucceeded(at=122.5, task_id=T, **done))
    # resumed after a restart: no SUCCEEDED poll seen, nothing to time
    metrics.consume(TaskSucceeded(at=130.0, task_id="task-0002-abcdef", **done))
    # seen, then removed by the user: forgotten
    other = "task-0003-abcdef"
    metrics.consume(TaskPolled(at=140.0, task_id=other, task_status="SUCCEEDED", **polled))
    metrics.consume(TaskRemoved(at=141.0, name="x", task_id=other, detail="gone"))
    metrics.consume(TaskSucceeded(at=150.0, task_id=other, **done))
    s = scrape(metrics)
    assert value(s, "wansync_succeeded_to_published_seconds_count") == 1
    assert value(s, "wansync_succeeded_to_published_seconds_sum") == 12.5
    assert value(s, "wansync_tasks_finished_total", outcome="succeeded") == 3


def test_healthz_says_ok_then_503_with_the_reason(metrics, probe):
    """/healthz is 200 `ok` while healthy, 503 and the reason otherwise."""
    assert get(metrics, "/healthz") == (200, "ok\n")
    probe.ok, probe.reason = False, "the inbox watch is not running"
    assert get(metrics, "/healthz") == (503, "the inbox watch is not running\n")
    assert value(scrape(metrics), "wansync_healthy") == 0


def test_a_broken_probe_is_unhealthy_not_an_error(probe):
    """A health or count probe that raises gives 503 and a scrape without the gauge."""

    def broken() -> Any:
        raise RuntimeError("dictionary changed size during iteration")

    m = Metrics(MetricsConfig(listen=("127.0.0.1", 0)), broken, broken)
    m.start()
    try:
        assert get(m, "/healthz") == (503, "health check failed: RuntimeError\n")
        s = scrape(m)
        assert value(s, "wansync_healthy") == 0
        assert not any(name == "wansync_tasks" for name, _ in s)
    finally:
        m.stop()


def test_health_rule():
    """Healthy: the loop ticked within 30 s and the watch is alive."""
    assert health_of(last_tick=100.0, watch_alive=True, now=129.0) == (True, "ok")
    assert health_of(100.0, True, 131.0) == (False, "the main loop has not ticked for 31 s")
    assert health_of(100.0, False, 101.0) == (False, "the inbox watch is not running")


def test_other_paths_are_404_and_nothing_echoes_the_request(metrics):
    """Only /metrics and /healthz; a query string is neither needed nor shown back."""
    status, text = get(metrics, "/metrics?Signature=abc")
    assert status == 200 and "Signature" not in text and TEST_KEY not in text
    status, text = get(metrics, "/secret?Signature=abc")
    assert status == 404 and "Signature" not in text and "secret" not in text


def test_bind_failure_is_a_config_error_naming_the_key(probe):
    """A port in use: ConfigError `metrics.listen: cannot bind HOST:PORT: reason` (exit 2)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        m = Metrics(MetricsConfig(listen=("127.0.0.1", port)), probe.health, lambda: {})
        with pytest.raises(ConfigError) as info:
            m.start()
    assert (
        str(info.value) == f"metrics.listen: cannot bind 127.0.0.1:{port}: Address already in use"
    )


def test_ipv6_loopback(probe):
    """`[::1]:PORT` listens on IPv6."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    m = Metrics(MetricsConfig(listen=("::1", 0)), probe.health, lambda: {})
    try:
        m.start()
    except ConfigError as exc:
        pytest.skip(f"cannot bind ::1 here: {exc}")
    try:
        assert m.address[0] == "::1"
        assert get(m, "/healthz") == (200, "ok\n")
    finally:
        m.stop()


def test_without_listen_nothing_is_served(probe):
    """metrics.listen: null (the default) starts no server."""
    m = Metrics(config.from_mapping(None).metrics, probe.health, lambda: {})
    m.start()
    assert m._server is None


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),
    ],
)
def test_listen_forms(raw, parsed):
    """HOST:PORT, with IPv6 addresses in brackets."""
    assert config.from_mapping({"metrics": {"listen": raw}}).metrics.listen == parsed


@pytest.mark.parametrize(
    "raw",
    [
        "9464",
        9464,
        "::1:9464",
        "[::1]",
        "[nope]:9464",
        "127.0.0.1:0",
        "h:70000",
        ":9464",
        "a b:1",
        "http://127.0.0.1:9464",
    ],
)
def test_bad_listen_names_the_key(raw):
    """Anything but HOST:PORT (port 1-65535) is a config error naming metrics.listen."""
    with pytest.raises(ConfigError) as info:
        config.from_mapping({"metrics": {"listen": raw}})
    assert str(info.value).startswith("metrics.listen: ")


# -- issue 21, findings 7 and 9: a server no client can hold -------------------------------
def _connect(metrics: Metrics) -> socket.socket:
    return socket.create_connection(metrics.address, timeout=5)


def _closed_by_server(sock: socket.socket) -> bool:
    """The server closed (or reset) it: readable, and a read gives end of stream."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:
        return True


def test_a_request_trickled_a_byte_a_second_is_cut_at_the_head_deadline(metrics):
    """A byte a second never trips a per-read timeout; the whole head has HEAD_SECONDS."""
    sock = _connect(metrics)
    started, cut = time.monotonic(), False
    try:
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"x" * 20:
            if select.select([sock], [], [], 0.8)[0] and _closed_by_server(sock):
                cut = True
                break
            try:
                sock.send(bytes([byte]))
            except OSError:
                cut = True
                break
    finally:
        sock.close()
    assert cut, "the trickling client was never cut"
    assert time.monotonic() - started < scrapeserver.HEAD_SECONDS + 2


def test_connections_beyond_the_cap_close_the_oldest_and_one_thread_serves_all(metrics):
    """40 idle clients: the first ones are closed, /healthz still answers, no thread each."""
    threads = threading.active_count()
    idle = [_connect(metrics) for _ in range(scrapeserver.MAX_CONNECTIONS + 8)]
    try:
        wait_until(lambda: all(_closed_by_server(s) for s in idle[:8]), 5, "the oldest closed")
        assert not any(_closed_by_server(s) for s in idle[8:])
        assert get(metrics, "/healthz") == (200, "ok\n")
        assert threading.active_count() == threads
    finally:
        for sock in idle:
            sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nX-Big: " + b"x" * 70_000 + b"\r\n\r\n", 431),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"hello\r\n\r\n", 400),
    ],
    ids=["64 KB header", "POST", "not HTTP"],
)
def test_odd_requests_get_one_short_answer(metrics, request_bytes, status):
    """A head over 8 KiB, another method, garbage: one status line, then the close."""
    with socket.create_connection(metrics.address, timeout=5) as sock:
        with contextlib.suppress(OSError):  # the server may answer before taking it all
            sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())


def test_a_scraper_that_hangs_up_or_resets_leaves_no_trace_in_the_log(metrics):
    """20 scrapers reset before reading /metrics; nothing is logged, the next one is served."""
    with capture_logs() as logs:
        for _ in range(20):
            sock = socket.create_connection(metrics.address, timeout=5)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # RST at once: the answer meets a reset peer
        assert scrape(metrics)
    assert logs == []
