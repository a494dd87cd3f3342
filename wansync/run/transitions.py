"""Carrying a lifecycle decision out: on the task's record, the tracker and the scheduler.

Main thread only, no I/O: what goes beyond the state held in memory (an event, the
publish) is returned as effects (core/effects.py) for the daemon to carry out. Also the
account's auth pause (every poll waits; one probe goes first) and a task's end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from wansync import log
from wansync.core import events as ev
from wansync.core import lifecycle
from wansync.core.effects import Effect, Emit, Publish, WriteSidecars
from wansync.core.errors import WansyncError
from wansync.core.lifecycle import Decision, Now
from wansync.core.messages import TaskReport
from wansync.core.record import VIDEO_TYPE, DownloadState, HookRecord, Output
from wansync.core.scheduler import Scheduler
from wansync.core.times import utc_iso
from wansync.core.tracker import Task, Tracker
from wansync.files import sidecar

HookFor = Callable[[str], HookRecord | None]  # the hook record a task ending so carries


class Transitions:
    """The decisions' side effects on state, and the auth pause they share."""

    def __init__(self, tracker: Tracker, scheduler: Scheduler, hook_for: HookFor) -> None:
        self.tracker = tracker
        self.scheduler = scheduler
        self.hook_for = hook_for
        self.auth_paused = False

    def apply(self, task: Task, decision: Decision, now: Now) -> list[Effect]:
        record = task.record
        match decision:
            case lifecycle.PollAt(at=at, deadline=deadline):
                record.error, record.next_poll = None, utc_iso(now.wall + at - now.mono)
                self.scheduler.add(task.name, at, deadline)
            case lifecycle.StartDownload(expires=expires):
                record.state, record.error, record.next_poll = "downloading", None, None
                record.expires = utc_iso(expires) if expires else None
                self.scheduler.park(task.name)
                self.tracker.queue_download(task.name, now.mono)
            case lifecycle.Succeed(video=video):
                path = f"{task.name}.mp4"
                record.outputs = [Output(path, video.bytes, video.sha256, VIDEO_TYPE)]
                block = record.download or DownloadState(video.etag)
                record.download = replace(block, bytes=video.bytes, total=video.bytes)
                record.state = "succeeded"
                return self.finish(task, now)
            case lifecycle.Fail(code=code, message=message):
                return self.fail(task, code, message, now)
            case lifecycle.Retry():
                return self._retry(task, decision, now)
            case lifecycle.PauseForAuth():
                return self._pause_for_auth(task, decision, now)
            case lifecycle.Ignore():
                pass
        return []

    def _retry(self, task: Task, retry: lifecycle.Retry, now: Now) -> list[Effect]:
        task.errors_in_row = retry.errors_in_row
        if retry.refused_url is not None:
            task.refused_url = retry.refused_url
        if retry.then == "poll":
            task.record.state = "polling"
            self.scheduler.add(task.name, retry.at)
            if retry.pause_until is not None:  # the quota is the account's: hold every poll
                self.scheduler.pause_until(retry.pause_until)
        else:
            self.tracker.queue_download(task.name, retry.at)
        polling = task.state == "polling"
        task.record.error = sidecar.error(retry.code, log.scrub(retry.message), True)
        task.record.next_poll = utc_iso(now.wall + retry.delay) if polling else None
        return [
            Emit(
                ev.TaskTransientError(
                    at=now.wall,
                    name=task.name,
                    task_id=task.task_id,
                    code=retry.code,
                    message=retry.message,
                    errors_in_row=retry.errors_in_row,
                    retry_in=round(retry.delay, 3),
                )
            )
        ]

    # -- the account's auth pause ------------------------------------------------------
    def _pause_for_auth(self, task: Task, pause: lifecycle.PauseForAuth, now: Now) -> list[Effect]:
        effects: list[Effect] = []
        # One line per pause: the first refusal, then each refused probe (the pause is
        # over when the probe answers; other refusals within a pause say nothing new).
        probe = self.auth_paused and now.mono >= self.scheduler.paused_until
        if not self.auth_paused or probe:
            rejected = ev.AuthRejected(
                at=now.wall,
                code=pause.code,
                message=pause.message,
                pause=pause.pause,
                detail=f"polling paused for {int(pause.pause)} s; no task fails",
                probe=probe,
            )
            effects.append(Emit(rejected))
        self.auth_paused = True
        self.scheduler.pause_until(pause.until, probe=True)
        error = sidecar.error(pause.code, pause.message, True)
        waiting = [t for t in self.tracker.tasks.values() if t.state == "polling"]
        for other in waiting:
            other.record.error = error
            other.record.next_poll = utc_iso(now.wall + pause.pause)
        self.scheduler.add(task.name, pause.until)
        return [*effects, WriteSidecars(tuple(t.name for t in waiting))]

    def answered(self, outcome: TaskReport | WansyncError, now: Now) -> list[Effect]:
        """A poll's answer: while paused for auth, any but another rejection ends the pause."""
        if not lifecycle.auth_resumed(self.auth_paused, outcome):
            return []
        self.auth_paused = False
        self.scheduler.probe_done()
        return [Emit(ev.AuthResumed(at=now.wall))]

    def key_reloaded(self, now: Now) -> None:
        """A new key arrived: if paused for auth, try it at once (one probe, then all)."""
        if not self.auth_paused:
            return
        self.scheduler.pause_until(0.0, probe=True)
        self.scheduler.resume_now()
        for task in self.tracker.tasks.values():
            if task.state == "polling" and not task.busy:
                self.scheduler.add(task.name, now.mono)

    # -- endings -----------------------------------------------------------------------
    def fail(self, task: Task, code: str, message: str, now: Now) -> list[Effect]:
        task.record.state = "failed"
        task.record.error = sidecar.error(code, log.scrub(message), False)
        return self.finish(task, now)

    def finish(self, task: Task, now: Now) -> list[Effect]:
        """Stop tracking an ended task, and have it published in crash-safe order."""
        record = task.record
        record.finished = record.finished or utc_iso(now.wall)
        record.next_poll = None
        self.tracker.untrack(task.name)
        if not record.published_as and (hook := self.hook_for(record.state)):
            record.hook = hook  # on disk before the files move: a hook runs at least once
        return [Publish(task)]
