"""Hooks (docs/hooks.md): a user's command, run once per task that ends, after its files land.

At least once, never again once done: the loop puts `pending_record()` into the final
sidecar before the files move; from then on the sidecar in `outbox/` or `failed/` is
this module's, and it is the only record. Every try re-reads it first (a `done` hook is
never run), and after every finished try the count is written back atomically. A
daemon killed mid-hook finds `pending` at the next start (`resume_pending`) and runs it.

Tries run on a few worker threads (a storm of finishes must not fork hundreds of
processes); a try that failed waits its back-off in a queue, not on a thread. A try
that hit an error of ours — its sidecar could not be read for want of descriptors
(EMFILE), a write failed — is not dropped: it is tried again with the same back-off
for as long as the daemon runs (and stays `pending` on disk for the next start). The
loop's only calls are quick: `pending_record`, `consume` (from the bus), and at the
edges `resume_pending`, `wait`, `stop`. Results go back through `report(HookRan)`,
called from a worker thread: the caller must hand it to its loop (and wake it).

The command's environment is the daemon's, without the API key: `DASHSCOPE_API_KEY`
and any variable whose value holds a registered secret (`log.add_secret`) are dropped,
and so are systemd's `CREDENTIALS_DIRECTORY`, `NOTIFY_SOCKET` and `WATCHDOG_*`, which
are the daemon's alone.
"""

from __future__ import annotations

import heapq
import itertools
import os
import shlex
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from wansync import log
from wansync.config import KEY_ENV, HooksConfig
from wansync.core import retry
from wansync.core.events import Event, HookRan, TaskFailed, TaskSucceeded
from wansync.core.record import HookRecord, TaskRecord
from wansync.files import bounded, folderguard, names, sidecar
from wansync.files.folders import Folders
from wansync.files.fsutil import NotARegularFile, read_small
from wansync.files.taskfile import RESOURCE_ERRNOS  # the system's fault, not the file's
from wansync.outlets.hookrun import TryResult, run_try

EVENTS = sidecar.HOOK_EVENTS
MAX_ENV_VALUE = 8192  # an error message from the API, cut to fit an environment
BACKOFF_CAP = 60.0
DROPPED_ENV = (KEY_ENV, "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC")
OUR_ENV = (
    "WANSYNC_EVENT",
    "WANSYNC_NAME",
    "WANSYNC_TASK_ID",
    "WANSYNC_VIDEO",
    "WANSYNC_OUTPUTS",
    "WANSYNC_SIDECAR",
    "WANSYNC_ERROR_CODE",
    "WANSYNC_ERROR_MESSAGE",
)


def backoff(finished_tries: int) -> float:
    """1 s after the first failed try, then 2 s, 4 s … at most 60 s (the one policy)."""
    return retry.backoff(1.0, finished_tries, cap=BACKOFF_CAP)


def record(
    event: str, state: str = "pending", attempts: int = 0, code: int | None = None
) -> HookRecord:
    """The sidecar's hook record."""
    return HookRecord(event, state, attempts, code)


def _clean(value: Any) -> str:
    """An environment value: text, no NUL (exec refuses it), bounded."""
    text = value if isinstance(value, str) else ""
    return text.replace("\0", "")[:MAX_ENV_VALUE]


def hook_env(base: Mapping[str, str], task: TaskRecord, path: Path, event: str) -> dict[str, str]:
    """The command's environment: `base` minus what is the daemon's alone, plus WANSYNC_*."""
    env = {
        k: v
        for k, v in base.items()
        if k not in DROPPED_ENV and k not in OUR_ENV and not log.holds_secret(v)
    }
    published = path.name.removesuffix(sidecar.SUFFIX)
    env.update(
        WANSYNC_EVENT=event,
        WANSYNC_NAME=published,
        WANSYNC_TASK_ID=_clean(task.task_id),
        WANSYNC_SIDECAR=str(path),
    )
    if event == "succeeded":
        # every published file, one absolute path a line; the MP4 also on its own
        env["WANSYNC_OUTPUTS"] = "\n".join(str(path.parent / o.path) for o in task.outputs)
        if task.video is not None:
            env["WANSYNC_VIDEO"] = str(path.parent / task.video.path)
    else:
        env["WANSYNC_ERROR_CODE"] = _clean(task.error.code if task.error else None)
        env["WANSYNC_ERROR_MESSAGE"] = _clean(task.error.message if task.error else None)
    return env


def read_hook(path: Path) -> tuple[TaskRecord, HookRecord] | None:
    """(the sidecar's record, its valid hook record) at `path`, or None: missing, a link,
    not ours.

    Anyone in the group may write into outbox/ and failed/, so the file is read as any
    sidecar is (capped, depth-bounded: `bounded`), must pass the whole sidecar check as
    a published one (`sidecar.problem`), its hook must be for the state it records
    (`sidecar.hook_problem`), and a success's video must be beside it. A file that fails
    says so in one line. Short of descriptors or memory (EMFILE …) the `OSError` is
    raised instead: that says nothing about the file, and the caller tries again.
    """
    try:
        raw = read_small(path, sidecar.MAX_BYTES)
    except NotARegularFile:
        return None
    except OSError as exc:
        if exc.errno in RESOURCE_ERRNOS:
            raise
        return None
    if len(raw) > sidecar.MAX_BYTES or b'"hook"' not in raw:
        return None  # most final sidecars: no hook was ever asked for
    task: TaskRecord | None = None
    try:
        data = bounded.json_loads(raw.decode("utf-8"), sidecar.MAX_DEPTH)
        why = sidecar.problem(data, path.name, published=True) or sidecar.hook_problem(data)
        if why is None:
            task = sidecar.from_json(data)
            why = _beside_problem(task, path)
    except (UnicodeDecodeError, bounded.Unparsable) as exc:
        why = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else str(exc)
    if why is not None or task is None or task.hook is None:
        log.get("wansync.hooks").warning(
            "hook.sidecar_invalid",
            file=names.escape(path.name),
            error=(why or "no hook")[:200],
            detail="ignored",
        )
        return None
    return task, task.hook


def _beside_problem(task: TaskRecord, path: Path) -> str | None:
    """What makes a valid published sidecar with a hook not this folder's own: it must
    be the file `published_as` names, and a success's files must be beside it (their
    names are the group's: `sidecar.problem` checked them)."""
    chosen = task.published_as
    if not chosen or path.name != f"{chosen}{sidecar.SUFFIX}":
        return "not a published sidecar (published_as does not name this file)"
    if task.state != "succeeded":
        return None
    for output in task.outputs:
        if not stat.S_ISREG(_lstat_mode(path.parent / output.path)):
            return f"{output.path} is not beside it"
    return None


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return 0


def _ignore(_: HookRan) -> None:
    """The default `report`: nobody listens."""


class Hooks:
    """Runs the configured hooks for finished tasks, on a small pool of worker threads."""

    def __init__(
        self,
        get_cfg: Callable[[], HooksConfig],
        folders: Folders,
        report: Callable[[HookRan], None] = _ignore,
        threads: int = 2,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.get_cfg = get_cfg  # read at every try: a reload changes the next try
        self.folders = folders
        self.report = report
        self.environ = os.environ if environ is None else environ
        self.log = log.get("wansync.hooks")
        self._threads = threads
        self._workers: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, Path]] = []  # (monotonic time, seq, sidecar)
        self._seq = itertools.count()
        self._inflight: set[Path] = set()  # queued, waiting a back-off, or running
        self._errors: dict[Path, int] = {}  # errors of ours in a row, by sidecar
        self._scans = 0
        self._closed = False
        self._kill = threading.Event()  # running tries end now (SIGTERM)

    # -- what the loop calls -----------------------------------------------------------
    def pending_record(self, event: str) -> HookRecord | None:
        """The hook record for a task ending as `event`, or None when no hook is set."""
        cfg = self.get_cfg()
        command = cfg.on_success if event == "succeeded" else cfg.on_failure
        return record(event) if command and event in EVENTS else None

    def consume(self, event: Event) -> None:
        """Bus consumer: a task ended, its final sidecar says whether a hook is pending."""
        if isinstance(event, TaskSucceeded | TaskFailed):
            kind = "succeeded" if isinstance(event, TaskSucceeded) else "failed"
            if self.pending_record(kind) is not None:  # else no record was written either
                self._enqueue(Path(os.path.abspath(event.sidecar)), 0.0)

    def resume_pending(self) -> None:
        """At start-up: run every hook a final sidecar in outbox/ or failed/ says is pending.

        The folders may hold thousands of sidecars, so the scan runs on its own thread;
        with no hook configured at all there is nothing to run and nothing is read.
        """
        cfg = self.get_cfg()
        with self._cond:
            if self._closed or not (cfg.on_success or cfg.on_failure):
                return
            self._scans += 1
        threading.Thread(target=self._scan, name="hooks-scan", daemon=True).start()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no hook is queued, waiting or running (`once`); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._inflight and not self._scans, timeout)

    def stop(self, kill: bool = True, timeout: float = 10.0) -> None:
        """Take no more work; `kill`: end running hooks now, leaving them `pending` on disk."""
        with self._cond:
            self._closed = True
            self._inflight.difference_update(path for _, _, path in self._due)
            self._due.clear()
            if kill:
                self._kill.set()
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    # -- the queue ---------------------------------------------------------------------
    def _enqueue(self, path: Path, delay: float) -> None:
        with self._cond:
            if self._closed or path in self._inflight:
                return
            self._inflight.add(path)
            heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), path))
            if len(self._workers) < self._threads:
                worker = threading.Thread(target=self._work, name="hooks", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._cond.notify()

    def _next(self) -> Path | None:
        """The next sidecar whose time has come, or None when stopping."""
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(self._due[0][0] - now if self._due else None)
            return None

    def _work(self) -> None:
        while (path := self._next()) is not None:
            retry_in = self._attempt(path)
            with self._cond:
                if retry_in is not None and not self._closed:
                    heapq.heappush(self._due, (time.monotonic() + retry_in, next(self._seq), path))
                else:
                    self._inflight.discard(path)
                self._cond.notify_all()

    def _attempt(self, path: Path) -> float | None:
        """One try, whatever happens in it: the back-off before the next, or None."""
        try:
            retry_in = self._try(path)
        except Exception as exc:  # ours (EMFILE, a failed write, a bug): never the end of it
            errors = self._errors[path] = self._errors.get(path, 0) + 1
            delay = backoff(errors)
            self.log.error(
                "hook.error",
                sidecar=str(path),
                error=f"{type(exc).__name__}: {str(exc)[:200]}",
                retry_in=delay,
                detail="the hook stays pending and is tried again",
            )
            return delay
        self._errors.pop(path, None)
        return retry_in

    def _scan(self) -> None:
        try:
            for path in self._final_sidecars():
                try:
                    found = read_hook(path)
                except OSError:  # short of descriptors: the try reads it again, later
                    self._enqueue(path, backoff(1))
                    continue
                except Exception as exc:  # one bad file must not end the scan for the rest
                    self.log.error(
                        "hook.scan_error",
                        file=names.escape(path.name),
                        error=f"{type(exc).__name__}: {str(exc)[:200]}",
                        detail="skipped",
                    )
                    continue
                if found and found[1].state == "pending":
                    self._enqueue(path, 0.0)
        finally:
            with self._cond:
                self._scans -= 1
                self._cond.notify_all()

    def _final_sidecars(self) -> Iterator[Path]:
        for folder in (self.folders.outbox, self.folders.failed):
            if folderguard.replaced(folder):
                continue
            for entry in self._listing(folder):
                if entry.name.endswith(sidecar.SUFFIX) and not entry.name.startswith("."):
                    yield Path(os.path.abspath(entry.path))

    def _listing(self, folder: Path) -> list[os.DirEntry[str]]:
        """`folder`'s entries; short of descriptors, listed again after a back-off until
        it works or the hooks stop (a pending hook is never skipped for an EMFILE)."""
        failures = 0
        while True:
            try:
                return list(os.scandir(folder))
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRNOS:
                    return []
                failures += 1
                delay = backoff(failures)
                self.log.warning(
                    "hook.scan_error",
                    path=str(folder),
                    error=exc.strerror,
                    retry_in=delay,
                    detail="the folder is listed again",
                )
            with self._cond:
                if self._cond.wait_for(lambda: self._closed, delay):
                    return []

    # -- one try -----------------------------------------------------------------------
    def _try(self, path: Path) -> float | None:
        """Run the hook of `path` once if it is pending; the back-off before the next try."""
        if folderguard.replaced(path.parent):  # not through a folder swapped for a link
            return BACKOFF_CAP
        found = read_hook(path)
        if found is None or found[1].state != "pending":
            return None
        task, hook = found
        event, name = hook.event, task.name
        cfg = self.get_cfg()
        command = cfg.on_success if event == "succeeded" else cfg.on_failure
        if not command:
            self.log.warning(
                "hook.not_configured",
                name=name,
                hook_event=event,
                detail=f"hooks.on_{'success' if event == 'succeeded' else 'failure'} is not "
                "set; the hook stays pending",
            )
            return None
        tries = hook.attempts + 1
        self.log.info("hook.started", name=name, hook_event=event, attempt=tries)
        result = run_try(
            shlex.split(command),
            path.parent,
            hook_env(self.environ, task, path, event),
            cfg.timeout,
            lambda line: self.log.info("hook.output", name=name, hook_event=event, line=line),
            self._kill,
        )
        if result.stopped:
            self.log.info("hook.stopped", name=name, hook_event=event, detail="stays pending")
            return None
        return self._after_try(path, name, event, tries, result, cfg.attempts)

    def _after_try(
        self, path: Path, name: str, event: str, tries: int, result: TryResult, limit: int
    ) -> float | None:
        """Write the outcome of a finished try; report it when the hook is done or given up."""
        if result.ok:
            self._write(path, record(event, "done", tries, 0))
            self._report(name, event, "ok", 0, tries)
            return None
        if tries < limit:
            self._write(path, record(event, "pending", tries, result.exit_code))
            delay = backoff(tries)
            self.log.warning(
                "hook.retry",
                name=name,
                hook_event=event,
                attempts=tries,
                exit_code=result.exit_code,
                reason=result.reason,
                retry_in=delay,
            )
            return delay
        self._write(path, record(event, "failed", tries, result.exit_code))
        self.log.error(
            "hook.failed",
            name=name,
            hook_event=event,
            attempts=tries,
            exit_code=result.exit_code,
            reason=result.reason,
            output=result.tail,
        )
        self._report(name, event, "failed", result.exit_code, tries)
        return None

    def _write(self, path: Path, hook: HookRecord) -> None:
        """Put `hook` into the sidecar, unless the user has moved the files away meanwhile."""
        found = read_hook(path)
        if found is None:
            self.log.warning("hook.sidecar_gone", sidecar=str(path), hook=sidecar.hook_json(hook))
            return
        task = found[0]
        task.hook = hook
        sidecar.write(path, task)

    def _report(self, name: str, event: str, result: str, code: int | None, tries: int) -> None:
        ran = HookRan(
            at=time.time(),
            name=name,
            hook_event=event,
            result=result,
            exit_code=code,
            attempts=tries,
        )
        try:
            self.report(ran)
        except Exception as exc:
            self.log.error("hook.report_error", name=name, error=f"{type(exc).__name__}: {exc}")
