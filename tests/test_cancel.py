"""`wansync cancel NAME_OR_TASK_ID`: the real command against the simulator.

The official SDK's `VideoSynthesis.cancel` (dashscope, `client/base_api.py`) sends
`POST {base}/api/v1/tasks/{task_id}/cancel`; the SDK is not a dependency, so the tests
check that our command sends exactly that, and that the simulator answers it.
"""

from __future__ import annotations

import pytest

from tests.helpers import TEST_KEY, drop, wait_until


def clean(result) -> str:
    """stdout + stderr, checked to hold neither the key nor a traceback."""
    text = result.stdout + result.stderr
    assert TEST_KEY not in text, "the key reached the output"
    assert "Traceback" not in text
    return text


def test_a_pending_task_canceled_by_name_ends_in_failed_as_task_canceled(env, sim):
    """Exit 0 with one line; the running daemon then files the task as TaskCanceled."""
    sim.add_task("slow-start-task-1", pending_polls=10_000)
    drop(env.inbox, "clip", "slow-start-task-1\n")
    d = env.start("run")
    wait_until(
        lambda: (env.sidecar(env.inbox, "clip") or {}).get("task_status") == "PENDING",
        20,
        "the task to be polled PENDING",
    )
    result = env.cli("cancel", "clip")
    clean(result)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert "clip (slow-start-task-1)" in result.stdout and "TaskCanceled" in result.stdout
    data = env.wait_ended("clip")["clip"]
    assert d.stop() == 0
    assert (env.failed / "clip.task").exists()
    assert data["state"] == "failed" and data["error"]["code"] == "TaskCanceled"
    [request] = sim.requests("cancel")
    assert request["method"] == "POST" and request["status"] == 200
    assert request["path"] == "/api/v1/tasks/slow-start-task-1/cancel", "the SDK's path"


def test_a_job_is_canceled_by_its_name_through_its_sidecar(env, sim):
    """A job's task id is found in its sidecar when its `.task` is not written yet."""
    sim.add_task("job-made-task-01", pending_polls=10_000)
    (env.inbox / "portrait.status.json").write_text(
        '{"schema": 1, "name": "portrait", "task_id": "job-made-task-01", "state": "polling",'
        ' "job": {"file": "portrait.job"}}'
    )
    result = env.cli("cancel", "portrait")
    clean(result)
    assert result.returncode == 0, result.stderr
    assert sim.task("job-made-task-01").canceled_at is not None


def test_a_queued_job_has_no_task_to_cancel(env, sim):
    """A job not yet submitted: exit 1, saying so, and nothing is sent."""
    (env.inbox / "later.status.json").write_text(
        '{"schema": 1, "name": "later", "task_id": null, "state": "queued", "job": {}}'
    )
    result = env.cli("cancel", "later")
    assert result.returncode == 1
    assert "later is a job with no task yet" in clean(result)
    assert not sim.requests("cancel")


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        ({"queue_seconds": 0, "run_seconds": 1000}, "RUNNING"),
        ({"queue_seconds": 0, "run_seconds": 0}, "SUCCEEDED"),
    ],
)
def test_a_task_past_pending_is_refused_with_exit_1_and_the_apis_message(env, sim, spec, status):
    """RUNNING or SUCCEEDED: exit 1, one line on stderr with the API's message."""
    sim.add_task("started-task-001", **spec)
    result = env.cli("cancel", "started-task-001")
    clean(result)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"is {status}, not PENDING" in result.stderr
    assert sim.task("started-task-001").canceled_at is None


def test_an_unknown_name_or_id(env, sim):
    """Not a name in the inbox and not an id: exit 2; an id the API does not know: exit 1."""
    bad = env.cli("cancel", "nope")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "NAME_OR_TASK_ID" in clean(bad)
    assert "nothing named 'nope'" in bad.stderr and "not a valid task id" in bad.stderr
    unknown = env.cli("cancel", "an-unknown-task-1")
    assert unknown.returncode == 1
    assert "does not exist" in clean(unknown)
    assert [r["task_id"] for r in sim.requests("cancel")] == ["an-unknown-task-1"]


def test_a_rejected_key_is_exit_1_and_never_shown(env, sim):
    """401 from the API: exit 1 with its message; neither key appears in the output."""
    result = env.cli("cancel", "some-task-00001", key="wrong-key-5ef1")
    assert result.returncode == 1
    assert "Invalid API-key" in clean(result) and "wrong-key-5ef1" not in result.stderr
    no_key = env.cli("cancel", "some-task-00001", key=None)
    assert no_key.returncode == 2 and no_key.stderr.count("\n") == 1
