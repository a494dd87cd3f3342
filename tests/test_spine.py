"""The daemon's spine as a real subprocess: slots are released, a reload applies everywhere."""

from __future__ import annotations

import signal

from tests.helpers import drop, wait_until


def test_a_task_removed_mid_download_frees_the_only_slot(env, sim):
    """One download slot: remove a .task mid-download; a later task still downloads."""
    env.configure(download={"concurrency": 1})
    sim.add_task("slow-video-00001", video_size=20_000_000, video_rate=400_000)  # ~50 s
    slow = drop(env.inbox, "slow", "slow-video-00001")
    daemon = env.start()
    daemon.wait_event("download.started", 15, name="slow")

    def progress() -> int:
        block = (env.sidecar(env.inbox, "slow") or {}).get("download") or {}
        return int(block.get("bytes") or 0)

    wait_until(lambda: progress() > 0, 20, "download progress in the sidecar")
    assert env.sidecar(env.inbox, "slow")["download"]["total"] == 20_000_000
    slow.unlink()
    daemon.wait_event("task.removed", 10, name="slow")
    sim.add_task("next-video-00001")
    drop(env.inbox, "next", "next-video-00001")
    ended = env.wait_ended("next", timeout=30)
    assert ended["next"]["state"] == "succeeded"
    done = ended["next"]["download"]
    assert done["bytes"] == done["total"] == ended["next"]["video"]["bytes"] and done["etag"]
    wait_until(lambda: not (env.outbox / ".slow.mp4.part").exists(), 10, "the removed .part")
    assert daemon.stop() == 0
    assert not (env.inbox / "slow.status.json").exists()


def test_sighup_changing_allowed_hosts_applies_to_redirect_hops(env, sim):
    """A reload dropping `localhost` from allowed_hosts refuses a redirect hop there too."""
    env.configure(download={"allowed_hosts": ["127.0.0.1", "localhost"]})
    other_host = f"http://localhost:{sim.port}"
    for task_id in ("hop-before-00001", "hop-after-000001"):
        task = sim.add_task(task_id)
        sim.add_fault(
            "video",
            "redirect",
            task_id=task_id,
            body=sim.video.signed_url(task, other_host).encode(),
        )
    drop(env.inbox, "before", "hop-before-00001")
    daemon = env.start()
    before = env.wait_ended("before")["before"]
    assert before["state"] == "succeeded"  # the hop to localhost was allowed then
    env.configure(download={"allowed_hosts": ["127.0.0.1"]})
    daemon.signal(signal.SIGHUP)
    daemon.wait_event("config.reloaded", 10)
    drop(env.inbox, "after", "hop-after-000001")
    after = env.wait_ended("after")["after"]
    assert daemon.stop() == 0
    assert after["state"] == "failed"
    assert after["error"]["code"] == "DownloadRejected"
    assert "localhost" in after["error"]["message"]
    assert "allowed_hosts" in after["error"]["message"]
