"""The completion-lag bench replayed in-process, on an exact clock, in a second.

    python -m bench.lagmodel            # 10 task sets (seed 42 is the bench's own)
    python -m bench.lagmodel --list     # list-assisted polling, two scenarios (~2 min)

Same tasks as `bench_completion_lag` (75 arriving over 42 s, queue U(3,15) s, run
U(6,18) s, 10 polls/s, interval 0.75 s), no HTTP: the round-robin loop of the bench, and
the daemon's real `Scheduler` and `CompletionModel` fed with the answers the simulator
would give. Tuning a policy here takes seconds; the real bench then confirms it.

Policies: `previous` (poll at the median finish, at most one cycle later: the daemon
before the hazard ordering), `wansync` (`CompletionModel.next_poll` with its deadline),
and `unbounded` (the same preference with no starvation bound: what the two-cycle rule
costs). `worst gap` is the longest time between two polls of one task, in cycles
(N / rate, N the larger of the two polls' task counts).

`--list` runs the daemon's loop with `wansync.core.listpoll` (`ListedDaemon`): list
requests take slots of the same scheduler and rate as polls, and the list endpoint is
modelled as documented (creation-time window, newest first, pages of 100, `total`).
Scenarios: (1) the bench above, the list interval scaled with its times (/ 20); (2)
1,000 tasks in flight at 20/s, real times. Each against round-robin on the same task
sets: mean and p99 lag, requests per task (list requests included), the share of ends
first seen through the list, the longest gap between two direct polls of one task
(seconds); then the same with every list request answering 500 (against today's
daemon, the list off) and with a list that never shows every tenth task.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from wansync.core import listpoll
from wansync.core.errors import RemoteUnavailable
from wansync.core.predictor import THETA, CompletionModel
from wansync.core.scheduler import Scheduler
from wansync.remote.api import api_time

wall_api_time = api_time  # a wall time as the API writes it (UTC+8, no zone)

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
    seen, _ = round_robin_run(ts, RATE, INTERVAL, request)
    return mean_lag(ts, seen, lo, hi)


def round_robin_run(
    ts: list[Task], rate: float, interval: float, request: float = 0.002
) -> tuple[dict[int, float], int]:
    """Round-robin at `rate` and `interval`: when each task was seen done, and the polls."""
    pending: list[int] = []
    arrivals, last, seen, now, polls = deque(ts), {}, {}, 0.0, 0
    while len(seen) < len(ts):
        while arrivals and arrivals[0]["at"] <= now:
            pending.append(arrivals.popleft()["id"])
        if not pending:
            now += 0.01
            continue
        for i in list(pending):
            now += max(last.get(i, -math.inf) + interval - now, 1.0 / rate)
            last[i] = now
            polls += 1
            if answer(ts[i], now)["task_status"] == "SUCCEEDED":
                pending.remove(i)
                seen[i] = now
            now += request
            while arrivals and arrivals[0]["at"] <= now:
                pending.append(arrivals.popleft()["id"])
    return seen, polls


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


# -- list-assisted polling ------------------------------------------------------------------
LIST = "list"  # the scheduler's key for list requests (tasks are ints)


@dataclass(frozen=True)
class Setup:
    """An account and a config: the rate, `poll.interval`, `poll.list_interval` (None:
    off) and the watched pace (x interval); `fails`: every list request answers 500;
    `hidden`: every n-th task is never shown by the list (0: none)."""

    rate: float
    interval: float
    list_interval: float | None
    watched_factor: float = listpoll.WATCHED_FACTOR
    fails: bool = False
    hidden: int = 0


@dataclass
class Run:
    """When each task was seen done, and what it cost."""

    seen: dict[int, float] = field(default_factory=dict)
    requests: int = 0
    list_requests: int = 0
    by_list: int = 0  # completions first learned through the list
    worst_gap: float = 0.0  # the longest time between two polls of one task (seconds)


class TaskList:
    """`GET /api/v1/tasks` over the scenario's tasks: creation time in the window, newest
    first, pages of `page_size`, `total`; the tasks in `hidden` are never shown."""

    def __init__(self, ts: list[Task], hidden: set[int]) -> None:
        self.ts = ts
        self.at = [t["at"] for t in ts]  # tasks() makes them in order of arrival
        self.keys = [wall_api_time(T0 + t["at"], compact=True) for t in ts]
        self.hidden = hidden

    def page(self, request: listpoll.ListRequest, now: float) -> dict[str, Any]:
        lo = bisect_left(self.keys, request.window.start)
        hi = min(bisect_right(self.keys, request.window.end), bisect_right(self.at, now))
        ids = [i for i in range(hi - 1, lo - 1, -1) if i not in self.hidden]
        first = (request.page_no - 1) * request.page_size
        rows = ids[first : first + request.page_size]
        return {
            "data": [
                {"task_id": f"t{i}", "status": answer(self.ts[i], now)["task_status"]} for i in rows
            ],
            "total": len(ids),
            "page_no": request.page_no,
            "page_size": request.page_size,
        }


class ListedDaemon:
    """The daemon's poll loop with its real `Scheduler`, `CompletionModel` and the
    `listpoll` decisions; list requests take their slots from the same scheduler (they go
    first: a deadline now). With `list_interval` None it is today's daemon."""

    def __init__(self, ts: list[Task], setup: Setup) -> None:
        self.ts, self.setup = ts, setup
        self.sched = Scheduler(setup.interval, setup.rate)
        self.model = CompletionModel()
        self.policy = listpoll.ListPolicy(
            setup.list_interval, setup.interval, setup.rate, setup.watched_factor
        )
        hidden = {t["id"] for t in ts if setup.hidden and t["id"] % setup.hidden == 0}
        self.api = TaskList(ts, hidden)
        self.hidden = hidden
        self.state = listpoll.ListState()
        self.tracked: dict[str, listpoll.Tracked] = {}
        self.today: dict[int, tuple[float, float | None]] = {}  # today's plan, last poll
        self.last: dict[int, float] = {}
        self.triggered: set[int] = set()
        self.watched = 0
        self.known = 0  # tasks whose submit_time is known: a list pass has something to do
        self.run = Run()

    def go(self) -> Run:
        arrivals, now = deque(self.ts), 0.0
        while len(self.run.seen) < len(self.ts):
            due = listpoll.due_at(self.state, self.policy)
            if due is not None and self.known and LIST not in self.sched:
                self.sched.remove(LIST)  # pages follow each other: no per-key interval
                self.sched.add(LIST, max(due, now), max(due, now))
            head = self.sched.next_time(now)
            arrival = arrivals[0]["at"] if arrivals else math.inf
            now = max(now, min(math.inf if head is None else head, arrival))
            if arrivals and arrivals[0]["at"] <= now:
                key = arrivals.popleft()["id"]
                self.tracked[f"t{key}"] = listpoll.Tracked(f"t{key}", f"t{key}", None)
                self.sched.add(key, now)
                continue
            key = self.sched.take(now)
            if key is None:
                now += 1e-4
            elif key == LIST:
                self.list(now)
            else:
                assert isinstance(key, int)
                self.poll(key, now)
        return self.run

    def poll(self, key: int, now: float) -> None:
        run, name = self.run, f"t{key}"
        run.requests += 1
        if key in self.last:
            run.worst_gap = max(run.worst_gap, now - self.last[key])
        self.last[key] = now
        out = answer(self.ts[key], now)
        done = out["task_status"] == "SUCCEEDED"
        self.model.observe(out, T0 + now, finished=done)
        if done:
            run.seen[key] = now
            run.by_list += key in self.triggered
            self.sched.remove(key)
            self.known -= self.tracked.pop(name).submit_time is not None
            return
        self.known += self.tracked[name].submit_time is None
        task = self.tracked[name] = replace(self.tracked[name], submit_time=out["submit_time"])
        rate, interval = self.setup.rate, self.setup.interval
        unwatched = max(0, len(self.tracked) - self.watched)
        cycle = listpoll.cycle(unwatched, self.watched, self.state, self.policy)
        wait, must = self.model.next_poll(out, T0 + now, cycle, interval, 1 / rate)
        self.today[key] = (now + wait, None if must is None else now + must)
        wait, must = listpoll.pace(task, self.state, self.policy, (wait, must), self.watched)
        self.sched.add(key, now + wait, None if must is None else now + must)

    def list(self, now: float) -> None:
        begun = listpoll.begin(self.state, self.tracked, now, self.policy)
        self.state = begun.state
        if begun.request is None:
            return
        self.run.requests += 1
        self.run.list_requests += 1
        if self.setup.fails:
            error = RemoteUnavailable("HTTP 500: Internal Server Error", "HTTP500")
            out = listpoll.after_error(self.state, error, self.tracked, now, self.policy)
        else:
            page = listpoll.read_page(self.api.page(begun.request, now))
            out = listpoll.after_page(self.state, page, self.tracked, now, self.policy)
        self.state = out.state
        self.carry_out(out, now)

    def carry_out(self, out: listpoll.Outcome, now: float) -> None:
        """What the daemon would do with an outcome: remember, re-pace, poll at once."""
        for name in out.seen:
            self.tracked[name] = replace(self.tracked[name], listed_at=now)
        slow = listpoll.slow_interval(self.watched + len(out.slower), self.policy)
        for name in out.slower:
            key = int(name[1:])
            due = (self.sched.last_start(key) or now) + slow
            self.sched.add(key, due, due)
        plans = {n: self.today[int(n[1:])] for n in out.faster if int(n[1:]) in self.today}
        for name, plan in listpoll.back_to_today(plans, now, self.policy).items():
            self.sched.add(int(name[1:]), *plan)
        for name in out.poll_now:
            key = int(name[1:])
            self.sched.add(key, now, now, urgent=True)
            self.triggered.add(key)
        self.watched = sum(listpoll.watched(t, self.state) for t in self.tracked.values())


@dataclass(frozen=True)
class Scenario:
    """A task set and an account; the list interval is scaled with the times (`scale`)."""

    name: str
    ts: list[Task]
    rate: float
    interval: float
    scale: float


def scenarios(seed: int) -> list[Scenario]:
    """(1) the completion-lag bench (time / 20); (2) 1,000 tasks in flight at 20/s: 2,000
    tasks arriving over 14 min, each queueing 1-5 min and running 2-6 min (real time)."""
    return [
        Scenario("lag bench", tasks(seed), RATE, INTERVAL, 20.0),
        Scenario("1,000 in flight", tasks(seed, 2000, 1.0, 840.0), 20.0, 15.0, 1.0),
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Row:
    """One policy against round-robin in the same task set."""

    lag: float
    p99: float
    lag_ratio: float
    requests: float  # per task
    requests_ratio: float
    by_list: float
    worst_gap: float
    list_requests: float  # per task
    hidden: float | None  # mean lag of the tasks the list never shows


def measure(sc: Scenario, setup: Setup, rr: tuple[dict[int, float], int]) -> Row:
    daemon = ListedDaemon(sc.ts, setup)
    run = daemon.go()
    lags = [run.seen[t["id"]] - (t["at"] + t["q"] + t["r"]) for t in sc.ts]
    rr_lags = [rr[0][t["id"]] - (t["at"] + t["q"] + t["r"]) for t in sc.ts]
    hidden = [lags[i] for i in sorted(daemon.hidden)]
    n = len(sc.ts)
    return Row(
        statistics.mean(lags),
        percentile(lags, 0.99),
        statistics.mean(lags) / statistics.mean(rr_lags),
        run.requests / n,
        run.requests / rr[1],
        run.by_list / n,
        run.worst_gap,
        run.list_requests / n,
        statistics.mean(hidden) if hidden else None,
    )


def setups(sc: Scenario, list_interval: float, factor: float) -> dict[str, Setup]:
    """Today's daemon, the list-assisted one, and the latter with a failing list, and
    with a list that never shows every tenth task."""
    scaled = list_interval / sc.scale
    return {
        "today": Setup(sc.rate, sc.interval, None),
        "list": Setup(sc.rate, sc.interval, scaled, factor),
        "list failing": Setup(sc.rate, sc.interval, scaled, factor, fails=True),
        "list hides 1/10": Setup(sc.rate, sc.interval, scaled, factor, hidden=10),
    }


@dataclass(frozen=True)
class Baseline:
    """Round-robin in the same task sets: mean lag, p99 lag, requests per task."""

    lag: float
    p99: float
    requests: float


def compare(
    index: int, seeds: list[int], list_interval: float, factor: float
) -> tuple[str, Baseline, dict[str, list[Row]]]:
    """Scenario `index` over `seeds`: round-robin and every setup on the same task sets."""
    rows: dict[str, list[Row]] = {}
    rr_lag, rr_p99, rr_req = [], [], []
    for seed in seeds:
        sc = scenarios(seed)[index]
        rr = round_robin_run(sc.ts, sc.rate, sc.interval)
        rr_lags = [rr[0][t["id"]] - (t["at"] + t["q"] + t["r"]) for t in sc.ts]
        rr_lag.append(statistics.mean(rr_lags))
        rr_p99.append(percentile(rr_lags, 0.99))
        rr_req.append(rr[1] / len(sc.ts))
        for name, setup in setups(sc, list_interval, factor).items():
            rows.setdefault(name, []).append(measure(sc, setup, rr))
    title = (
        f"{sc.name}: {len(sc.ts)} tasks, {sc.rate:g}/s, poll.interval {sc.interval:g} s,"
        f" list every {list_interval:g} s / {sc.scale:g}, watched every {factor:g} x interval,"
        f" {len(seeds)} task set(s)"
    )
    mean = statistics.mean
    return title, Baseline(mean(rr_lag), mean(rr_p99), mean(rr_req)), rows


def listed_main(seeds: list[list[int]], list_interval: float, factor: float) -> None:
    """Every scenario and setup, each against round-robin in the same run."""
    for index, chosen in enumerate(seeds):
        if not chosen:
            continue
        title, rr, rows = compare(index, chosen, list_interval, factor)
        print(
            f"{title}; round-robin: lag {rr.lag:.2f} s, p99 {rr.p99:.2f} s,"
            f" {rr.requests:.2f} requests per task"
        )
        for name, rs in rows.items():
            print(f"  {name:16s} {summary(rs)}")
        today, failing = rows["today"], rows["list failing"]
        print(
            "  list failing / today: lag"
            f" {_mean(failing, 'lag') / _mean(today, 'lag'):.2f} x, requests"
            f" {_mean(failing, 'requests') / _mean(today, 'requests'):.2f} x"
        )


def _mean(rs: list[Row], attr: str) -> float:
    return statistics.mean(getattr(r, attr) for r in rs)


def summary(rs: list[Row]) -> str:
    def m(attr: str) -> float:
        return _mean(rs, attr)

    hidden = [r.hidden for r in rs if r.hidden is not None]
    return (
        f"lag {m('lag'):.2f} s ({m('lag_ratio'):.2f} x, worst {max(r.lag_ratio for r in rs):.2f}),"
        f" p99 {m('p99'):.2f} s, {m('requests'):.2f} requests per task"
        f" ({m('requests_ratio'):.2f} x; list {m('list_requests'):.2f}),"
        f" first seen by the list {m('by_list'):.0%},"
        f" worst gap {max(r.worst_gap for r in rs):.1f} s"
        + (f"; hidden tasks' lag {statistics.mean(hidden):.2f} s" if hidden else "")
    )


BenchRow = tuple[str, str, str, str, bool | None]


def bench_rows(seeds: list[list[int]]) -> list[BenchRow]:
    """The rows of `python -m bench --only listmodel`: each scenario, list-assisted against
    round-robin, and with the list failing against today's daemon, all in this run."""
    out: list[BenchRow] = []
    for index, chosen in enumerate(seeds):
        title, rr, rows = compare(index, chosen, listpoll.LIST_INTERVAL, listpoll.WATCHED_FACTOR)
        listed, today, failing = rows["list"], rows["today"], rows["list failing"]
        lag, req = _mean(listed, "lag_ratio"), _mean(listed, "requests_ratio")
        out.append(
            (
                f"list-assisted polling (in-process model), {title}: mean lag, p99,"
                " requests per task",
                f"round-robin {rr.lag:.2f} s, {rr.p99:.2f} s, {rr.requests:.2f}",
                f"{_mean(listed, 'lag'):.2f} s ({lag:.2f} x), {_mean(listed, 'p99'):.2f} s,"
                f" {_mean(listed, 'requests'):.2f} ({req:.2f} x)",
                "lag <= 0.2 x, requests <= 0.5 x",
                lag <= 0.2 and req <= 0.5,
            )
        )
        f_lag = _mean(failing, "lag") / _mean(today, "lag")
        f_req = _mean(failing, "requests") / _mean(today, "requests")
        out.append(
            (
                "  the same, every list request answering 500: mean lag, requests per task",
                f"today's daemon {_mean(today, 'lag'):.2f} s, {_mean(today, 'requests'):.2f}",
                f"{_mean(failing, 'lag'):.2f} s ({f_lag:.2f} x), "
                f"{_mean(failing, 'requests'):.2f} ({f_req:.2f} x)",
                "no worse than today (<= 1.05 x)",
                f_lag <= 1.05 and f_req <= 1.05,
            )
        )
    return out


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
    parser = argparse.ArgumentParser(prog="python -m bench.lagmodel")
    parser.add_argument("--list", action="store_true", help="the list-assisted scenarios")
    parser.add_argument("--seeds", type=int, default=10, help="task sets, lag bench (--list)")
    parser.add_argument("--big-seeds", type=int, default=3, help="task sets, 1,000 in flight")
    parser.add_argument("--list-interval", type=float, default=listpoll.LIST_INTERVAL)
    parser.add_argument("--watched", type=float, default=listpoll.WATCHED_FACTOR)
    parser.add_argument("--share", type=float, default=listpoll.LIST_SHARE)
    args = parser.parse_args()
    listpoll.LIST_SHARE = args.share  # a trade-off study, not a setting: docs/performance.md
    if args.list:
        chosen = [list(range(42, 42 + args.seeds)), list(range(42, 42 + args.big_seeds))]
        listed_main(chosen, args.list_interval, args.watched)
    else:
        main()
