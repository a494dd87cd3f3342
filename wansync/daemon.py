"""Wiring and lifecycle: the lock, the threads, signals, and the main loop.

The main loop is the only code that touches task state and sidecars; poll and download
workers only do I/O and post results back. So there is no locking around tasks, and the
order of events on disk is the order of this loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

from . import config, jobfile, log, publish, sidecar
from .api import TaskApi, TaskReport
from .config import Config
from .download import Downloaded, Downloader, check_url, url_expires
from .errors import (
    AuthRejected,
    ConfigError,
    RateLimited,
    Stopping,
    TaskFailed,
    TransientError,
    UrlRefused,
    WansyncError,
)
from .fsutil import sweep_temp_files, write_bytes_atomic
from .notify import Notifier
from .predictor import CompletionModel
from .publish import Folders
from .scheduler import AUTH_PAUSE_MIN, Scheduler, backoff
from .submitter import Submitter
from .taskfile import task_name
from .tracker import Candidates, Task, open_task, scan_inbox
from .waker import Waker
from .watcher import CHANGED, GONE, READY, InboxWatcher
from .workers import Workers

LOCK_NAME = ".wansync.lock"
STOP_GRACE = 5.0
STATUS_EVERY = 5.0

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED, EXIT_TIMEOUT = 0, 1, 2, 3, 124


class InboxLocked(WansyncError):
    """Another wansync holds this inbox's lock."""


class InboxLock:
    """An exclusive `flock` on `inbox/.wansync.lock`, released by the kernel if we die."""

    def __init__(self, inbox: Path) -> None:
        self.path = inbox / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InboxLocked(f"{self.path}: another wansync is running on this inbox") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def url_for_log(url: Any) -> str | None:
    return log.strip_query(url) if isinstance(url, str) else None


class Daemon:
    """`run()` is the daemon; `run(burst=True)` handles what is in the inbox now, then ends."""

    def __init__(self, cfg: Config, api_key: str, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.log = log.get("wansync.daemon")
        self.folders = Folders(cfg.inbox, cfg.outbox, cfg.failed)
        self.stop_event = threading.Event()  # tells workers to stop; set by the main thread
        self._stop_requested = False
        self._reload_requested = False
        self.lock = InboxLock(cfg.inbox)
        self._inbox_trouble_logged = False
        self.wake = Waker()
        self.results: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.api = TaskApi(
            cfg.api.base_url, api_key, cfg.api.timeout, pool_size=self._poll_workers()
        )
        self.downloader = Downloader(cfg.download, cfg.api.timeout, self.stop_event)
        self.scheduler = Scheduler(cfg.poll.interval, cfg.poll.max_per_second)
        self.model = CompletionModel()
        self.candidates = Candidates()
        self.tasks: dict[str, Task] = {}
        self.notifier = notifier or Notifier()
        self.pollers = Workers("poll", self._poll_workers(), self._poll_job)
        self.fetchers = Workers("download", cfg.download.concurrency, self._download_job)
        self.watcher: InboxWatcher | None = None
        self.downloads_running = 0
        self.download_due: dict[str, float] = {}  # tasks waiting for a download slot
        self.counts = {"done": 0, "failed": 0}
        self._auth_paused = False
        self._burst_names: set[str] | None = None
        self._only: set[str] | None = None
        self._burst_failed = False
        self._scanned: list[Path] = []
        self._by_id: dict[str, str] = {}  # task id -> name of the live task fetching it
        self._unsaved: dict[str, None] = {}  # found tasks whose first sidecar is not written
        self.submitter = Submitter(cfg, self.folders, self.api, self, self.results, self.wake.set)

    def _poll_workers(self) -> int:
        """Enough threads for the rate at ~300 ms per answer; more would only add switching."""
        return int(min(16, max(2, math.ceil(self.cfg.poll.max_per_second * 0.3))))

    # -- lifecycle ---------------------------------------------------------------------
    def request_stop(self, *_: Any) -> None:
        """Signal handlers only set a flag and wake the loop (no locks: see waker.py)."""
        self._stop_requested = True
        self.wake.set()

    def request_reload(self, *_: Any) -> None:
        """SIGHUP: re-read log level, poll settings and the key at the next tick."""
        self._reload_requested = True
        self.wake.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    def prepare_folders(self) -> None:
        for folder in (self.cfg.inbox, self.cfg.outbox, self.cfg.failed):
            folder.mkdir(parents=True, exist_ok=True)
            for removed in sweep_temp_files(folder):
                self.log.info("temp.removed", path=removed.name)

    def run(
        self, burst: bool = False, timeout: float | None = None, only: set[str] | None = None
    ) -> int:
        """The main loop; returns the process exit code. `only`: in burst, just these names."""
        self.prepare_folders()
        self.lock.acquire()
        self._only = only
        try:
            return self._run_locked(burst, timeout)
        finally:
            self.stop_event.set()
            self.notifier.stopping()
            self._flush_unsaved(2.0)
            self.pollers.stop(0.0)
            self.submitter.stop()
            self.fetchers.stop(STOP_GRACE)
            if self.watcher:
                self.watcher.stop()
            self.api.close()
            self.downloader.close()
            self.lock.release()
            self.log.info("daemon.stopped", **self._status_counts())

    def _run_locked(self, burst: bool, timeout: float | None) -> int:
        started = time.monotonic()
        deadline = started + timeout if timeout else None
        if not burst:
            self.watcher = InboxWatcher(self.cfg.inbox, self.wake, self.cfg.watch.polling)
            self.watcher.start()  # watch first, then scan: nothing falls in between
        self.pollers.start()
        self.fetchers.start()
        self.submitter.start()
        self._startup_scan(started, burst)
        self.log.info(
            "daemon.started",
            inbox=str(self.cfg.inbox),
            tasks=len(self.tasks),
            waiting_files=len(self.candidates),
            burst=burst,
        )
        self.notifier.ready(self._status_line())
        next_rescan = started + self.cfg.watch.rescan_interval
        next_status = started + STATUS_EVERY
        next_ping: float | None = started if self.notifier.watchdog_interval else None
        while not self._stop_requested:
            now = time.monotonic()
            if self._reload_requested:
                self._reload()
            if self.watcher:
                if not self.watcher.healthy() and self._restore_watch():
                    next_rescan = now  # events may have been missed while it was down
                self._watch_events(now)
                if now >= next_rescan:
                    self._rescan(now)
                    next_rescan = now + self.cfg.watch.rescan_interval
            for path in self.candidates.take(now):
                self._discover(path, now)
            self._drain_results()
            self._dispatch_polls(time.monotonic())
            self._dispatch_downloads(time.monotonic())
            self.submitter.dispatch(time.monotonic())
            if self._unsaved:
                self._flush_unsaved(0.05)
            if burst and self._burst_done():
                return EXIT_FAILED if self._burst_failed else EXIT_OK
            if deadline and now >= deadline:
                self.log.warning("daemon.timeout", seconds=timeout)
                return EXIT_TIMEOUT
            if now >= next_status:
                self.notifier.status(self._status_line())
                next_status = now + STATUS_EVERY
            if next_ping is not None and now >= next_ping:
                # Only a loop that ticks with a live watcher may tell systemd it is healthy.
                if self.watcher is None or self.watcher.healthy():
                    self.notifier.watchdog()
                next_ping = now + (self.notifier.watchdog_interval or 1.0)
            self.wake.wait(self._sleep_time(now, next_rescan, next_status, deadline, next_ping))
        return EXIT_OK

    def _restore_watch(self) -> bool:
        """The watch died (inbox deleted?): recreate the inbox, re-lock, watch again."""
        assert self.watcher is not None
        self.watcher.stop()
        try:
            self.cfg.inbox.mkdir(parents=True, exist_ok=True)
            self.lock.release()
            self.lock.acquire()
            watcher = InboxWatcher(self.cfg.inbox, self.wake, self.cfg.watch.polling)
            watcher.start()
        except InboxLocked:
            self.log.error("inbox.locked", detail="another wansync took the recreated inbox")
            self.request_stop()
            return False
        except OSError as exc:
            if not self._inbox_trouble_logged:
                self.log.error(
                    "inbox.unavailable",
                    path=str(self.cfg.inbox),
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    detail="cannot watch the inbox; will keep trying",
                )
                self._inbox_trouble_logged = True
            return False
        self.watcher = watcher
        self._inbox_trouble_logged = False
        self.log.warning(
            "inbox.rewatched",
            path=str(self.cfg.inbox),
            detail="the inbox watch had stopped (folder removed?); watching again",
        )
        return True

    def _reload(self) -> None:
        """SIGHUP: new log level, poll settings and key; folders need a restart."""
        self._reload_requested = False
        self.notifier.reloading(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        try:
            new = config.load(str(self.cfg.source) if self.cfg.source else None)
            key = config.load_api_key(new)
        except ConfigError as exc:
            self.log.error("config.reload_failed", error=str(exc), detail="keeping the old one")
            self.notifier.ready(self._status_line())
            return
        log.add_secret(key)
        if (new.inbox, new.outbox, new.failed) != (
            self.cfg.inbox,
            self.cfg.outbox,
            self.cfg.failed,
        ):
            self.log.warning("config.folders_unchanged", detail="folders change on restart only")
        self.cfg = dataclasses.replace(
            new, inbox=self.cfg.inbox, outbox=self.cfg.outbox, failed=self.cfg.failed
        )
        log.set_level(new.log.level)
        self.scheduler.interval = new.poll.interval
        self.scheduler.max_per_second = new.poll.max_per_second
        self.api.set_key(key)
        if self._auth_paused:  # try the new key at once: one probe, then everyone
            self.scheduler.pause_until(0.0, probe=True)
            self.scheduler.resume_now()
            now = time.monotonic()
            for task in self.tasks.values():
                if task.state == "polling" and not task.busy:
                    self.scheduler.add(task.name, now)
        self.submitter.cfg = self.cfg
        self.log.info("config.reloaded", source=str(self.cfg.source))
        self.notifier.ready(self._status_line())

    def _sleep_time(self, now: float, *marks: float | None) -> float:
        candidates = [m for m in marks if m is not None]
        for t in (
            self.scheduler.next_time(now),
            self.candidates.next_check(now),
            self.submitter.next_time(),
        ):
            if t is not None:
                candidates.append(t)
        if self.download_due and self.downloads_running < self.cfg.download.concurrency:
            candidates.append(min(self.download_due.values()))
        if self._unsaved:
            return 0.0
        wake_at = min(candidates, default=now + 1.0)
        return min(max(0.0, wake_at - time.monotonic()), 1.0 if self._burst_names else 5.0)

    # -- discovery ---------------------------------------------------------------------
    def _startup_scan(self, now: float, burst: bool) -> None:
        listing = scan_inbox(self.cfg.inbox)
        for name in listing.orphans:
            self._orphan_sidecar(name)
        if burst and self._only is not None:
            listing.tasks &= self._only
            listing.jobs &= self._only
        tasks = [self.folders.task(n) for n in sorted(listing.tasks)]
        tasks += [self.folders.job(n) for n in sorted(listing.jobs - listing.tasks)]
        self._scanned = tasks
        if burst:
            self._burst_names = listing.tasks | listing.jobs
        for path in tasks:
            self.candidates.changed(path, now)
        for path in self.candidates.take(now):
            self._discover(path, now)
        if self._only is None:  # others' partial downloads are not ours to judge
            self._sweep_parts()
        if not burst:
            self._scanned = []  # only `once` needs the list later

    def _sweep_parts(self) -> None:
        """Partial downloads no live task owns are ours to remove (the task was removed)."""
        owned = {publish.stem(n) for n in self.tasks}
        owned |= {publish.stem(_name(p)) for p in self._scanned if p in self.candidates}
        for entry in os.scandir(self.cfg.outbox):
            if entry.name.startswith(".") and entry.name.endswith(".mp4.part"):
                name = entry.name[1 : -len(".mp4.part")]
                if name not in owned:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    self.log.info("download.part_removed", name=name)

    def _orphan_sidecar(self, name: str) -> None:
        """A sidecar without its `.task`: a publish cut short, or a task the user removed."""
        data = sidecar.read(self.folders.sidecar(name))
        if data and data.get("state") in sidecar.TERMINAL_STATES and data.get("published_as"):
            final = publish.resume(self.folders, data, task_file_is_ours=False)
            self.log.info(
                "task.publish_resumed", name=name, task_id=data.get("task_id"), path=str(final)
            )
            return
        self._forget_files(name)
        self.log.info(
            "task.removed",
            name=name,
            task_id=(data or {}).get("task_id"),
            detail="task file was removed while wansync was not running",
        )

    def _forget_files(self, name: str) -> None:
        for path in (self.folders.sidecar(name), self.folders.part(name)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _watch_events(self, now: float) -> None:
        assert self.watcher is not None
        for kind, path in self.watcher.drain():
            if path.parent != self.cfg.inbox:
                continue
            if kind == READY:
                self.candidates.ready(path)
            elif kind == CHANGED:
                self.candidates.changed(path, now)
            elif kind == GONE and not path.exists():
                self.candidates.forget(path)
                if jobfile.is_job_name(path.name):
                    self.submitter.removed(jobfile.job_name(path))
                else:
                    self._task_removed(task_name(path))

    def _rescan(self, now: float) -> None:
        """The safety net for missed events (overflow, network filesystems)."""
        try:
            listing = scan_inbox(self.cfg.inbox)
        except OSError:
            return  # the watch check reports and repairs a missing inbox
        present = listing.tasks
        for name in present.difference(self.tasks):  # strings only: cheap with 10,000 tasks
            path = self.folders.task(name)
            if path not in self.candidates:
                self.candidates.changed(path, now)
        for name in listing.jobs.difference(self.tasks, self.submitter.jobs, present):
            path = self.folders.job(name)
            if path not in self.candidates:
                self.candidates.changed(path, now)
        for name in [n for n in self.submitter.jobs if n not in listing.jobs]:
            self.submitter.removed(name)
        for name in [n for n in self.tasks if n not in present]:
            if not self.folders.task(name).exists():
                self._task_removed(name)

    def _task_removed(self, name: str) -> None:
        task = self.tasks.get(name)
        if task is None or task.state in sidecar.TERMINAL_STATES:
            return
        self.scheduler.remove(name)
        self.download_due.pop(name, None)
        self._untrack(name)
        # a result still in flight finds no task and is dropped (see _drain_results)
        self._forget_files(name)
        self.log.warning(
            "task.removed",
            name=name,
            task_id=task.task_id,
            detail="task file was removed from the inbox; no longer tracked",
        )

    def _untrack(self, name: str) -> None:
        self.submitter.slots_changed = True
        task = self.tasks.pop(name, None)
        if task is not None and self._by_id.get(task.data.get("task_id") or "") == name:
            del self._by_id[task.data["task_id"]]

    def _discover(self, path: Path, now: float) -> None:
        name = _name(path)
        if name in self.tasks:
            return
        if self._burst_names is not None and name not in self._burst_names:
            return
        if jobfile.is_job_name(path.name):
            self.submitter.discover(path, now)
            return
        task, spec = open_task(self.folders, path, time.time())
        if task.state in sidecar.TERMINAL_STATES:
            self.tasks[name] = task
            if spec is None and not task.data.get("published_as"):
                self.log.warning(
                    "task.invalid", name=name, file=path.name, error=task.data["error"]["message"]
                )
            self._finish(task)
            return
        twin = self.tasks.get(self._by_id.get(task.task_id, ""))
        if twin is not None:
            self.tasks[name] = task
            self._fail(
                task,
                "DuplicateTask",
                f"{path.name}: task id {task.task_id} is already being fetched for "
                f"{twin.name}.task; one video per task id",
            )
            return
        self.tasks[name] = task
        self._by_id[task.task_id] = name
        resumed = task.data["polls"] > 0 or task.state == "downloading"
        self.log.info(
            "task.discovered", name=name, task_id=task.task_id, resumed=resumed, state=task.state
        )
        if task.state == "downloading" and isinstance(task.data["output"], dict):
            self.download_due[name] = now
        else:
            task.data["state"] = "polling"
            self.scheduler.add(name, now)
        self._unsaved[name] = None  # its first sidecar is written between ticks

    def _flush_unsaved(self, budget: float) -> None:
        """Write first sidecars of newly found tasks, for at most `budget` seconds.

        Tracking 10,000 files at start-up must not wait for 10,000 file writes: the tasks
        are scheduled at once, their sidecars follow in batches. Not fsynced: lost in a
        power cut, a task is simply discovered again.
        """
        deadline = time.monotonic() + budget
        while self._unsaved and time.monotonic() < deadline:
            name = next(iter(self._unsaved))
            del self._unsaved[name]
            task = self.tasks.get(name)
            if task is not None and task.state not in sidecar.TERMINAL_STATES:
                sidecar.write(self.folders.sidecar(name), task.data, durable=False)

    # -- polling -----------------------------------------------------------------------
    def _dispatch_polls(self, now: float) -> None:
        while (name := self.scheduler.take(now)) is not None:
            task = self.tasks.get(name)
            if task is None or task.busy:
                continue
            age = time.time() - (sidecar.parse_iso(task.data["first_seen"]) or time.time())
            if age > self.cfg.poll.give_up_after:
                self._fail(
                    task,
                    "Timeout",
                    f"not finished {int(age)} s after it was first seen "
                    f"(poll.give_up_after is {int(self.cfg.poll.give_up_after)} s)",
                )
                continue
            if self._auth_paused:
                self._reread_key()  # this is the probe: a fixed key file is picked up
            task.busy = True
            self.pollers.submit((name, task.task_id, now, time.time()))

    def _poll_job(self, item: tuple[str, str, float, float]) -> None:
        name, task_id, started, started_wall = item
        try:
            outcome: Any = self.api.fetch(task_id)
        except WansyncError as exc:
            outcome = exc
        except Exception as exc:  # a bug must not kill the worker: report it as transient
            outcome = TransientError(f"unexpected {type(exc).__name__}", "InternalError")
        self.results.put(("poll", name, started, started_wall, outcome))
        self.wake.set()

    def _drain_results(self) -> None:
        while True:
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                return
            kind, name, *rest = item
            if kind == "job":
                self.submitter.on_result(name, *rest)
                continue
            task = self.tasks.get(name)
            if kind == "etag":
                if task:
                    task.data["download"] = {"etag": rest[0]}
                    sidecar.write(self.folders.sidecar(name), task.data)
                continue
            if task is None:
                continue  # removed while the work was in flight
            task.busy = False
            if kind == "poll":
                self._on_poll(task, *rest)
            else:
                self.downloads_running -= 1
                self._on_download(task, *rest)

    def _on_poll(self, task: Task, started: float, started_wall: float, outcome: Any) -> None:
        data = task.data
        data["polls"] += 1
        data["last_polled"] = sidecar.utc_iso(started_wall)
        if self._auth_paused and not isinstance(outcome, AuthRejected):
            self._auth_paused = False
            self.scheduler.probe_done()
            self.log.info("auth.resumed", detail="the API accepts the key again")
        if isinstance(outcome, TaskReport):
            self._on_report(task, started, outcome)
        elif isinstance(outcome, TaskFailed):
            self._fail(task, outcome.code, outcome.message)
        elif isinstance(outcome, AuthRejected):
            self._on_auth_rejected(task, outcome)
        elif isinstance(outcome, TransientError):
            retry_after = outcome.retry_after if isinstance(outcome, RateLimited) else None
            if isinstance(outcome, RateLimited):
                # The quota is the account's: hold every poll, not just this task's.
                self.scheduler.pause_until(time.monotonic() + (retry_after or 1.0))
            delay = self._transient(task, outcome.code, outcome.message, retry_after)
            self.scheduler.add(task.name, time.monotonic() + delay)

    def _defer(self, output: dict[str, Any]) -> float:
        """Seconds until the next poll of an unfinished task: `interval`, or later when the
        rate cannot poll everyone that often and the task is unlikely to be done by then.

        Never more than one full cycle (`N / rate`), so with the scheduler serving the
        earliest-due first every task is still polled at least every two cycles.
        """
        interval = self.cfg.poll.interval
        cycle = len(self.tasks) / self.cfg.poll.max_per_second
        if cycle <= interval:
            return interval  # the rate covers everyone: plain polling, nothing to ration
        done_at = self.model.likely_done_at(output)
        if done_at is None:
            return interval
        return min(cycle, max(interval, done_at - time.time()))

    def _on_report(self, task: Task, started: float, report: TaskReport) -> None:
        self.model.observe(
            report.output, time.time(), finished=report.status in ("SUCCEEDED", "FAILED")
        )
        if report.status not in ("PENDING", "RUNNING"):
            self.submitter.slots_changed = True  # one task fewer in progress
        data = task.data
        previous_status = data["task_status"]
        data.update(
            task_status=report.status,
            request_id=report.request_id,
            output=report.output,
            usage=report.usage,
        )
        status = report.status
        if status == "FAILED":
            code = report.output.get("code")
            message = report.output.get("message")
            self._fail(
                task,
                code if isinstance(code, str) and code else "TaskFailed",
                message
                if isinstance(message, str) and message
                else "the task failed and the API gave no reason",
            )
            return
        if status == "CANCELED":
            self._fail(task, "TaskCanceled", "the task was canceled")
            return
        if status == "UNKNOWN":
            self._fail(
                task,
                "TaskNotFound",
                "the API does not know this task id (wrong id, other region, or older than 24 h)",
            )
            return
        if status == "SUCCEEDED":
            url = report.output.get("video_url")
            if not isinstance(url, str) or not url:
                delay = self._transient(task, "MalformedResponse", "SUCCEEDED without a video_url")
                self.scheduler.add(task.name, time.monotonic() + delay)
                return
            if task.refused_url == url:
                self._fail(
                    task,
                    "VideoUrlExpired",
                    "storage refused the video URL and the task has no newer one",
                )
                return
            try:
                check_url(url, self.cfg.download)
            except TaskFailed as exc:
                self._fail(task, exc.code, exc.message)
                return
            expires = url_expires(url)
            task.errors_in_row = 0
            data.update(
                state="downloading",
                error=None,
                next_poll=None,
                expires=sidecar.utc_iso(expires) if expires else None,
            )
            self.scheduler.park(task.name)
            self.download_due[task.name] = time.monotonic()
            sidecar.write(self.folders.sidecar(task.name), data)
            self.log.info(
                "task.polled",
                name=task.name,
                task_id=task.task_id,
                task_status=status,
                url=url_for_log(url),
            )
            return
        # PENDING / RUNNING
        task.errors_in_row = 0
        due = started + self._defer(report.output)
        data.update(error=None, next_poll=sidecar.utc_iso(time.time() + due - time.monotonic()))
        self.scheduler.add(task.name, due)
        sidecar.write(self.folders.sidecar(task.name), data, durable=False)
        level = "info" if status != previous_status else "debug"
        getattr(self.log, level)(
            "task.polled",
            name=task.name,
            task_id=task.task_id,
            task_status=status,
            polls=data["polls"],
        )

    def _transient(
        self, task: Task, code: str, message: str, retry_after: float | None = None
    ) -> float:
        """Record a transient error in the sidecar; returns the backoff before the next try."""
        task.errors_in_row += 1
        delay = backoff(self.cfg.poll.interval, task.errors_in_row, retry_after)
        task.data["error"] = sidecar.error(code, log.scrub(message), True)
        polling = task.state == "polling"
        task.data["next_poll"] = sidecar.utc_iso(time.time() + delay) if polling else None
        sidecar.write(self.folders.sidecar(task.name), task.data)
        self.log.warning(
            "task.transient_error",
            name=task.name,
            task_id=task.task_id,
            code=code,
            message=message,
            errors_in_row=task.errors_in_row,
            retry_in=round(delay, 3),
        )
        return delay

    def _reread_key(self) -> None:
        try:
            key = config.load_api_key(self.cfg)
        except ConfigError:
            return
        log.add_secret(key)
        self.api.set_key(key)

    def _on_auth_rejected(self, task: Task, exc: AuthRejected) -> None:
        pause = max(AUTH_PAUSE_MIN, self.cfg.poll.interval)
        until = time.monotonic() + pause
        if not self._auth_paused:
            self.log.error(
                "auth.rejected",
                code=exc.code,
                message=exc.message,
                detail=f"polling paused for {int(pause)} s; no task fails",
            )
        self._auth_paused = True
        self.scheduler.pause_until(until, probe=True)
        error = sidecar.error(exc.code, exc.message, True)
        for other in self.tasks.values():
            if other.state == "polling":
                other.data["error"] = error
                other.data["next_poll"] = sidecar.utc_iso(time.time() + pause)
                sidecar.write(self.folders.sidecar(other.name), other.data)
        self.scheduler.add(task.name, until)

    # -- downloading -------------------------------------------------------------------
    def _dispatch_downloads(self, now: float) -> None:
        """Start the earliest-due waiting downloads, up to `download.concurrency`."""
        free = self.cfg.download.concurrency - self.downloads_running
        if free <= 0 or not self.download_due:
            return
        due = sorted((d, n) for n, d in self.download_due.items() if d <= now)[:free]
        for _, name in due:
            del self.download_due[name]
            task = self.tasks.get(name)
            if task is None or task.state != "downloading" or task.busy:
                continue
            task.busy = True
            self.downloads_running += 1
            etag = (task.data.get("download") or {}).get("etag")
            self.fetchers.submit((task.name, task.task_id, task.data["output"]["video_url"], etag))

    def _download_job(self, item: tuple[str, str, str, str | None]) -> None:
        name, task_id, url, etag = item
        part = self.folders.part(name)
        last_log = [time.monotonic()]

        def on_start(new_etag: str | None) -> None:
            self.results.put(("etag", name, new_etag))
            self.wake.set()  # the sidecar must know the ETag before much is on disk
            self.log.info(
                "download.started",
                name=name,
                task_id=task_id,
                url=url_for_log(url),
                resume_from=part.stat().st_size if part.exists() and etag else 0,
            )

        def on_progress(done: int, total: int | None) -> None:
            if time.monotonic() - last_log[0] >= 5.0:
                last_log[0] = time.monotonic()
                self.log.info(
                    "download.progress", name=name, task_id=task_id, bytes=done, total=total
                )

        try:
            outcome: Any = self.downloader.fetch(url, part, etag, on_start, on_progress)
        except (WansyncError, OSError) as exc:
            outcome = exc
        except Exception as exc:
            outcome = TransientError(f"unexpected {type(exc).__name__}", "InternalError")
        self.results.put(("download", name, url, outcome))
        self.wake.set()

    def _on_download(self, task: Task, url: str, outcome: Any) -> None:
        if isinstance(outcome, Downloaded):
            task.data["video"] = {
                "path": f"{task.name}.mp4",
                "bytes": outcome.bytes,
                "sha256": outcome.sha256,
                "content_type": "video/mp4",
            }
            task.data["state"] = "succeeded"
            self.log.info(
                "download.completed",
                name=task.name,
                task_id=task.task_id,
                bytes=outcome.bytes,
                sha256=outcome.sha256,
            )
            self._finish(task)
        elif isinstance(outcome, Stopping):
            return
        elif isinstance(outcome, UrlRefused):
            if task.refused_url is not None and task.refused_url != url:
                self._fail(
                    task,
                    "VideoUrlExpired",
                    f"storage refused the video URL twice ({outcome}); it has expired",
                )
                return
            task.refused_url = url
            task.data["state"] = "polling"
            self._transient(task, "VideoUrlRefused", f"{outcome}; asking the task API again")
            self.scheduler.add(task.name, time.monotonic())
        elif isinstance(outcome, TaskFailed):
            self._fail(task, outcome.code, outcome.message)
        elif isinstance(outcome, TransientError | OSError):
            code = getattr(outcome, "code", "DownloadInterrupted")
            message = getattr(outcome, "message", None) or str(outcome)
            if isinstance(outcome, OSError):
                code, message = "DownloadInterrupted", f"disk error: {outcome.strerror}"
            delay = self._transient(task, code, message, getattr(outcome, "retry_after", None))
            self.download_due[task.name] = time.monotonic() + delay

    # -- endings -----------------------------------------------------------------------
    def _fail(self, task: Task, code: str, message: str) -> None:
        task.data.update(state="failed", error=sidecar.error(code, log.scrub(message), False))
        self._finish(task)

    def _finish(self, task: Task) -> None:
        """Publish into outbox/ or failed/ in crash-safe order, and stop tracking."""
        data = task.data
        data["finished"] = data.get("finished") or sidecar.utc_iso()
        data["next_poll"] = None
        self.scheduler.remove(task.name)
        self.download_due.pop(task.name, None)
        resuming = bool(data.get("published_as"))
        try:
            if resuming:
                final = publish.resume(self.folders, data, task_file_is_ours=True)
            else:
                final = publish.publish(self.folders, data)
        except OSError as exc:
            # The inbox sidecar keeps the decision; the next start-up finishes the moves.
            self.log.error(
                "task.publish_error",
                name=task.name,
                task_id=data.get("task_id"),
                error=f"{type(exc).__name__}: {exc.strerror or exc}",
            )
            self._untrack(task.name)
            return
        self._untrack(task.name)
        succeeded = data["state"] == "succeeded"
        shown = f"{data['published_as']}.mp4" if succeeded else final.name
        fields = dict(name=task.name, task_id=data.get("task_id"), path=str(final.parent / shown))
        if succeeded:
            self.counts["done"] += 1
            self.log.info("task.succeeded", **fields, polls=data["polls"])
        else:
            self.counts["failed"] += 1
            if self._burst_names is not None and task.name in self._burst_names:
                self._burst_failed = True
            self.log.warning(
                "task.failed",
                **fields,
                code=data["error"]["code"],
                message=data["error"]["message"],
            )
        if self._burst_names is not None:
            self._burst_names.discard(task.name)

    def _burst_done(self) -> bool:
        assert self._burst_names is not None
        live = [n for n in self._burst_names if n in self.tasks or n in self.submitter.jobs]
        waiting = [p for p in self._scanned if p in self.candidates]
        if not live and not waiting:
            return True
        self._burst_names = set(live) | {_name(p) for p in waiting}
        return False

    # -- what the submitter asks of the daemon (submitter.JobHost) ----------------------
    def in_progress(self) -> int:
        """Tasks the account is generating now: every tracked one not yet finished."""
        return sum(
            1
            for t in self.tasks.values()
            if t.state == "polling" and t.data["task_status"] in (None, "PENDING", "RUNNING")
        )

    def known_task_ids(self) -> set[str]:
        """Ids of our tasks: tracked, or ended in the last day (a search must skip them)."""
        known = set(self._by_id)
        since = time.time() - 86400
        for folder in (self.cfg.outbox, self.cfg.failed):
            with contextlib.suppress(OSError), os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.endswith(sidecar.SUFFIX) and entry.stat().st_mtime >= since:
                        data = sidecar.read(Path(entry.path))
                        if data and data.get("task_id"):
                            known.add(data["task_id"])
        return known

    def is_tracked(self, name: str) -> bool:
        return name in self.tasks

    def adopt(self, name: str, task_id: str, meta: dict[str, Any]) -> None:
        """A job's task now exists: write its `.task` (what a user would drop) and track it."""
        path = self.folders.task(name)
        content = json.dumps({**meta, "task_id": task_id}, ensure_ascii=False) + "\n"
        try:
            if not path.exists():
                write_bytes_atomic(path, content.encode("utf-8"))
        except OSError as exc:  # the sidecar holds the id: the next rescan tries again
            self.log.error("job.task_file_error", name=name, task_id=task_id, error=str(exc))
            return
        self.candidates.forget(path)
        self._discover(path, time.monotonic())

    def finish(self, task: Task) -> None:
        self.tasks[task.name] = task
        self._finish(task)

    # -- reporting ---------------------------------------------------------------------
    def _status_counts(self) -> dict[str, int]:
        polling = sum(1 for t in self.tasks.values() if t.state == "polling")
        downloading = sum(1 for t in self.tasks.values() if t.state == "downloading")
        jobs = self.submitter.waiting()
        return {"jobs": jobs, "polling": polling, "downloading": downloading, **self.counts}

    def _status_line(self) -> str:
        c = self._status_counts()
        jobs = f"{c['jobs']} jobs waiting, " if c["jobs"] else ""
        return (
            f"{jobs}{c['polling']} polling, {c['downloading']} downloading, "
            f"{c['done']} done, {c['failed']} failed"
        )


def _name(path: Path) -> str:
    """`NAME` of `inbox/NAME.task` or `inbox/NAME.job`: one name for a job and its task."""
    return jobfile.job_name(path) if jobfile.is_job_name(path.name) else task_name(path)
