"""The completion-lag bench replayed in-process, on an exact clock, in a second.

    python -m bench.lagmodel            # 10 task sets (seed 42 is the bench's own)

Same tasks as `bench_completion_lag` (75 arriving over 42 s, queue U(3,15) s, run
U(6,18) s, 10 polls/s, interval 0.75 s), no HTTP: the round-robin loop of the bench, and
the daemon's real `Scheduler` and `CompletionModel` fed with the answers the simulator
would give. Tuning a policy here takes seconds; the real bench then confirms it.

Policies: `previous` (poll at the median finish, at most one cycle later: the daemon
before the hazard ordering), `wansync` (`CompletionModel.next_poll` with its deadline),
and `unbounded` (the same preference with no starvation bound: what the two-cycle rule
costs). `worst gap` is the longest time between two polls of one task, in cycles
(N / rate, N the larger of the two polls' task counts).
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from typing import Any

from wansync.core.predictor import THETA, CompletionModel
from wansync.core.scheduler import Scheduler
from wansync.remote.api import api_time

T0 = 1.8e9  # an arbitrary wall-clock origin for the API's timestamps
RATE, INTERVAL = 10.0, 0.75
Task = dict[str, Any]
Answer = dict[str, Any]
Policy = Callable[[Scheduler, CompletionModel, Answer, float, int, int], None]


def tasks(seed: int, n: int = 75, scale: float = 20, arrive_over: float = 42.0) -> list[Task]:
    """`bench.run.realistic_tasks` with a seed (42 draws the very same tasks)."""
    rng = random.Random(seed)
    return [
        {"id": i, "at": i * arrive_over / n, "q": rng.uniform(60, 300) / scale}
        | {"r": rng.uniform(120, 360) / scale}
        for i in range(n)
    ]


def answer(t: Task, now: float) -> dict[str, Any]:
    """What the simulator answers for task `t` at `now`."""
    elapsed = now - t["at"]
    status = (
        "PENDING" if elapsed < t["q"] else "RUNNING" if elapsed < t["q"] + t["r"] else "SUCCEEDED"
    )
    out = {"task_status": status, "submit_time": api_time(T0 + t["at"])}
    if status != "PENDING":
        out["scheduled_time"] = api_time(T0 + t["at"] + t["q"])
    if status == "SUCCEEDED":
        out["end_time"] = api_time(T0 + t["at"] + t["q"] + t["r"])
    return out


def mean_lag(ts: list[Task], seen: dict[int, float], lo: float = 0, hi: float = math.inf) -> float:
    """Mean lag of the tasks finishing between `lo` and `hi` seconds."""
    ends = {t["id"]: t["at"] + t["q"] + t["r"] for t in ts}
    return statistics.mean(seen[i] - end for i, end in ends.items() if lo <= end < hi)


def round_robin_steady(ts: list[Task]) -> float:
    """Round-robin's mean lag in the steady state: tasks finishing from 21 s (a mean
    duration) to 42 s (the last arrival), when about 38 are in flight."""
    return round_robin(ts, lo=21.0, hi=42.0)


def round_robin(
    ts: list[Task], request: float = 0.002, lo: float = 0, hi: float = math.inf
) -> float:
    """The bench's baseline loop: all unfinished tasks in turn, new ones join the end."""
    pending: list[int] = []
    arrivals, last, seen, now = list(ts), {}, {}, 0.0
    while len(seen) < len(ts):
        while arrivals and arrivals[0]["at"] <= now:
            pending.append(arrivals.pop(0)["id"])
        if not pending:
            now += 0.01
            continue
        for i in list(pending):
            now += max(last.get(i, -math.inf) + INTERVAL - now, 1.0 / RATE)
            last[i] = now
            if answer(ts[i], now)["task_status"] == "SUCCEEDED":
                pending.remove(i)
                seen[i] = now
            now += request
            while arrivals and arrivals[0]["at"] <= now:
                pending.append(arrivals.pop(0)["id"])
    return mean_lag(ts, seen, lo, hi)


def daemon(ts: list[Task], policy: Policy) -> tuple[float, float]:
    """The daemon's poll loop with its real scheduler; (mean lag, worst gap in cycles)."""
    sched, model = Scheduler(INTERVAL, RATE), CompletionModel()
    arrivals, seen, now = list(ts), {}, 0.0
    tracked: set[int] = set()
    polls: dict[int, list[tuple[float, int]]] = {}
    while len(seen) < len(ts):
        due = sched.next_time(now)
        now = max(
            now, min(math.inf if due is None else due, arrivals[0]["at"] if arrivals else math.inf)
        )
        if arrivals and arrivals[0]["at"] <= now:
            tracked.add(arrivals[0]["id"])
            sched.add(arrivals.pop(0)["id"], now)
            continue
        key = sched.take(now)
        if key is None:
            now += 1e-4
            continue
        assert isinstance(key, int)
        polls.setdefault(key, []).append((now, len(tracked)))
        out = answer(ts[key], now)
        model.observe(out, T0 + now, finished=out["task_status"] == "SUCCEEDED")
        if out["task_status"] == "SUCCEEDED":
            seen[key] = now
            sched.remove(key)
            tracked.discard(key)
        else:
            policy(sched, model, out, now, len(tracked), key)
    worst = max(
        (b - a) / max(max(n, m) / RATE, INTERVAL)
        for ps in polls.values()
        for (a, n), (b, m) in itertools.pairwise(ps)
    )
    return mean_lag(ts, seen), worst


def previous(
    sched: Scheduler, model: CompletionModel, out: Answer, now: float, n: int, key: int
) -> None:
    """Before the hazard ordering: the median finish, deferred by at most one cycle."""
    cycle, delay = n / RATE, INTERVAL
    done = model.likely_done_at(out)
    if cycle > INTERVAL and done is not None:
        delay = min(cycle, max(INTERVAL, done - T0 - now))
    sched.add(key, now + delay)


def wansync(
    sched: Scheduler, model: CompletionModel, out: Answer, now: float, n: int, key: int
) -> None:
    """What the daemon does now (`Daemon._defer`)."""
    delay, must = model.next_poll(out, T0 + now, n / RATE, INTERVAL, 1 / RATE)
    sched.add(key, now + delay, None if must is None else now + must)


def unbounded(
    sched: Scheduler, model: CompletionModel, out: Answer, now: float, n: int, key: int
) -> None:
    """The same preference without the starvation bound."""
    delay = INTERVAL
    done = model.finish_quantile(out, T0 + now, THETA)
    if n / RATE > INTERVAL and done is not None:
        delay = max(INTERVAL, done - T0 - now)
    sched.add(key, now + delay)


def main(seeds: range = range(42, 52)) -> None:
    policies = {"previous": previous, "wansync": wansync, "unbounded": unbounded}
    ratios: dict[str, list[float]] = {name: [] for name in policies}
    gaps: dict[str, float] = dict.fromkeys(policies, 0.0)
    for seed in seeds:
        ts = tasks(seed)
        rr = round_robin(ts)
        cells = []
        for name, policy in policies.items():
            lag, worst = daemon(ts, policy)
            ratios[name].append(lag / rr)
            gaps[name] = max(gaps[name], worst)
            cells.append(f"{name} {lag:.2f} s ({lag / rr:.2f} x)")
        print(f"seed {seed}: round-robin {rr:.2f} s | " + " | ".join(cells))
    steady = statistics.mean(round_robin_steady(tasks(seed)) for seed in seeds)
    print(f"round-robin, tasks finishing in the steady state (21-42 s): {steady:.2f} s")
    for name in policies:
        r = ratios[name]
        print(
            f"{name:10s} mean {statistics.mean(r):.2f} x round-robin (sd {statistics.stdev(r):.2f},"
            f" worst {max(r):.2f}), worst gap {gaps[name]:.2f} cycles"
        )


if __name__ == "__main__":
    main()
