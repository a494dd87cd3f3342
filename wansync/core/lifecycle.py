"""Pure decisions of a task's life: (task, outcome, now) → what happens next.

No I/O, no clock reads, no threads: the loop passes `now` in and carries the decision
out (pipeline.py). Every rule about what an API answer or a download's end means for
a task is here, in one table a test can walk through:

  poll answer        PENDING/RUNNING → PollAt;  SUCCEEDED → StartDownload of the files its
                     output names (shapes.py), or Fail when a URL is not one we may
                     fetch / was refused already; an output that names no file → Retry
                     as MalformedResponse, the third in a row → Fail(UnsupportedOutput);
                     a job's task taken from the task list whose answer echoes another
                     prompt than the job's → Fail(SubmitUncertain) (jobmatch.py);
                     FAILED/CANCELED/UNKNOWN → Fail
  poll error         TaskFailed → Fail;  AuthRejected → PauseForAuth (everyone waits,
                     one probe goes first);  RateLimited → Retry with an account pause;
                     other transient → Retry;  Stopping → Ignore
  downloads end      (a round of the task's files, filegroup.py) GroupDone → Succeed;
                     UrlRefused → poll again at once (twice for different URLs → Fail);
                     TaskFailed → Fail;  transient → Retry
  before a poll      followed longer than poll.give_up_after → Fail(Timeout) (`task_age`:
                     monotonic within a run, so a wall-clock step ends nothing)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from wansync.core import jobmatch
from wansync.core.errors import (
    AuthRejected,
    Stopping,
    TaskFailed,
    TransientError,
    UrlRefused,
    WansyncError,
)
from wansync.core.filegroup import GroupDone
from wansync.core.messages import TaskReport
from wansync.core.retry import as_transient, plan
from wansync.core.shapes import FileUrl, Unsupported, outputs_of
from wansync.core.times import read_time, url_expires
from wansync.core.tracker import Task

UNFINISHED = ("PENDING", "RUNNING")
UNSUPPORTED_LIMIT = 3  # SUCCEEDED answers in a row naming no file, then UnsupportedOutput


@dataclass(frozen=True, slots=True)
class Now:
    """The loop's clocks at one moment: `mono` for scheduling, `wall` for records."""

    mono: float
    wall: float


@dataclass(frozen=True, slots=True)
class Policy:
    """The settings decisions depend on, taken from the live config at each use
    (`pipeline.policy_of`). `check_url` raises `TaskFailed` for a video URL wansync may
    not fetch (urlcheck.py: it parses with the HTTP client's own parser, so it is given
    here rather than imported: the core imports nothing that does I/O)."""

    interval: float
    max_per_second: float
    give_up_after: float
    check_url: Callable[[str], None]  # every file's URL


# -- decisions ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PollAt:
    """Not finished yet: poll again at monotonic `at`, and by `deadline` at the latest
    (None: the rate covers everyone every interval)."""

    at: float
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class StartDownload:
    """Fetch these files (in the order they are named); `expires`: the earliest deadline
    among their signed URLs (wall clock), if any says; `dropped`: file URLs past the
    cap, not fetched."""

    files: tuple[FileUrl, ...]
    expires: float | None
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class Succeed:
    group: GroupDone


@dataclass(frozen=True, slots=True)
class Fail:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient error: record it, try `then` again at monotonic `at`."""

    code: str
    message: str
    then: Literal["poll", "download"]
    at: float
    delay: float  # the back-off (what the log says); `at` may be sooner (a refused URL)
    errors_in_row: int
    pause_until: float | None = None  # every poll of the account waits (a 429)
    refused_url: str | None = None  # remember: storage refused this URL once
    unsupported_in_row: int | None = None  # SUCCEEDED answers in a row naming no file


@dataclass(frozen=True, slots=True)
class PauseForAuth:
    """The key was rejected: every poll waits until `until`, then one probe goes first."""

    code: str
    message: str
    until: float
    pause: float


@dataclass(frozen=True, slots=True)
class Ignore:
    """Nothing to do (shutting down: the work is left resumable)."""


Decision = PollAt | StartDownload | Succeed | Fail | Retry | PauseForAuth | Ignore


# -- the rules ---------------------------------------------------------------------------
def before_poll(task: Task, now: Now, policy: Policy) -> Fail | None:
    """A task not finished `give_up_after` after it was first seen fails as `Timeout`."""
    age = task_age(task, now)
    if age > policy.give_up_after:
        return Fail(
            "Timeout",
            f"not finished {int(age)} s after it was first seen "
            f"(poll.give_up_after is {int(policy.give_up_after)} s)",
        )
    return None


def task_age(task: Task, now: Now) -> float:
    """Seconds wansync has followed `task`: within this run by the monotonic clock, plus
    what its sidecar says of earlier runs (`followed`, or for an older sidecar
    `earlier_age`, set by `Pipeline.follow`), so that a step of the
    wall clock (a VM resumed, NTP after a boot without a clock) ages no task. A task no run
    follows yet is as old as the wall clock says."""
    if task.followed_since is None:
        first_seen = read_time(task.record.first_seen, now.wall) or now.wall
        return now.wall - first_seen
    return task.followed_before + now.mono - task.followed_since


def earlier_age(first_seen: str | None, last_polled: str | None, wall: float) -> float:
    """How long earlier runs followed a task, by a sidecar with no `followed` (written
    before wansync kept it): `first_seen` to its last poll (never past `wall`). Time while
    wansync was stopped does not count."""
    start = read_time(first_seen, wall)
    end = read_time(last_polled, wall)
    if start is None or end is None:
        return 0.0
    return max(0.0, min(end, wall) - start)


def auth_resumed(paused: bool, outcome: TaskReport | WansyncError) -> bool:
    """While paused for auth, any answer but another rejection proves the key works."""
    return paused and not isinstance(outcome, AuthRejected | Stopping)


def after_poll(
    task: Task,
    outcome: TaskReport | WansyncError,
    started: float,
    now: Now,
    policy: Policy,
    defer: float,
    must: float | None = None,
) -> Decision:
    """What a poll's outcome means; `defer`: seconds to the next poll if unfinished, `must`:
    seconds by which it must happen (`CompletionModel.next_poll`)."""
    if isinstance(outcome, TaskReport):
        return after_report(task, outcome, started, now, policy, defer, must)
    if isinstance(outcome, TaskFailed):
        return Fail(outcome.code, outcome.message)
    if isinstance(outcome, Stopping):
        return Ignore()
    if isinstance(outcome, AuthRejected):
        retry = plan(outcome, task.errors_in_row + 1, policy.interval)
        return PauseForAuth(outcome.code, outcome.message, now.mono + retry.delay, retry.delay)
    return _retry(task, outcome, "poll", now, policy)


def after_report(
    task: Task,
    report: TaskReport,
    started: float,
    now: Now,
    policy: Policy,
    defer: float,
    must: float | None = None,
) -> Decision:
    status, output = report.status, report.output
    if status == "FAILED":
        code, message = output.get("code"), output.get("message")
        return Fail(
            code if isinstance(code, str) and code else "TaskFailed",
            message
            if isinstance(message, str) and message
            else "the task failed and the API gave no reason",
        )
    if status == "CANCELED":
        return Fail("TaskCanceled", "the task was canceled")
    if status == "UNKNOWN":
        return Fail(
            "TaskNotFound",
            "the API does not know this task id (wrong id, other region, or older than 24 h)",
        )
    if status == "SUCCEEDED":
        if (foreign := not_the_jobs(task, report)) is not None:
            return foreign
        return after_success(task, output, now, policy)
    return PollAt(started + defer, None if must is None else started + must)  # PENDING/RUNNING


def not_the_jobs(task: Task, report: TaskReport) -> Fail | None:
    """A job's task taken from the task list (its create's answer was lost) is checked
    when its answer first echoes its prompt: another prompt than the job's means someone
    else on the account made it, so nothing of it is fetched and the job ends
    `SubmitUncertain` (docs/jobs.md, At most once)."""
    job = task.record.job
    if job is None or job.found_by != jobmatch.TASK_LIST:
        return None
    if jobmatch.compare(job.prompt_sha256, report.prompt_sha256) != "other":
        return None
    return Fail("SubmitUncertain", jobmatch.not_ours_message(task.name, task.task_id))


def after_success(task: Task, output: dict[str, Any], now: Now, policy: Policy) -> Decision:
    """A SUCCEEDED answer: fetch the files its output names (docs/folders.md, Outputs).

    An output that names none is retried as a malformed answer, and the
    `UNSUPPORTED_LIMIT`-th such answer in a row ends the task (`UnsupportedOutput`,
    the output kept in its sidecar): a kind wansync cannot fetch must not be polled for
    hours. A URL storage refused before and handed out again means the task has no newer
    one; a URL wansync may not fetch (host, scheme) fails the task.
    """
    found = outputs_of(output)
    if isinstance(found, Unsupported):
        n = task.unsupported_in_row + 1
        if n >= UNSUPPORTED_LIMIT:
            return Fail(
                "UnsupportedOutput",
                f"the task SUCCEEDED but its output names no file wansync can fetch, "
                f"{n} answers in a row: {found.reason}",
            )
        reason = f"SUCCEEDED without a file to fetch: {found.reason}"
        error = TransientError(reason, "MalformedResponse")
        return replace(_retry(task, error, "poll", now, policy), unsupported_in_row=n)
    urls = [f.url for f in found.files]
    if task.refused_url is not None and task.refused_url in urls:
        return Fail("VideoUrlExpired", "storage refused a file's URL and the task has no newer one")
    try:
        for url in urls:
            policy.check_url(url)
    except TaskFailed as exc:
        return Fail(exc.code, exc.message)
    deadlines = [d for d in map(url_expires, urls) if d is not None]
    return StartDownload(found.files, min(deadlines, default=None), found.dropped)


def after_download(
    task: Task, url: str, outcome: GroupDone | WansyncError, now: Now, policy: Policy
) -> Decision:
    """What the end of a round of the task's downloads means (`filegroup.FileGroup.ended`);
    `url`: the file's whose error decided it."""
    if isinstance(outcome, GroupDone):
        return Succeed(outcome)
    if isinstance(outcome, Stopping):
        return Ignore()
    if isinstance(outcome, UrlRefused):
        if task.refused_url is not None and task.refused_url != url:
            return Fail(
                "VideoUrlExpired",
                f"storage refused a file's URL twice ({outcome.message}); it has expired",
            )
        error = TransientError(f"{outcome.message}; asking the task API again", outcome.code)
        retry = _retry(task, error, "poll", now, policy)
        return Retry(
            retry.code,
            retry.message,
            "poll",
            now.mono,  # at once: the API may hand out a fresh URL
            retry.delay,
            retry.errors_in_row,
            refused_url=url,
        )
    if isinstance(outcome, TaskFailed):
        return Fail(outcome.code, outcome.message)
    return _retry(task, outcome, "download", now, policy)


def _retry(
    task: Task, error: WansyncError, then: Literal["poll", "download"], now: Now, policy: Policy
) -> Retry:
    error = as_transient(error)
    n = task.errors_in_row + 1
    retry = plan(error, n, policy.interval)
    pause = now.mono + retry.pause if retry.pause is not None and then == "poll" else None
    return Retry(error.code, error.message, then, now.mono + retry.delay, retry.delay, n, pause)
