"""Two files, one name: a producer's `.task` meets a job in flight, or replaces a tracked one.

Real daemon subprocesses against the simulator. What must hold: every paid task is
fetched exactly once, no task is created twice, and nothing is silently merged (one
task's video beside another task's file).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers import Env, drop, wait_until
from tests.test_jobs import URL_FRAME, created, drop_job


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def jobs_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50, "search_for": 1.5}, api={"timeout": 30})
    return env


def test_a_task_file_dropped_while_a_jobs_create_is_out_never_orphans_the_jobs_task(jobs_env, sim):
    """`clip.job`'s create is out (its answer held back) when a producer drops `clip.task`
    with another id: the job's task is fetched as `clip-2` (`job.name_taken`), the
    producer's as `clip`, and the job is never sent again."""
    env = jobs_env
    stall = sim.stall("create", when="after")  # the task is made; the answer waits
    drop_job(env.inbox, "clip", {"prompt": "a name clash", "media": URL_FRAME})
    daemon = env.start("run")
    assert stall.reached.wait(20), "the create to reach the simulator"
    sim.add_task("producer-task-0001")
    drop(env.inbox, "clip", "producer-task-0001")
    wait_until(
        lambda: (
            daemon.events("task.waiting", name="clip")
            or daemon.events("task.discovered", name="clip")
        ),
        10,
        "the daemon to see clip.task",
    )
    stall.released.set()  # the answer is lost: the task list search finds the task
    ended = env.wait_ended("clip", "clip-2", timeout=40)
    assert daemon.stop() == 0
    [made] = created(sim)
    assert len(sim.requests("submit")) == 1, "the job was sent once, and never again"
    theirs, ours = ended["clip"], ended["clip-2"]
    assert theirs["task_id"] == "producer-task-0001" and theirs["state"] == "succeeded"
    assert sha256(env.outbox / "clip.mp4") == sim.video_sha256("producer-task-0001")
    assert ours["task_id"] == made["task_id"] and ours["state"] == "succeeded"
    assert ours["job"]["found_by"] == "task list" and ours["name"] == "clip-2"
    assert sha256(env.outbox / "clip-2.mp4") == sim.video_sha256(made["task_id"])
    assert (env.outbox / "clip-2.job").exists() and not (env.outbox / "clip.job").exists()
    [taken] = daemon.events("job.name_taken", name="clip")
    assert taken["published_as"] == "clip-2" and "producer-task-0001" in taken["detail"]
    left = [p.name for p in env.inbox.iterdir() if not p.name.startswith(".")]
    assert left == [], "nothing is left to send again (a `.job` stays until it is fetched)"


def test_a_task_file_replaced_while_tracked_is_a_new_task(env, sim):
    """The producers' protocol (temp file, rename onto `clip.task`) while `clip` is polled with
    another id: the old task is dropped, the new id is polled and published; never the old
    task's video beside the new task's file."""
    sim.add_task("old-task-id-0001", pending_polls=10**6)
    sim.add_task("new-task-id-0001")
    drop(env.inbox, "clip", "old-task-id-0001")
    daemon = env.start()
    daemon.wait_event("task.polled", name="clip")
    drop(env.inbox, "clip", "new-task-id-0001")
    ended = env.wait_ended("clip", timeout=30)["clip"]
    old_polls = len(sim.requests("task", "old-task-id-0001"))
    assert daemon.stop() == 0
    assert ended["task_id"] == "new-task-id-0001" and ended["state"] == "succeeded"
    assert sha256(env.outbox / "clip.mp4") == sim.video_sha256("new-task-id-0001")
    assert (env.outbox / "clip.task").read_text() == "new-task-id-0001"
    [removed] = daemon.events("task.removed", name="clip")
    assert removed["task_id"] == "old-task-id-0001" and "replaced" in removed["detail"]
    assert len(sim.requests("task", "old-task-id-0001")) == old_polls, "no longer polled"


def test_a_job_dropped_while_its_name_is_tracked_is_left_alone_for_good(env, sim):
    """`clip.task` (a producer's) is polled when `clip.job` arrives: the job is left alone
    with one `job.name_taken` error; once the task has ended it is still never sent, by
    the running daemon nor after a restart (`once`), and stays in the inbox as it was."""
    env.configure(submit={"max_per_second": 50}, watch={"rescan_interval": 0.2})
    sim.add_task("producer-task-0001", pending_polls=4)
    drop(env.inbox, "clip", "producer-task-0001")
    daemon = env.start("run")
    daemon.wait_event("task.polled", name="clip")
    job = drop_job(env.inbox, "clip", {"prompt": "a name clash", "media": URL_FRAME})
    written = job.read_bytes()
    daemon.wait_event("job.name_taken", name="clip")
    env.wait_ended("clip", timeout=30)
    # A barrier on the daemon's own loop: `late` needs three polls 0.2 s apart, in which
    # time the 0.2 s rescan has looked at clip.job again, with clip.task gone.
    drop(env.inbox, "late", "late-task-0001")
    env.wait_ended("late", timeout=30)
    assert daemon.stop() == 0
    [taken] = daemon.events("job.name_taken", name="clip")
    assert taken["level"] == "error" and "rename it" in taken["detail"]
    assert not daemon.events("job.queued", name="clip")
    restarted = env.cli("once", "--timeout", "20")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert "job.name_taken" in restarted.stderr and "job.queued" not in restarted.stderr
    assert created(sim) == [], "nothing was created for the job"
    assert job.read_bytes() == written, "the job is left in the inbox as it was"
    assert sorted(p.name for p in env.outbox.glob("clip*")) == [
        "clip.mp4",
        "clip.status.json",
        "clip.task",
    ]
    job.rename(env.inbox / "clip-b.job")  # renamed, it is a job of its own
    renamed = env.cli("once", "--timeout", "30")
    assert renamed.returncode == 0, renamed.stderr[-2000:]
    [made] = created(sim)
    assert env.ended("clip-b", ".job")["task_id"] == made["task_id"]
