"""The task-list search after a lost create answer: when to look, and what a look found.

A job whose create request got no answer (or whose wansync stopped mid-create) may have
made a task. The create is never sent again; the task list is searched instead, over
the request's time window on the API's clock, at `SEARCHES` parts of
`submit.search_for`. Only one job is ever uncertain (submitter.py), so a task of the
job's model in that window that no job or task of ours knows is its own, unless
something else on the account made one there too: each such candidate is polled, and
one whose answer echoes another prompt than the job's is not taken (jobmatch.py). One
candidate left is the job's (checked again when it ends, if its answer did not echo its
prompt yet); one whose answer echoes the job's prompt is the job's among others. The
verdict here is a pure function of the rows, the ids we know, what the polled answers
echoed and the journal; submitter.py acts on it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from wansync.core import jobmatch
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
    """The job's task: the one candidate left, or the one echoing the job's prompt
    (`confirmed`; else its prompt is checked when it ends, lifecycle.py)."""

    task_id: str
    confirmed: bool = False


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


def lookup(job: Job, now: Now, request_time: float, ours: frozenset[str]) -> LookupJob:
    """The search to send: over the window the journal recorded (a restart, a retry),
    or one placed on the API's clock as the worker knows it when it asks. `ours`: the
    ids the worker need not poll (our tasks, and tasks found not to be the job's)."""
    block = jobjournal.block(job)
    started = read_time(block.submit_started, now.wall) or now.wall
    recorded = window_from_record(block.search_window, now.wall)
    plan = functools.partial(search_window, started, request_time=request_time)
    return LookupJob(job.name, str(block.model), recorded, plan, ours | job.not_ours)


def not_ours(
    block: JobRecord, rows: list[dict[str, Any]], ours: Set[str], said: Mapping[str, str | None]
) -> list[str]:
    """The unknown tasks of the model whose answers echo another prompt than the job's."""
    found = jobmatch.unknown_tasks(rows, ours, block.model)
    digest = block.prompt_sha256
    return [t for t in found if jobmatch.compare(digest, said.get(t)) == "other"]


def judge(
    name: str,
    block: JobRecord,
    rows: list[dict[str, Any]],
    ours: Set[str],
    refused: Set[str],
    said: Mapping[str, str | None],
    searched: int,
    searching_since: float,
    search_for: float,
    now: Now,
) -> Verdict:
    """What one search found; `ours`: ids of our jobs and tasks, `refused`: tasks whose
    answers echoed another prompt (`not_ours`), `searched`: searches done before this one."""
    model, started = block.model, block.submit_started
    when = _window_text(block.search_window, started, now.wall)
    found = jobmatch.unknown_tasks(rows, ours | refused, model)
    echo = [t for t in found if jobmatch.compare(block.prompt_sha256, said.get(t)) == "ours"]
    if len(echo) == 1:
        return Found(echo[0], confirmed=True)
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
    others = ""
    if refused:
        listed = ", ".join(sorted(refused)[:5])
        others = f" ({len(refused)} made then echo another prompt, so are not its: {listed})"
    return GiveUp(
        f"the create sent at {started} got no answer, and no {model} task made "
        f"{when} that may be this job's is in the task list{others}, though one may "
        f"still have been made. Check the console's task list: a task of yours there "
        f"goes into {name}.task in the inbox (`wansync add ID --name {name}`). "
        f"`wansync retry {name}` searches the same window again and takes the task if "
        f"it is there; only `wansync retry {name} --force` creates a new one"
    )


def _window_text(record: tuple[str, str] | None, started: str | None, now: float) -> str:
    """The searched window as the console shows times (API time), for a failure message."""
    window = window_from_record(record, now)
    if window is None:
        return f"around {started}"
    return f"between {api_time(window[0])} and {api_time(window[1])} (API time)"
