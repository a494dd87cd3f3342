"""The soak (issue 11): hours of production in minutes, with everything going wrong at once.

Tasks and jobs arrive steadily for the first 70% of the run, ~10% of the simulator's
answers are faulty (its chaos: 429 with Retry-After, 5xx, resets, stalls, malformed
bodies, truncated videos), a poison file from the corpus arrives every minute, and the
daemon is killed with SIGKILL every two minutes and started again, until 30 s before the
end (then it only drains); all along a scraper of the metrics port sends part of a request
and hangs up (or resets), and now and then scrapes whole (issue 21). At the end every good
task has ended exactly once, no job made two tasks, memory stayed flat, every log line is
one JSON object, `/metrics` answers and the daemon is alive. Marked `slow`; sized by
environment variables (defaults are the issue's):

  WANSYNC_SOAK_SECONDS  1800   the whole run, drain included (the test stops by then)
  WANSYNC_SOAK_TASKS    5000   tasks and jobs dropped (2% are jobs, 2% fail on purpose)
  WANSYNC_SOAK_KILL_EVERY 120  seconds between two kill -9 (0: none)
  WANSYNC_SOAK_POISON_EVERY 60 seconds between two poison files (0: none)
  WANSYNC_SOAK_FAULTS   0.1    share of simulator answers that are faulty

`WANSYNC_SOAK_SECONDS=300 WANSYNC_SOAK_TASKS=1000 python -m pytest -q -n0 -m slow
tests/test_soak.py -s` is a 5-minute version.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import TEST_KEY, Daemon, Env, drop
from tests.poison import HOSTILE, Poison, hostile_answer, write_corpus
from tests.vitals import MB, MemoryGuard, tree_state, vm_bytes
from wansync.simulator import Simulator

END_MARGIN = 20.0  # seconds kept at the end for the stop (10 s at most) and the checks
FEED_SHARE = 0.7  # tasks arrive over this part of the run; the rest drains
QUIET = 30.0  # the last seconds before the deadline: no kill, no poison, only the drain
RSS_TOLERANCE = 8 * MB  # last third's peak over the first third's (_assert_rss_flat)
RESTART_SEC = 5.0  # the systemd unit's RestartSec
GUARD_KILL = 600 * MB  # the machine is shared: a runaway daemon is killed here
DATA_LIMIT = 2048 * MB  # RLIMIT_DATA of the daemon: a second belt
SIDECAR = ".status.json"
SCRAPE_EVERY = 0.2  # seconds between two connections of the hostile scraper
URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]


@dataclass(frozen=True)
class Plan:
    """How big and how hostile the soak is (the issue's figures by default)."""

    seconds: float = 1800.0
    tasks: int = 5000
    kill_every: float = 120.0
    poison_every: float = 60.0
    faults: float = 0.1

    @classmethod
    def from_env(cls) -> Plan:
        def number(name: str, default: float) -> float:
            return float(os.environ.get(f"WANSYNC_SOAK_{name}", default))

        return cls(
            seconds=number("SECONDS", cls.seconds),
            tasks=int(number("TASKS", cls.tasks)),
            kill_every=number("KILL_EVERY", cls.kill_every),
            poison_every=number("POISON_EVERY", cls.poison_every),
            faults=number("FAULTS", cls.faults),
        )


@dataclass(frozen=True)
class Work:
    """One good unit of work: a task, or a job (found by its unique prompt)."""

    name: str
    task_id: str | None  # a job's id is the simulator's
    kind: str = ".task"
    outcome: str = "succeeded"
    prompt: str | None = None
    video_size: int | None = None  # None: the sample MP4; else a synthetic body
    pictures: tuple[str, int, int, str] | None = None  # shape, n, failed of them, format
    hostile: str | None = None  # a picture task whose answer is poison.HOSTILE[hostile]

    def files(self) -> list[str]:
        """The names its files are published under (a hostile answer's: not known here)."""
        if self.pictures is None:
            return [f"{self.name}.mp4"]
        _, n, failed, fmt = self.pictures
        ext = {"jpeg": "jpg", "webp": "webp"}.get(fmt, "png")
        made = [("jpg" if k % 2 else "png") if fmt == "mixed" else ext for k in range(failed, n)]
        if len(made) == 1:
            return [f"{self.name}.{made[0]}"]
        return [f"{self.name}.{k}.{e}" for k, e in enumerate(made, start=1)]


PICTURES = {  # i % 50 -> a picture task: shape, n, failed sub-results, format
    10: ("results", 4, 1, "mixed"),
    20: ("choices", 3, 0, "png"),
    30: ("results", 1, 0, "webp"),
    40: ("results", 2, 0, "jpeg"),
}


def plan_work(n: int) -> list[Work]:
    work = []
    hostile = list(HOSTILE)
    for i in range(n):
        if i % 50 == 25:
            prompt = f"soak job {i}: a fox runs"
            work.append(Work(f"soak-{i:05d}", None, ".job", prompt=prompt))
        elif i % 50 == 0:
            work.append(Work(f"soak-{i:05d}", f"soak-fail-{i:05d}", outcome="failed"))
        elif i % 50 in PICTURES:
            pictures = PICTURES[i % 50]
            work.append(Work(f"soak-{i:05d}", f"soak-pictures-{i:05d}", pictures=pictures))
        elif i % 50 == 45:
            which = hostile[(i // 50) % len(hostile)]
            outcome = HOSTILE[which].ends
            work.append(
                Work(f"soak-{i:05d}", f"soak-hostile-{i:05d}", outcome=outcome, hostile=which)
            )
        else:
            size = 300_000 if i % 10 == 5 else None  # big enough to be cut and resumed
            work.append(Work(f"soak-{i:05d}", f"soak-task-{i:05d}", video_size=size))
    return work


@dataclass
class Dropped:
    """A poison unit moved into the inbox, and its canaries' state when written."""

    poison: Poison
    at: float
    aside: Path
    canaries: dict[str, tuple[str, str]]


@dataclass
class Soak:
    """The run: the current daemon and everything observed, all bounded by the plan."""

    env: Env
    sim: Simulator
    plan: Plan
    root: Path
    daemon: Daemon | None = None
    guard: MemoryGuard | None = None
    started: float = 0.0
    kills: int = 0
    crashes: list[str] = field(default_factory=list)
    guard_kills: int = 0
    rss: list[tuple[float, int, float]] = field(default_factory=list)  # t, VmRSS, age
    hwm: list[int] = field(default_factory=list)  # VmHWM of each incarnation at its end
    poisons: list[Dropped] = field(default_factory=list)
    restart_at: float | None = None  # a crashed daemon is started again then
    metrics_at_end: bool = False  # /metrics answered once the run was over

    def start(self) -> None:
        self.daemon = self.env.start(preexec_fn=_limit_data)
        self.guard = MemoryGuard(self.daemon.proc.pid, GUARD_KILL, every=0.5)
        self.started = time.monotonic()

    def end_incarnation(self, sig: int | None) -> None:
        """Record its peak memory, then kill it with `sig` (None: it has already exited)."""
        assert self.daemon is not None and self.guard is not None
        peak = vm_bytes(self.daemon.proc.pid, "VmHWM")
        if peak is not None:
            self.hwm.append(peak)
        self.guard.stop()
        self.guard_kills += self.guard.killed
        if sig == signal.SIGKILL:
            self.daemon.kill()
            self.kills += 1

    def running(self) -> bool:
        return self.daemon is not None and self.daemon.proc.poll() is None

    def check_alive(self, now: float) -> None:
        """A daemon that exited on its own crashed: record why; start another RESTART_SEC
        later, as systemd's `Restart=on-failure` would."""
        assert self.daemon is not None
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restart_at = None
                self.start()
            return
        code = self.daemon.proc.poll()
        if code is None:
            return
        self.end_incarnation(None)
        self.daemon.wait(1)
        assert self.guard is not None
        why = (
            "the test's memory guard" if self.guard.killed else _last_error(self.daemon.stderr_path)
        )
        self.crashes.append(f"exit {code}: {why}")
        self.restart_at = now + RESTART_SEC

    def kill_and_restart(self) -> None:
        if self.running():
            self.end_incarnation(signal.SIGKILL)
            self.start()

    def finish(self) -> tuple[bool, int | None]:
        """Alive at the end? Then SIGTERM it: the exit code (None: it ignored SIGTERM)."""
        if not self.running():
            return False, None
        self.end_incarnation(None)
        assert self.daemon is not None
        try:
            return True, self.daemon.stop()
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            return True, None

    def sample(self, now: float) -> None:
        if not self.running():
            return
        assert self.daemon is not None
        rss = vm_bytes(self.daemon.proc.pid, "VmRSS")
        if rss is not None:
            self.rss.append((now, rss, time.monotonic() - self.started))

    def poison(self, k: int) -> None:
        """Write the corpus into staging folders and move case k's file (and its sidecar,
        if it comes with one) into the inbox; a case that is no file is skipped."""
        stage = self.root / "poison" / f"{k:03d}"
        inbox, outbox, failed = (stage / n for n in ("inbox", "outbox", "failed"))
        for folder in (inbox, outbox, failed):
            folder.mkdir(parents=True)
        corpus = [p for p in write_corpus(inbox, outbox, failed, stage / "aside") if p.kind]
        canaries = tree_state(stage / "aside", [])
        for offset in range(len(corpus)):
            case = corpus[(k + offset) % len(corpus)]
            if _move_unit(inbox, self.env.inbox, case):
                self.poisons.append(Dropped(case, time.monotonic(), stage / "aside", canaries))
                return


class Scraper:
    """One background thread at the metrics port: most connections send part of a request
    and hang up (or reset), one in five scrapes `/metrics` whole. Bounded: one socket at a
    time, each with a 5 s timeout; a refused connection (the daemon is being restarted) is
    counted, not an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.counts: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="soak-scraper", daemon=True)
        self.rng = random.Random(21)

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(15)

    def _loop(self) -> None:
        while not self.stop.wait(SCRAPE_EVERY):
            try:
                self.counts[self._once()] += 1
            except ConnectionRefusedError:
                self.counts["refused"] += 1
            except OSError:  # the daemon was killed under it, or cut a slow client
                self.counts["cut"] += 1

    def _once(self) -> str:
        if self.rng.random() < 0.2:
            return "scraped" if scrape(self.port) else "empty scrape"
        request = b"GET /metrics HTTP/1.1\r\nHost: soak\r\n\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(request[: self.rng.randrange(1, len(request) + 1)])
            if self.rng.random() < 0.5:  # RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "hung up"


def scrape(port: int) -> bytes:
    """`/metrics` whole (an error if it does not answer 200 within 5 s)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return bytes(answer.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _not_json_lines(logs: list[Path]) -> list[str]:
    """Log lines (of every incarnation) that are not one JSON object each."""
    bad = []
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            try:
                if isinstance(json.loads(line), dict):
                    continue
            except ValueError:
                pass
            bad.append(f"{log.name}: {line[:200]}")
    return bad


def _limit_data() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))


def _move_unit(stage: Path, inbox: Path, case: Poison) -> bool:
    """Move the case's sidecar (if any), then its file, into the inbox, unless taken."""
    files = [f"{case.name}.status.json", f"{case.name}{case.kind}"]
    moves = [(stage / f, inbox / f) for f in files if os.path.lexists(stage / f)]
    if any(os.path.lexists(dst) for _, dst in moves):
        return False
    for src, dst in moves:
        os.rename(src, dst)
    return True


def _last_error(log: Path) -> str:
    """The last error-level line of a daemon log, for the report."""
    last = ""
    for line in log.read_text(errors="replace").splitlines():
        if '"level": "error"' in line or '"level": "critical"' in line:
            last = line
    try:
        event = json.loads(last)
    except ValueError:
        return last[:300]
    exc = (event.get("exception") or [{}])[-1]
    return f"{event.get('event')} {exc.get('exc_type', '')} {str(exc.get('exc_value', ''))[:200]}"


def _drop_work(env: Env, work: Work) -> None:
    if work.video_size is not None:
        env.sim.add_task(str(work.task_id), video_size=work.video_size)
    if work.pictures is not None:
        shape, n, failed, fmt = work.pictures
        spec = {"shape": shape, "pictures": n, "failed_results": failed, "picture_format": fmt}
        env.sim.add_task(str(work.task_id), **spec)
    if work.hostile is not None:
        hostile_answer(env.sim, work.hostile, str(work.task_id))
    if work.kind == ".task":
        drop(env.inbox, work.name, str(work.task_id))
        return
    tmp = env.inbox / f".{work.name}.job.tmp"
    tmp.write_text(yaml.safe_dump({"prompt": work.prompt, "media": URL_FRAME}))
    os.rename(tmp, env.inbox / f"{work.name}.job")


def _ended_names(env: Env) -> Counter[str]:
    """How many times each name has ended: a final sidecar beside its `.task` or `.job`.

    A publish under another name (`NAME-2`) counts for that name; `_check` flags those.
    """
    seen: Counter[str] = Counter()
    for folder in (env.outbox, env.failed):
        entries = set(os.listdir(folder))
        for entry in entries:
            if entry.startswith("soak-") and entry.endswith(SIDECAR):
                stem = entry[: -len(SIDECAR)]
                if f"{stem}.task" in entries or f"{stem}.job" in entries:
                    seen[stem] += 1
    return seen


def _all_ended(env: Env, work: list[Work]) -> bool:
    """Every name's file has ended and its publish is complete (no sidecar in the inbox)."""
    ended = _ended_names(env)
    live = set(os.listdir(env.inbox))
    return all(ended[w.name] and f"{w.name}.status.json" not in live for w in work)


@pytest.mark.slow
def test_soak(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Faults, poison and kill -9 for the whole run: every good task ends once, memory flat."""
    plan = Plan.from_env()
    work = plan_work(plan.tasks)
    t0 = time.monotonic()
    deadline = t0 + plan.seconds - END_MARGIN  # the stop and the checks fit in the margin
    feed_until = t0 + plan.seconds * FEED_SHARE
    port = free_port()
    with Simulator(key=TEST_KEY, max_in_progress=10_000) as sim:
        sim.chaos = plan.faults
        env = Env(tmp_path / "env", sim)
        env.configure(
            poll={"interval": 1, "max_per_second": 50},
            download={"concurrency": 8},
            submit={"max_in_progress": 10_000, "max_per_second": 20, "search_for": 3},
            log={"level": "info"},
            metrics={"listen": f"127.0.0.1:{port}"},
        )
        soak = Soak(env, sim, plan, tmp_path)
        alive_at_end, exit_code, scraper = False, None, Scraper(port)
        try:
            soak.start()
            with scraper:
                _run(soak, work, t0, feed_until, deadline)
            soak.metrics_at_end = _answers(port)
            alive_at_end, exit_code = soak.finish()
        finally:
            env.reap()
            wall = time.monotonic() - t0
            report = _check(soak, work)
            report["log lines not one JSON object"] = _not_json_lines(env.stderr_files)
            with capsys.disabled():
                print(_summary(soak, work, wall, report), f"\n  scraper: {dict(scraper.counts)}")
    assert soak.metrics_at_end, "/metrics did not answer at the end"
    assert scraper.counts["hung up"] and scraper.counts["scraped"], scraper.counts
    assert alive_at_end and exit_code == 0, (alive_at_end, exit_code, soak.crashes)
    assert not soak.crashes, f"the daemon crashed by itself: {soak.crashes}"
    assert not soak.guard_kills, f"killed by the test past {GUARD_KILL // MB} MB"
    for problem, items in report.items():
        assert not items, f"{problem}: {items[:10]} ({len(items)} in all)"
    _assert_rss_flat(soak)


def _answers(port: int) -> bool:
    """`/metrics` answers 200 with the daemon's counters (tried for up to 10 s)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if b"wansync_polls_total" in scrape(port):
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _run(soak: Soak, work: list[Work], t0: float, feed_until: float, deadline: float) -> None:
    """Feed, poison, kill and sample for the whole run; in its last QUIET seconds only wait
    for everything to end (and return as soon as it has)."""
    env = soak.env
    fed = poisons = 0
    quiet_from = deadline - QUIET
    never = float("inf")
    next_kill = t0 + soak.plan.kill_every if soak.plan.kill_every > 0 else never
    next_poison = t0 + soak.plan.poison_every / 2 if soak.plan.poison_every > 0 else never
    next_sample = t0 + 60.0
    next_check = quiet_from
    while (now := time.monotonic()) < deadline:
        due = len(work) if now >= feed_until else int(len(work) * (now - t0) / (feed_until - t0))
        while fed < due:
            _drop_work(env, work[fed])
            fed += 1
        if now >= next_poison and now < quiet_from:
            soak.poison(poisons)
            poisons += 1
            next_poison += soak.plan.poison_every
        if now >= next_sample:
            soak.sample(now - t0)
            next_sample += 60.0
        if now >= next_kill and now < quiet_from:
            soak.kill_and_restart()
            next_kill += soak.plan.kill_every
        soak.check_alive(now)
        if now >= next_check:
            if _all_ended(env, work) and _poison_settled(soak):
                return
            next_check = now + 2.0
        time.sleep(0.05)


def _poison_settled(soak: Soak) -> bool:
    return all(
        not os.path.lexists(soak.env.inbox / f"{d.poison.name}{d.poison.kind}")
        for d in soak.poisons
    )


def _check(soak: Soak, work: list[Work]) -> dict[str, list[Any]]:
    """Everything that must hold at the end, as lists of offenders (empty: it holds)."""
    env, sim = soak.env, soak.sim
    ended = _ended_names(env)
    report: dict[str, list[Any]] = {
        "not ended": [w.name for w in work if not ended[w.name]],
        "ended more than once": [w.name for w in work if ended[w.name] > 1],
        "duplicate files (NAME-k)": [],
        "wrong folder": [],
        "files differ from the served ones": [],
        "jobs that made two tasks": [],
        "poison still in the inbox": [],
        "poison jobs that made a task": [],
        "canaries changed": [],
        "task ids in two sidecars": [],
    }
    names = {w.name for w in work}
    for folder in (env.outbox, env.failed):
        for entry in os.scandir(folder):
            stem = entry.name.split(".", 1)[0]
            base, _, k = stem.rpartition("-")
            if base in names and k.isdigit():
                report["duplicate files (NAME-k)"].append(entry.name)
    ids: Counter[str] = Counter()
    for w in work:
        if not ended[w.name]:
            continue
        data = env.sidecar(env.outbox, w.name) or env.sidecar(env.failed, w.name) or {}
        ids[str(data.get("task_id"))] += 1
        where = "outbox" if (env.outbox / f"{w.name}{SIDECAR}").exists() else "failed"
        expected = {"succeeded": "outbox", "failed": "failed"}[w.outcome]
        code = (data.get("error") or {}).get("code")
        if where != expected and not (w.kind == ".job" and code == "SubmitUncertain"):
            report["wrong folder"].append((w.name, where, code))
        if where == "outbox" and (problem := _files_problem(env, sim, w, data)):
            report["files differ from the served ones"].append((w.name, problem))
    report["task ids in two sidecars"] = [i for i, n in ids.items() if n > 1 and i != "None"]
    made = Counter(c["prompt"] for c in sim.desk.created)
    report["jobs that made two tasks"] = [p for p, n in made.items() if n > 1 and "soak" in p]
    report["poison jobs that made a task"] = [p for p in made if not p.startswith("soak job")]
    for d in soak.poisons:
        if os.path.lexists(env.inbox / f"{d.poison.name}{d.poison.kind}"):
            report["poison still in the inbox"].append(d.poison.what)
        if tree_state(d.aside, []) != d.canaries:
            report["canaries changed"].append(d.poison.what)
    return report


def _files_problem(env: Env, sim: Simulator, w: Work, data: dict[str, Any]) -> str | None:
    """What is wrong with a succeeded task's files (None: each is there, whole, the bytes
    the simulator served, under the name it must have)."""
    outputs = data.get("outputs") or []
    digests = []
    for output in outputs:
        path = env.outbox / output["path"]
        if not path.exists():
            return f"{output['path']} is missing"
        digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        if digests[-1] != output["sha256"]:
            return f"{output['path']} is not the file its sidecar says"
    if w.hostile is not None:
        want = HOSTILE[w.hostile].files
        return None if len(outputs) == want else f"{len(outputs)} files, not {want}"
    if [o["path"] for o in outputs] != w.files():
        return f"files {[o['path'] for o in outputs]}, not {w.files()}"
    served = (
        sim.picture_sha256s(data["task_id"])
        if w.pictures is not None
        else [sim.video_sha256(data["task_id"])]
    )
    return None if digests == served else "the bytes differ from the served ones"


def _assert_rss_flat(soak: Soak) -> None:
    """The last third's peak RSS may pass the first third's by RSS_TOLERANCE at most.

    Each sample is one incarnation (a kill every 2 minutes) at an age of 1 or 2 minutes.
    What it holds is its tracked tasks (~2 KB each: 41 MB with 1,000, 57 MB with 10,000
    in docs/performance.md), a few dozen at a time here, plus allocator steps of ~1 MB:
    the scaled runs spread by at most 1 MB (39.2-40.2 MB, 41.6-42.0 MB). 8 MB is eight
    times that, and what state that grows with the tasks already done would add (read
    back from the outbox at start-up, kept for ever after a restart) if it cost 2.5 KB
    per task over the last third's extra ~3,300 of 5,000. A leak inside one incarnation
    is cut by the next kill whatever it is: a soak without kills (KILL_EVERY=0) shows it.
    """
    values = [rss for _, rss, _ in soak.rss]
    assert len(values) >= 3, f"too few RSS samples: {soak.rss}"
    third = max(1, len(values) // 3)
    first, last = max(values[:third]), max(values[-third:])
    assert last <= first + RSS_TOLERANCE, (
        f"RSS grew: first third peak {first / MB:.1f} MB, last third {last / MB:.1f} MB"
    )


def _summary(soak: Soak, work: list[Work], wall: float, report: dict[str, list[Any]]) -> str:
    sim = soak.sim
    faulty = sum(1 for r in sim.log if r.get("status") not in (200, 206))
    ended = _ended_names(soak.env)
    outcomes = Counter(
        "not ended"
        if not ended[w.name]
        else "outbox"
        if (soak.env.outbox / f"{w.name}{SIDECAR}").exists()
        else "failed"
        for w in work
    )
    rss = ", ".join(f"{t:.0f}s:{v / MB:.1f}MB(age {a:.0f}s)" for t, v, a in soak.rss)
    hwm = ", ".join(f"{v / MB:.1f}" for v in soak.hwm)
    problems = {k: len(v) for k, v in report.items() if v}
    jobs = Counter(
        ((soak.env.sidecar(soak.env.failed, w.name) or {}).get("error") or {}).get("code", "ok")
        for w in work
        if w.kind == ".job"
    )
    return (
        f"\nsoak: {soak.plan}\n"
        f"  wall {wall:.0f} s; {len(work)} tasks/jobs ended {dict(outcomes)}; "
        f"{len(sim.desk.created)} tasks created by jobs; jobs: {dict(jobs)}\n"
        f"  {len(sim.log)} requests, {faulty} faulty ({faulty / max(1, len(sim.log)):.1%})\n"
        f"  kill -9: {soak.kills}; crashes: {len(soak.crashes)}; poison files: "
        f"{[d.poison.what for d in soak.poisons]}\n"
        f"  VmRSS each minute: {rss}\n  VmHWM per incarnation (MB): {hwm}\n"
        f"  problems: {problems or 'none'}"
    )
