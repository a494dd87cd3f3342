"""All benchmarks in one run, each against a baseline measured in the same run.

    python -m bench            # everything, about 32 minutes on 2 cores (lag1000: 20)
    python -m bench --only latency,cpu

Prints one table: what was measured, the baseline, wansync's figure, the ratio or the
goal, and whether the goal is met. Every server is the simulator on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from bench import lagmodel, transfer
from bench.harness import (
    KEY,
    DaemonProcess,
    SimProcess,
    drop,
    percentile,
    proc_cpu,
    proc_mem,
    self_signed_cert,
    wait_for,
)
from wansync.core.listpoll import LIST_INTERVAL

ROWS: list[tuple[str, str, str, str, str]] = []  # what, baseline, wansync, goal, met


def row(what: str, baseline: str, measured: str, goal: str, met: bool | None) -> None:
    mark = "n/a" if met is None else ("yes" if met else "NO")
    ROWS.append((what, baseline, measured, goal, mark))
    print(f"  {what}: {measured} (baseline {baseline}; goal {goal}: {mark})", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


# -- 1. drop -> first poll -------------------------------------------------------------------


def bare_watchdog_latency(root: Path, n: int) -> list[float]:
    """The floor: how long a bare watchdog observer takes to report a finished file."""
    folder = root / "floor"
    folder.mkdir()
    seen: dict[str, float] = {}
    events: dict[str, threading.Event] = defaultdict(threading.Event)

    class Handler(FileSystemEventHandler):
        def _hit(self, path: str) -> None:
            name = os.path.basename(path)
            if name.endswith(".task") and not name.startswith(".") and name not in seen:
                seen[name] = time.monotonic()
                events[name].set()

        def on_closed(self, event):
            self._hit(event.src_path)

        def on_moved(self, event):
            self._hit(event.dest_path)

    observer = Observer()
    observer.schedule(Handler(), str(folder))
    observer.start()
    out = []
    try:
        for i in range(n):
            name = f"f{i:05d}"
            t0 = time.monotonic()
            drop(folder, name, f"floor-task-{i:05d}", in_place=bool(i % 2))
            events[f"{name}.task"].wait(5)
            out.append(seen[f"{name}.task"] - t0)
            time.sleep(0.02)
    finally:
        observer.stop()
        observer.join()
    return out


def bench_latency(root: Path, n: int = 240) -> None:
    floor = bare_watchdog_latency(root, n)
    sim = SimProcess()
    daemon = DaemonProcess(root / "latency", sim.url, poll={"max_per_second": 200}).start()
    try:
        wait_for(lambda: daemon.count("daemon.started"), 20, "daemon start")
        drops = {}
        for i in range(n):
            task_id = f"latency-task-{i:05d}"
            drops[task_id] = (time.monotonic(), bool(i % 2))
            drop(daemon.inbox, f"l{i:05d}", task_id, in_place=bool(i % 2))
            time.sleep(0.02)
        wait_for(lambda: len({r["task_id"] for r in sim.requests()}) >= n, 30, "first polls")
        first: dict[str, float] = {}
        for r in sim.requests():
            first.setdefault(r["task_id"], r["t"])
    finally:
        daemon.stop()
        sim.stop()
    lat = [first[t] - t0 for t, (t0, _) in drops.items()]
    for label, values in (
        ("write+rename", [first[t] - t0 for t, (t0, ip) in drops.items() if not ip]),
        ("in place", [first[t] - t0 for t, (t0, ip) in drops.items() if ip]),
    ):
        row(
            f"drop -> first poll, {label} (p50/p99, n={len(values)})",
            f"bare watchdog {ms(percentile(floor, 0.5))} / {ms(percentile(floor, 0.99))}",
            f"{ms(percentile(values, 0.5))} / {ms(percentile(values, 0.99))}",
            "p99 <= floor p99 + 50 ms",
            percentile(values, 0.99) <= percentile(floor, 0.99) + 0.05,
        )
    del lat


# -- 2. CPU per 1,000 polls ------------------------------------------------------------------

SDK_LOOP = """
import sys, time, dashscope
from dashscope import VideoSynthesis
dashscope.base_http_api_url = sys.argv[1] + "/api/v1"
VideoSynthesis.fetch("cpu-sdk-task-0001", api_key=sys.argv[2])
t = time.process_time()
for _ in range(int(sys.argv[3])):
    VideoSynthesis.fetch("cpu-sdk-task-0001", api_key=sys.argv[2])
print(time.process_time() - t)
"""

CLIENT_LOOP = """
import sys, time
from wansync.remote.api import TaskApi
api = TaskApi(sys.argv[1], sys.argv[2], 10)
api.fetch("cpu-client-task-1")
t = time.process_time()
for _ in range(int(sys.argv[3])):
    api.fetch("cpu-client-task-1")
print(time.process_time() - t)
"""


def _loop_cpu(script: str, url: str, polls: int, env: dict[str, str]) -> float | None:
    """CPU ms per poll of a fetch loop in its own process (None if it cannot run)."""
    out = subprocess.run(
        [sys.executable, "-c", script, url, KEY, str(polls)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    if out.returncode != 0:
        return None
    return float(out.stdout.split()[-1]) / polls * 1000


def _daemon_cpu(
    root: Path,
    sim: SimProcess,
    env: dict[str, str],
    n: int,
    interval: float,
    rate: float,
    seconds: float,
) -> dict[str, tuple[float, float]]:
    """The whole daemon's CPU ms per poll (sidecars, logs, scheduling included), and polls/s.

    Two windows of one run. "first": the first cycle, where every poll is a task's first
    (its task_status goes from none to PENDING: the sidecar is written at once and the
    line is logged at info). "steady": from the third cycle on, where every poll answers
    RUNNING again, as most polls of a real task do (a video takes minutes, a poll comes
    every 15 s, and a task's status changes two or three times in all).
    """
    daemon = DaemonProcess(root, sim.url, poll={"interval": interval, "max_per_second": rate})
    for i in range(n):
        drop(daemon.inbox, f"c{i:05d}", f"cpu-daemon-task-{i:05d}")
    time.sleep(1.1)
    began = time.monotonic()
    daemon.start(env)

    def measure(length: float) -> tuple[float, float]:
        t0, c0 = time.monotonic(), proc_cpu(daemon.pid)
        time.sleep(length)
        c1, t1 = proc_cpu(daemon.pid), time.monotonic()
        polls = len([r for r in sim.requests(since=t0) if r["t"] <= t1])
        return (c1 - c0) / polls * 1000, polls / (t1 - t0)

    out = {}
    try:
        wait_for(lambda: len(list(daemon.inbox.glob("*.status.json"))) == n, 60, "tracking")
        time.sleep(1)
        out["first"] = measure(min(seconds, n / rate - 4))
        # past every task's second poll (PENDING -> RUNNING), then the steady state
        polls = lambda: len(sim.requests(since=began))  # noqa: E731
        wait_for(lambda: polls() >= 2 * n + rate, 4 * interval, "two cycles", 0.5)
        out["steady"] = measure(seconds)
    finally:
        daemon.stop()
    return out


def bench_cpu(root: Path, polls: int = 2000) -> None:
    try:
        import dashscope  # noqa: F401
    except ImportError:
        print("  dashscope is not installed: pip install -r bench/requirements.txt")
        return
    cert, key = self_signed_cert(root)
    env = {"SSL_CERT_FILE": str(cert), "REQUESTS_CA_BUNDLE": str(cert)}
    for tls in (False, True):
        sim = SimProcess(tls=(cert, key) if tls else None)
        proto = "HTTPS" if tls else "plain HTTP"
        try:
            sdk = _loop_cpu(SDK_LOOP, sim.url, polls, env)
            client = _loop_cpu(CLIENT_LOOP, sim.url, polls, env)
            row(
                f"client CPU per 1,000 polls, {proto}: fetch loop vs fetch loop",
                f"SDK {sdk * 1000:.0f} ms",
                f"{client * 1000:.0f} ms ({client / sdk:.2f} x)",
                "<= 0.5 x SDK",
                client <= 0.5 * sdk,
            )
            # the whole daemon at a realistic pace: 750 tasks every 15 s = 50 polls/s
            windows = _daemon_cpu(root / f"cpu-{tls}", sim, env, 750, 15, 50, 20)
            for window, what in (
                ("steady", "RUNNING again, as most polls"),
                ("first", "first polls: each a status change"),
            ):
                per_poll, rate = windows[window]
                row(
                    f"client CPU per 1,000 polls, {proto}: whole daemon ({rate:.0f} polls/s, "
                    f"{what}; sidecars and logs included)",
                    f"SDK {sdk * 1000:.0f} ms",
                    f"{per_poll * 1000:.0f} ms ({per_poll / sdk:.2f} x)",
                    "<= 0.5 x SDK",
                    per_poll <= 0.5 * sdk,
                )
        finally:
            sim.stop()


# -- 3. saturated pacing ---------------------------------------------------------------------


def bench_pacing(root: Path, n: int = 2000, rate: float = 50, seconds: float = 95) -> None:
    sim = SimProcess()
    daemon = DaemonProcess(root / "pacing", sim.url, poll={"interval": 15, "max_per_second": rate})
    for i in range(n):
        drop(daemon.inbox, f"p{i:05d}", f"pacing-task-{i:05d}")
    time.sleep(1.1)
    daemon.start()
    try:
        wait_for(lambda: daemon.count("daemon.started"), 30, "start")
        time.sleep(seconds)
        reqs = sim.requests()
    finally:
        daemon.stop()
        sim.stop()
    times = sorted(r["t"] for r in reqs)
    start = times[0] + 5  # past the start-up
    steady = [t for t in times if start <= t <= times[-1]]
    achieved = (len(steady) - 1) / (steady[-1] - steady[0])
    worst, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        worst = max(worst, hi - lo + 1)
    per_task: dict[str, list[float]] = defaultdict(list)
    for r in reqs:
        per_task[r["task_id"]].append(r["t"])
    gaps = [b - a for ts in per_task.values() for a, b in itertools.pairwise(ts)]
    bound = 1.1 * n / rate
    row(
        f"saturated pacing, {n} tasks, cap {rate:g}/s: achieved rate",
        f"cap {rate:g}/s",
        f"{achieved:.2f}/s ({achieved / rate:.3f} x)",
        ">= 0.95 x cap",
        achieved >= 0.95 * rate,
    )
    row(
        "saturated pacing: most polls in any 1 s window",
        f"cap {rate:g}",
        str(worst),
        "<= cap",
        worst <= rate,
    )
    row(
        "saturated pacing: largest gap between two polls of one task",
        f"N/rate = {n / rate:.0f} s",
        f"{max(gaps):.1f} s",
        f"<= {bound:.0f} s",
        max(gaps) <= bound,
    )


# -- 4. headroom -----------------------------------------------------------------------------


def bench_headroom(root: Path, n: int = 3000, seconds: float = 10) -> None:
    sim = SimProcess()
    daemon = DaemonProcess(
        root / "headroom",
        sim.url,
        poll={"interval": 1, "max_per_second": 100000},
        log={"level": "warning"},
    )
    for i in range(n):
        drop(daemon.inbox, f"h{i:05d}", f"headroom-task-{i:05d}")
    time.sleep(1.1)
    daemon.start()
    try:
        wait_for(lambda: len(sim.requests()) >= n, 60, "the first round")
        t0 = time.monotonic()
        time.sleep(seconds)
        got = len(sim.requests(since=t0))
        cpu = proc_cpu(daemon.pid)
    finally:
        daemon.stop()
        sim.stop()
    rate = got / seconds
    row(
        "headroom: polls/s with the cap lifted (2 cores, simulator included)",
        "DashScope limit ~20/s",
        f"{rate:.0f}/s ({rate / 20:.0f} x)",
        ">= 10 x (200/s)",
        rate >= 200,
    )
    del cpu


# -- 5. completion lag -----------------------------------------------------------------------

LISTED_MODEL = "wan2.7-i2v"  # the simulator's task list shows only tasks that have a model


def realistic_tasks(n: int, scale: float, prefix: str, arrive_over: float) -> list[dict]:
    """A pipeline's stream of tasks: arrivals spread over `arrive_over` seconds, each
    queueing 1-5 min and generating 2-6 min (DashScope-like), all scaled down by `scale`."""
    import random

    rng = random.Random(42)
    return [
        {
            "task_id": f"{prefix}-{i:05d}",
            "at": i * arrive_over / n,
            "queue_seconds": rng.uniform(60, 300) / scale,
            "run_seconds": rng.uniform(120, 360) / scale,
            "model": LISTED_MODEL,
        }
        for i in range(n)
    ]


def lags(sim: SimProcess) -> list[float]:
    ends = {
        t["task_id"]: t["created"] + (t["queue_seconds"] or 0) + t["run_seconds"]
        for t in sim.tasks()
        if t.get("run_seconds")
    }
    seen: dict[str, float] = {}
    for r in sim.requests():
        if r.get("task_status") == "SUCCEEDED":
            seen.setdefault(r["task_id"], r["wall"])
    return [seen[t] - end for t, end in ends.items() if t in seen]


def feed(sim: SimProcess, specs: list[dict], submit) -> None:
    """Submit each task at its arrival time: to the simulator, then to the poller."""
    began = time.monotonic()
    for spec in specs:
        time.sleep(max(0.0, began + spec["at"] - time.monotonic()))
        sim.add_tasks([{k: v for k, v in spec.items() if k != "at"}])
        submit(spec["task_id"])


def round_robin(
    sim: SimProcess, specs: list[dict], rate: float, interval: float, deadline: float
) -> None:
    """The baseline: one polling loop over all unfinished tasks in turn, same rate and
    interval, new tasks joining the end of the rotation. Requests start at most `rate`
    a second (one every 1/rate s, whatever a request takes) and a task's at most every
    `interval`."""
    import requests

    session = requests.Session()
    pending: list[str] = []
    feeder = threading.Thread(target=feed, args=(sim, specs, pending.append), daemon=True)
    feeder.start()
    last: dict[str, float] = {}
    done, slot = 0, time.monotonic()
    while done < len(specs) and time.monotonic() < deadline:
        if not pending:
            time.sleep(0.01)
            continue
        for task_id in list(pending):
            slot = max(slot + 1.0 / rate, last.get(task_id, 0) + interval)
            time.sleep(max(0.0, slot - time.monotonic()))
            slot = last[task_id] = time.monotonic()
            r = session.get(
                f"{sim.url}/api/v1/tasks/{task_id}",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=10,
            )
            if r.json()["output"]["task_status"] == "SUCCEEDED":
                pending.remove(task_id)
                done += 1


@dataclass(frozen=True)
class LagScenario:
    """Tasks arriving steadily, in scaled time (`scale`: time / scale, so the rate is
    scale x the account's to keep N / rate); every daemon setting as the config says."""

    name: str
    n: int
    rate: float
    interval: float
    scale: float
    arrive_over: float

    @property
    def list_interval(self) -> float:
        return LIST_INTERVAL / self.scale  # `poll.list_interval`'s default, scaled


@dataclass(frozen=True)
class LagSide:
    """One poller on the scenario: each task's lag, requests per task (task list pages
    included), and the requests per second it made while tasks were in flight."""

    lags: list[float]
    requests: float
    rate: float

    @property
    def mean(self) -> float:
        return statistics.mean(self.lags)

    @property
    def p99(self) -> float:
        return percentile(self.lags, 0.99)


SIDES = ("round-robin", "list", "today", "failing")  # failing: every list request 500


def lag_side(root: Path, sc: LagScenario, who: str) -> LagSide:
    """Run one poller over the scenario against its own simulator."""
    mean_duration = (180 + 240) / sc.scale
    sim = SimProcess()
    specs = realistic_tasks(sc.n, sc.scale, f"lag-{who[:2]}", sc.arrive_over)
    deadline = time.monotonic() + sc.arrive_over + 3 * mean_duration + 60
    try:
        if who == "round-robin":
            round_robin(sim, specs, sc.rate, sc.interval, deadline)
        else:
            if who == "failing":
                faults = {"target": "list", "kind": "status", "status": 500, "count": 10**6}
                sim._call("/_sim/faults", faults)
            listing = None if who == "today" else sc.list_interval
            poll = {"interval": sc.interval, "max_per_second": sc.rate, "list_interval": listing}
            daemon = DaemonProcess(
                root / f"lag-{sc.n}-{who}",
                sim.url,
                download={"concurrency": 8},
                poll=poll,
            )
            daemon.start()
            wait_for(lambda d=daemon: d.count("daemon.started"), 20, "start")
            counter = iter(range(sc.n))
            feed(sim, specs, lambda t, d=daemon, c=counter: drop(d.inbox, f"g{next(c):05d}", t))
            wait_for(
                lambda d=daemon: len(list(d.outbox.glob("*.mp4"))) == sc.n,
                max(1.0, deadline - time.monotonic()),
                "all videos",
                step=0.5,
            )
            daemon.stop()
        made = sorted(r["t"] for kind in ("task", "list") for r in sim.requests(kind))
        side = LagSide(lags(sim), len(made) / sc.n, len(made) / max(1e-9, made[-1] - made[0]))
    finally:
        sim.stop()
    print(
        f"  {who}: lag {side.mean:.2f} s, p99 {side.p99:.2f} s, {side.requests:.2f} requests"
        f" per task, {side.rate:.1f} requests/s",
        flush=True,
    )
    return side


def lag_rows(sc: LagScenario, sides: dict[str, LagSide]) -> None:
    """The list against round-robin; today's scheduler; the list failing against today."""
    rr, listed, today, failing = (sides[who] for who in SIDES)

    def cells(side: LagSide, base: LagSide) -> str:
        lag, req = side.mean / base.mean, side.requests / base.requests
        return (
            f"{side.mean:.2f} s ({lag:.2f} x), {side.p99:.2f} s, {side.requests:.2f} ({req:.2f} x)"
        )

    baseline = f"round-robin {rr.mean:.2f} s, {rr.p99:.2f} s, {rr.requests:.2f}"
    lag, req = listed.mean / rr.mean, listed.requests / rr.requests
    row(
        f"completion lag, {sc.name}, list every {sc.list_interval:g} s: mean lag, p99,"
        " requests per task",
        baseline,
        cells(listed, rr),
        "lag <= 0.2 x, requests <= 0.5 x",
        lag <= 0.2 and req <= 0.5,
    )
    row("  the same, the list off (today's scheduler)", baseline, cells(today, rr), "-", None)
    f_lag, f_req = failing.mean / today.mean, failing.requests / today.requests
    row(
        "  the same, every list request answering 500 (x today's scheduler; x round-robin:"
        f" lag {failing.mean / rr.mean:.2f}, requests {failing.requests / rr.requests:.2f})",
        f"today's {today.mean:.2f} s, {today.p99:.2f} s, {today.requests:.2f}",
        cells(failing, today),
        "no worse than today (<= 1.05 x)",
        f_lag <= 1.05 and f_req <= 1.05,
    )


def bench_completion_lag(root: Path, rate: float = 10, scale: float = 20) -> None:
    """Tasks arrive steadily; with 5x more in flight than the rate can poll every interval,
    how long after a task finishes does the poller notice, and at what cost in requests?"""
    interval = 15 / scale
    mean_duration = (180 + 240) / scale
    in_flight = 5 * rate * interval  # five times what the rate covers at this interval
    arrive_over = 2 * mean_duration
    n = int(in_flight * arrive_over / mean_duration)
    sc = LagScenario(
        f"{n} tasks arriving steadily, ~{in_flight:.0f} in flight, {rate:g}/s, interval"
        f" {interval:g} s (time /{scale:g})",
        n,
        rate,
        interval,
        scale,
        arrive_over,
    )
    lag_rows(sc, {who: lag_side(root, sc, who) for who in SIDES})


def bench_lag_1000(root: Path, scale: float = 5) -> None:
    """1,000 tasks in flight at the account's 20/s: 2,000 arriving over 14 min, each
    queueing 1-5 min and running 2-6 min, `poll.interval` 15 s (bench.lagmodel's second
    scenario), in time / `scale`, so at scale x 20 requests/s."""
    sc = LagScenario(
        f"1,000 in flight: 2000 tasks over 14 min, 20/s, interval 15 s (time /{scale:g},"
        f" so {20 * scale:g}/s and interval {15 / scale:g} s)",
        2000,
        20 * scale,
        15 / scale,
        scale,
        840 / scale,
    )
    lag_rows(sc, {who: lag_side(root, sc, who) for who in SIDES})


# -- 6. download: bench/transfer.py -------------------------------------------------------------


# -- 7 + 8. many tracked tasks ---------------------------------------------------------------


def tracked(root: Path, n: int) -> dict[str, float]:
    sim = SimProcess()
    daemon = DaemonProcess(
        root / f"tracked-{n}",
        sim.url,
        poll={"interval": 3600, "max_per_second": 3000},
        log={"level": "warning"},
    )
    for i in range(n):
        (daemon.inbox / f"t{i:06d}.task").write_text(f"tracked-task-{i:06d}\n")
    time.sleep(1.1)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / f"notify-{n}.sock"))
    notify.settimeout(300)
    try:
        daemon.start({"NOTIFY_SOCKET": str(root / f"notify-{n}.sock")})
        while b"READY=1" not in notify.recv(4096):  # sent once every file is tracked
            pass
        startup = time.monotonic() - daemon.started_at
        wait_for(lambda: len(os.listdir(daemon.inbox)) >= 2 * n + 2, 120, "all sidecars", step=0.2)
        sidecars = time.monotonic() - daemon.started_at
        # "all waiting": a 429 with Retry-After holds every poll (one request, any N)
        sim._call(
            "/_sim/faults",
            {"target": "task", "kind": "status", "status": 429, "retry_after": "3600", "count": 1},
        )
        wait_for(lambda: sim.requests(), 30, "the held poll", step=0.2)
        time.sleep(3)
        c0, t0 = proc_cpu(daemon.pid), time.monotonic()
        time.sleep(10)
        idle = (proc_cpu(daemon.pid) - c0) / (time.monotonic() - t0)
        rss = proc_mem(daemon.pid)["VmRSS"] / 2**20
    finally:
        daemon.stop()
        sim.stop()
        notify.close()
    return {"startup": startup, "idle": idle, "rss": rss, "sidecars": sidecars}


def bench_tracked(root: Path, sizes: tuple[int, ...] = (1000, 10000, 50000)) -> None:
    results = {n: tracked(root, n) for n in sizes}
    if 10000 in results:
        r = results[10000]
        row(
            "10,000 tracked tasks: daemon RSS",
            "-",
            f"{r['rss']:.0f} MB",
            "<= 60 MB",
            r["rss"] <= 60,
        )
        row(
            "10,000 tracked tasks: start-up to all tracked (READY=1)",
            "-",
            f"{r['startup']:.2f} s (all sidecars written: {r['sidecars']:.1f} s)",
            "<= 3 s",
            r["startup"] <= 3,
        )
        row(
            "10,000 tracked tasks: idle CPU (all waiting)",
            "-",
            f"{r['idle'] * 100:.2f} %",
            "<= 1 % of a core",
            r["idle"] <= 0.01,
        )
    base = results[sizes[0]]
    for n, r in results.items():
        k = n / sizes[0]
        row(
            f"growth, {n:,} tasks: RSS / start-up / idle CPU",
            f"{sizes[0]:,} tasks x {k:g}",
            f"{r['rss']:.0f} MB / {r['startup']:.2f} s / {r['idle'] * 100:.2f} %",
            "no worse than linear",
            r["rss"] <= base["rss"] * k * 1.1
            and r["startup"] <= max(base["startup"], 0.5) * k
            and r["idle"] <= max(base["idle"], 0.002) * k,
        )


BENCHES = {
    "latency": bench_latency,
    "cpu": bench_cpu,
    "pacing": bench_pacing,
    "headroom": bench_headroom,
    "lag": bench_completion_lag,
    "lag1000": bench_lag_1000,
    "listmodel": lambda root: [
        row(*r) for r in lagmodel.bench_rows([list(range(42, 52)), list(range(42, 45))])
    ],
    "download": lambda root: [row(*r) for r in transfer.bench_download(root)],
    "publish": lambda root: [row(*r) for r in transfer.bench_publish(root)],
    "pictures": lambda root: [row(*r) for r in transfer.bench_pictures(root)],
    "tracked": bench_tracked,
}


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHES)}")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args()
    chosen = args.only.split(",") if args.only else list(BENCHES)
    root = Path(tempfile.mkdtemp(prefix="wansync-bench-"))
    began = time.monotonic()
    try:
        for name in chosen:
            print(f"[{name}]", flush=True)
            BENCHES[name](root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nwansync bench, {os.cpu_count()} cores, {time.monotonic() - began:.0f} s\n")
    print("| what | baseline (same run) | wansync | goal | met |")
    print("|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(ROWS, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
