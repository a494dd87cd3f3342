"""Scheduler pacing with injected time: interval, sliding-window rate, fairness, pauses."""

from __future__ import annotations

import itertools
import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from wansync.core.predictor import CompletionModel
from wansync.core.scheduler import Scheduler


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


def test_a_reached_deadline_goes_before_an_earlier_due_task():
    """A task whose deadline has come is polled before tasks that are merely due."""
    sched = Scheduler(interval=0.1, max_per_second=10)
    sched.add("early", 0.0)
    sched.add("forced", 0.5, deadline=1.0)
    assert sched.take(1.0) == "forced"
    assert sched.take(1.1) == "early"


def test_deadline_is_dropped_when_the_task_is_re_added_without_one():
    sched = Scheduler(interval=0.1, max_per_second=10)
    sched.add("a", 0.0)
    sched.add("b", 0.5, deadline=0.5)
    sched.add("b", 0.6)
    assert sched.take(1.0) == "a"


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 60),
    rate=st.integers(1, 20),
    interval=st.floats(0.05, 3.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_rate_interval_and_two_cycle_bound_hold_for_any_preference(n, rate, interval, seed):
    """Whatever a policy prefers (here: random), with the predictor's deadline every task is
    polled at least every two cycles, never faster than `interval`, never over the rate."""
    rng = random.Random(seed)
    sched = Scheduler(interval=interval, max_per_second=rate)
    model = CompletionModel()  # only its bound is used here: a random policy picks `delay`
    cycle = n / rate
    bound = 2 * max(cycle, interval)
    for i in range(n):
        sched.add(i, 0.0)
    starts: dict[int, list[float]] = defaultdict(list)
    now, horizon = 0.0, 6 * bound
    while now < horizon:
        key = sched.take(now)
        if key is None:
            now = sched.next_time(now)  # type: ignore[assignment]
            continue
        starts[key].append(now)
        delay, must = model.next_poll({}, 0.0, cycle, interval, 1 / rate)
        if must is not None:  # saturated: any preference, even past the bound
            delay = rng.uniform(0, 3 * bound)
        sched.add(key, now + delay, None if must is None else now + must)
    every = [t for ts in starts.values() for t in ts]
    assert max_in_any_window(every) <= rate
    for ts in starts.values():
        gaps = [b - a for a, b in itertools.pairwise([*ts, horizon])]
        assert min(gaps[:-1], default=interval) >= interval - 1e-9
        assert max(gaps) <= bound + 0.01  # + the rate window's 2 ms margin, once
    assert len(starts) == n


def test_an_urgent_key_starts_right_after_the_last_start_not_a_slot_later():
    """A task the list says ended goes on the list's answer (no 1 / rate wait), a task
    merely due waits for its slot, and the urgent key still keeps `interval` after its
    own last poll and any pause."""
    sched = Scheduler(interval=1.0, max_per_second=10)
    sched.add("page", 0.0)
    assert sched.take(0.0) == "page"
    sched.add("due", 0.0)
    sched.add("ended", 0.0, 0.0, urgent=True)
    assert sched.next_time(0.0) == 0.0
    assert sched.take(0.0) == "ended"
    assert sched.take(0.0) is None and sched.next_time(0.0) == 0.1
    assert sched.take(0.1) == "due"
    sched.add("ended", 0.1, 0.1, urgent=True)  # polled at 0.0: not before 1.0
    assert sched.take(0.5) is None and sched.take(1.0) == "ended"
    sched.add("ended", 2.0, urgent=True)
    sched.pause_until(3.0)
    assert sched.take(2.0) is None and sched.next_time(2.0) == 3.0


def test_an_urgent_key_added_again_plainly_waits_for_its_slot():
    sched = Scheduler(interval=1.0, max_per_second=10)
    sched.add("page", 0.0)
    assert sched.take(0.0) == "page"
    sched.add("ended", 0.0, urgent=True)
    sched.add("ended", 0.0)
    assert sched.take(0.0) is None and sched.take(0.1) == "ended"


@settings(max_examples=100, deadline=None)
@given(rate=st.integers(1, 20), urgent=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
def test_urgent_keys_never_break_the_sliding_second(rate, urgent, seed):
    """However many keys are urgent at once, among others merely due, no sliding second
    holds more than `rate` starts."""
    rng = random.Random(seed)
    sched = Scheduler(interval=0.5, max_per_second=rate)
    for i in range(40):
        sched.add(f"t{i}", rng.uniform(0, 2))
    for i in range(urgent):
        when = rng.uniform(0, 2)
        sched.add(f"u{i}", when, when, urgent=True)
    starts: list[float] = []
    now: float | None = 0.0
    while now is not None:
        while sched.take(now) is not None:
            starts.append(now)
        now = sched.next_time(now)
    assert len(starts) == 40 + urgent
    assert max_in_any_window(starts) <= rate
