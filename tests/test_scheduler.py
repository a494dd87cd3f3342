"""Scheduler pacing with injected time: interval, sliding-window rate, fairness, pauses."""

from __future__ import annotations

import itertools
from collections import defaultdict

from wansync.scheduler import Scheduler


def drive(sched: Scheduler, seconds: float, step: float = 0.001, interval: float = 0.0):
    """Run a fake clock; every taken task is re-added `interval` after it started."""
    starts: dict[str, list[float]] = defaultdict(list)
    now = 0.0
    while now < seconds:
        while (key := sched.take(now)) is not None:
            starts[key].append(now)
            sched.add(key, now + interval)
        now += step
    return starts


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_one_task_never_polled_faster_than_interval():
    sched = Scheduler(interval=15, max_per_second=10)
    sched.add("a", 0)
    starts = drive(sched, 100, step=0.01)["a"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 7 and min(gaps) >= 15


def test_rate_cap_holds_in_every_sliding_window_and_is_used():
    """2,000 tasks due at once at 50/s: never over 50 in any 1 s window, and ≥ 95% used."""
    sched = Scheduler(interval=0.1, max_per_second=50)
    for i in range(2000):
        sched.add(f"t{i}", 0)
    starts = drive(sched, 20, step=0.001, interval=0.1)
    every = [t for ts in starts.values() for t in ts]
    assert max_in_any_window(every) <= 50
    assert len(every) >= 0.95 * 50 * 20


def test_no_starvation_when_tasks_outnumber_the_rate():
    """N tasks over rate r: each is polled at least every ~N/r seconds (round-robin order)."""
    n, rate = 300, 10
    sched = Scheduler(interval=1, max_per_second=rate)
    for i in range(n):
        sched.add(f"t{i}", 0)
    starts = drive(sched, 120, step=0.005, interval=1)
    worst = max(b - a for ts in starts.values() for a, b in itertools.pairwise(ts))
    assert len(starts) == n
    assert worst <= 1.1 * n / rate


def test_no_burst_after_idle():
    """Polls are spread at 1/rate apart even when many become due together."""
    sched = Scheduler(interval=5, max_per_second=10)
    for i in range(10):
        sched.add(i, 0)
    times = sorted(t for ts in drive(sched, 1.0).values() for t in ts)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.1 - 1e-9


def test_pause_holds_every_task_until_it_ends():
    sched = Scheduler(interval=1, max_per_second=10)
    sched.add("a", 0)
    sched.add("b", 0)
    sched.pause_until(5.0)
    assert sched.take(4.99) is None
    assert sched.next_time(0) == 5.0
    assert sched.take(5.0) in ("a", "b")


def test_auth_probe_lets_exactly_one_poll_through():
    """After an auth pause one probe goes out; the rest wait for its answer."""
    sched = Scheduler(interval=1, max_per_second=100)
    for key in "abc":
        sched.add(key, 0)
    sched.pause_until(60, probe=True)
    assert sched.take(59) is None
    assert sched.take(60) is not None
    assert sched.take(61) is None and sched.next_time(61) is None
    sched.probe_done()
    assert sched.take(61) is not None


def test_removed_task_is_never_returned():
    sched = Scheduler(interval=1, max_per_second=10)
    sched.add("a", 0)
    sched.add("b", 0)
    sched.remove("a")
    assert sched.take(0) == "b"
    assert sched.take(10) is None
