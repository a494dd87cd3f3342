"""Wiring: the lock, the threads, signals, and the main loop.

The main loop is the only code that touches task state; workers do I/O and post typed
messages back (messages.py). Each tick: reload if asked, take watcher events and
settled files (intake.py), hand worker results to the pipeline or the submitter,
dispatch what is due, write pending sidecars, then sleep until the next deadline. What
the pipeline returns (effects.py: start a poll or a download, publish, emit an event)
is done by `carry_out`.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from pathlib import Path
from types import FrameType

from wansync import config, log
from wansync.config import Config, Live
from wansync.core import events as ev
from wansync.core.effects import (
    Effect,
    Emit,
    ForgetFiles,
    Publish,
    ReloadKey,
    StartDownload,
    StartList,
    StartPoll,
    WriteSidecars,
)
from wansync.core.errors import ConfigError, InboxLocked, OutOfResources
from wansync.core.lifecycle import Now
from wansync.core.messages import Adopt, End, Handover, LookupDone, Mailbox, PostDone, UploadDone
from wansync.core.scheduler import Scheduler
from wansync.core.tracker import Tracker
from wansync.files.fsutil import sweep_temp_files
from wansync.files.lock import InboxLock
from wansync.inbox.intake import Burst, Intake
from wansync.outlets.followers import Outlets
from wansync.remote.api import TaskApi
from wansync.remote.download import Downloader
from wansync.run import publish, signals
from wansync.run.journal import Journal
from wansync.run.listing import Listing, list_io
from wansync.run.notify import Notifier
from wansync.run.pipeline import Pipeline
from wansync.run.publish import Folders
from wansync.run.submitter import Submitter
from wansync.run.waker import Waker
from wansync.run.workers import Workers, fetch_io, poll_io

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "Daemon", "InboxLocked"]

STOP_GRACE = 5.0
STATUS_EVERY = 5.0

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED, EXIT_TIMEOUT = 0, 1, 2, 3, 124


def clock() -> Now:
    return Now(time.monotonic(), time.time())


class Daemon:
    """`run()` is the daemon; `run(burst=True)` handles what is in the inbox now, then ends."""

    def __init__(self, cfg: Config, api_key: str, notifier: Notifier | None = None) -> None:
        self.live = live = Live(cfg)
        self.log = log.get("wansync.daemon")
        self.folders = Folders(cfg.inbox, cfg.outbox, cfg.failed)
        self.stop_event = threading.Event()  # tells workers to stop; set by the main thread
        self._stop_requested = self._reload_requested = False
        self._stop_signal = 0
        self.lock = InboxLock(cfg.inbox)
        self.wake = Waker()
        self.mailbox = Mailbox(self.wake.set, self.wake.nudge)
        workers = int(min(16, max(2, math.ceil(cfg.poll.max_per_second * 0.3))))
        observe = self._answered
        self.api = TaskApi(cfg.api.base_url, api_key, cfg.api.timeout, workers, observe)
        self.downloader = Downloader(live.download, cfg.api.timeout, self.stop_event)
        self.scheduler = Scheduler(cfg.poll.interval, cfg.poll.max_per_second)
        self.tracker = Tracker(self.scheduler)
        self.notifier = notifier or Notifier()
        self.pollers: Workers[StartPoll] = Workers("poll", workers, poll_io(self.api, self.mailbox))
        self.listers: Workers[StartList] = Workers("list", 1, list_io(self.api, self.mailbox))
        self.fetchers: Workers[StartDownload] = Workers(
            "download", cfg.download.concurrency, fetch_io(self.downloader, self.mailbox)
        )
        self.bus = ev.EventBus(log.get("wansync.events"))
        self.submitter = Submitter(
            live,
            self.folders,
            self.api,
            self.mailbox,
            self.tracker.in_progress,
            self.tracker.ids,
            self.bus.emit,
        )
        self.outlets = Outlets(
            live, self.folders, self.mailbox, self.tracker, self.submitter.waiting,
            lambda: self.intake.watcher is None or self.intake.watcher.healthy(),
        )  # fmt: skip
        hook_for = self.outlets.hooks.pending_record
        self.listing = Listing(live, self.tracker, self.scheduler)
        self.pipeline = Pipeline(
            live, self.folders, self.tracker, self.scheduler, hook_for, self.listing
        )
        self.intake = Intake(self.pipeline, self.submitter, self._job_found, self.carry_out)
        self.journal = Journal(self.tracker, self.folders, time.monotonic)
        self.burst: Burst | None = None
        # Followers of every transition, in order: the files, the log, the job slots, then
        # the user's hooks and the numbers.
        for consumer in (self.journal, ev.log_consumer(self.log), self.submitter):
            self.bus.subscribe(consumer)
        for consumer in self.outlets.consumers():
            self.bus.subscribe(consumer)

    # -- signals -----------------------------------------------------------------------
    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """Signal handlers only set a flag and wake the loop (no locks: see waker.py)."""
        self._stop_requested = True
        self._stop_signal = self._stop_signal or signum
        self.wake.set()

    def request_reload(self, signum: int = 0, frame: FrameType | None = None) -> None:
        """SIGHUP: re-read the config and the key at the next tick."""
        self._reload_requested = True
        self.wake.set()

    def install_signals(self) -> None:
        """From now on the daemon's own handlers; a stop that came earlier acts now."""
        signals.attach(self.request_stop, self.request_reload)

    # -- the loop ----------------------------------------------------------------------
    def run(
        self, burst: bool = False, timeout: float | None = None, only: set[str] | None = None
    ) -> int:
        """The main loop; returns the process exit code. `only`: in burst, just these names."""
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir(parents=True, exist_ok=True)
            for removed in sweep_temp_files(folder):
                self.log.info("temp.removed", path=removed.name)
        self.lock.acquire()
        deadline = time.monotonic() + timeout if timeout else None
        try:
            self.outlets.start()
            return self._run_locked(burst, timeout, only)
        finally:
            self.stop_event.set()
            self.notifier.stopping()
            self.outlets.finish(burst, deadline, lambda: self._stop_requested, self._deliver_events)
            self.journal.flush(2.0, final=True)  # polls' counters too: a stop loses nothing
            self.pollers.stop(0.0)
            self.listers.stop(0.0)
            self.submitter.stop()
            self.fetchers.stop(STOP_GRACE)
            self.intake.stop_watch()
            self.api.close()
            self.downloader.close()
            self.lock.release()
            self.log.info("daemon.stopped", **self._counts())

    def _start(self, burst: bool, only: set[str] | None) -> Now:
        """Watch, start the workers, scan the inbox, tell systemd READY=1."""
        start = clock()
        if not burst:
            # watch first, then scan: nothing falls in between
            self.intake.start_watch(self.wake, self.live.cfg.watch.polling)
        for workers in (self.pollers, self.listers, self.fetchers, self.submitter):
            workers.start()
        if burst:
            self.burst = Burst()
            self.bus.subscribe(self.burst)
        names = self.intake.startup(start, burst, only)
        if self.burst is not None:
            self.burst.names |= names
        self.outlets.started()
        self.log.info(
            "daemon.started",
            inbox=str(self.folders.inbox),
            tasks=len(self.tracker),
            waiting_files=len(self.intake.candidates),
            burst=burst,
        )
        self.notifier.ready(self._status_line())
        return start

    def _run_locked(self, burst: bool, timeout: float | None, only: set[str] | None) -> int:
        start = self._start(burst, only)
        deadline = start.mono + timeout if timeout else None
        next_rescan = start.mono + self.live.cfg.watch.rescan_interval
        next_status = start.mono + STATUS_EVERY
        next_ping = start.mono if self.notifier.watchdog_interval else None
        while not self._stop_requested:
            now = clock()
            self.outlets.tick(now.mono)
            if self._reload_requested:
                self._reload(now)
            if self.intake.watcher:
                if not self.intake.watcher.healthy() and self._restore_watch():
                    next_rescan = now.mono  # events may have been missed while it was down
                self.intake.watch_events(now)
                if now.mono >= next_rescan:
                    self.intake.rescan(now)
                    next_rescan = now.mono + self.live.cfg.watch.rescan_interval
            self.intake.take(now, self.burst.names if self.burst else None)
            # Polls first: a poll's start paces the next one, so no other work delays it.
            self.carry_out(self.pipeline.dispatch(clock()), now)
            self._drain(now)
            self.carry_out(self.pipeline.dispatch(clock()), now)
            self.submitter.dispatch(clock())
            if self.journal.pending() or self.journal.next_retry() is not None:
                until = self.scheduler.next_time(time.monotonic())
                self.journal.flush(0.05, until=None if until is None else until - 0.001)
            if self.burst and self.burst.refused:  # a batch gives up on a refused key
                raise ConfigError(
                    f"the API refused the key twice, a pause apart ({self.burst.refused})"
                )
            if self.burst and self.burst.done(self._live, self.intake.waiting()):
                return EXIT_FAILED if self.burst.failed else EXIT_OK
            if deadline and now.mono >= deadline:
                self.log.warning("daemon.timeout", seconds=timeout)
                return EXIT_TIMEOUT
            if now.mono >= next_status:
                self.notifier.status(self._status_line())
                next_status = now.mono + STATUS_EVERY
            if next_ping is not None and now.mono >= next_ping:
                # Only a loop that ticks with a live watcher may tell systemd it is healthy.
                if self.intake.watcher is None or self.intake.watcher.healthy():
                    self.notifier.watchdog()
                next_ping = now.mono + (self.notifier.watchdog_interval or 1.0)
            marks = (next_rescan, next_status, deadline, next_ping)
            self.wake.wait(self._sleep_time(now.mono, *marks))
        if self.burst is not None:  # `once` stopped before its work was done: say so
            return 128 + (self._stop_signal or 15)
        return EXIT_OK

    def _drain(self, now: Now) -> None:
        """Every worker result since the last tick, to whoever owns that step."""
        for message in self.mailbox.drain():
            match message:
                case UploadDone() | PostDone() | LookupDone():
                    self._carry_out(self.submitter.handle(message, now), now)
                case ev.Event():  # from a thread: an API answer, a hook's result
                    self.bus.emit(message)
                case _:
                    self.carry_out(self.pipeline.handle(message, now), now)

    def _deliver_events(self) -> None:
        """After the loop: events threads reported (a hook's result) reach the followers;
        other results are left, their work resumable from disk as at any stop."""
        for message in self.mailbox.drain():
            if isinstance(message, ev.Event):
                self.bus.emit(message)

    def _job_found(self, path: Path, now: Now) -> None:
        self._carry_out(self.submitter.discover(path, now), now)

    def _carry_out(self, handovers: list[Handover], now: Now) -> None:
        """What the submitter hands over: a task to track, or a job to publish."""
        for handover in handovers:
            match handover:
                case Adopt(name=name, task_id=task_id, meta=meta):
                    self.intake.candidates.forget(self.folders.task(name))
                    try:
                        self.carry_out(self.pipeline.adopt(name, task_id, meta, now), now)
                    except OutOfResources as exc:  # the `.task` is written: read it later
                        self.intake.read_later(self.folders.task(name), exc, now)
                case End(task=task):
                    self.tracker.track(task)
                    self.carry_out(self.pipeline.finish(task, now), now)

    def carry_out(self, effects: list[Effect], now: Now) -> None:
        """What the task path asked for, in order: workers, files, the bus."""
        for effect in effects:
            match effect:
                case StartPoll():
                    self.pollers.submit(effect)
                case StartList():
                    self.listers.submit(effect)
                case StartDownload():
                    self.fetchers.submit(effect)
                case Publish(task=task):
                    ended = publish.finish(self.folders, task.record, now.wall, self.log)
                    if ended is not None:  # else: the inbox sidecar keeps it for a restart
                        self.tracker.count_ended(task.state)
                        self.bus.emit(ended)
                case ForgetFiles(name=name):
                    publish.forget_files(self.folders, name)
                case WriteSidecars(names=names):
                    self.journal.later(names)
                case ReloadKey():
                    self._reread_key()
                case Emit(event=event):
                    self.bus.emit(event)

    def _reread_key(self) -> None:
        try:
            key = config.load_api_key(self.live.cfg)
        except ConfigError:
            return
        log.add_secret(key)
        self.api.set_key(key)

    def _sleep_time(self, now: float, *marks: float | None) -> float:
        if self.journal.pending():
            return 0.0
        concurrency = self.live.cfg.download.concurrency
        candidates = [m for m in marks if m is not None]
        for t in (
            self.scheduler.next_time(now),
            self.intake.candidates.next_check(now),
            self.submitter.next_time(),
            self.tracker.next_download(concurrency),
            self.journal.next_retry(),
        ):
            if t is not None:
                candidates.append(t)
        wake_at = min(candidates, default=now + 1.0)
        return min(max(0.0, wake_at - time.monotonic()), 1.0 if self.burst else 5.0)

    # -- repairs and reloads -----------------------------------------------------------
    def _restore_watch(self) -> bool:
        """The watch died (inbox deleted?): recreate the inbox, re-lock, watch again."""
        try:
            return self.intake.restore_watch(self.lock, self.wake, self.live.cfg.watch.polling)
        except InboxLocked:
            self.log.error("inbox.locked", detail="another wansync took the recreated inbox")
            self.request_stop()
            return False

    def _reload(self, now: Now) -> None:
        """SIGHUP: a new config everywhere at once (one `Live`), and the key; the folders
        need a restart."""
        self._reload_requested = False
        self.notifier.reloading(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        old = self.live.cfg
        try:
            new = config.load(str(old.source) if old.source else None)
            key = config.load_api_key(new)
        except ConfigError as exc:
            self.log.error("config.reload_failed", error=str(exc), detail="keeping the old one")
            self.notifier.ready(self._status_line())
            return
        log.add_secret(key)
        if (new.inbox, new.outbox, new.failed) != (old.inbox, old.outbox, old.failed):
            self.log.warning("config.folders_unchanged", detail="folders change on restart only")
        self.live.cfg = dataclasses.replace(
            new, inbox=old.inbox, outbox=old.outbox, failed=old.failed
        )
        log.set_level(new.log.level)
        self.scheduler.interval = new.poll.interval
        self.scheduler.max_per_second = new.poll.max_per_second
        self.api.set_key(key)
        self.pipeline.key_reloaded(now)
        self.log.info("config.reloaded", source=str(new.source))
        self.notifier.ready(self._status_line())

    # -- reporting ---------------------------------------------------------------------
    def _answered(self, endpoint: str, status: int | None, seconds: float) -> None:
        self.outlets.answered(endpoint, status, seconds)  # outlets is built after the api

    def _live(self, name: str) -> bool:
        return name in self.tracker or self.submitter.has(name)

    def _counts(self) -> dict[str, int]:
        return {"jobs": self.submitter.waiting(), **self.tracker.by_state()}

    def _status_line(self) -> str:
        c = self._counts()
        jobs = f"{c['jobs']} jobs waiting, " if c["jobs"] else ""
        return (
            f"{jobs}{c['polling']} polling, {c['downloading']} downloading, "
            f"{c['done']} done, {c['failed']} failed"
        )
