"""`wansync retry` on a task DashScope itself FAILED: refused (exit 1) unless `--force`.

Polling the same id again cannot change a FAILED task, and a job sent again is a new
paid task that may fail the same way: the refusal says so and what can help.
"""

from __future__ import annotations

import json

from tests.helpers import Env, drop
from tests.test_jobs import URL_FRAME, created, drop_job
from wansync.simulator import Simulator


def test_retry_of_a_task_dashscope_failed_is_refused_unless_forced(
    env: Env, sim: Simulator
) -> None:
    """A `.task` whose task is FAILED: exit 1 saying polling cannot change it and to make a
    new task; nothing moves. `--force` moves it back (exit 0)."""
    sim.add_task("task-refused-0001", outcome="FAILED", code="DataInspectionFailed")
    drop(env.inbox, "refused", "task-refused-0001")
    assert env.cli("once").returncode == 1
    result = env.cli("retry", "refused")
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.splitlines()
    assert "task-refused-0001 as FAILED (DataInspectionFailed" in line
    assert "cannot change a FAILED task" in line and "Make a new task" in line
    assert "wansync retry refused --force" in line and result.stdout == ""
    assert (env.failed / "refused.task").exists() and not list(env.inbox.glob("refused*"))
    forced = env.cli("retry", "refused", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (env.inbox / "refused.task").exists() and "polled again" in forced.stderr


def test_retry_of_a_job_whose_task_failed_is_refused_unless_forced(
    env: Env, sim: Simulator
) -> None:
    """A job whose task DashScope FAILED: exit 1 saying a retry is a new paid task, how to
    resubmit (`--force`, after fixing the job); `--force` sends the `.job` back."""
    env.configure(submit={"max_per_second": 50})
    drop_job(env.inbox, "scene", {"prompt": "[fail] a scene", "media": URL_FRAME})
    assert env.cli("once", "--timeout", "30").returncode == 1
    assert env.sidecar(env.failed, "scene")["task_status"] == "FAILED"
    result = env.cli("retry", "scene")
    assert result.returncode == 1, result.stderr
    assert "as FAILED" in result.stderr and "new, paid task" in result.stderr
    assert f"{env.failed / 'scene.job'}" in result.stderr
    assert "`wansync retry scene --force` submits it anew" in result.stderr
    assert (env.failed / "scene.job").exists() and not list(env.inbox.glob("scene*"))
    forced = env.cli("retry", "scene", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (env.inbox / "scene.job").exists() and "submitted anew" in forced.stderr
    assert len(created(sim)) == 1  # nothing is sent by `retry` itself


def test_retry_of_a_task_that_failed_for_another_reason_is_not_refused(
    env: Env, sim: Simulator
) -> None:
    """Not DashScope's FAILED (here: UNKNOWN, `TaskNotFound`): moved back as before."""
    sim.add_task("task-unknown-001", outcome="UNKNOWN")
    drop(env.inbox, "gone", "task-unknown-001")
    assert env.cli("once").returncode == 1
    assert env.cli("retry", "gone").returncode == 0
    assert (env.inbox / "gone.task").exists()


def test_retry_never_follows_or_moves_back_a_link(env: Env, tmp_path) -> None:
    """The latest failed record's `.task` is a symbolic link (to a file outside holding an
    id): exit 2 naming the link, nothing moves, the target is untouched, `--force` too,
    and no older record is moved back in its place; a lone link without a sidecar alike."""
    outside = tmp_path / "outside.task"
    outside.write_text("task-outside-0001\n")
    error = {"code": "TaskNotFound", "message": "gone", "transient": False}
    for stem, finished in (
        ("clip-2", "2026-12-01T09:00:00.000Z"),
        ("clip", "2026-12-01T10:00:00.000Z"),
    ):
        sidecar = {
            "schema": 1,
            "name": "clip",
            "task_id": "task-clip-000001",
            "state": "failed",
            "published_as": stem,
            "finished": finished,
            "error": error,
        }
        (env.failed / f"{stem}.status.json").write_text(json.dumps(sidecar))
    drop(env.failed, "clip-2", "task-clip-000001")  # an older record, a plain file
    (env.failed / "clip.task").symlink_to(outside)  # the latest: a link
    (env.failed / "lone.task").symlink_to(outside)
    for args in (("retry", "clip"), ("retry", "clip", "--force"), ("retry", "lone")):
        result = env.cli(*args)
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.splitlines()
        link = env.failed / f"{args[1]}.task"
        assert f"{link} is a symbolic link" in line and "never follows" in line, line
        assert link.is_symlink() and result.stdout == ""
    assert not list(env.inbox.glob("clip*")) and not list(env.inbox.glob("lone*"))
    assert (env.failed / "clip-2.task").exists() and outside.read_text() == "task-outside-0001\n"
