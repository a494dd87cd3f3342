"""Hostile video hosts and planted links (issue 11, cases 9, 10, 13, 15), end to end.

The real daemon subprocess, the simulator for the task API, and for the video either the
simulator or a tiny real HTTP server (`tests/videohost.py`) that misbehaves on purpose.
"""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.helpers import drop, wait_until
from tests.videohost import SAMPLE, VideoHost

SSRF_URL = "http://127.0.0.2:{port}\\@8.8.8.8/x.mp4"


def _no_video_published(env) -> bool:
    return not [p for p in env.outbox.iterdir() if p.name.endswith(".mp4")]


@pytest.mark.parametrize("via", ["direct", "redirect"])
def test_ssrf_backslash_url_never_reaches_the_host_the_client_would_use(env, sim, via):
    """Case 9: `http://127.0.0.2:P\\@8.8.8.8/` is refused; 127.0.0.2 gets no request."""
    with VideoHost("127.0.0.2") as inner:
        url = SSRF_URL.format(port=inner.port)
        if via == "direct":
            env.configure(download={"allowed_hosts": ["8.8.8.*"]})
            sim.add_task("ssrf-video-00001", video_url=url)
        else:
            env.configure(download={"allowed_hosts": ["127.0.0.1", "8.8.8.*"]})
            sim.add_task("ssrf-video-00001")
            sim.add_fault("video", "redirect", body=url.encode())
        drop(env.inbox, "ssrf", "ssrf-video-00001")
        daemon = env.start()
        ended = env.wait_ended("ssrf")
        assert daemon.stop() == 0
        assert inner.requests == []
    assert ended["ssrf"]["state"] == "failed"
    assert ended["ssrf"]["error"]["code"] == "DownloadRejected"
    assert _no_video_published(env)


@pytest.mark.parametrize("planted", ["symlink", "dangling symlink", "hard link"])
def test_link_planted_at_the_part_file_is_never_written_through_nor_published(
    env, sim, tmp_path, planted
):
    """Case 10: a link at `outbox/.NAME.mp4.part` is replaced; its target stays untouched."""
    victim = tmp_path / "victim.txt"
    if planted != "dangling symlink":
        victim.write_text("precious\n")
    part = env.outbox / ".clip.mp4.part"
    if planted == "hard link":
        os.link(victim, part)
    else:
        part.symlink_to(victim)
    sim.add_task("planted-link-0001")
    drop(env.inbox, "clip", "planted-link-0001")
    daemon = env.start()
    ended = env.wait_ended("clip")
    assert daemon.stop() == 0
    assert ended["clip"]["state"] == "succeeded"
    video = env.outbox / "clip.mp4"
    assert not video.is_symlink() and video.is_file()
    assert os.stat(video).st_nlink == 1
    assert hashlib.sha256(video.read_bytes()).hexdigest() == sim.video_sha256("planted-link-0001")
    if planted == "dangling symlink":
        assert not victim.exists()
    else:
        assert victim.read_text() == "precious\n"


def test_trickling_host_is_cut_after_low_speed_time_and_resumed(env, sim):
    """Case 13: under low_speed_limit for low_speed_time frees the slot; Range resumes it."""
    env.configure(
        download={"low_speed_limit": 1000, "low_speed_time": 1, "concurrency": 1},
        poll={"interval": 0.2},
    )
    with VideoHost(trickle=0.1, fast=4000) as host:
        sim.add_task("trickle-video-01", video_url=f"http://127.0.0.1:{host.port}/v.mp4")
        sim.add_task("honest-video-001")
        drop(env.inbox, "trickle", "trickle-video-01")
        drop(env.inbox, "honest", "honest-video-001")
        daemon = env.start()
        ended = env.wait_ended("trickle", "honest", timeout=30)  # never cut: ~27 min
        assert daemon.stop() == 0
        requests = list(host.requests)
    assert ended["trickle"]["state"] == "succeeded" and ended["honest"]["state"] == "succeeded"
    assert ended["trickle"]["video"]["sha256"] == hashlib.sha256(SAMPLE).hexdigest()
    assert len(requests) == 2 and requests[0]["range"] is None
    resumed_at = int(requests[1]["range"][len("bytes=") : -1])
    assert resumed_at >= 4000 and requests[1]["if_range"]
    cuts = [
        e
        for e in env.all_logs()
        if e.get("event") == "task.transient_error" and "low_speed_limit" in str(e)
    ]
    assert len(cuts) == 1


def test_content_length_100_with_the_first_100_bytes_is_not_published(env, sim):
    """Case 15: a body whose boxes do not add up to its length is DownloadRejected."""
    with VideoHost(body=SAMPLE[:100]) as host:
        sim.add_task("short-video-0001", video_url=f"http://127.0.0.1:{host.port}/v.mp4")
        drop(env.inbox, "short", "short-video-0001")
        daemon = env.start()
        ended = env.wait_ended("short")
        assert daemon.stop() == 0
        assert len(host.requests) == 1
    assert ended["short"]["state"] == "failed"
    error = ended["short"]["error"]
    assert error["code"] == "DownloadRejected" and "cut short" in error["message"]
    assert _no_video_published(env)
    wait_until(lambda: not (env.outbox / ".short.mp4.part").exists(), 5, "the .part removed")
