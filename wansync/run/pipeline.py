"""A task's way on the main thread: discover → poll → download → publish.

Each step takes a worker's result (messages.py), asks lifecycle.py what it means, and
carries the decision out on the task's record, the tracker and the scheduler
(transitions.py). Everything beyond that is returned as effects (core/effects.py):
the polls and downloads to start, the publish, one event per transition. The daemon
carries them out; the sidecar, the log and the status line follow the events.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from wansync import log
from wansync.config import Config, Live
from wansync.core import events as ev
from wansync.core import lifecycle
from wansync.core.effects import Effect, Emit, ForgetFiles, ReloadKey, StartDownload, StartPoll
from wansync.core.errors import TASK_FILE_REMOVED, TaskFileError
from wansync.core.lifecycle import Now, Policy
from wansync.core.messages import (
    DownloadDone,
    Downloaded,
    DownloadProgress,
    DownloadStarted,
    ListDone,
    Message,
    PollDone,
    TaskReport,
)
from wansync.core.predictor import CompletionModel
from wansync.core.record import TERMINAL_STATES, DownloadState, FileDownload, FoundBy
from wansync.core.scheduler import Scheduler
from wansync.core.shapes import Outputs, outputs_of
from wansync.core.times import utc_iso
from wansync.core.tracker import Task, Tracker
from wansync.files import sidecar, taskfile
from wansync.files.taskfile import TaskSpec
from wansync.remote.urlcheck import check_url
from wansync.run import publish
from wansync.run.listing import LIST, Listing
from wansync.run.publish import Folders
from wansync.run.transitions import HookFor, Transitions

REMOVED = "task file was removed from the inbox; no longer tracked"


def task_file_removed(task: Task) -> str:
    """Why a job ended when its `.task` left the inbox, and how to follow its task again."""
    return (
        f"{task.name}.task was removed from the inbox while its task {task.task_id} was "
        f"followed: wansync stopped following it and never sends the job again (the task "
        f"exists and is paid for). To fetch it after all: wansync add {task.task_id} "
        f"--name {task.name}"
    )


def _url(url: Any) -> str | None:
    return log.strip_query(url) if isinstance(url, str) else None


def policy_of(cfg: Config) -> Policy:
    """The settings the lifecycle's decisions take, from the config in force now."""
    download = cfg.download
    return Policy(
        cfg.poll.interval,
        cfg.poll.max_per_second,
        cfg.poll.give_up_after,
        lambda url: check_url(url, download),
    )


def open_task(folders: Folders, path: Path, now_wall: float) -> tuple[Task, TaskSpec | None]:
    """Read a complete `.task` and its sidecar (if any) into a `Task`.

    An unreadable file yields a task already in state `failed` (`InvalidTaskFile`).
    A sidecar for another task id (the user replaced the file) is started afresh.
    `OutOfResources` (no descriptor or memory: the file is not at fault) is raised to
    the caller, which leaves the file where it is and reads it again later.
    """
    name = taskfile.task_name(path)
    try:
        spec = taskfile.read(path)
    except (TaskFileError, OSError) as exc:
        reason = exc if isinstance(exc, TaskFileError) else exc.strerror
        task_id = exc.task_id if isinstance(exc, TaskFileError) else None
        record = sidecar.new(name, task_id, {}, now_wall)
        record.state, record.finished = "failed", utc_iso(now_wall)
        record.error = sidecar.error("InvalidTaskFile", f"{path.name}: {reason}", False)
        return Task(name, record), None
    previous = sidecar.read(folders.sidecar(name))
    if previous and previous.task_id == spec.task_id:
        previous.meta = spec.meta
        return Task(name, previous), spec
    return Task(name, sidecar.new(name, spec.task_id, spec.meta, now_wall)), spec


class Pipeline:
    """The main thread's side of every task; workers only ever see one job at a time."""

    def __init__(
        self,
        live: Live,
        folders: Folders,
        tracker: Tracker,
        scheduler: Scheduler,
        hook_for: HookFor,
        listing: Listing | None = None,
    ) -> None:
        self.live = live
        # the task list (run/listing.py); a pipeline built without one never lists
        self.listing = listing or Listing(live, tracker, scheduler, off=True)
        self.folders = folders
        self.tracker = tracker
        self.scheduler = scheduler
        self.steps = Transitions(tracker, scheduler, hook_for)
        self.model = CompletionModel()
        self.log = log.get("wansync.daemon")

    # -- discovery ---------------------------------------------------------------------
    def discover(self, path: Path, now: Now) -> list[Effect]:
        """A settled `.task`: track it (resuming from its sidecar), or end it at once."""
        task, spec = open_task(self.folders, path, now.wall)
        record = task.record
        effects: list[Effect] = []
        if spec is None and not record.published_as and record.error is not None:
            invalid = ev.TaskInvalid(
                at=now.wall, name=task.name, file=path.name, error=record.error.message
            )
            effects.append(Emit(invalid))
        return effects + self.follow(task, now)

    def follow(self, task: Task, now: Now) -> list[Effect]:
        """Track `task` from its record: poll it, download it, or end it at once.

        A `.task` file's way in (`discover`), and a job's new task's (handed over by the
        submitter once its `.task` is written), so both are followed alike from here.
        """
        name, record = task.name, task.record
        task.followed_since = now.mono  # `give_up_after` counts on the monotonic clock
        task.followed_before = (
            record.followed
            if record.followed is not None
            else lifecycle.earlier_age(record.first_seen, record.last_polled, now.wall)
        )
        if task.state in TERMINAL_STATES:
            self.tracker.track(task)
            return self.steps.finish(task, now)
        twin = self.tracker.track(task)
        if twin is not None:
            return self.steps.fail(
                task,
                "DuplicateTask",
                f"{name}.task: task id {task.task_id} is already being fetched for "
                f"{twin.name}.task; one video per task id",
                now,
            )
        resumed = record.polls > 0 or task.state == "downloading"
        found = outputs_of(record.output) if record.output is not None else None
        if task.state == "downloading" and isinstance(found, Outputs) and found.files:
            self.steps.begin_download(task, found.files, now)  # each `.part` resumes
        else:
            record.state = "polling"
            self.scheduler.add(name, now.mono)
        discovered = ev.TaskDiscovered(
            at=now.wall, name=name, task_id=task.task_id, state=task.state, resumed=resumed
        )
        return [Emit(discovered)]  # its first sidecar is written between ticks (journal)

    def removed(self, name: str, now: Now, detail: str = REMOVED) -> list[Effect]:
        """The `.task` left the inbox (or another task's file took its place): stop at
        once, release everything, drop our files. A job's task ends instead, in
        `failed/` with its `.job` and sidecar: the job is never sent again for it."""
        task = self.tracker.get(name)
        if task is None or task.state in TERMINAL_STATES:
            return []
        if task.record.job is not None:
            return self.steps.fail(task, TASK_FILE_REMOVED, task_file_removed(task), now)
        self.tracker.untrack(name)  # a result still in flight finds no task: dropped
        others = self.tracker.claimed()  # `.part` names another task downloads into now
        parts = publish.parts_of(self.folders, task.record)
        removed = ev.TaskRemoved(at=now.wall, name=name, task_id=task.task_id, detail=detail)
        return [ForgetFiles(name, tuple(p for p in parts if p.name not in others)), Emit(removed)]

    # -- dispatch ----------------------------------------------------------------------
    def dispatch(self, now: Now) -> list[Effect]:
        """The polls the scheduler allows and the downloads the free slots allow."""
        effects: list[Effect] = []
        policy = policy_of(self.live.cfg)
        effects += self.listing.schedule(now)
        while (name := self.scheduler.take(now.mono)) is not None:
            if name is LIST:  # the task list's turn: a page to ask for
                effects += self.listing.take(now)
                continue
            task = self.tracker.get(str(name))
            if task is None or task.busy:
                continue
            timeout = lifecycle.before_poll(task, now, policy)
            if timeout is not None:
                effects += self.steps.apply(task, timeout, now)
                continue
            if self.steps.auth_paused:
                effects.append(ReloadKey())  # this is the probe: a fixed key file counts
            task.busy = True
            effects.append(StartPoll(task.name, task.task_id, now.mono, now.wall))
        concurrency = self.live.cfg.download.concurrency
        for task, slot in self.tracker.take_downloads(now.mono, concurrency):
            group, index = task.group, slot.index
            assert group is not None  # take_downloads gives slots to downloading groups only
            block = task.record.download
            etag = block.file(index, group.count).etag if block is not None else None
            file, part = group.files[index], self.folders.outbox / task.parts[index]
            effects.append(StartDownload(task.name, file.url, etag, part, slot, file.kind))
        return effects

    # -- results -----------------------------------------------------------------------
    def handle(self, message: Message, now: Now) -> list[Effect]:
        match message:
            case PollDone():
                return self._polled(message, now)
            case ListDone():
                return self.listing.handle(message, now)
            case DownloadStarted():
                return self._download_started(message, now)
            case DownloadProgress():
                return self._download_progress(message, now)
            case DownloadDone(name=name, slot=slot):
                task = self.tracker.release(name, slot)
                if task is None:  # removed while it downloaded; its slot was freed then
                    return []
                return self._downloaded(task, message, now)
            case _:
                raise AssertionError(f"not a task message: {message!r}")

    def _download_started(self, message: DownloadStarted, now: Now) -> list[Effect]:
        task = self.tracker.get(message.name)
        if task is None or task.group is None:
            return []
        if not self.tracker.holds(message.name, message.slot):
            return []
        index, count = message.index, task.group.count
        block = task.record.download or DownloadState(None)
        state = FileDownload(message.etag, message.resume_from)
        task.record.download = block.with_file(index, count, state)
        task.reported_bytes[index] = message.resume_from
        started = ev.DownloadStarted(
            at=now.wall,
            name=task.name,
            task_id=task.task_id,
            url=_url(message.url) or "",
            resume_from=message.resume_from,
            file=index + 1,
            files=count,
        )
        return [Emit(started)]

    def _download_progress(self, message: DownloadProgress, now: Now) -> list[Effect]:
        task = self.tracker.get(message.name)
        if task is None or task.group is None:
            return []
        if not self.tracker.holds(message.name, message.slot):
            return []
        index, count = message.index, task.group.count
        block = task.record.download or DownloadState(None)
        state = replace(block.file(index, count), bytes=message.bytes, total=message.total)
        task.record.download = block.with_file(index, count, state)
        written = message.bytes - task.reported_bytes.get(index, 0)
        task.reported_bytes[index] = message.bytes
        progress = ev.DownloadProgress(
            at=now.wall,
            name=task.name,
            task_id=task.task_id,
            bytes=message.bytes,
            total=message.total,
            written=written,
            file=index + 1,
            files=count,
        )
        return [Emit(progress)]

    def _polled(self, done: PollDone, now: Now) -> list[Effect]:
        task = self.tracker.get(done.name)
        if task is None or task.task_id != done.task_id:
            return []  # removed (or replaced) while the poll was in flight
        task.busy = False
        record = task.record
        record.polls += 1
        record.last_polled = utc_iso(done.started_wall)
        record.followed = round(lifecycle.task_age(task, now), 3)
        outcome = done.outcome
        effects = self.steps.answered(outcome, now)
        policy = policy_of(self.live.cfg)
        if not isinstance(outcome, TaskReport):
            decision = lifecycle.after_poll(task, outcome, done.started, now, policy, 0)
            return effects + self.steps.apply(task, decision, now)
        finished = outcome.status not in lifecycle.UNFINISHED
        done_or_failed = outcome.status in ("SUCCEEDED", "FAILED")
        self.model.observe(outcome.output, now.wall, finished=done_or_failed)
        previous = record.task_status
        record.task_status, record.request_id = outcome.status, outcome.request_id
        record.output, record.usage = outcome.output, outcome.usage
        wait, must = self._plan(task, outcome, done.started, now, policy)
        found_by = self._found_by(task, finished)
        decision = lifecycle.after_poll(task, outcome, done.started, now, policy, wait, must)
        if isinstance(decision, lifecycle.PollAt | lifecycle.StartDownload):
            task.errors_in_row = task.unsupported_in_row = 0
        effects += self.steps.apply(task, decision, now)
        polled = ev.TaskPolled(
            at=now.wall,
            name=task.name,
            task_id=task.task_id,
            task_status=outcome.status,
            polls=record.polls,
            seconds=round(done.seconds, 3),
            changed=outcome.status != previous or finished,
            url=_url(outcome.output.get("video_url")) if finished else None,
            found_by=found_by,
            started=record.last_polled,
        )
        return [*effects, Emit(polled)]

    def _plan(
        self, task: Task, report: TaskReport, started: float, now: Now, policy: Policy
    ) -> tuple[float, float | None]:
        """Seconds from `started` to an unfinished task's next poll and to its deadline:
        the predictor's (`next_poll`), or the watched pace while the list vouches for it."""
        rate = policy.max_per_second
        cycle = self.listing.cycle(len(self.tracker))  # N / rate without the list
        wait, must = self.model.next_poll(report.output, now.wall, cycle, policy.interval, 1 / rate)
        return self.listing.pace(task, started, wait, must)

    @staticmethod
    def _found_by(task: Task, finished: bool) -> FoundBy | None:
        """The poll that first sees the task's end records how it was learned; one that
        says the task is not finished clears the list's word that it was."""
        found: FoundBy | None = None
        if finished and task.record.found_by is None:
            found = task.record.found_by = "list" if task.list_found else "poll"
        task.list_found = task.list_found and finished
        return found

    def _downloaded(self, task: Task, done: DownloadDone, now: Now) -> list[Effect]:
        """One file came down (or did not); once its round is over, what that means."""
        group, outcome = task.group, done.outcome
        if group is None:
            return []
        effects: list[Effect] = []
        if isinstance(outcome, Downloaded):
            completed = ev.DownloadCompleted(
                at=now.wall,
                name=task.name,
                task_id=task.task_id,
                bytes=outcome.bytes,
                sha256=outcome.sha256,
                seconds=round(done.seconds, 3),
                written=max(0, outcome.bytes - task.reported_bytes.get(done.index, 0)),
                file=done.index + 1,
                files=group.count,
                content_type=outcome.content_type,
            )
            effects.append(Emit(completed))
        verdict = group.ended(done.index, outcome)
        if verdict is None:
            return effects  # other files of its round are still to come
        url = group.error_url or done.url
        decision = lifecycle.after_download(task, url, verdict, now, policy_of(self.live.cfg))
        return effects + self.steps.apply(task, decision, now)

    # -- what the daemon asks ----------------------------------------------------------
    def finish(self, task: Task, now: Now) -> list[Effect]:
        """An ended job handed over (`End`): publish it like any task."""
        return self.steps.finish(task, now)

    def key_reloaded(self, now: Now) -> None:
        """A new key arrived: if paused for auth, try it at once (one probe, then all)."""
        self.steps.key_reloaded(now)
