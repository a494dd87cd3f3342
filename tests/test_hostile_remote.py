"""The attacker's findings of 09:30 through the real daemon: no remote value stops the loop.

Each test runs `wansync run`/`once` as a subprocess against the simulator (or a tiny
trickling API in front of it) with the hostile value among good work, and checks that
the good work finished, the daemon stayed up, and nothing leaked or was sent that must
not be. The in-process checks of the same rules are in `test_remote_values.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers import TEST_KEY, Env, drop, parse_log, searches, wait_until
from tests.trickle import TrickleApi

URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]


@pytest.fixture
def jobs_env(env: Env) -> Env:
    env.configure(submit={"max_per_second": 50, "search_for": 1.5})
    return env


def _succeeded(env: Env, name: str) -> bool:
    data = env.ended(name)
    return bool(data and data["state"] == "succeeded")


def test_expires_nan_in_a_video_url_does_not_stop_the_daemon(env, sim):
    """1: `?Expires=nan|inf|1e20|…` among good tasks: they finish, the daemon lives on."""
    hostile = {"nan": "nan", "inf": "inf", "big": "1e20", "neg": "-1e20", "long": "9" * 400}
    for name, value in hostile.items():
        sim.add_task(f"expires-{name}-0001", video_url=f"{sim.url}/videos/x.mp4?Expires={value}")
    for i in range(3):
        drop(env.inbox, f"good{i}", f"good-task-000{i}")
    daemon = env.start()
    for name in hostile:
        drop(env.inbox, f"exp-{name}", f"expires-{name}-0001")
    env.wait_ended(*(f"good{i}" for i in range(3)), *(f"exp-{n}" for n in hostile), timeout=60)
    assert all(_succeeded(env, f"good{i}") for i in range(3))
    assert daemon.proc.poll() is None, "the daemon died"
    drop(env.inbox, "later", "later-task-0001")
    wait_until(lambda: _succeeded(env, "later"), 30, "a task dropped afterwards to finish")
    assert daemon.stop() == 0
    again = env.cli("once", "--timeout", "20")
    assert again.returncode == 0, again.stderr[-2000:]
    assert not any(e.get("level") in ("critical",) for e in env.all_logs())


def test_job_file_through_a_linked_folder_or_dotdot_is_refused(jobs_env, sim, tmp_path):
    """3: `path: d/private.png` (d → outside) and `../OUTSIDE/…`: refused, nothing sent."""
    env = jobs_env
    outside = tmp_path / "OUTSIDE"
    outside.mkdir()
    (outside / "private.png").write_bytes(b"\x89PNG\r\n\x1a\nTOP-SECRET-PIXELS")
    os.symlink(outside, env.inbox / "d")
    job = "prompt: hi\nmedia:\n  - {{type: first_frame, path: '{}'}}\n"
    (env.inbox / "viadir.job").write_text(job.format("d/private.png"))
    (env.inbox / "viadotdot.job").write_text(job.format("../OUTSIDE/private.png"))
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    ended = env.wait_ended("viadir", "viadotdot", kind=".job")
    for name, why in (("viadir", "a symbolic link"), ("viadotdot", "'..' is not allowed")):
        error = ended[name]["error"]
        assert error["code"] == "InvalidJobFile" and why in error["message"], error
        assert "media[0].path" in error["message"]
    assert not sim.requests("upload") and not sim.requests("submit")
    assert (outside / "private.png").exists()


def test_remote_error_codes_and_messages_are_scrubbed_and_capped(env, sim):
    """4, 13: FAILED/400 answers echoing the key and ?Signature=, or 900 KB: clean sidecars."""
    sim.add_task(
        "echo-failed-0001",
        outcome="FAILED",
        code=f"Bad{TEST_KEY}?Signature=abc&x=1",
        message=f"key {TEST_KEY} at https://oss.example/v.mp4?Signature=zz&Expires=9",
    )
    sim.add_task("huge-failed-0001", outcome="FAILED", code="C" * 900_000, message="m" * 90_000)
    sim.add_fault("task", "status", task_id="echo-400-00001", status=400, code=f"X.{TEST_KEY}")
    for name, task_id in (("echo", "echo-failed-0001"), ("huge", "huge-failed-0001")):
        drop(env.inbox, name, task_id)
    drop(env.inbox, "e400", "echo-400-00001")
    drop(env.inbox, "good", "good-task-0001")
    result = env.cli("once", "--timeout", "30")
    assert result.returncode == 1, result.stderr[-2000:]
    ended = env.wait_ended("echo", "huge", "e400", "good")
    assert ended["good"]["state"] == "succeeded"
    for name in ("echo", "huge", "e400"):
        text = (env.failed / f"{name}.status.json").read_text()
        assert ended[name]["state"] == "failed"
        assert TEST_KEY not in text and "Signature=" not in text and "Expires=" not in text
    huge = ended["huge"]
    assert len(huge["error"]["code"]) <= 200 and len(huge["error"]["message"]) <= 2000
    assert len(huge["output"]["code"]) <= 200
    lines = parse_log(result.stderr)
    assert lines and max(len(json.dumps(e)) for e in lines) < 20_000
    assert TEST_KEY not in result.stderr and "Signature=" not in result.stderr
    # the conftest's teardown checks every file for the key too


def test_a_trickling_api_answer_does_not_hold_the_pollers(env, sim):
    """6: 4 task ids whose answers trickle a byte a second: a normal task still finishes."""
    with TrickleApi(upstream=sim.url, gap=1.0) as api:
        env.configure(api={"base_url": api.url, "timeout": 2}, poll={"max_per_second": 10})
        for i in range(4):
            drop(env.inbox, f"slow{i}", f"slowtask{i:04d}")
        daemon = env.start()
        wait_until(lambda: api.slow_requests >= 3, 20, "the slow polls to start")
        drop(env.inbox, "normal", "normal-task-0001")
        wait_until(lambda: _succeeded(env, "normal"), 60, "the normal task to finish")
        assert daemon.proc.poll() is None
        assert api.slow_requests > 4, "the slow tasks were never polled again"
        assert daemon.stop() == 0
    errors = {e.get("code") for e in env.all_logs() if e.get("event") == "task.transient_error"}
    assert "AnswerTooSlow" in errors


def test_submitting_sidecar_in_year_9999_does_not_block_other_jobs(jobs_env, sim):
    """7: a planted `submitting` sidecar dated 9999: no OverflowError; the other job is made."""
    env = jobs_env
    job = json.dumps({"prompt": "p", "media": URL_FRAME})
    (env.inbox / "stuck.job").write_text(job)
    planted = {
        "schema": 1,
        "name": "stuck",
        "task_id": None,
        "meta": {},
        "state": "submitting",
        "polls": 0,
        "first_seen": "2026-11-29T09:00:00.000Z",
        "error": None,
        "job": {
            "file": "stuck.job",
            "model": "wan2.7-i2v",
            "attempts": 1,
            "submit_started": "9999-12-31T23:59:59.000Z",
            "submitted": None,
            "found_by": None,
        },
    }
    (env.inbox / "stuck.status.json").write_text(json.dumps(planted))
    daemon = env.start()
    (env.inbox / "normal.job").write_text(job)
    wait_until(lambda: _succeeded(env, "normal"), 60, "the normal job to finish")
    assert daemon.stop() == 0
    assert not [e for e in env.all_logs() if "OverflowError" in json.dumps(e)]
    assert searches(sim), "the uncertain job was never searched for"


def test_hard_linked_task_file_is_refused_and_never_polled(env, sim, tmp_path):
    """11: `ln keyfile inbox/k.task`: InvalidTaskFile (a hard link), its content never sent."""
    secret = tmp_path / "keyfile"
    secret.write_text("sk-linkedkey0001\n")
    os.link(secret, env.inbox / "k.task")
    drop(env.inbox, "good", "good-task-0001")
    result = env.cli("once", "--timeout", "20")
    assert result.returncode == 1, result.stderr[-2000:]
    ended = env.wait_ended("k", "good")
    assert ended["good"]["state"] == "succeeded"
    assert ended["k"]["error"]["code"] == "InvalidTaskFile"
    assert "a hard link; copy the file instead" in ended["k"]["error"]["message"]
    assert not sim.requests("task", task_id="sk-linkedkey0001")
    assert "sk-linkedkey0001" not in Path(env.failed / "k.status.json").read_text()
    assert secret.read_text() == "sk-linkedkey0001\n"


def test_a_poll_answer_about_another_task_is_malformed_and_never_published(env, sim):
    """Issue 21 #3: every answer for `mixed` names another task (SUCCEEDED, with a video):
    a transient MalformedResponse each time; nothing fetched or published, still polling."""
    sim.add_task("mixed-task-0001", answers_as="other-task-0001")
    drop(env.inbox, "good", "good-task-0001")
    drop(env.inbox, "mixed", "mixed-task-0001")
    daemon = env.start()
    assert env.wait_ended("good")["good"]["state"] == "succeeded"
    wait_until(lambda: len(sim.requests("task", task_id="mixed-task-0001")) >= 3, 30, "3 polls")
    sidecar = wait_until(
        lambda: (s := env.sidecar(env.inbox, "mixed")) and s.get("error") and s, 10, "the error"
    )
    assert sidecar["state"] == "polling" and sidecar["error"]["transient"] is True
    assert sidecar["error"]["code"] == "MalformedResponse"
    assert "'other-task-0001', not 'mixed-task-0001'" in sidecar["error"]["message"]
    assert sidecar.get("output") in (None, {}), "the other task's answer was kept"
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0
    assert not sim.requests("video", task_id="mixed-task-0001")
    assert not list(env.outbox.glob("mixed*")) and not list(env.failed.glob("mixed*"))
    assert (env.inbox / "mixed.task").exists()
