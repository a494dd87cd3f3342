"""Carrying a lifecycle decision out: on the task's record, the tracker and the scheduler.

Main thread only, no I/O: what goes beyond the state held in memory (an event, the
publish) is returned as effects (core/effects.py) for the daemon to carry out. Also the
account's auth pause (every poll waits; one probe goes first) and a task's end.
"""

from __future__ import annotations

from collections.abc import Callable

from wansync import log
from wansync.core import events as ev
from wansync.core import lifecycle
from wansync.core.effects import Effect, Emit, Publish, WriteSidecars
from wansync.core.errors import WansyncError
from wansync.core.filegroup import FileGroup, GroupDone, expected_extension
from wansync.core.lifecycle import Decision, Now
from wansync.core.messages import TaskReport
from wansync.core.record import EXTENSIONS, DownloadState, FileDownload, HookRecord, Output
from wansync.core.scheduler import Scheduler
from wansync.core.shapes import FileUrl
from wansync.core.times import utc_iso
from wansync.core.tracker import Task, Tracker
from wansync.files import names, sidecar

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
            case lifecycle.StartDownload(files=files, expires=expires, dropped=dropped):
                record.state, record.error, record.next_poll = "downloading", None, None
                record.expires = utc_iso(expires) if expires else None
                self.scheduler.park(task.name)
                self.begin_download(task, files, now)
                if dropped:
                    capped = ev.OutputsCapped(
                        at=now.wall,
                        name=task.name,
                        task_id=task.task_id,
                        files=len(files),
                        dropped=dropped,
                    )
                    return [Emit(capped)]
            case lifecycle.Succeed(group=group):
                self._succeeded(task, group)
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

    def begin_download(self, task: Task, files: tuple[FileUrl, ...], now: Now) -> None:
        """The task's files are to come down: each file not done yet, from now on.

        A new answer's URL set (after storage refused one) keeps the files already done
        when it names the same files. Each file grows in `.NAME[.k].EXT.part`, EXT the
        one its URL ends with (`filegroup.expected_extension`).
        """
        group = task.group.renewed(files) if task.group is not None else FileGroup(files)
        task.group = group
        task.parts = tuple(
            names.part_name(task.name, k, group.count, expected_extension(f))
            for k, f in enumerate(files)
        )
        self.tracker.queue_download(task.name, now.mono)

    def _succeeded(self, task: Task, group: GroupDone) -> None:
        """Every file is whole: the record names them (as `NAME[.k].EXT`, EXT from what
        the bytes are; publish.py gives them the published name)."""
        record, count, base = task.record, len(group.files), names.stem(task.name)
        outputs, block = [], record.download or DownloadState(None)
        for k, done in enumerate(group.files):
            suffix = names.group_suffix(k, count, EXTENSIONS[done.content_type])
            outputs.append(Output(f"{base}{suffix}", done.bytes, done.sha256, done.content_type))
            block = block.with_file(k, count, FileDownload(done.etag, done.bytes, done.bytes))
        record.outputs, record.download, record.state = outputs, block, "succeeded"
        record.error = None  # a transient error on the way (a body cut short) is over

    def _retry(self, task: Task, retry: lifecycle.Retry, now: Now) -> list[Effect]:
        task.errors_in_row = retry.errors_in_row
        if retry.refused_url is not None:
            task.refused_url = retry.refused_url
        if retry.unsupported_in_row is not None:
            task.unsupported_in_row = retry.unsupported_in_row
        if retry.then == "poll":
            task.record.state = "polling"
            self.scheduler.add(task.name, retry.at)
            if retry.pause_until is not None:  # the quota is the account's: hold every poll
                self.scheduler.pause_until(retry.pause_until)
        else:
            if task.group is not None:
                task.group.new_round()  # the files not done, again
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
        self.tracker.untrack(task.name)  # its downloads stop, its `.part` names are free
        if not record.published_as and (hook := self.hook_for(record.state)):
            record.hook = hook  # on disk before the files move: a hook runs at least once
        return [Publish(task, self.tracker.claimed())]  # others' downloads are not its
