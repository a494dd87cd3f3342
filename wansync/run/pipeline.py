"""A task's way on the main thread: discover → poll → download → publish.

Each step sends I/O to a worker (workers.py), takes its result back as a message
(messages.py), asks lifecycle.py what it means, carries the decision out on the
tracker and the scheduler, and emits one event per transition (events.py). The
sidecar, the log and the status line follow those events; nothing here writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from wansync import config, log
from wansync.config import Live
from wansync.core import events as ev
from wansync.core import lifecycle
from wansync.core.errors import ConfigError
from wansync.core.lifecycle import Decision, Now, Policy
from wansync.core.messages import DownloadDone, DownloadProgress, DownloadStarted, Message, PollDone
from wansync.core.predictor import CompletionModel
from wansync.core.scheduler import Scheduler
from wansync.core.tracker import Task, Tracker, open_task
from wansync.files import sidecar, taskfile
from wansync.files.fsutil import write_bytes_atomic
from wansync.remote.api import TaskApi, TaskReport
from wansync.run.endings import ended, forget_files, publish_task
from wansync.run.publish import Folders
from wansync.run.workers import FetchJob, PollJob, Workers


def _url(url: str | None) -> str | None:
    return log.strip_query(url) if isinstance(url, str) else None


class Pipeline:
    """The main thread's side of every task; workers only ever see one job at a time."""

    def __init__(
        self,
        live: Live,
        folders: Folders,
        tracker: Tracker,
        scheduler: Scheduler,
        bus: ev.EventBus,
        api: TaskApi,
        pollers: Workers[PollJob],
        fetchers: Workers[FetchJob],
    ) -> None:
        self.live = live
        self.folders = folders
        self.tracker = tracker
        self.scheduler = scheduler
        self.bus = bus
        self.api = api
        self.pollers = pollers
        self.fetchers = fetchers
        self.model = CompletionModel()
        self.auth_paused = False
        self.log = log.get("wansync.daemon")
        # The `hook` record a final sidecar carries (docs/hooks.md), or None: set by the daemon.
        self.hook_record: Callable[[str], dict[str, Any] | None] = lambda _event: None

    @property
    def policy(self) -> Policy:
        return Policy.of(self.live.cfg)

    # -- discovery ---------------------------------------------------------------------
    def discover(self, path: Path, now: Now) -> None:
        """A settled `.task`: track it (resuming from its sidecar), or end it at once."""
        task, spec = open_task(self.folders, path, now.wall)
        name = task.name
        if task.state in sidecar.TERMINAL_STATES:
            self.tracker.track(task)
            if spec is None and not task.data.get("published_as"):
                message = task.data["error"]["message"]
                self.log.warning("task.invalid", name=name, file=path.name, error=message)
            self.finish(task, now)
            return
        twin = self.tracker.track(task)
        if twin is not None:
            self.fail(
                task,
                "DuplicateTask",
                f"{path.name}: task id {task.task_id} is already being fetched for "
                f"{twin.name}.task; one video per task id",
                now,
            )
            return
        resumed = task.data["polls"] > 0 or task.state == "downloading"
        if task.state == "downloading" and isinstance(task.data["output"], dict):
            self.tracker.queue_download(name, now.mono)
        else:
            task.set_state("polling")
            self.scheduler.add(name, now.mono)
        self.tracker.unsaved[name] = None  # its first sidecar is written between ticks
        self.bus.emit(
            ev.TaskDiscovered(
                at=now.wall, name=name, task_id=task.task_id, state=task.state, resumed=resumed
            )
        )

    def adopt(self, name: str, task_id: str, meta: dict[str, Any], now: Now) -> bool:
        """A job's task now exists: write its `.task` (what a user would drop), track it."""
        path = self.folders.task(name)
        try:
            if not path.exists():  # the very bytes the job was checked against (jobfile)
                write_bytes_atomic(path, taskfile.render(task_id, meta))
        except OSError as exc:  # the sidecar holds the id: the next rescan tries again
            self.log.error("job.task_file_error", name=name, task_id=task_id, error=str(exc))
            return False
        self.discover(path, now)
        return True

    def removed(self, name: str, now: Now) -> None:
        """The `.task` left the inbox: stop at once, release everything, drop our files."""
        task = self.tracker.get(name)
        if task is None or task.state in sidecar.TERMINAL_STATES:
            return
        self.scheduler.remove(name)
        self.tracker.untrack(name)  # a result still in flight finds no task: dropped
        forget_files(self.folders, name)
        self.bus.emit(
            ev.TaskRemoved(
                at=now.wall,
                name=name,
                task_id=task.task_id,
                detail="task file was removed from the inbox; no longer tracked",
            )
        )

    # -- dispatch ----------------------------------------------------------------------
    def dispatch(self, now: Now) -> None:
        """Send the polls the scheduler allows and the downloads the free slots allow."""
        policy = self.policy
        while (name := self.scheduler.take(now.mono)) is not None:
            task = self.tracker.get(str(name))
            if task is None or task.busy:
                continue
            timeout = lifecycle.before_poll(task, now, policy)
            if timeout is not None:
                self.apply(task, timeout, now)
                continue
            if self.auth_paused:
                self._reread_key()  # this is the probe: a fixed key file is picked up
            task.busy = True
            self.pollers.submit(PollJob(task.name, task.task_id, now.mono, now.wall))
        for task, slot in self.tracker.take_downloads(now.mono, policy.download.concurrency):
            etag = (task.data.get("download") or {}).get("etag")
            url = task.data["output"]["video_url"]
            part = self.folders.part(task.name)
            self.fetchers.submit(FetchJob(task.name, url, etag, part, slot))

    def _reread_key(self) -> None:
        try:
            key = config.load_api_key(self.live.cfg)
        except ConfigError:
            return
        log.add_secret(key)
        self.api.set_key(key)

    # -- results -----------------------------------------------------------------------
    def handle(self, message: Message, now: Now) -> None:
        match message:
            case PollDone():
                self._polled(message, now)
            case DownloadStarted(name=name, slot=slot, etag=etag):
                task = self.tracker.get(name)
                if task is None or not self.tracker.holds(name, slot):
                    return
                task.data["download"] = sidecar.download(etag, message.resume_from)
                task.reported_bytes = message.resume_from
                self.bus.emit(
                    ev.DownloadStarted(
                        at=now.wall,
                        name=name,
                        task_id=task.task_id,
                        url=_url(message.url) or "",
                        resume_from=message.resume_from,
                    )
                )
            case DownloadProgress(name=name, slot=slot):
                task = self.tracker.get(name)
                if task is None or not self.tracker.holds(name, slot):
                    return
                block = task.data.get("download") or sidecar.download(None)
                task.data["download"] = {**block, "bytes": message.bytes, "total": message.total}
                written, task.reported_bytes = message.bytes - task.reported_bytes, message.bytes
                self.bus.emit(
                    ev.DownloadProgress(
                        at=now.wall,
                        name=name,
                        task_id=task.task_id,
                        bytes=message.bytes,
                        total=message.total,
                        written=written,
                    )
                )
            case DownloadDone(name=name, slot=slot):
                task = self.tracker.release(name, slot)
                if task is not None:  # else: removed while it downloaded; slot freed then
                    self._downloaded(task, message, now)
            case _:
                raise AssertionError(f"not a task message: {message!r}")

    def _polled(self, done: PollDone, now: Now) -> None:
        task = self.tracker.get(done.name)
        if task is None or task.task_id != done.task_id:
            return  # removed (or replaced) while the poll was in flight
        task.busy = False
        data = task.data
        data["polls"] += 1
        data["last_polled"] = sidecar.utc_iso(done.started_wall)
        outcome = done.outcome
        if lifecycle.auth_resumed(self.auth_paused, outcome):
            self.auth_paused = False
            self.scheduler.probe_done()
            self.bus.emit(ev.AuthResumed(at=now.wall))
        policy = self.policy
        if not isinstance(outcome, TaskReport):
            self.apply(task, lifecycle.after_poll(task, outcome, done.started, now, policy, 0), now)
            return
        finished = outcome.status not in lifecycle.UNFINISHED
        done_or_failed = outcome.status in ("SUCCEEDED", "FAILED")
        self.model.observe(outcome.output, now.wall, finished=done_or_failed)
        previous = data["task_status"]
        data.update(
            task_status=outcome.status,
            request_id=outcome.request_id,
            output=outcome.output,
            usage=outcome.usage,
        )
        rate = policy.max_per_second
        wait, must = self.model.next_poll(
            outcome.output, now.wall, len(self.tracker) / rate, policy.interval, 1 / rate
        )
        decision = lifecycle.after_poll(task, outcome, done.started, now, policy, wait, must)
        if isinstance(decision, lifecycle.PollAt | lifecycle.StartDownload):
            task.errors_in_row = 0
        self.apply(task, decision, now)
        self.bus.emit(
            ev.TaskPolled(
                at=now.wall,
                name=task.name,
                task_id=task.task_id,
                task_status=outcome.status,
                polls=data["polls"],
                seconds=round(done.seconds, 3),
                changed=outcome.status != previous or finished,
                url=_url(outcome.output.get("video_url")) if finished else None,
            )
        )

    def _downloaded(self, task: Task, done: DownloadDone, now: Now) -> None:
        decision = lifecycle.after_download(task, done.url, done.outcome, now, self.policy)
        if isinstance(decision, lifecycle.Succeed):
            video = decision.video
            written = video.bytes - task.reported_bytes
            self.bus.emit(
                ev.DownloadCompleted(
                    at=now.wall,
                    name=task.name,
                    task_id=task.task_id,
                    bytes=video.bytes,
                    sha256=video.sha256,
                    seconds=round(done.seconds, 3),
                    written=max(0, written),
                )
            )
        self.apply(task, decision, now)

    # -- carrying decisions out --------------------------------------------------------
    def apply(self, task: Task, decision: Decision, now: Now) -> None:
        data = task.data
        match decision:
            case lifecycle.PollAt(at=at, deadline=deadline):
                data.update(error=None, next_poll=sidecar.utc_iso(now.wall + at - now.mono))
                self.scheduler.add(task.name, at, deadline)
            case lifecycle.StartDownload(expires=expires):
                task.set_state("downloading")
                data.update(
                    error=None,
                    next_poll=None,
                    expires=sidecar.utc_iso(expires) if expires else None,
                )
                self.scheduler.park(task.name)
                self.tracker.queue_download(task.name, now.mono)
            case lifecycle.Succeed(video=video):
                data["video"] = {
                    "path": f"{task.name}.mp4",
                    "bytes": video.bytes,
                    "sha256": video.sha256,
                    "content_type": "video/mp4",
                }
                block = data.get("download") or sidecar.download(video.etag)
                data["download"] = {**block, "bytes": video.bytes, "total": video.bytes}
                task.set_state("succeeded")
                self.finish(task, now)
            case lifecycle.Fail(code=code, message=message):
                self.fail(task, code, message, now)
            case lifecycle.Retry():
                self._retry(task, decision, now)
            case lifecycle.PauseForAuth():
                self._pause_for_auth(task, decision, now)
            case lifecycle.Ignore():
                pass

    def _retry(self, task: Task, retry: lifecycle.Retry, now: Now) -> None:
        task.errors_in_row = retry.errors_in_row
        if retry.refused_url is not None:
            task.refused_url = retry.refused_url
        if retry.then == "poll":
            task.set_state("polling")
            self.scheduler.add(task.name, retry.at)
            if retry.pause_until is not None:  # the quota is the account's: hold every poll
                self.scheduler.pause_until(retry.pause_until)
        else:
            self.tracker.queue_download(task.name, retry.at)
        polling = task.state == "polling"
        task.data["error"] = sidecar.error(retry.code, log.scrub(retry.message), True)
        task.data["next_poll"] = sidecar.utc_iso(now.wall + retry.delay) if polling else None
        self.bus.emit(
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

    def _pause_for_auth(self, task: Task, pause: lifecycle.PauseForAuth, now: Now) -> None:
        # One line per pause: the first refusal, then each refused probe (the pause is
        # over when the probe answers; other refusals within a pause say nothing new).
        probe = self.auth_paused and now.mono >= self.scheduler.paused_until
        if not self.auth_paused or probe:
            self.bus.emit(
                ev.AuthRejected(
                    at=now.wall,
                    code=pause.code,
                    message=pause.message,
                    pause=pause.pause,
                    detail=f"polling paused for {int(pause.pause)} s; no task fails",
                    probe=probe,
                )
            )
        self.auth_paused = True
        self.scheduler.pause_until(pause.until, probe=True)
        error = sidecar.error(pause.code, pause.message, True)
        for other in self.tracker.tasks.values():
            if other.state == "polling":
                other.data["error"] = error
                other.data["next_poll"] = sidecar.utc_iso(now.wall + pause.pause)
                self.tracker.unsaved[other.name] = None
        self.scheduler.add(task.name, pause.until)

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
    def fail(self, task: Task, code: str, message: str, now: Now) -> None:
        task.set_state("failed")
        task.data["error"] = sidecar.error(code, log.scrub(message), False)
        self.finish(task, now)

    def finish(self, task: Task, now: Now) -> None:
        """Publish into outbox/ or failed/ in crash-safe order, and stop tracking."""
        data = task.data
        data["finished"] = data.get("finished") or sidecar.utc_iso(now.wall)
        data["next_poll"] = None
        self.scheduler.remove(task.name)
        self.tracker.untrack(task.name)
        if not data.get("published_as") and (record := self.hook_record(data["state"])):
            data["hook"] = record  # on disk before the files move: a hook runs at least once
        final = publish_task(self.folders, data, self.log)
        if final is None:
            return  # the inbox sidecar keeps the decision; the next start-up finishes it
        self.tracker.counts["done" if data["state"] == "succeeded" else "failed"] += 1
        self.bus.emit(ended(data, final, now.wall))
