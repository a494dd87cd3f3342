"""The fault suite: attack the daemon through its public interface; nothing may be lost.

Each case runs the real daemon subprocess against the simulator's fault injection and
states what must hold afterwards. The slowest are marked `slow` (see docs/development.md).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import time

import pytest

from tests.helpers import drop, wait_until
from wansync.core.times import parse_iso

SMALL_LIMIT = 2_000_000


def assert_clean(env, names):
    """Every task ended exactly once, nothing half-done is left anywhere."""
    seen = {}
    for folder in (env.outbox, env.failed):
        for path in folder.glob("*.status.json"):
            data = json.loads(path.read_text())  # every sidecar is valid JSON
            seen.setdefault(data["name"], []).append((folder.name, data))
    for name in names:
        assert len(seen.get(name, [])) == 1, (name, seen.get(name))
    leftovers = [
        p.name
        for f in (env.inbox, env.outbox, env.failed)
        for p in f.iterdir()
        if p.name.startswith(".") and p.name not in (".wansync.lock", ".wansync", ".wansync.live")
    ]
    assert leftovers == []
    assert not list((env.inbox / ".wansync").glob("*"))  # no temp file in the scratch folder
    assert sorted(p.name for p in env.inbox.iterdir() if p.name != ".wansync") in (
        [".wansync.live", ".wansync.lock"],
        [],
    )
    return {name: entries[0] for name, entries in seen.items()}


# -- crashes ------------------------------------------------------------------------------


def test_crash_point_sweep(env, sim):
    """SIGKILLs while polling, mid-download and 24 spread over the daemon's work, then a
    clean finish: every task ends exactly once."""
    env.configure(poll={"interval": 0.1}, log={"level": "info"})
    names = {}
    for i in range(4):
        names[f"small-{i}"] = f"sweep-small-000{i}"
        sim.add_task(f"sweep-small-000{i}", running_polls=2 + i)
    for i in range(3):
        names[f"big-{i}"] = f"sweep-big-00000{i}"
        sim.add_task(
            f"sweep-big-00000{i}", video_size=3_000_000, video_rate=4_000_000, running_polls=1 + i
        )
    names["bad"] = "sweep-fail-00001"
    sim.add_task("sweep-fail-00001", outcome="FAILED", running_polls=3)
    for name, task_id in names.items():
        drop(env.inbox, name, task_id)
    phases = set()

    def kill(daemon):
        daemon.kill()
        for path in env.inbox.glob("*.status.json"):
            phases.add(json.loads(path.read_text())["state"])  # valid JSON at every kill
        if list(env.outbox.glob(".*.part")):
            phases.add("downloading")

    def polling() -> bool:
        return any((env.sidecar(env.inbox, n) or {}).get("state") == "polling" for n in names)

    def mid_download() -> bool:
        """A .part with bytes in it: a download under way."""
        try:
            return any(p.stat().st_size for p in env.outbox.glob(".*.part"))
        except FileNotFoundError:  # renamed as we looked: that download just ended
            return False

    # One kill in each phase for certain, whatever the machine's load makes of the times
    # below: while a task polls, then mid-download.
    for phase, reached in (("polling", polling), ("downloading", mid_download)):
        daemon = env.start()
        wait_until(reached, 30, f"a task {phase}")
        kill(daemon)
    # Then 24 kills spread over the daemon's work: timed from when it took the inbox lock
    # (its first step), not from the spawn, which under load is mostly Python's start-up.
    for delay in [0.05 + 0.06 * i for i in range(24)]:  # 0.05 s .. 1.43 s into its work
        daemon = env.start()
        wait_until(daemon.holds_lock, 30, "the daemon to take the inbox lock")
        time.sleep(delay)
        kill(daemon)
    assert {"polling", "downloading"} <= phases
    daemon = env.start()
    env.wait_ended(*names, timeout=60)
    assert daemon.stop() == 0
    final = assert_clean(env, names)
    for name, task_id in names.items():
        where, data = final[name]
        if name == "bad":
            assert where == "failed" and data["error"]["code"] == "InternalError.Algo"
        else:
            assert where == "outbox"
            assert data["video"]["sha256"] == sim.video_sha256(task_id)
            video = env.outbox / data["video"]["path"]
            assert video.stat().st_size == data["video"]["bytes"]


@pytest.mark.parametrize("steps_done", [0, 1, 2, 3])
def test_crash_at_every_publish_step_is_finished_on_restart(env, sim, steps_done):
    """A publish cut after each of its moves is completed by the next start, same name."""
    from wansync.core.record import Output
    from wansync.files import sidecar
    from wansync.run import publish

    folders = publish.Folders(env.inbox, env.outbox, env.failed)
    (env.outbox / "clip.mp4").write_bytes(b"an older clip")  # forces the name clip-2
    drop(env.inbox, "clip", "task-publish-0001")
    part = folders.part("clip")
    # a whole MP4 (ftyp, moov: the boxes add up), as a verified download leaves it
    part.write_bytes(b"\0\0\0\x20ftypisom" + b"x" * 20 + b"\0\0\0\x50moov" + b"x" * 72)
    data = sidecar.new("clip", "task-publish-0001", {}, time.time())
    data.state = "succeeded"
    data.outputs = [Output("clip.mp4", 112, "x", "video/mp4")]
    publish.finalize(folders, data)  # step 1: the decision, durable
    moves = [
        (part, env.outbox / "clip-2.mp4"),
        (env.inbox / "clip.task", env.outbox / "clip-2.task"),
        (env.inbox / "clip.status.json", env.outbox / "clip-2.status.json"),
    ]
    for src, dst in moves[:steps_done]:
        os.rename(src, dst)
    result = env.cli("once")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in env.outbox.iterdir()) == [
        "clip-2.mp4",
        "clip-2.status.json",
        "clip-2.task",
        "clip.mp4",
    ]
    assert (env.outbox / "clip.mp4").read_bytes() == b"an older clip"
    assert not sim.requests("task")  # nothing was fetched again


# -- downloads ----------------------------------------------------------------------------


def _range_start(request) -> int:
    return int(request["range"][len("bytes=") : -1]) if request["range"] else 0


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(20_000_000, id="20MB"),
        pytest.param(300_000_000, id="300MB", marks=pytest.mark.slow),
    ],
)
def test_restart_mid_download_continues_with_range(env, sim, size):
    """kill -9 mid-download: the restart asks only for the rest, and the bytes are right."""
    sim.add_task("large-video-0001", video_size=size, video_rate=size / 4)
    drop(env.inbox, "large", "large-video-0001")
    daemon = env.start()
    part = env.outbox / ".large.mp4.part"
    wait_until(lambda: part.exists() and part.stat().st_size > size // 3, 30, "a third")
    daemon.kill()
    had = part.stat().st_size
    sim.tasks["large-video-0001"].video_rate = None
    daemon = env.start()
    ended = env.wait_ended("large", timeout=120)
    assert daemon.stop() == 0
    gets = sim.requests("video", "large-video-0001")
    assert len(gets) == 2 and _range_start(gets[1]) >= had - 256 * 1024 and gets[1]["status"] == 206
    assert ended["large"]["video"]["sha256"] == sim.video_sha256("large-video-0001")


def test_changed_etag_starts_over(env, sim):
    """The object changed between two attempts: If-Range makes the server send it whole."""
    sim.add_task("changing-video-1", video_size=4_000_000, video_rate=2_000_000)
    drop(env.inbox, "changing", "changing-video-1")
    daemon = env.start()
    part = env.outbox / ".changing.mp4.part"
    wait_until(lambda: part.exists() and part.stat().st_size > 1_000_000, 15, "a partial file")
    daemon.kill()
    sim.tasks["changing-video-1"].etag_version = 2
    sim.tasks["changing-video-1"].video_rate = None
    daemon = env.start()
    ended = env.wait_ended("changing")
    assert daemon.stop() == 0
    last = sim.requests("video", "changing-video-1")[-1]
    assert last["if_range"] and last["status"] == 200
    assert ended["changing"]["video"]["sha256"] == sim.video_sha256("changing-video-1")
    assert ended["changing"]["video"]["bytes"] == 4_000_000


def test_disk_full_keeps_the_task_and_serves_others(env, sim):
    """A file-size limit (EFBIG) stands for a full disk: transient, others go on, then done."""
    env.configure(log={"level": "info"})
    sim.add_task("too-big-for-now-1", video_size=3 * SMALL_LIMIT)
    drop(env.inbox, "big", "too-big-for-now-1")
    for i in range(2):
        drop(env.inbox, f"small{i}", f"small-video-000{i}")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (SMALL_LIMIT, resource.RLIM_INFINITY))

    daemon = env.start(preexec_fn=limit)
    env.wait_ended("small0", "small1")
    error = wait_until(lambda: (env.sidecar(env.inbox, "big") or {}).get("error"), 15, "error")
    assert error["transient"] is True and "too large" in error["message"].lower()
    assert not (env.outbox / "big.mp4").exists()
    unlimited = resource.RLIM_INFINITY
    resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (unlimited, unlimited))  # space!
    ended = env.wait_ended("big", timeout=60)
    assert daemon.stop() == 0
    assert ended["big"]["video"]["sha256"] == sim.video_sha256("too-big-for-now-1")


# -- the remote misbehaving ---------------------------------------------------------------


def test_misbehaving_task_api_never_fails_a_task(env, sim):
    """429 storms, 5xx, resets, stalls, huge and malformed 200s: all end as videos."""
    env.configure(api={"timeout": 0.5}, poll={"interval": 0.1})
    scripts = {
        # six in a row: the backoff doubles from 0.1 s to 3.2 s (docs/what-happens.md), ~6 s in all
        "storm": [
            dict(kind="status", status=429, count=4),
            dict(kind="status", status=429, retry_after="0.3", count=2),
        ],
        "errors": [dict(kind="status", status=503, count=3), dict(kind="reset", count=2)],
        "stall": [dict(kind="slow", delay=1.5, count=2)],
        "huge": [dict(kind="malformed", body=b"[" + b"1," * 1_000_000 + b"1]", count=1)],
        "types": [
            dict(kind="malformed", body=b'{"output": {"task_status": 7}}', count=1),
            dict(kind="malformed", body=b'{"output": "RUNNING"}', count=1),
            dict(kind="malformed", body=b'{"request_id": 5}', count=1),
            dict(kind="malformed", body=b"null", count=1),
        ],
    }
    for name, faults in scripts.items():
        task_id = f"{name}-task-00001"
        for fault in faults:
            sim.add_fault("task", task_id=task_id, **fault)
        drop(env.inbox, name, task_id)
    daemon = env.start()
    ended = env.wait_ended(*scripts, timeout=90)
    assert daemon.stop() == 0
    for name, data in ended.items():
        assert data["state"] == "succeeded", (name, data["error"])
    codes = {e["code"] for e in daemon.events("task.transient_error")}
    assert {"Throttling.RateQuota", "MalformedResponse", "RemoteUnavailable"} <= codes


def test_succeeded_without_video_url_keeps_polling_then_is_unsupported_output(env, sim):
    """A SUCCEEDED answer naming no file shows as transient, and the third such answer in a
    row ends the task (UnsupportedOutput), long before poll.give_up_after."""
    env.configure(poll={"give_up_after": 3600})
    sim.add_task("no-url-task-0001", with_url=False)
    drop(env.inbox, "nourl", "no-url-task-0001")
    daemon = env.start()
    error = wait_until(lambda: (env.sidecar(env.inbox, "nourl") or {}).get("error"), 10, "error")
    assert error["code"] == "MalformedResponse" and error["transient"] is True
    assert error["message"].startswith("SUCCEEDED without a file to fetch: no video_url")
    ended = env.wait_ended("nourl")
    assert daemon.stop() == 0
    assert ended["nourl"]["error"]["code"] == "UnsupportedOutput"


@pytest.mark.parametrize(
    ("url", "settings", "reason"),
    [
        ("file:///etc/passwd", {}, "scheme 'file'"),
        ("http://{host}/videos/x.mp4", {"require_https": True}, "scheme 'http'"),
        ("http://169.254.169.254/latest/meta-data", {"allowed_hosts": ["*"]}, "non-public"),
        ("http://{host}/videos/x.mp4", {"allowed_hosts": ["*"]}, "non-public"),
        ("http://localhost:{port}/videos/x.mp4", {"allowed_hosts": ["local*"]}, "non-public"),
        ("http://evil.example/videos/x.mp4", {}, "not in download.allowed_hosts"),
    ],
)
def test_video_urls_that_are_refused(env, sim, url, settings, reason):
    """Only allowed schemes and hosts are fetched; internal addresses need a literal entry."""
    env.configure(download=settings)
    url = url.format(host=f"127.0.0.1:{sim.port}", port=sim.port)
    sim.add_task("refused-url-0001", video_url=url)
    drop(env.inbox, "refused", "refused-url-0001")
    daemon = env.start()
    ended = env.wait_ended("refused")
    assert daemon.stop() == 0
    error = ended["refused"]["error"]
    assert error["code"] == "DownloadRejected" and reason in error["message"]
    assert not sim.requests("video")
    assert not list(env.outbox.iterdir())


def test_redirect_to_a_disallowed_host_is_refused(env, sim):
    """Every redirect hop is checked like the first URL."""
    sim.add_task("redirected-00001")
    sim.add_fault("video", "redirect", body=b"http://169.254.169.254/x.mp4")
    drop(env.inbox, "hop", "redirected-00001")
    daemon = env.start()
    ended = env.wait_ended("hop")
    assert daemon.stop() == 0
    assert ended["hop"]["error"]["code"] == "DownloadRejected"
    assert "169.254.169.254" in ended["hop"]["error"]["message"]


def test_announced_length_over_max_bytes_is_refused_before_reading(env, sim):
    env.configure(download={"max_bytes": 1_000_000})
    sim.add_task("too-large-video1", video_size=50_000_000, video_rate=1_000_000)
    drop(env.inbox, "large", "too-large-video1")
    daemon = env.start()
    ended = env.wait_ended("large", timeout=10)  # reading 50 MB at 1 MB/s would take 50 s
    assert daemon.stop() == 0
    assert "over download.max_bytes" in ended["large"]["error"]["message"]
    assert not list(env.outbox.iterdir())


def test_endless_body_is_cut_at_max_bytes(env, sim):
    env.configure(download={"max_bytes": SMALL_LIMIT})
    sim.add_task("endless-video-01")
    sim.add_fault("video", "endless")
    drop(env.inbox, "endless", "endless-video-01")
    daemon = env.start()
    ended = env.wait_ended("endless", timeout=20)
    assert daemon.stop() == 0
    assert ended["endless"]["error"]["code"] == "DownloadRejected"
    assert not list(env.outbox.iterdir())


# -- the inbox misbehaving ----------------------------------------------------------------


def test_five_thousand_files_at_once_are_all_picked_up(env, sim):
    """More files than one inotify burst carries comfortably: the rescan catches the rest."""
    n = 5000
    env.configure(poll={"interval": 60, "max_per_second": 20}, log={"level": "info"})
    sim.add_task("never-mind")  # keep the simulator's auto tasks cheap
    daemon = env.start()
    daemon.wait_ready()
    for i in range(n):
        drop(env.inbox, f"bulk-{i:05d}", f"bulk-task-{i:05d}")
    wait_until(
        lambda: len(list(env.inbox.glob("*.status.json"))) == n, 90, f"{n} sidecars", step=0.5
    )
    assert daemon.stop() == 0


def test_task_removed_while_tracked_stops_cleanly(env, sim):
    """Its `.task` removed: the task is forgotten and never polled again. A poll already
    out when the daemon saw the removal may still reach the simulator after it."""
    sim.add_task("removed-task-001", running_polls=10**6)
    task = drop(env.inbox, "gone", "removed-task-001")
    daemon = env.start()
    wait_until(lambda: (env.sidecar(env.inbox, "gone") or {}).get("polls"), 10, "a poll")
    task.unlink()
    event = daemon.wait_event("task.removed", 10)
    assert event["name"] == "gone" and "removed" in event["detail"]
    wait_until(lambda: not (env.inbox / "gone.status.json").exists(), 5, "sidecar cleanup")
    time.sleep(0.6)  # three poll intervals, in which it must not be polled
    assert daemon.stop() == 0
    removed = parse_iso(event["timestamp"])
    late = [r for r in sim.requests("task", "removed-task-001") if r["wall"] > removed]
    assert len(late) <= 1, "polled after its removal"  # at most the one already out
    started = [parse_iso(e["started"]) for e in daemon.events("task.polled", name="gone")]
    assert all(s < removed for s in started), "a poll started after the removal"
    assert not list(env.failed.iterdir()) and not list(env.outbox.iterdir())


def test_same_task_id_in_two_files(env, sim):
    """One video per task id: the second file fails with DuplicateTask, naming the first."""
    sim.add_task("twin-task-00001", running_polls=5)
    drop(env.inbox, "first", "twin-task-00001")
    daemon = env.start()
    daemon.wait_event("task.discovered", name="first")
    drop(env.inbox, "second", "twin-task-00001")
    ended = env.wait_ended("first", "second")
    assert daemon.stop() == 0
    assert ended["first"]["state"] == "succeeded"
    assert ended["second"]["error"]["code"] == "DuplicateTask"
    assert "first.task" in ended["second"]["error"]["message"]


def test_symlink_is_not_followed(env, sim, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret-task-0001\n")
    (env.inbox / "link.task").symlink_to(outside)
    daemon = env.start()
    ended = env.wait_ended("link")
    assert daemon.stop() == 0
    assert "symbolic link" in ended["link"]["error"]["message"]
    assert outside.read_text() == "secret-task-0001\n"
    assert (env.failed / "link.task").is_symlink()
    assert not sim.requests("task")


def test_names_with_spaces_unicode_and_255_bytes(env, sim):
    long_name = "L" * 250  # "L…L.task" is 255 bytes, the filesystem's limit
    names = {
        "clip with spaces": "space-task-0001",
        "видео-é-视频": "unicode-task-01",
        long_name: "long-name-task-1",
    }
    for name, task_id in names.items():
        tmp = env.inbox / ".tmp-name.task.tmp"  # a writer's temp name must fit too
        tmp.write_text(task_id)
        os.rename(tmp, env.inbox / f"{name}.task")
    daemon = env.start()
    wait_until(lambda: len(list(env.outbox.glob("*.mp4"))) == 3, 30, "three videos")
    assert daemon.stop() == 0
    by_name = {json.loads(p.read_text())["name"]: p for p in env.outbox.glob("*.status.json")}
    assert set(by_name) == set(names)
    long_sidecar = json.loads(by_name[long_name].read_text())
    assert len(long_sidecar["video"]["path"].encode()) <= 255
    assert (env.outbox / long_sidecar["video"]["path"]).exists()
    assert (env.outbox / "clip with spaces.mp4").exists()


def test_inbox_removed_and_recreated_while_running(env, sim):
    daemon = env.start()
    daemon.wait_ready()
    shutil.rmtree(env.inbox)
    daemon.wait_event("inbox.rewatched", 15)
    env.inbox.mkdir(exist_ok=True)
    drop(env.inbox, "after", "after-task-00001")
    env.wait_ended("after")
    assert daemon.stop() == 0
    assert (env.inbox / ".wansync.lock").exists()
    assert env.cli("once", timeout=20).returncode == 3 or daemon.proc.poll() is not None


# -- auth, secrets, shutdown --------------------------------------------------------------


@pytest.mark.slow
def test_wrong_key_pauses_then_resumes_when_the_key_file_is_fixed(env, sim, tmp_path):
    """One error line per pause (not per task), nothing fails, no SIGHUP needed (~65 s)."""
    from tests.helpers import TEST_KEY

    key_file = tmp_path / "key"
    key_file.write_text("wrong-key-000000\n")
    env.configure(api={"key_file": str(key_file)})
    for i in range(5):
        drop(env.inbox, f"t{i}", f"auth-task-0000{i}")
    daemon = env.start(key=None)
    daemon.wait_event("auth.rejected", 15)
    key_file.write_text(TEST_KEY + "\n")
    ended = env.wait_ended(*(f"t{i}" for i in range(5)), timeout=90)
    assert daemon.stop() == 0
    assert all(d["state"] == "succeeded" for d in ended.values())
    assert len(daemon.events("auth.rejected")) == 1
    assert daemon.events("auth.resumed")


def test_files_get_the_modes_the_umask_allows(env, sim):
    drop(env.inbox, "moded", "moded-task-00001")
    daemon = env.start(preexec_fn=lambda: os.umask(0o027))
    env.wait_ended("moded")
    assert daemon.stop() == 0
    for name in ("moded.mp4", "moded.status.json"):
        assert (env.outbox / name).stat().st_mode & 0o777 == 0o640, name


@pytest.mark.parametrize("moment", ["downloading", "backoff"])
def test_sigterm_at_awkward_moments_exits_0_quickly(env, sim, moment):
    sim.add_task("term-task-00001", video_size=20_000_000, video_rate=2_000_000)
    if moment == "backoff":
        sim.add_fault("task", "status", status=429, retry_after="30")
    drop(env.inbox, "term", "term-task-00001")
    daemon = env.start()
    if moment == "downloading":
        part = env.outbox / ".term.mp4.part"
        wait_until(lambda: part.exists() and part.stat().st_size > 0, 15, "a download")
    else:
        daemon.wait_event("task.transient_error", 15)
    t0 = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(10) == 0
    assert time.monotonic() - t0 < 10
    sim.tasks["term-task-00001"].video_rate = None
    sim.faults.clear()
    daemon = env.start()
    env.wait_ended("term", timeout=30)
    assert daemon.stop() == 0
    assert_clean(env, ["term"])


@pytest.mark.slow
def test_load_1000_tasks_with_10_percent_faults(env, sim, capsys):
    """1,000 tasks through the whole life cycle with ~10% of requests faulty: exactly once."""
    n = 1000
    sim.chaos = 0.1
    env.configure(
        poll={"interval": 0.5, "max_per_second": 200},
        download={"concurrency": 8},
        log={"level": "warning"},
    )
    for i in range(n):
        task_id = f"load-task-{i:05d}" if i % 50 else f"load-fail-{i:05d}"
        sim.add_task(
            task_id,
            outcome="FAILED" if "fail" in task_id else "SUCCEEDED",
            pending_polls=i % 3,
            running_polls=i % 4,
            video_size=None if i % 10 else 300_000,
        )
        drop(env.inbox, f"load-{i:05d}", task_id)
    t0 = time.monotonic()
    daemon = env.start()
    wait_until(
        lambda: len(list(env.outbox.glob("*.task"))) + len(list(env.failed.glob("*.task"))) == n,
        300,
        "every task to end",
        step=0.5,
    )
    wall = time.monotonic() - t0
    assert daemon.stop() == 0
    final = assert_clean(env, [f"load-{i:05d}" for i in range(n)])
    failed = [name for name, (where, _) in final.items() if where == "failed"]
    assert len(failed) == n // 50
    for name, (where, data) in final.items():
        if where == "outbox":
            assert data["video"]["sha256"] == sim.video_sha256(data["task_id"]), name
    faults = sum(1 for r in sim.log if r["status"] not in (200, 206))
    with capsys.disabled():
        print(
            f"\nload: {n} tasks in {wall:.1f} s, {len(sim.log)} requests "
            f"({faults} faulty = {faults / len(sim.log):.0%})"
        )
