"""`wansync run` as a real subprocess against the simulator on 127.0.0.1 and real folders."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

from tests.helpers import TEST_KEY, drop, wait_until
from wansync.core.times import parse_iso

OK = "clip-ok-0001"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_happy_path_several_tasks(env, sim):
    """Tasks present at start, dropped later and written in place all end as verified MP4s."""
    drop(env.inbox, "early", "task-early-0001\n")
    daemon = env.start()
    daemon.wait_ready()
    drop(env.inbox, "renamed", '{"task_id": "task-renamed-0002", "prompt": "a cat"}')
    with (env.inbox / "inplace.task").open("w") as fh:  # written in place, slowly
        fh.write("task-inpl")
        fh.flush()
        time.sleep(0.3)
        fh.write("ace-0003\n")
    ended = env.wait_ended("early", "renamed", "inplace")
    assert daemon.stop() == 0
    for name, data in ended.items():
        video = env.outbox / f"{name}.mp4"
        assert data["state"] == "succeeded" and data["error"] is None
        assert data["video"] == {
            "path": f"{name}.mp4",
            "bytes": video.stat().st_size,
            "sha256": sha256(video),
            "content_type": "video/mp4",
        }
        assert sha256(video) == sim.video_sha256(data["task_id"])
        assert data["polls"] >= 3 and data["finished"].endswith("Z")
        assert (env.outbox / f"{name}.task").exists()
    assert ended["renamed"]["meta"] == {"prompt": "a cat"}
    assert ended["inplace"]["task_id"] == "task-inplace-0003"
    assert sorted(os.listdir(env.inbox)) == [".wansync", ".wansync.live", ".wansync.lock"]
    assert os.listdir(env.inbox / ".wansync") == []  # the scratch folder holds no temp file
    assert not [p for p in os.listdir(env.outbox) if p.startswith(".")]
    events = {e["event"] for e in daemon.logs()}
    assert {"task.discovered", "task.polled", "download.completed", "task.succeeded"} <= events
    for e in daemon.logs():
        assert {"timestamp", "level", "event"} <= e.keys()


def test_terminal_outcomes_get_their_codes(env, sim):
    """FAILED (with and without a code), CANCELED, UNKNOWN and an HTML body end in failed/."""
    sim.add_task(
        "fails-with-code-1",
        outcome="FAILED",
        code="DataInspectionFailed",
        message="Input data may contain inappropriate content.",
    )
    sim.add_task("fails-without-code", outcome="FAILED", code=None, message=None)
    sim.add_task("gets-canceled-01", outcome="CANCELED")
    sim.add_task("not-a-known-task", outcome="UNKNOWN")
    sim.add_task("serves-html-0001")
    sim.add_fault("video", "html", task_id="serves-html-0001")
    sim.add_task("other-host-00001", video_url="http://example.invalid/v.mp4?Expires=1")
    names = {
        "code": "fails-with-code-1",
        "nocode": "fails-without-code",
        "cancel": "gets-canceled-01",
        "unknown": "not-a-known-task",
        "html": "serves-html-0001",
        "host": "other-host-00001",
    }
    for name, task_id in names.items():
        drop(env.inbox, name, task_id)
    daemon = env.start()
    ended = env.wait_ended(*names)
    assert daemon.stop() == 0
    codes = {n: (d["state"], d["error"]["code"], d["error"]["transient"]) for n, d in ended.items()}
    assert codes == {
        "code": ("failed", "DataInspectionFailed", False),
        "nocode": ("failed", "TaskFailed", False),
        "cancel": ("failed", "TaskCanceled", False),
        "unknown": ("failed", "TaskNotFound", False),
        "html": ("failed", "DownloadRejected", False),
        "host": ("failed", "DownloadRejected", False),
    }
    assert ended["code"]["error"]["message"] == "Input data may contain inappropriate content."
    assert "example.invalid" in ended["host"]["error"]["message"]
    assert not list(env.outbox.glob("*.mp4")) and not list(env.outbox.glob(".*.part"))
    for name in names:
        assert (env.failed / f"{name}.task").exists()


def test_bad_task_files_go_to_failed_with_a_reason(env, sim):
    daemon = env.start()
    daemon.wait_ready()
    drop(env.inbox, "empty", "")
    drop(env.inbox, "twoids", "task-aaaa-0001\ntask-bbbb-0002\n")
    drop(env.inbox, "binary", b"\x00\x01\x02\x03")
    drop(env.inbox, "badid", "no!")
    drop(env.inbox, "badjson", '{"task_id": 5}')
    ended = env.wait_ended("empty", "twoids", "binary", "badid", "badjson")
    assert daemon.stop() == 0
    for name, data in ended.items():
        assert data["state"] == "failed" and data["task_id"] is None
        assert data["error"]["code"] == "InvalidTaskFile"
        assert data["error"]["message"].startswith(f"{name}.task: ")
    assert "empty" in ended["empty"]["error"]["message"]
    assert "2 lines" in ended["twoids"]["error"]["message"]
    assert "must be a string" in ended["badjson"]["error"]["message"]


def test_ignored_files_stay_untouched(env, sim):
    """Dotfiles and other extensions in the inbox are never read or moved."""
    (env.inbox / "notes.txt").write_text("hello")
    (env.inbox / ".hidden.task").write_text("task-hidden-0001")
    drop(env.inbox, "real", "task-real-00001")
    daemon = env.start()
    env.wait_ended("real")
    assert daemon.stop() == 0
    assert (env.inbox / "notes.txt").read_text() == "hello"
    assert (env.inbox / ".hidden.task").exists()
    assert not sim.requests("task", "task-hidden-0001")


def test_name_collisions_get_a_suffix_and_nothing_is_overwritten(env, sim):
    (env.outbox / "clip.mp4").write_bytes(b"someone else's video")
    daemon = env.start()
    drop(env.inbox, "clip", "task-first-00001")
    first = env.wait_ended("clip-2")
    drop(env.inbox, "clip", "task-second-0002")
    second = env.wait_ended("clip-3")
    assert daemon.stop() == 0
    assert (env.outbox / "clip.mp4").read_bytes() == b"someone else's video"
    assert first["clip-2"]["name"] == "clip" and first["clip-2"]["video"]["path"] == "clip-2.mp4"
    assert second["clip-3"]["task_id"] == "task-second-0002"


def test_429_with_retry_after_holds_every_poll(env, sim):
    """A 429 delays all polling until Retry-After has passed; the task still succeeds.

    Polls of the other tasks may already be out when the 429 comes (the daemon cannot
    recall them): the daemon's own view tells them apart, each poll's `started` against
    the moment it handled the 429. Every poll started after that starts at least
    Retry-After after the 429's answer left the simulator."""
    sim.add_fault("task", "status", status=429, retry_after="2", count=1)
    for i in range(3):
        drop(env.inbox, f"t{i}", f"task-throttle-000{i}")
    daemon = env.start()
    ended = env.wait_ended("t0", "t1", "t2")
    assert daemon.stop() == 0
    assert all(d["state"] == "succeeded" for d in ended.values())
    [throttled] = [r for r in sim.requests("task") if r["status"] == "status"]
    answered = throttled["wall"] + (throttled["answered"] - throttled["t"])  # on the wall clock
    [warning] = daemon.events("task.transient_error", code="Throttling.RateQuota")
    assert warning["retry_in"] >= 2.0
    handled = parse_iso(warning["timestamp"])
    starts = [parse_iso(e["started"]) for e in daemon.events("task.polled")]
    later = sorted(s - answered for s in starts if s >= handled)
    assert later, "no poll started after the 429 was handled"
    assert later[0] >= 2.0 - 0.001, later  # `started` shows whole milliseconds


def test_5xx_and_resets_keep_polling_with_the_error_shown(env, sim):
    sim.add_task("flaky-task-0001", running_polls=1)
    sim.add_fault("task", "status", status=500, count=2, task_id="flaky-task-0001")
    sim.add_fault("task", "reset", count=1, task_id="flaky-task-0001")
    drop(env.inbox, "flaky", "flaky-task-0001")
    daemon = env.start()
    seen = wait_until(
        lambda: (env.sidecar(env.inbox, "flaky") or {}).get("error"),
        10,
        "a transient error in the sidecar",
    )
    assert seen["transient"] is True
    ended = env.wait_ended("flaky")
    assert daemon.stop() == 0
    assert ended["flaky"]["state"] == "succeeded" and ended["flaky"]["error"] is None


def test_truncated_download_resumes_with_range(env, sim):
    """A body cut off midway continues from where it stopped (If-Range with the ETag)."""
    sim.add_task("big-video-00001", video_size=5_000_000)
    sim.add_fault("video", "truncate", at=2_000_000, task_id="big-video-00001")
    drop(env.inbox, "big", "big-video-00001")
    daemon = env.start()
    ended = env.wait_ended("big")
    assert daemon.stop() == 0
    gets = sim.requests("video", "big-video-00001")
    assert len(gets) == 2 and gets[0]["range"] is None
    start = int(gets[1]["range"][len("bytes=") : -1])
    assert start >= 1_000_000 and gets[1]["if_range"] and gets[1]["status"] == 206
    assert ended["big"]["video"]["sha256"] == sim.video_sha256("big-video-00001")
    assert ended["big"]["video"]["bytes"] == 5_000_000


def test_sigterm_then_restart_resumes_everything(env, sim):
    """SIGTERM mid-download: exit 0 quickly; a restart finishes from the .part."""
    sim.add_task("slow-video-0001", video_size=3_000_000, video_rate=1_000_000)
    drop(env.inbox, "slow", "slow-video-0001")
    drop(env.inbox, "waiting", "task-waiting-0002")
    sim.add_task("task-waiting-0002", running_polls=1000)
    daemon = env.start()
    part = env.outbox / ".slow.mp4.part"
    wait_until(lambda: part.exists() and part.stat().st_size > 500_000, 15, "a partial download")
    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 10
    polls_before = env.sidecar(env.inbox, "waiting")["polls"]
    assert polls_before >= 1 and part.exists()
    sim.tasks["task-waiting-0002"].running_polls = 0
    daemon = env.start()
    ended = env.wait_ended("slow", "waiting")
    assert daemon.stop() == 0
    assert ended["slow"]["video"]["sha256"] == sim.video_sha256("slow-video-0001")
    assert ended["waiting"]["polls"] > polls_before  # resumed, not restarted from zero
    ranges = [r["range"] for r in sim.requests("video", "slow-video-0001")]
    assert ranges[0] is None and ranges[-1] and ranges[-1] != "bytes=0-"


def test_kill_9_mid_download_loses_and_duplicates_nothing(env, sim):
    sim.add_task("kill-video-0001", video_size=4_000_000, video_rate=2_000_000)
    drop(env.inbox, "victim", "kill-video-0001")
    daemon = env.start()
    part = env.outbox / ".victim.mp4.part"
    wait_until(lambda: part.exists() and part.stat().st_size > 1_000_000, 15, "a partial file")
    daemon.kill()
    daemon = env.start()
    ended = env.wait_ended("victim")
    assert daemon.stop() == 0
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "victim.mp4",
        "victim.status.json",
        "victim.task",
    ]
    assert ended["victim"]["video"]["sha256"] == sim.video_sha256("kill-video-0001")


def test_second_instance_exits_3(env, sim):
    daemon = env.start()
    daemon.wait_ready()
    second = env.cli("run", timeout=20)
    assert second.returncode == 3
    assert ".wansync.lock" in second.stderr and "another wansync" in second.stderr
    once = env.cli("once", timeout=20)
    assert once.returncode == 3
    assert daemon.stop() == 0


def test_auth_rejected_pauses_and_fails_nothing(env, sim):
    """A wrong key: one error line, every task shows it as transient, none fails.

    Polls of other tasks may already be out when the first 401 comes; none is started
    after it (each sidecar's `last_polled` is before the daemon handled the 401)."""
    for i in range(3):
        drop(env.inbox, f"t{i}", f"task-auth-00000{i}")
    daemon = env.start(key="wrong-key-123456")
    wait_until(
        lambda: all((env.sidecar(env.inbox, f"t{i}") or {}).get("error") for i in range(3)),
        15,
        "the auth error in every sidecar",
    )
    time.sleep(0.5)  # several poll intervals: the pause must hold them all
    assert daemon.stop() == 0
    [rejected] = daemon.events("auth.rejected")
    paused = parse_iso(rejected["timestamp"])
    polls = sim.requests("task")
    assert polls and all(r["status"] == 401 for r in polls)
    for i in range(3):
        data = env.sidecar(env.inbox, f"t{i}")
        error = data["error"]
        assert error["code"] == "InvalidApiKey" and error["transient"] is True
        assert len(sim.requests("task", f"task-auth-00000{i}")) <= 1  # none again in the pause
        if data["last_polled"] is not None:  # its poll's answer was handled
            assert parse_iso(data["last_polled"]) < paused
    assert not list(env.failed.iterdir())


def test_give_up_after_counts_from_first_seen(env, sim):
    """`poll.give_up_after` ends a task that never finishes with Timeout."""
    env.configure(poll={"give_up_after": 1.0})
    sim.add_task("never-ends-0001", running_polls=10**6)
    drop(env.inbox, "stuck", "never-ends-0001")
    daemon = env.start()
    ended = env.wait_ended("stuck")
    assert daemon.stop() == 0
    assert ended["stuck"]["error"]["code"] == "Timeout"


def test_expired_url_is_video_url_expired(env, sim):
    """Storage answers 403 and the task has no newer URL: VideoUrlExpired, no video saved."""
    sim.add_task("expired-url-0001", url_ttl=-10)
    drop(env.inbox, "old", "expired-url-0001")
    daemon = env.start()
    ended = env.wait_ended("old")
    assert daemon.stop() == 0
    assert ended["old"]["error"]["code"] == "VideoUrlExpired"
    assert not list(env.outbox.iterdir())


def test_key_never_leaks_and_urls_are_logged_without_query(env, sim):
    sim.add_fault("task", "status", status=500, count=1)
    drop(env.inbox, "a", "task-leak-00001")
    drop(env.inbox, "b", "fail-leak-00002")
    daemon = env.start()
    env.wait_ended("a", "b")
    assert daemon.stop() == 0
    text = env.every_file_text()
    assert TEST_KEY not in text
    for event in daemon.logs():
        line = json.dumps(event)
        assert "Signature=" not in line and "Expires=" not in line, line
    assert "Signature=" in (env.outbox / "a.status.json").read_text()  # only there


def test_once_exit_codes(env, sim):
    """once: 0 all succeeded, 1 any failed, 124 timed out, 2 bad config."""
    drop(env.inbox, "good", "task-once-00001")
    result = env.cli("once")
    assert result.returncode == 0, result.stderr
    assert (env.outbox / "good.mp4").exists()

    drop(env.inbox, "good2", "task-once-00002")
    drop(env.inbox, "bad", "")
    assert env.cli("once").returncode == 1
    assert (env.failed / "bad.task").exists() and (env.outbox / "good2.mp4").exists()

    sim.add_task("task-forever-0003", running_polls=10**6)
    drop(env.inbox, "slow", "task-forever-0003")
    result = env.cli("once", "--timeout", "1")
    assert result.returncode == 124
    assert (env.inbox / "slow.task").exists()

    env.configure(poll={"intervall": 3})
    result = env.cli("once")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["wansync: poll.intervall: unknown key"]


def test_sigint_stops_like_sigterm(env, sim):
    daemon = env.start()
    daemon.wait_ready()
    daemon.signal(signal.SIGINT)
    assert daemon.wait(10) == 0
    assert daemon.events("daemon.stopped")
