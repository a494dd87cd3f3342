"""Metrics and health (docs/monitoring.md): Prometheus text at `GET /metrics`, and `GET /healthz`.

Counters and histograms are fed by `consume`, a bus consumer (main thread); gauges are
read when scraped, from the callables the daemon passes in, on the server's thread, so
those must be safe to call from another thread (read numbers, never iterate a dict the
loop is changing). Everything lives in this object's own `CollectorRegistry`, so two
daemons in one test process do not share numbers. Nothing served comes from a string
a task or the API supplied: label values are our own endpoint names and status codes.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from wansync import log
from wansync.config import MetricsConfig
from wansync.core.errors import ConfigError
from wansync.core.events import (
    ApiAnswered,
    AuthRejected,
    DownloadCompleted,
    DownloadProgress,
    Event,
    HookRan,
    ListPage,
    ListPaused,
    TaskFailed,
    TaskPolled,
    TaskRemoved,
    TaskSucceeded,
)
from wansync.outlets.scrapeserver import Answer, Request, ScrapeServer

STALL_AFTER = 30.0  # seconds without a loop tick before /healthz says 503
TASK_STATES = ("queued", "polling", "downloading")
MAX_SEEN = 100_000  # tasks whose SUCCEEDED poll waits for their publish (bounded)
Health = Callable[[], tuple[bool, str]]
TaskCounts = Callable[[], dict[str, int]]


def health_of(last_tick: float, watch_alive: bool, now: float) -> tuple[bool, str]:
    """The /healthz verdict: the loop ticked within 30 s and the inbox watch is alive."""
    if now - last_tick > STALL_AFTER:
        return False, f"the main loop has not ticked for {now - last_tick:.0f} s"
    if not watch_alive:
        return False, "the inbox watch is not running"
    return True, "ok"


def show_address(host: str, port: int) -> str:
    """`127.0.0.1:9464`, `[::1]:9464`: as the config writes it."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read(probe: Callable[[], Any]) -> Any:
    """`probe()`, tried 3 times (it reads the loop's state from another thread); None: broken."""
    for _ in range(3):
        try:
            return probe()
        except Exception as exc:
            failure = f"{type(exc).__name__}: {exc}"
    log.get("wansync.metrics").error("metrics.probe_error", error=failure)
    return None


class _Current(Collector):
    """The gauges read at scrape time: tasks by state, and health as 1 or 0."""

    def __init__(self, health: Health, task_counts: TaskCounts) -> None:
        self.health = health
        self.task_counts = task_counts

    def collect(self) -> Iterator[Metric]:
        counts = _read(self.task_counts)
        if counts is not None:
            tasks = GaugeMetricFamily("wansync_tasks", "Tasks now, by state", labels=["state"])
            for state in TASK_STATES:
                tasks.add_metric([state], float(counts.get(state, 0)))
            yield tasks
        verdict = _read(self.health)
        ok = verdict is not None and verdict[0]
        yield GaugeMetricFamily(
            "wansync_healthy", "1 while /healthz answers 200, else 0", value=1.0 if ok else 0.0
        )


class Metrics:
    """The numbers of one daemon, and the HTTP server that shows them."""

    def __init__(self, cfg: MetricsConfig, health: Health, task_counts: TaskCounts) -> None:
        self.cfg = cfg
        self.health = health
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `*_created` doubles series
        self.registry = CollectorRegistry()
        self.log = log.get("wansync.metrics")
        self._server: ScrapeServer | None = None
        self._thread: threading.Thread | None = None
        self._succeeded_seen: dict[str, float] = {}  # task_id -> `at` of its SUCCEEDED poll
        r = self.registry
        self.finished = Counter("wansync_tasks_finished", "Tasks ended", ["outcome"], registry=r)
        self.polls = Counter("wansync_polls", "Task API requests (every poll)", registry=r)
        self.rate_limited = Counter(
            "wansync_rate_limited", "HTTP 429 answers, any endpoint", registry=r
        )
        self.download_bytes = Counter(
            "wansync_download_bytes", "Bytes written to .part files", registry=r
        )
        self.hook_runs = Counter(
            "wansync_hook_runs", "Hooks done (ok) or given up (failed)", ["result"], registry=r
        )
        self.api = Counter(
            "wansync_api_responses",
            "API requests by endpoint and HTTP status (none: no answer)",
            ["endpoint", "status"],
            registry=r,
        )
        self.auth_rejected = Counter(
            "wansync_auth_rejected", "Pauses because the API refused the key", registry=r
        )
        self.list_requests = Counter(
            "wansync_list_requests",
            "Task list pages asked for, by result (ok, error)",
            ["result"],
            registry=r,
        )
        self.ended_found = Counter(
            "wansync_tasks_ended_found",
            "Task ends first learned through the list (by=list) or a task's own poll (by=poll)",
            ["by"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "wansync_poll_duration_seconds",
            "Task API request time",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.download_seconds = Histogram(
            "wansync_download_duration_seconds",
            "Download time, first byte requested to verified file",
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.publish_delay = Histogram(
            "wansync_succeeded_to_published_seconds",
            "From the poll that saw SUCCEEDED to the MP4 in the outbox",
            buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        for outcome in ("succeeded", "failed"):
            self.finished.labels(outcome)
        for result in ("ok", "failed"):
            self.hook_runs.labels(result)
        for result in ("ok", "error"):
            self.list_requests.labels(result)
        for by in ("list", "poll"):
            self.ended_found.labels(by)
        r.register(_Current(health, task_counts))
        ProcessCollector(registry=r)

    # -- events ------------------------------------------------------------------------
    def consume(self, event: Event) -> None:
        """Bus consumer: turn one event into numbers (quick; main thread)."""
        if isinstance(event, ApiAnswered):
            self._answered(event)
        elif isinstance(event, DownloadProgress | DownloadCompleted):
            self.download_bytes.inc(max(0, event.written))
            if isinstance(event, DownloadCompleted):
                self.download_seconds.observe(max(0.0, event.seconds))
        elif isinstance(event, ListPage | ListPaused):
            self.list_requests.labels("ok" if isinstance(event, ListPage) else "error").inc()
        elif isinstance(event, TaskPolled):
            if event.found_by in ("list", "poll"):
                self.ended_found.labels(event.found_by).inc()
            if event.task_status == "SUCCEEDED" and event.task_id not in self._succeeded_seen:
                if len(self._succeeded_seen) >= MAX_SEEN:
                    self._succeeded_seen.pop(next(iter(self._succeeded_seen)))
                self._succeeded_seen[event.task_id] = event.at
        elif isinstance(event, TaskSucceeded):
            self.finished.labels("succeeded").inc()
            seen = self._succeeded_seen.pop(event.task_id, None)
            if seen is not None:
                self.publish_delay.observe(max(0.0, event.at - seen))
        elif isinstance(event, TaskFailed | TaskRemoved):
            if isinstance(event, TaskFailed):
                self.finished.labels("failed").inc()
            if event.task_id is not None:
                self._succeeded_seen.pop(event.task_id, None)
        elif isinstance(event, HookRan):
            self.hook_runs.labels(event.result).inc()
        elif isinstance(event, AuthRejected):
            self.auth_rejected.inc()

    def _answered(self, event: ApiAnswered) -> None:
        status = "none" if event.status is None else str(event.status)
        self.api.labels(event.endpoint, status).inc()
        if event.status == 429:
            self.rate_limited.inc()
        if event.endpoint == "task":
            self.polls.inc()
            self.poll_seconds.observe(max(0.0, event.seconds))

    # -- the server --------------------------------------------------------------------
    def start(self) -> None:
        """Serve on `metrics.listen` (no-op when null); a bind failure is a ConfigError."""
        if self.cfg.listen is None or self._server is not None:
            return
        host, port = self.cfg.listen
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            self._server = ScrapeServer((host, port), family, self.answer, self.log)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"metrics.listen: cannot bind {show_address(host, port)}: {reason}"
            ) from None
        self._thread = threading.Thread(target=self._server.serve, daemon=True, name="metrics")
        self._thread.start()
        self.log.info("metrics.listening", address=show_address(*self.address))

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when the config asked for port 0, in tests)."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def answer(self, request: Request) -> Answer:
        """GET /metrics and GET /healthz; anything else 404. Never echoes the request."""
        if request.path == "/metrics":
            encoder, content_type = choose_encoder(request.accept)
            return 200, encoder(self.registry), content_type
        if request.path == "/healthz":
            try:
                ok, reason = self.health()
            except Exception as exc:  # a broken probe is an unhealthy daemon, not a 500
                ok, reason = False, f"health check failed: {type(exc).__name__}"
            return (200 if ok else 503), f"{'ok' if ok else reason}\n".encode(), "text/plain"
        return 404, b"not found: try /metrics or /healthz\n", "text/plain"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            if self._thread is not None:
                self._thread.join(5.0)
            self._server = self._thread = None
