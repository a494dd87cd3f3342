"""The poll's keep-alive transport against the simulator: reuse, and never a stale answer."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import TEST_KEY
from wansync.core.errors import MalformedResponse, RateLimited, RemoteUnavailable
from wansync.remote.api import MAX_BODY, TaskApi


def local_port(api: TaskApi) -> int:
    """The client port of the one idle connection (which connection the next poll uses)."""
    idle = api._gets._idle
    assert len(idle) == 1 and idle[0].sock is not None
    port: int = idle[0].sock.getsockname()[1]
    return port


def test_polls_in_a_row_reuse_one_connection(sim: Any) -> None:
    """Sequential polls go over one kept-alive connection, not one connection each."""
    api = TaskApi(sim.url, TEST_KEY, 5)
    try:
        assert api.fetch("keep-task-00001").status == "PENDING"
        port = local_port(api)
        for _ in range(3):
            api.fetch("keep-task-00002")
            assert local_port(api) == port
    finally:
        api.close()


def test_a_timed_out_poll_never_lends_its_late_answer_to_the_next(sim: Any) -> None:
    """After a timeout the connection is dropped: the next poll gets its own task's answer."""
    sim.add_fault("task", task_id="slow-task-00001", kind="slow", delay=0.8, count=1)
    api = TaskApi(sim.url, TEST_KEY, 0.5)
    try:
        api.fetch("other-task-00001")  # one idle connection, which the slow poll takes
        with pytest.raises(RemoteUnavailable):
            api.fetch("slow-task-00001")
        report = api.fetch("other-task-00001")  # a reused socket would read the late answer
        assert report.output["task_id"] == "other-task-00001"
    finally:
        api.close()


def test_a_reset_or_an_oversized_answer_costs_one_poll_only(sim: Any) -> None:
    """A reset and a body over the cap are transient errors; the poll after works."""
    sim.add_fault("task", task_id="bad-task-00001", kind="reset", count=1)
    body = b'{"output": {"task_status": "RUNNING", "pad": "' + b"x" * MAX_BODY + b'"}}'
    sim.add_fault("task", task_id="bad-task-00001", kind="malformed", body=body, count=1)
    api = TaskApi(sim.url, TEST_KEY, 5)
    try:
        with pytest.raises(RemoteUnavailable):
            api.fetch("bad-task-00001")
        with pytest.raises(MalformedResponse, match="larger than"):
            api.fetch("bad-task-00001")
        assert api.fetch("bad-task-00001").output["task_id"] == "bad-task-00001"
    finally:
        api.close()


def test_a_429_keeps_its_retry_after(sim: Any) -> None:
    """The status and `Retry-After` of an error answer reach the typed error."""
    sim.add_fault("task", task_id="busy-task-00001", kind="status", status=429, retry_after="7")
    api = TaskApi(sim.url, TEST_KEY, 5)
    try:
        with pytest.raises(RateLimited) as caught:
            api.fetch("busy-task-00001")
        assert caught.value.retry_after == 7.0
    finally:
        api.close()


def test_a_base_url_with_a_path_prefix_is_kept(sim: Any) -> None:
    """`api.base_url` may carry a path; a GET goes below it (here: a 404 from the server)."""
    api = TaskApi(f"{sim.url}/prefix/", TEST_KEY, 5)
    try:
        with pytest.raises(RemoteUnavailable, match="HTTP 404"):
            api.fetch("keep-task-00003")
    finally:
        api.close()
