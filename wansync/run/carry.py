"""Carrying out what the task path returns (core/effects.py), in order: requests for
the workers, the files to move or drop, the sidecars to write, the events for the bus.

The pipeline decides and returns; this is the one place that then does it, on the main
thread, so a test can drive the pipeline and read what it asked for instead.
"""

from __future__ import annotations

from wansync import config, log
from wansync.config import Live
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
from wansync.core.errors import ConfigError
from wansync.core.lifecycle import Now
from wansync.core.messages import Mailbox
from wansync.core.tracker import Task, Tracker
from wansync.files.folders import Folders
from wansync.remote.api import TaskApi
from wansync.run import jobreplaced, publish
from wansync.run.journal import Journal
from wansync.run.workers import Workers


class Carrier:
    """Does what the effects say; built with every part they name."""

    def __init__(
        self,
        live: Live,
        folders: Folders,
        tracker: Tracker,
        pollers: Workers[StartPoll],
        fetchers: Workers[StartDownload],
        journal: Journal,
        bus: ev.EventBus,
        api: TaskApi,
        listers: Workers[StartList],
    ) -> None:
        self.live, self.folders, self.tracker = live, folders, tracker
        self.pollers, self.fetchers, self.journal = pollers, fetchers, journal
        self.listers = listers  # the task list's one worker (run/listing.py)
        self.bus, self.api = bus, api
        self.log = log.get("wansync.daemon")

    def __call__(self, effects: list[Effect], now: Now) -> None:
        for effect in effects:
            match effect:
                case StartPoll():
                    self.pollers.submit(effect)
                case StartList():
                    self.listers.submit(effect)
                case StartDownload():
                    self.fetchers.submit(effect)
                case Publish(task=task, others=others):
                    self._publish(task, others, now)
                case ForgetFiles(name=name, parts=parts):
                    publish.forget_files(self.folders, name, parts)
                case WriteSidecars(names=names):
                    self.journal.later(names)
                case ReloadKey():
                    self._reread_key()
                case Emit(event=event):
                    self.bus.emit(event)

    def _publish(self, task: Task, others: frozenset[str], now: Now) -> None:
        """An ended task's files to outbox/ or failed/ (publish.py), then its event. A job's
        `.job` that is not the file sent is set aside first (jobreplaced.py)."""
        record = task.record
        if record.job is not None and not record.published_as:  # nothing has moved yet
            jobreplaced.check(self.folders, record, self.folders.job(record.name), now.wall)
        ended = publish.finish(self.folders, record, now.wall, self.log, others)
        if ended is not None:  # else: the inbox sidecar keeps it for a restart
            self.tracker.count_ended(task.state)
            self.bus.emit(ended)

    def _reread_key(self) -> None:
        """The probe of an auth pause: a key file fixed meanwhile is used at once."""
        try:
            key = config.load_api_key(self.live.cfg)
        except ConfigError:
            return
        log.add_secret(key)
        self.api.set_key(key)


def deliver_events(mailbox: Mailbox, bus: ev.EventBus) -> None:
    """After the loop: events threads reported (a hook's result) reach the followers;
    other results are left, their work resumable from disk as at any stop."""
    for message in mailbox.drain():
        if isinstance(message, ev.Event):
            bus.emit(message)
