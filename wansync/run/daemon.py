"""Wiring and the main loop: `build` makes every part, `tick(now)` is one pass, `run` loops.

The main loop is the only code that touches task state; workers do I/O and post typed
messages back (messages.py). One tick, each step a method: reload if asked, repair the
watch and take its news, run the timers that are due (rescan, status line, watchdog),
hand settled files on (intake.py), send polls, hand worker results to the pipeline or
the submitter, send polls and job steps again, write pending sidecars; then it says when
it next needs to run. What the pipeline returns (core/effects.py) is done by `carry`
(carry.py); what the submitter hands over (a task to track, a job to publish), here.
`now` is passed in (a test's clock is a fake one); polls are stamped with a fresh
reading of the same clock, since their pacing is measured from when they really go out,
and worker results are handled at a reading taken after they were drained.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType

from wansync import log
from wansync.config import Config, Live
from wansync.core import events as ev
from wansync.core.effects import StartDownload, StartList, StartPoll
from wansync.core.errors import ConfigError, InboxLocked, OutOfResources
from wansync.core.lifecycle import Now
from wansync.core.messages import Adopt, End, Handover, LookupDone, Mailbox, PostDone, UploadDone
from wansync.core.scheduler import Scheduler
from wansync.core.tracker import Tracker
from wansync.files.folders import Folders
from wansync.files.fsutil import sweep_temp_files
from wansync.files.lock import InboxLock
from wansync.files.taskfile import task_name
from wansync.inbox.intake import (
    Burst,
    Found,
    Intake,
    JobFile,
    JobGone,
    NameRefused,
    Orphan,
    Replaced,
    TaskFile,
    TaskGone,
    name_of,
)
from wansync.outlets.followers import Outlets, api_observer
from wansync.outlets.hooks import Hooks
from wansync.remote.api import TaskApi
from wansync.remote.download import Downloader
from wansync.run import handover, jobreplaced, leftovers, signals
from wansync.run.carry import Carrier, deliver_events
from wansync.run.journal import Journal
from wansync.run.listing import Listing, list_io
from wansync.run.notify import Notifier, status_line
from wansync.run.pipeline import Pipeline
from wansync.run.reload import reload
from wansync.run.submitter import Submitter
from wansync.run.waker import Waker
from wansync.run.workers import Workers, fetch_io, poll_io

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "Daemon",
    "InboxLocked",
    "build",
    "system_clock",
]

STOP_GRACE = 5.0
STATUS_EVERY = 5.0
REPLACED = "task file was replaced by one naming another task; the old task is no longer tracked"

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_LOCKED, EXIT_TIMEOUT = 0, 1, 2, 3, 124

Clock = Callable[[], Now]


def system_clock() -> Now:
    return Now(time.monotonic(), time.time())


@dataclass(slots=True)
class Timer:
    """A step the loop runs every `every()` seconds (monotonic), first at `due`."""

    every: Callable[[], float]
    run: Callable[[Now], None]
    due: float


class Timers(dict[str, Timer]):
    """The loop's timer table, by name: `run_due` runs the ones whose time has come."""

    def run_due(self, now: Now) -> None:
        for timer in self.values():
            if now.mono >= timer.due:
                timer.run(now)
                timer.due = now.mono + timer.every()

    def next_due(self) -> float | None:
        return min((t.due for t in self.values()), default=None)


@dataclass(frozen=True, slots=True)
class Parts:
    """Everything a daemon is made of, built once by `build`, in the order they need."""

    live: Live
    clock: Clock
    folders: Folders
    stop_event: threading.Event
    lock: InboxLock
    wake: Waker
    mailbox: Mailbox
    api: TaskApi
    downloader: Downloader
    tracker: Tracker
    scheduler: Scheduler
    pollers: Workers[StartPoll]
    listers: Workers[StartList]
    fetchers: Workers[StartDownload]
    bus: ev.EventBus
    hooks: Hooks
    pipeline: Pipeline
    submitter: Submitter
    intake: Intake
    journal: Journal
    carry: Carrier
    outlets: Outlets
    notifier: Notifier


def build(
    cfg: Config, api_key: str, clock: Clock = system_clock, notifier: Notifier | None = None
) -> Daemon:
    """Every part, each given what it needs when it is made; nothing is wired later."""
    live = Live(cfg)
    folders = Folders(cfg.inbox, cfg.outbox, cfg.failed)
    stop_event = threading.Event()  # tells workers to stop; set by the main thread
    wake = Waker()
    mailbox = Mailbox(wake.set, wake.nudge)
    workers = int(min(16, max(2, math.ceil(cfg.poll.max_per_second * 0.3))))
    observe = api_observer(mailbox, enabled=cfg.metrics.listen is not None)
    api = TaskApi(cfg.api.base_url, api_key, cfg.api.timeout, workers, observe)
    downloader = Downloader(live.download, cfg.api.timeout, stop_event)
    scheduler = Scheduler(cfg.poll.interval, cfg.poll.max_per_second)
    tracker = Tracker(scheduler)
    pollers: Workers[StartPoll] = Workers("poll", workers, poll_io(api, mailbox))
    listers: Workers[StartList] = Workers("list", 1, list_io(api, mailbox))
    fetchers: Workers[StartDownload] = Workers(
        "download", cfg.download.concurrency, fetch_io(downloader, mailbox)
    )
    bus = ev.EventBus(log.get("wansync.events"))
    # A hook's result wakes the loop: an idle daemon logs and counts it at once.
    hooks = Hooks(lambda: live.cfg.hooks, folders, report=mailbox.post)
    listing = Listing(live, tracker, scheduler)
    pipeline = Pipeline(live, folders, tracker, scheduler, hooks.pending_record, listing)
    running = tracker.in_progress_by_model
    submitter = Submitter(live, folders, api, mailbox, running, tracker.ids, bus.emit)
    intake = Intake(folders, tracker, submitter.names)
    journal = Journal(tracker, folders, lambda: clock().mono)
    carry = Carrier(live, folders, tracker, pollers, fetchers, journal, bus, api, listers)
    outlets = Outlets(live, hooks, tracker, submitter.waiting, intake.watch_healthy)
    # Followers of every transition, in order: the files, the log, the job slots, then
    # the user's hooks and the numbers.
    for consumer in (
        journal,
        ev.log_consumer(log.get("wansync.daemon"), log.enabled("wansync.daemon")),
        submitter,
    ):
        bus.subscribe(consumer)
    for consumer in outlets.consumers():
        bus.subscribe(consumer)
    return Daemon(
        Parts(
            live=live,
            clock=clock,
            folders=folders,
            stop_event=stop_event,
            lock=InboxLock(cfg.inbox),
            wake=wake,
            mailbox=mailbox,
            api=api,
            downloader=downloader,
            tracker=tracker,
            scheduler=scheduler,
            pollers=pollers,
            listers=listers,
            fetchers=fetchers,
            bus=bus,
            hooks=hooks,
            pipeline=pipeline,
            submitter=submitter,
            intake=intake,
            journal=journal,
            carry=carry,
            outlets=outlets,
            notifier=notifier or Notifier(),
        )
    )


class Daemon:
    """`run()` is the daemon; `run(burst=True)` handles what is in the inbox now, then
    ends. In steps, as `run` does them and a test may: `open`, `start`, `tick(now)`
    until `exit_code` is set, `close`."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.live, self.clock, self.folders = parts.live, parts.clock, parts.folders
        self.lock, self.wake, self.mailbox = parts.lock, parts.wake, parts.mailbox
        self.tracker, self.scheduler, self.bus = parts.tracker, parts.scheduler, parts.bus
        self.pipeline, self.submitter, self.intake = parts.pipeline, parts.submitter, parts.intake
        self.journal, self.outlets, self.notifier = parts.journal, parts.outlets, parts.notifier
        self.carry = parts.carry
        self.log = log.get("wansync.daemon")
        self._stop_requested, self._reload_requested, self._stop_signal = False, False, 0
        self.burst: Burst | None = None
        self.timeout: float | None = None  # `once --timeout`, in seconds
        self.deadline: float | None = None  # then, monotonic (of `clock`)
        self.timers = Timers()
        self.exit_code: int | None = None  # set when the loop is done

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
        self.open(burst)
        try:
            now = self.start(burst, timeout, only)
            while self.exit_code is None:
                wake_at = self.tick(now)
                if self.exit_code is None:
                    self.wake.wait(wake_at - self.clock().mono)
                    now = self.clock()
            return self.exit_code
        finally:
            self.close()

    def open(self, burst: bool = False) -> None:
        """The folders (our own temp files swept), the inbox lock; `InboxLocked` if taken.
        A burst says so in `.wansync.live`: whoever follows it knows it will not take
        files written after its start."""
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self.lock.one_shot = burst
        self.lock.acquire()  # first: the temp files may be a running daemon's
        if self.lock.inbox_moved is not None:
            self.log.error(
                "inbox.not_ours",
                **self.lock.inbox_moved,
                detail="another user's folder was put in place of the inbox, holding a lock "
                "its owner can hold: never this daemon's inbox. Kept whole at moved_to; a new "
                "inbox is made. Move into the inbox whatever in it should be fetched",
            )
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            for removed in sweep_temp_files(folder):
                self.log.info("temp.removed", path=removed.name)

    def start(
        self, burst: bool = False, timeout: float | None = None, only: set[str] | None = None
    ) -> Now:
        """Bind metrics, watch, start the workers, scan the inbox, tell systemd READY=1."""
        self.outlets.start()
        start = self.clock()
        self.timeout, self.deadline = timeout, (start.mono + timeout if timeout else None)
        if not burst:
            # watch first, then scan: nothing falls in between
            self.intake.start_watch(self.wake.set, self.live.cfg.watch.polling)
        for workers in (
            self.parts.pollers,
            self.parts.listers,
            self.parts.fetchers,
            self.submitter,
        ):
            workers.start()
        if burst:
            self.burst = Burst()
            self.bus.subscribe(self.burst)
        names, found = self.intake.scan(start, burst, only)
        self._hand_on(found, start)
        self.intake.sweep_parts()
        if self.burst is not None:
            self.burst.names |= names
        self.outlets.started()
        self._start_timers(start, watching=not burst)
        self.log.info(
            "daemon.started",
            inbox=str(self.folders.inbox),
            tasks=len(self.tracker),
            waiting_files=len(self.intake.candidates),
            burst=burst,
            **({"lock_replaced": self.lock.replaced} if self.lock.replaced else {}),
        )
        self.notifier.ready(status_line(self._counts()))
        return start

    def tick(self, now: Now) -> float:
        """One pass of the loop at `now`; returns when (monotonic) it next needs to run.

        Sets `exit_code` when the loop is done (a stop, a `once` finished or timed out).
        """
        if self._stop_requested:
            self.exit_code = 128 + (self._stop_signal or 15) if self.burst else EXIT_OK
            return now.mono  # `once` stopped before its work was done: it says so
        self.outlets.tick(now.mono)
        if self._reload_requested:
            self._reload(now)
        self._watch(now)
        self.timers.run_due(now)
        self._hand_on(self.intake.take(now, self.burst.names if self.burst else None), now)
        # Polls first: a poll's start paces the next one, so no other work delays it.
        self.carry(self.pipeline.dispatch(self.clock()), now)
        if self._drain():  # what came may make a poll due (a list page) or free a slot
            self.carry(self.pipeline.dispatch(self.clock()), now)
        self._carry_out(self.submitter.dispatch(self.clock()), now)
        self._flush_journal()
        self.exit_code = self._end(now)
        return self._wake_at(now)

    def close(self) -> None:
        """Stop everything, leaving all work resumable; `once` waits for its hooks first."""
        self.parts.stop_event.set()
        self.notifier.stopping()
        left = None if self.deadline is None else self.deadline - self.clock().mono
        hooks_until = None if left is None else time.monotonic() + left
        deliver = lambda: deliver_events(self.mailbox, self.bus)  # noqa: E731
        stopping = lambda: self._stop_requested  # noqa: E731
        self.outlets.finish(self.burst is not None, hooks_until, stopping, deliver)
        self.journal.flush(2.0, final=True)  # polls' counters too: a stop loses nothing
        self.parts.pollers.stop(0.0)
        self.parts.listers.stop(0.0)
        self.submitter.stop()
        self.parts.fetchers.stop(STOP_GRACE)
        self.intake.stop_watch()
        self.parts.api.close()
        self.parts.downloader.close()
        self.lock.release()
        self.log.info("daemon.stopped", **self._counts())

    # -- the steps of a tick -----------------------------------------------------------
    def _watch(self, now: Now) -> None:
        """Repair a dead watch (then rescan at once: events were missed); take its news."""
        if self.intake.watcher is None:
            return
        if not self.intake.watcher.healthy() and self._restore_watch():
            self.timers["rescan"].due = now.mono
        self._hand_on(self.intake.watch_events(now), now)

    def _hand_on(self, found: Iterable[Found], now: Now) -> None:
        """What intake found, each to whoever owns it, one at a time."""
        for item in found:
            match item:
                case TaskFile() | JobFile():
                    self._read(item, now)
                case TaskGone(name=name):
                    self.carry(self.pipeline.removed(name, now), now)
                case JobGone(name=name):
                    self.submitter.removed(name, now)
                case Replaced():
                    self._replaced(item, now)
                case NameRefused(path=path):
                    hook = self.parts.hooks.pending_record("failed")
                    self.carry(leftovers.refuse(self.folders, path, hook, now.wall), now)
                case Orphan(name=name):
                    self.carry(leftovers.orphan_sidecar(self.folders, name, now.wall), now)

    def _read(self, found: TaskFile | JobFile, now: Now) -> None:
        """A settled file to its owner; one the system has no descriptor or memory to
        read now is read again later (never judged invalid for it)."""
        try:
            task = self.tracker.get(name_of(found.path))
            if isinstance(found, JobFile) and task is not None and task.record.job is not None:
                jobreplaced.check(self.folders, task.record, found.path, now.wall)  # its own
            elif isinstance(found, JobFile):  # `busy`: a producer's task holds its name
                busy = task is not None
                self._carry_out(self.submitter.discover(found.path, now, busy), now)
            elif self.submitter.holds_name(task_name(found.path)):
                self.intake.hold(found.path)  # the job's create is out: its hand-over decides
            else:
                self.carry(self.pipeline.discover(found.path, now), now)
        except OutOfResources as exc:
            self.intake.read_later(found.path, exc, now)
            return
        self.intake.read_done(found.path)

    def _replaced(self, replaced: Replaced, now: Now) -> None:
        """A tracked `.task` names another task now: a new task (docs/what-happens.md); but
        a job's task keeps its file (ours), the producer's moves to a free name."""
        name = task_name(replaced.path)
        task = self.tracker.get(name)
        if task is None:
            return
        if task.record.job is not None:
            moved = handover.reclaim(self.folders, name, task.record, self.submitter.has)
            if moved is not None:
                self.intake.forget(replaced.path)  # ours again
                self.intake.candidates.ready(moved)
            return
        self.carry(self.pipeline.removed(name, now, REPLACED), now)
        self.carry(self.pipeline.discover(replaced.path, now), now)

    def _drain(self) -> bool:
        """Every worker result since the last tick, to whoever owns that step; False when
        none came.

        The clock is read after the drain: no result is handled at a time before it came
        (a 429 that comes mid-tick pauses polling for its whole Retry-After).
        """
        messages = self.mailbox.drain()
        now = self.clock()
        for message in messages:
            match message:
                case UploadDone() | PostDone() | LookupDone():
                    self._carry_out(self.submitter.handle(message, now), now)
                case ev.Event():  # from a thread: an API answer, a hook's result
                    self.bus.emit(message)
                case _:
                    self.carry(self.pipeline.handle(message, now), now)
        return bool(messages)

    def _carry_out(self, handovers: list[Handover], now: Now) -> None:
        """What the submitter hands over: a task to track, or a job to publish. A `.task`
        that waited for the job's name is read after it."""
        for handover_ in handovers:
            match handover_:
                case Adopt(task=task, job=job):
                    self.intake.forget(self.folders.task(task.name))  # we wrote it
                    if self.burst is not None:
                        self.burst.names.add(task.name)
                    self.carry(self.pipeline.follow(task, now), now)
                    self.intake.release(job)
                case End(task=task):
                    self.tracker.track(task)
                    self.carry(self.pipeline.finish(task, now), now)
                    self.intake.release(task.name)

    def _flush_journal(self) -> None:
        """Pending sidecars, in a slice that ends before the next poll is due."""
        if self.journal.pending() or self.journal.next_retry() is not None:
            until = self.scheduler.next_time(self.clock().mono)
            self.journal.flush(0.05, until=None if until is None else until - 0.001)

    def _end(self, now: Now) -> int | None:
        """The exit code once the loop is done (a `once` finished or timed out), else None."""
        if self.burst and self.burst.refused:  # a batch gives up on a refused key
            why = f"the API refused the key twice, a pause apart ({self.burst.refused})"
            raise ConfigError(why)
        if self.burst and self.burst.done(self._live, self.intake.waiting()):
            return EXIT_FAILED if self.burst.failed else EXIT_OK
        if self.deadline is not None and now.mono >= self.deadline:
            self.log.warning("daemon.timeout", seconds=self.timeout)
            return EXIT_TIMEOUT
        return None

    def _wake_at(self, now: Now) -> float:
        """The soonest deadline of any part (monotonic); at once while sidecars wait."""
        if self.journal.pending():
            return now.mono
        marks = (
            self.timers.next_due(),
            self.deadline,
            self.scheduler.next_time(now.mono),
            self.intake.candidates.next_check(now.mono),
            self.submitter.next_time(),
            self.tracker.next_download(self.live.cfg.download.concurrency),
            self.journal.next_retry(),
        )
        wake_at = min((m for m in marks if m is not None), default=now.mono + 1.0)
        return min(wake_at, now.mono + (1.0 if self.burst else 5.0))

    def _start_timers(self, start: Now, watching: bool) -> None:
        """The rescan (a net under the watch), systemd's status line and watchdog pings."""
        if watching:  # every: as the live config says (a reload may change it)
            rescan = self.live.cfg.watch.rescan_interval
            every = lambda: self.live.cfg.watch.rescan_interval  # noqa: E731
            self.timers["rescan"] = Timer(every, self._rescan, start.mono + rescan)
        self.timers["status"] = Timer(lambda: STATUS_EVERY, self._status, start.mono + STATUS_EVERY)
        if interval := self.notifier.watchdog_interval:
            self.timers["watchdog"] = Timer(lambda: interval, self._ping, start.mono)

    def _rescan(self, now: Now) -> None:
        self._hand_on(self.intake.rescan(now), now)

    def _status(self, now: Now) -> None:
        self.notifier.status(status_line(self._counts()))

    def _ping(self, now: Now) -> None:
        """Only a loop that ticks with a live watcher may tell systemd it is healthy."""
        if self.intake.watch_healthy():
            self.notifier.watchdog()

    # -- repairs, reloads, reporting ---------------------------------------------------
    def _restore_watch(self) -> bool:
        """The watch died (inbox deleted?): recreate the inbox, re-lock, watch again."""
        try:
            return self.intake.restore_watch(self.lock, self.wake.set, self.live.cfg.watch.polling)
        except InboxLocked:
            self.log.error("inbox.locked", detail="another wansync took the recreated inbox")
            self.request_stop()
            return False

    def _reload(self, now: Now) -> None:
        """SIGHUP: the config and the key again (reload.py); a new key is tried at once."""
        self._reload_requested = False
        self.notifier.reloading(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
        if reload(self.live, self.scheduler, self.parts.api):
            self.pipeline.key_reloaded(now)
        self.notifier.ready(status_line(self._counts()))

    def _live(self, name: str) -> bool:
        return name in self.tracker or self.submitter.has(name)

    def _counts(self) -> dict[str, int]:
        return {"jobs": self.submitter.waiting(), **self.tracker.by_state()}
