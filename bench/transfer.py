"""Download benchmarks: a 1 GiB video against `curl -o`, the time from the poll that
sees SUCCEEDED to the MP4 in the outbox against curl plus an fsync, and the same for a
task of four pictures against curl fetching the four one after another (plus an fsync
of each). Each returns its rows (what, baseline, wansync, goal, met) for `bench/run.py`
to print; baselines are measured in the same run, next to what they are compared with.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from bench.harness import KEY, DaemonProcess, SimProcess, drop, percentile, proc_mem, wait_for

Row = tuple[str, str, str, str, bool]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _output(sim: SimProcess, task_id: str) -> dict:
    import requests

    return requests.get(
        f"{sim.url}/api/v1/tasks/{task_id}",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ).json()["output"]


def _video_url(sim: SimProcess, task_id: str) -> str:
    return _output(sim, task_id)["video_url"]


def _curl(url: str, target: Path, fsync: bool = False) -> float:
    """Seconds for `curl -s -o` (plus an fsync of what it wrote, if asked); the file goes."""
    t0 = time.monotonic()
    subprocess.run(["curl", "-s", "-o", str(target), url], check=True)
    if fsync:
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    took = time.monotonic() - t0
    target.unlink()
    return took


def _wall(iso: str) -> float:
    from datetime import UTC, datetime

    return datetime.fromisoformat(iso.rstrip("Z")).replace(tzinfo=UTC).timestamp()


def bench_download(root: Path, size: int = 1 << 30, rounds: int = 5) -> list[Row]:
    """Rounds of curl then wansync on the same URL kind, so both see the same load."""
    rows: list[Row] = []
    sim = SimProcess()
    ids = [f"download-task-{i:04d}" for i in range(rounds)]
    sim.add_tasks(
        [{"task_id": t, "video_size": size, "pending_polls": 0, "running_polls": 0} for t in ids]
    )
    folder = root / "download"
    folder.mkdir()
    curl_times, ours_times = [], []
    try:
        daemon = DaemonProcess(folder / "w", sim.url, log={"level": "info"})
        daemon.start()
        wait_for(lambda: daemon.count("daemon.started"), 20, "start")
        time.sleep(0.5)
        before = proc_mem(daemon.pid)["VmRSS"]
        for i, task_id in enumerate(ids):
            curl_times.append(_curl(_video_url(sim, task_id), folder / "curl.mp4"))
            drop(daemon.inbox, f"big{i}", task_id)
            wait_for(lambda n=i + 1: daemon.count("download.completed") >= n, 300, "download")
            started = daemon.events("download.started")[i]["timestamp"]
            done = daemon.events("download.completed")[i]["timestamp"]
            ours_times.append(_wall(done) - _wall(started))
            wait_for(lambda n=i + 1: daemon.count("task.succeeded") >= n, 60, "publish")
            for video in daemon.outbox.glob("*.mp4"):
                video.unlink()
        peak = proc_mem(daemon.pid)["VmHWM"]
        daemon.stop()
    finally:
        sim.stop()
        shutil.rmtree(folder, ignore_errors=True)
    curl, ours = size / min(curl_times), size / min(ours_times)
    ratios = [c / o for c, o in zip(curl_times, ours_times, strict=True)]
    ratio = statistics.median(ratios)  # each round's curl and wansync ran back to back
    rows.append(
        (
            f"download of a {size >> 20} MiB video: throughput, median of {rounds} rounds "
            f"(curl then wansync each round; ratios {', '.join(f'{r:.2f}' for r in ratios)})",
            f"curl -o best {curl / 2**20:.0f} MiB/s",
            f"best {ours / 2**20:.0f} MiB/s; median ratio {ratio:.2f} x",
            ">= 0.9 x curl",
            ratio >= 0.9,
        )
    )
    growth = (peak - before) / 2**20
    rows.append(
        (
            "download: daemon peak RSS (growth during the downloads)",
            "-",
            f"{peak / 2**20:.1f} MB ({growth:+.1f} MB)",
            "<= 80 MB peak",
            peak <= 80 * 2**20,
        )
    )
    return rows


def bench_publish(root: Path, n: int = 30, size: int = 20_000_000) -> list[Row]:
    """From the poll whose answer says SUCCEEDED (the simulator's own stamp of that answer)
    to `task.succeeded` (the MP4 is in the outbox), one task at a time, against curl
    downloading the same size plus an fsync of what it wrote."""
    sim = SimProcess()
    ids = [f"publish-task-{i:04d}" for i in range(n)]
    specs = [{"task_id": t, "pending_polls": 0, "running_polls": 0} for t in [*ids, "publish-curl"]]
    sim.add_tasks([{**spec, "video_size": size} for spec in specs])
    folder = root / "publish"
    folder.mkdir()
    try:
        url = _video_url(sim, "publish-curl")
        baseline = [_curl(url, folder / "curl.mp4", fsync=True) for _ in range(n)]
        daemon = DaemonProcess(folder / "w", sim.url, log={"level": "info"})
        daemon.start()
        wait_for(lambda: daemon.count("daemon.started"), 20, "start")
        for i, task_id in enumerate(ids):
            drop(daemon.inbox, f"p{i:04d}", task_id)
            wait_for(lambda n=i + 1: daemon.count("task.succeeded") >= n, 60, "publish", step=0.01)
        ends = {e["task_id"]: _wall(e["timestamp"]) for e in daemon.events("task.succeeded")}
        daemon.stop()
        seen: dict[str, float] = {}
        for r in sim.requests():
            if r.get("task_status") == "SUCCEEDED":
                seen.setdefault(r["task_id"], r["wall"])
    finally:
        sim.stop()
        shutil.rmtree(folder, ignore_errors=True)
    lags = [ends[t] - seen[t] for t in ids]
    goal = 1.2 * percentile(baseline, 0.99) + 0.05
    return [
        (
            f"SUCCEEDED seen -> MP4 published, {size / 1e6:.0f} MB video (p50/p99, n={n})",
            f"curl + fsync {ms(percentile(baseline, 0.5))} / {ms(percentile(baseline, 0.99))}",
            f"{ms(percentile(lags, 0.5))} / {ms(percentile(lags, 0.99))}",
            f"p99 <= 1.2 x curl+fsync p99 + 50 ms ({ms(goal)})",
            percentile(lags, 0.99) <= goal,
        )
    ]


def _curl_each(urls: list[str], folder: Path) -> float:
    """Seconds for one `curl` fetching `urls` one after another (one connection, files
    `0.png` ...), plus an fsync of each file; the files go."""
    targets = [folder / f"{k}.png" for k in range(len(urls))]
    args = [
        arg for url, target in zip(urls, targets, strict=True) for arg in ("-o", str(target), url)
    ]
    t0 = time.monotonic()
    subprocess.run(["curl", "-s", *args], check=True)
    for target in targets:
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    took = time.monotonic() - t0
    for target in targets:
        target.unlink()
    return took


def bench_pictures(root: Path, n: int = 30, pictures: int = 4) -> list[Row]:
    """A picture task's four pictures, from the poll whose answer says SUCCEEDED (the
    simulator's own stamp of that answer) to `task.succeeded` (all four, the sidecar and
    the task file in the outbox), one task at a time, against one curl fetching the same
    four pictures one after another, plus an fsync of each: the row of the MP4 above."""
    sim = SimProcess()
    ids = [f"pictures-task-{i:04d}" for i in range(n)]
    shape = {"shape": "results", "pictures": pictures, "pending_polls": 0, "running_polls": 0}
    sim.add_tasks([{"task_id": t, **shape} for t in [*ids, "pictures-curl"]])
    folder = root / "pictures"
    folder.mkdir()
    try:
        urls = [r["url"] for r in _output(sim, "pictures-curl")["results"]]
        baseline = [_curl_each(urls, folder) for _ in range(n)]
        daemon = DaemonProcess(folder / "w", sim.url, log={"level": "info"})
        daemon.start()
        wait_for(lambda: daemon.count("daemon.started"), 20, "start")
        for i, task_id in enumerate(ids):
            drop(daemon.inbox, f"p{i:04d}", task_id)
            wait_for(lambda n=i + 1: daemon.count("task.succeeded") >= n, 60, "publish", step=0.01)
        done = daemon.events("task.succeeded")
        ends = {e["task_id"]: _wall(e["timestamp"]) for e in done}
        assert all(len(e["outputs"]) == pictures for e in done), "a task without its pictures"
        daemon.stop()
        seen: dict[str, float] = {}
        for r in sim.requests():
            if r.get("task_status") == "SUCCEEDED":
                seen.setdefault(r["task_id"], r["wall"])
    finally:
        sim.stop()
        shutil.rmtree(folder, ignore_errors=True)
    lags = [ends[t] - seen[t] for t in ids]
    goal = 1.2 * percentile(baseline, 0.99) + 0.05
    return [
        (
            f"SUCCEEDED seen -> {pictures} pictures published, one task (p50/p99, n={n})",
            f"curl, {pictures} files one after another, + fsync "
            f"{ms(percentile(baseline, 0.5))} / {ms(percentile(baseline, 0.99))}",
            f"{ms(percentile(lags, 0.5))} / {ms(percentile(lags, 0.99))}",
            f"p99 <= 1.2 x curl+fsync p99 + 50 ms ({ms(goal)})",
            percentile(lags, 0.99) <= goal,
        )
    ]
