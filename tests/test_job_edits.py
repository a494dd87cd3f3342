"""A job's files changed by hand while wansync holds it: its `.task` removed, its `.job`
replaced. Real daemon subprocesses against the simulator, real folders.

What must hold (docs/jobs.md, "At most once"): a job whose create went out is never sent
again, and what lands beside a task's files is the job that made it.

The simulator here keeps every task PENDING until the test lets it finish
(`finish`), so a file can be changed while its task is followed.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import yaml

from tests.helpers import TEST_KEY, Env, drop, parse_log, wait_until
from tests.test_jobs import URL_FRAME, created, drop_job
from wansync.simulator import Simulator


@pytest.fixture
def sim():
    """Tasks (scripted or created) stay PENDING until `finish` lets them end."""
    with Simulator(key=TEST_KEY, pending_polls=10**9, running_polls=1) as server:
        yield server


@pytest.fixture
def jobs_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50}, watch={"rescan_interval": 0.2})
    return env


def finish(sim: Simulator, task_id: str) -> None:
    """Let the task end: SUCCEEDED after its next poll or two."""
    sim.task(task_id).pending_polls = 0


def job(prompt: str) -> dict[str, Any]:
    return {"prompt": prompt, "media": URL_FRAME}


def inbox_files(env: Env) -> list[str]:
    return sorted(p.name for p in env.inbox.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("how", ["removed", "moved away"])
def test_a_jobs_task_file_taken_away_ends_the_job_and_never_sends_it_again(jobs_env, sim, how):
    """`rt.task` (wansync's, for `rt.job`'s task) is removed or moved out of the inbox while
    the task is followed: the job ends in `failed/` as `TaskFileRemoved`, its message naming
    the task and how to follow it again; the create is never sent a second time."""
    env = jobs_env
    drop_job(env.inbox, "rt", job("remove my task file"))
    daemon = env.start("run")
    discovered = daemon.wait_event("task.discovered", name="rt")
    task_id = discovered["task_id"]
    if how == "removed":
        (env.inbox / "rt.task").unlink()
    else:
        os.rename(env.inbox / "rt.task", env.root / "elsewhere.task")
    ended = env.wait_ended("rt", timeout=15, kind=".job")["rt"]
    assert daemon.stop() == 0
    assert ended["state"] == "failed" and ended["task_id"] == task_id
    assert ended["error"]["code"] == "TaskFileRemoved"
    assert f"wansync add {task_id} --name rt" in ended["error"]["message"]
    assert (env.failed / "rt.job").exists() and not (env.failed / "rt.task").exists()
    [failed] = daemon.events("task.failed", name="rt")
    assert failed["code"] == "TaskFileRemoved" and task_id in failed["message"]
    assert inbox_files(env) == [], "nothing is left to send again"
    assert [c["task_id"] for c in created(sim)] == [task_id], "one create, never a second"
    assert len(sim.requests("submit")) == 1
    if how == "removed":  # `retry` would pay twice: refused, pointing at `add`
        refused = env.cli("retry", "rt")
        assert refused.returncode == 1, refused.stderr
        assert f"wansync add {task_id} --name rt" in refused.stderr
        assert "second, paid task" in refused.stderr and (env.failed / "rt.job").exists()
    if how == "removed":  # the message's advice fetches the task after all
        assert env.cli("add", task_id, "--name", "rt").returncode == 0
        finish(sim, task_id)
        assert env.cli("once", "--timeout", "30").returncode == 0
        fetched = env.ended("rt")
        assert fetched is not None and fetched["state"] == "succeeded"
        assert (env.outbox / "rt.mp4").exists() and len(sim.requests("submit")) == 1


def test_a_jobs_task_file_removed_while_wansync_is_stopped_is_written_again(jobs_env, sim):
    """Removed while the daemon is stopped, the `.task` cannot be told from one a crash kept
    from being written: the restart writes it again from the sidecar and fetches the task;
    one create."""
    env = jobs_env
    drop_job(env.inbox, "rs", job("removed while stopped"))
    daemon = env.start("run")
    task_id = daemon.wait_event("task.discovered", name="rs")["task_id"]
    assert daemon.stop() == 0
    (env.inbox / "rs.task").unlink()
    finish(sim, task_id)
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 0, result.stderr[-2000:]
    ended = env.ended("rs", ".job")
    assert ended is not None and ended["state"] == "succeeded" and ended["task_id"] == task_id
    assert (env.outbox / "rs.task").exists() and (env.outbox / "rs.mp4").exists()
    assert [c["task_id"] for c in created(sim)] == [task_id]


def test_a_jobs_task_file_removed_during_once_is_fetched_anyway(jobs_env, sim):
    """`once` does not watch the inbox: a `.task` removed while it runs is not noticed, the
    task is fetched and published with its `.job` and sidecar; one create."""
    env = jobs_env
    drop_job(env.inbox, "ro", job("removed during once"))
    once = env.start("once", "--timeout", "30")
    task_id = once.wait_event("task.discovered", name="ro")["task_id"]
    (env.inbox / "ro.task").unlink()
    finish(sim, task_id)
    assert once.wait(40) == 0
    ended = env.ended("ro", ".job")
    assert ended is not None and ended["state"] == "succeeded" and ended["task_id"] == task_id
    assert (env.outbox / "ro.mp4").exists() and not (env.outbox / "ro.task").exists()
    assert [c["task_id"] for c in created(sim)] == [task_id]


def test_a_job_replaced_while_queued_is_sent_as_it_now_reads(jobs_env, sim):
    """`q.job` waits for room (`max_in_progress: 1`) when a producer renames a new `q.job`
    onto it: the new file is read and queued anew (`job.replaced`); the one create carries
    the new prompt, and `outbox/q.job` is that file."""
    env = jobs_env
    env.configure(submit={"max_in_progress": 1})
    sim.add_task("holder-task-0001")
    drop(env.inbox, "holder", "holder-task-0001")  # takes the one place
    drop_job(env.inbox, "q", job("queued A"))
    daemon = env.start("run")
    daemon.wait_event("job.queued", name="q")
    daemon.wait_event("task.polled", name="holder")
    replacement = drop_job(env.inbox, "q", job("queued B"))
    written = replacement.read_bytes()
    replaced = daemon.wait_event("job.replaced", timeout=10, name="q")
    assert replaced["level"] == "warning" and replaced["file"] == "q.job"
    (env.inbox / "holder.task").unlink()  # the place frees: q goes out
    [made] = wait_until(lambda: created(sim), 15, "q's create")
    finish(sim, made["task_id"])
    ended = env.wait_ended("q", timeout=20, kind=".job")["q"]
    assert daemon.stop() == 0
    assert made["prompt"] == "queued B" and len(sim.requests("submit")) == 1
    assert ended["state"] == "succeeded" and ended["task_id"] == made["task_id"]
    assert (env.outbox / "q.job").read_bytes() == written


@pytest.mark.parametrize("when", ["while it runs", "while wansync is stopped"])
def test_a_job_replaced_after_its_create_is_set_aside_and_its_task_kept(jobs_env, sim, when):
    """`r.job` is replaced once its task exists (the daemon running, or stopped): the task
    stays the one made from the job as sent and is fetched; the new file is set aside as
    `failed/r-2.job` with a `JobReplaced` sidecar and one `job.replaced` error; it is never
    sent, and never published beside the video. wansync kept no copy of the sent file, so
    the video has no `.job` beside it."""
    env = jobs_env
    drop_job(env.inbox, "r", job("original A"))
    daemon = env.start("run")
    task_id = daemon.wait_event("task.discovered", name="r")["task_id"]
    if when == "while wansync is stopped":
        assert daemon.stop() == 0
    written = drop_job(env.inbox, "r", job("replacement B")).read_bytes()
    if when == "while it runs":
        replaced = daemon.wait_event("job.replaced", timeout=10, name="r")
        finish(sim, task_id)
        env.wait_ended("r", timeout=20)
        assert daemon.stop() == 0
    else:
        finish(sim, task_id)
        result = env.cli("once", "--timeout", "30")
        assert result.returncode == 0, result.stderr[-2000:]
        [replaced] = [e for e in parse_log(result.stderr) if e["event"] == "job.replaced"]
    assert replaced["level"] == "error" and replaced["moved_to"] == "r-2.job"
    assert replaced["task_id"] == task_id and "r.job" in replaced["detail"]
    ended = env.ended("r")
    assert ended is not None and ended["state"] == "succeeded" and ended["task_id"] == task_id
    assert sorted(p.name for p in env.outbox.glob("r*")) == ["r.mp4", "r.status.json", "r.task"]
    assert (env.failed / "r-2.job").read_bytes() == written
    aside = yaml.safe_load((env.failed / "r-2.status.json").read_text())
    assert aside["state"] == "failed" and aside["error"]["code"] == "JobReplaced"
    assert task_id in aside["error"]["message"] and aside["published_as"] == "r-2"
    assert [c["prompt"] for c in created(sim)] == ["original A"]
    assert len(sim.requests("submit")) == 1
    assert inbox_files(env) == []
