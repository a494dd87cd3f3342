"""The task-list search after a lost create answer: when to look, and what a look found.

A job whose create request got no answer (or whose wansync stopped mid-create) may have
made a task. The create is never sent again; the task list is searched instead, over
the request's time window on the API's clock, at `SEARCHES` parts of
`submit.search_for`. Only one job is ever uncertain (submitter.py), so a task of the
job's model in that window that no job or task of ours knows is its own. The verdict
here is a pure function of the rows, the ids we know and the journal; submitter.py acts
on it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from wansync.core.lifecycle import Now
from wansync.core.record import JobRecord
from wansync.core.times import read_time
from wansync.remote.api import api_time
from wansync.remote.serverclock import ServerClock, Window, search_window, window_from_record
from wansync.run import jobjournal
from wansync.run.jobjournal import Job
from wansync.run.submit_worker import LookupJob

SEARCHES = (0.0, 0.25, 1.0)  # when to search the task list, in parts of submit.search_for


@dataclass(frozen=True, slots=True)
class Found:
    """Exactly one unknown task of the model: the job's."""

    task_id: str


@dataclass(frozen=True, slots=True)
class Again:
    """Nothing yet: search again at `due` (monotonic)."""

    due: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Several candidates, or none after the last search: the job fails with `message`."""

    message: str


Verdict = Found | Again | GiveUp


def window_at_send(clock: ServerClock, now: float, request_time: float) -> Window | None:
    """Where a lost answer's task will be looked for, on the API's clock (known from
    earlier answers' `Date`); None: the first search finds it out and records it."""
    offset = clock.offset()
    return search_window(now, offset, request_time) if offset else None


def begin(job: Job, now: float, restarted: bool, search_for: float) -> None:
    """The job is uncertain: its file is not needed again, and the first search is due
    at once after a restart, else a little later (the task list may lag the create)."""
    job.step, job.spec, job.lookups = "looking", None, 0
    job.searching_since = now
    job.due = now + (0.0 if restarted else 0.1 * search_for)
    jobjournal.uncertain(job, restarted)


def lookup(job: Job, now: Now, request_time: float) -> LookupJob:
    """The search to send: over the window the journal recorded (a restart, a retry),
    or one placed on the API's clock as the worker knows it when it asks."""
    block = jobjournal.block(job)
    started = read_time(block.submit_started, now.wall) or now.wall
    recorded = window_from_record(block.search_window, now.wall)
    plan = functools.partial(search_window, started, request_time=request_time)
    return LookupJob(job.name, str(block.model), recorded, plan)


def judge(
    name: str,
    block: JobRecord,
    rows: list[dict[str, Any]],
    ours: frozenset[str] | set[str],
    searched: int,
    searching_since: float,
    search_for: float,
    now: Now,
) -> Verdict:
    """What one search found; `searched`: searches done before this one."""
    model, started = block.model, block.submit_started
    when = _window_text(block.search_window, started, now.wall)
    found = [
        r["task_id"]
        for r in rows
        if r["task_id"] not in ours and r.get("model_name", model) == model
    ]
    if len(found) == 1:
        return Found(found[0])
    if len(found) > 1:
        return GiveUp(
            f"the create sent at {started} got no answer, and {len(found)} unknown "
            f"{model} tasks were made {when} ({', '.join(found[:5])}); one of them "
            f"may be this job's. Check them in the console and write the right id "
            f"into {name}.task in the inbox; `wansync retry {name} --force` "
            f"creates a new task (paid again if one of these is its)"
        )
    if searched + 1 < len(SEARCHES):
        return Again(searching_since + SEARCHES[searched + 1] * search_for)
    return GiveUp(
        f"the create sent at {started} got no answer, and no {model} task made "
        f"{when} is in the task list, though one may still have been made. Check "
        f"the console's task list: a task of yours there goes into {name}.task "
        f"in the inbox (`wansync add ID --name {name}`). `wansync retry "
        f"{name}` searches the same window again and takes the task if it is "
        f"there; only `wansync retry {name} --force` creates a new one"
    )


def _window_text(record: tuple[str, str] | None, started: str | None, now: float) -> str:
    """The searched window as the console shows times (API time), for a failure message."""
    window = window_from_record(record, now)
    if window is None:
        return f"around {started}"
    return f"between {api_time(window[0])} and {api_time(window[1])} (API time)"
