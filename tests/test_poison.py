"""The poison corpus (issue 11): hostile files dropped into a running daemon beside good work.

One scenario, shared by the tests below (the module fixture `run`): the daemon is started,
paused with SIGSTOP while the corpus, six good tasks and one good job are written into its
inbox (so the world outside its folders can be recorded before it can act), resumed, and
left to settle. Then a new task must still be served, the daemon is stopped, the corpus is
written into the inbox again, and a restart must start and serve a task. Each test asserts
one thing that must hold afterwards, so a failure names what broke.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import TEST_KEY, Daemon, Env, drop
from tests.vitals import MB, MemoryGuard, tree_state, vm_bytes
from wansync.simulator import Simulator

PEAK_RSS_LIMIT = 100 * MB  # issue 11: "its peak RSS stays under 100 MB"
GUARD_KILL = 600 * MB  # the machine is shared: a runaway daemon is killed here
DATA_LIMIT = 2048 * MB  # RLIMIT_DATA of the daemon: a second belt, far above any pass
SETTLE = 45.0  # seconds for the corpus and the good work to settle
GOOD_TASKS = [f"good-{i}" for i in range(6)]
GOOD_JOB = "good-job"
GOOD_PROMPT = "good: a cat waves at the camera"
URL_FRAME = [{"type": "first_frame", "url": "https://example.com/frame.png"}]
CANARY_ID = "poison-canary-0001"  # the id behind the symlinked .task: must never be polled


# -- the corpus ---------------------------------------------------------------------------
# An inline stand-in for `tests/poison.py` (the hostile helper's corpus) with the same
# entry point, `write_corpus(inbox, outside)`; swapped for it once it lands.


@dataclass(frozen=True)
class Poison:
    """One hostile file written into the inbox, and where it may end up."""

    case: str
    name: bytes  # its file name in the inbox (bytes: one is not UTF-8)
    ends: frozenset[str]  # folders it may end in: "failed", "outbox", or "inbox" (ignored)
    prompt: str | None = None  # a job's prompt, to find its create requests
    creates: int = 0  # create requests it may cause at most (0: it cannot finish)
    content: bytes | None = field(default=None, repr=False)  # found by content if renamed


FAILED = frozenset({"failed"})
EITHER = frozenset({"outbox", "failed"})
IGNORED = frozenset({"inbox"})


def _write(path: Path | bytes, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _sparse(path: Path, head: bytes, size: int) -> None:
    """A file of `size` bytes that costs no disk: a reader that reads it whole pays."""
    _write(path, head)
    os.truncate(path, size)


def _job(prompt: str, **fields: Any) -> bytes:
    return yaml.safe_dump({"prompt": prompt, "media": URL_FRAME, **fields}).encode()


def _sidecar(name: str, task_id: str, **changes: Any) -> bytes:
    """A plausible sidecar (SPEC §2), then the hostile `changes`."""
    data: dict[str, Any] = {
        "schema": 1,
        "name": name,
        "task_id": task_id,
        "meta": {},
        "state": "polling",
        "task_status": "RUNNING",
        "polls": 3,
        "first_seen": "2026-11-29T08:00:00.000Z",
        "last_polled": "2026-11-29T08:00:01.000Z",
        "next_poll": "2026-11-29T08:00:02.000Z",
        "finished": None,
        "request_id": "0123456789abcdef",
        "error": None,
        "output": {"task_id": task_id, "task_status": "RUNNING"},
        "usage": None,
        "expires": None,
        "video": None,
    }
    data.update(changes)
    return json.dumps(data).encode()


def _task_with_sidecar(inbox: Path, case: str, name: str, task_id: str, **changes: Any) -> Poison:
    """A valid `.task` whose inbox sidecar is hostile: written first, so it is found."""
    _write(inbox / f"{name}.status.json", _sidecar(name, task_id, **changes))
    _write(inbox / f".{name}.task.tmp", task_id.encode())
    os.rename(inbox / f".{name}.task.tmp", inbox / f"{name}.task")
    return Poison(case, f"{name}.task".encode(), EITHER)


def _alias_bomb(prompt: str) -> bytes:
    """The billion laughs, ~600 bytes: 9**9 strings once the aliases are expanded."""
    lines = [f"prompt: {prompt!r}", "media: [{type: first_frame, url: 'https://e.com/f.png'}]"]
    lines += ["meta:", '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(lines).encode() + b"\n"


def write_corpus(inbox: Path, outside: Path) -> list[Poison]:
    """One hostile file per attack of issue 11 that a producer can drop, into `inbox`;
    canary targets for the links go to `outside`, which must never change."""
    outside.mkdir(parents=True, exist_ok=True)
    out: list[Poison] = []

    def job(case: str, name: str, data: bytes, prompt: str | None, creates: int = 0) -> None:
        _write(inbox / f"{name}.job", data)
        ends = FAILED if creates == 0 else EITHER
        out.append(Poison(case, f"{name}.job".encode(), ends, prompt, creates))

    def task(case: str, name: bytes, data: bytes, ends: frozenset[str] = FAILED) -> None:
        _write(os.fsencode(inbox) + b"/" + name, data)
        out.append(Poison(case, name, ends, content=data))

    # jobs that can never finish: refused before any create
    job("alias bomb", "poison-alias", _alias_bomb("poison alias"), "poison alias")
    job("3000-deep brackets", "poison-brackets", b"[" * 3000 + b"]" * 3000, None)
    meta = {"blob": "m" * 100_000}  # a 100 KB job, within 256 KiB; its .task would pass 64 KiB
    job("huge meta", "poison-huge-meta", _job("poison huge meta", meta=meta), "poison huge meta")
    long_name = "poison-long-" + "n" * (251 - len("poison-long-"))  # NAME.job: 255 bytes
    job("251-byte name", long_name, _job("poison long name"), "poison long name")
    mid_name = "poison-mid-" + "n" * (245 - len("poison-mid-"))  # its temp names pass 255
    job("245-byte name", mid_name, _job("poison mid name"), "poison mid name", creates=1)
    _sparse(inbox / "poison-huge.job", _job("poison huge job"), 300 * MB)
    out.append(Poison("300 MB job", b"poison-huge.job", FAILED, "poison huge job"))
    # jobs whose local picture is not a picture we may read
    secret = outside / "id_ed25519"
    _write(secret, b"-----BEGIN OPENSSH PRIVATE KEY----- canary\n")
    (inbox / "poison-innocent.png").symlink_to(secret)
    (inbox / "poison-zero.png").symlink_to("/dev/zero")
    os.mkfifo(inbox / "poison-fifo.png")
    for picture in ("innocent", "zero", "fifo"):
        prompt = f"poison {picture} picture"
        frame = [{"type": "first_frame", "path": f"poison-{picture}.png"}]
        job(f"picture: {picture}", f"poison-pic-{picture}", _job(prompt, media=frame), prompt)
        out.append(Poison(f"{picture} picture", f"poison-{picture}.png".encode(), IGNORED))
    # task files
    deep = b'{"task_id": "poison-deep-json-01", "meta": ' + b"[" * 980 + b"]" * 980 + b"}"
    task("980-deep JSON", b"poison-deep.task", deep)
    task("NaN meta", b"poison-nan.task", b'{"task_id": "poison-nan-meta-01", "x": NaN}', EITHER)
    task("not UTF-8 name", b"poison-\xff\xfe-name.task", b"poison-badname-001\n")
    _sparse(inbox / "poison-huge.task", b"poison-huge-task-1\n", 300 * MB)
    out.append(Poison("300 MB task", b"poison-huge.task", FAILED))
    (outside / "secret.task").write_text(CANARY_ID + "\n")
    (inbox / "poison-link.task").symlink_to(outside / "secret.task")
    out.append(Poison("symlinked .task", b"poison-link.task", FAILED))
    os.mkfifo(inbox / "poison-fifo.task")
    out.append(Poison("FIFO .task", b"poison-fifo.task", FAILED))
    (inbox / "poison-folder.task").mkdir()
    out.append(Poison("folder .task", b"poison-folder.task", FAILED))
    # valid tasks whose inbox sidecar is hostile
    big = inbox / "poison-bigcar.status.json"
    _sparse(big, b'{"schema": 1, "pad": "', 200 * MB)
    _write(inbox / "poison-bigcar.task", b"poison-bigcar-0001")
    out.append(Poison("200 MB sidecar", b"poison-bigcar.task", EITHER))
    escape = {"state": "failed", "error": {"code": "X", "message": "x", "transient": False}}
    sidecars: list[tuple[str, str, str, dict[str, Any]]] = [
        ("sidecar polls: 'many'", "poison-polls", "poison-polls-0001", {"polls": "many"}),
        (
            "sidecar download: 'etag'",
            "poison-etag",
            "poison-etag-00001",
            {"state": "downloading", "download": "etag"},
        ),
        (
            "sidecar video_url: 5",
            "poison-url",
            "poison-url-00001",
            {
                "state": "downloading",
                "output": {
                    "task_id": "poison-url-00001",
                    "task_status": "SUCCEEDED",
                    "video_url": 5,
                },
            },
        ),
        (
            "sidecar published_as: ../../ESCAPE",
            "poison-esc",
            "poison-escape-001",
            {"published_as": "../../ESCAPE", **escape},
        ),
        (
            "sidecar published_as: absolute",
            "poison-abs",
            "poison-escape-002",
            {"published_as": str(outside / "E"), **escape},
        ),
    ]
    for case, name, task_id, changes in sidecars:
        out.append(_task_with_sidecar(inbox, case, name, task_id, **changes))
    # a link planted where the daemon writes a sidecar's next version
    scratch = inbox / ".wansync"
    scratch.mkdir(exist_ok=True)
    (outside / "scratch-canary").write_text("must not change\n")
    (scratch / "poison-scratch.status.json.wansync-tmp").symlink_to(outside / "scratch-canary")
    task("link in the scratch folder", b"poison-scratch.task", b"poison-scratch-001", EITHER)
    # what SPEC says to ignore
    task("a dotfile", b".poison-hidden.task", b"poison-hidden-0001", IGNORED)
    task("not a .task", b"poison-note.txt", b"poison-note-00001", IGNORED)
    return out


# -- the scenario -------------------------------------------------------------------------


@dataclass
class Run:
    """What the scenario observed; each test asserts on a part of it."""

    env: Env
    sim: Simulator
    corpus: list[Poison]
    outside: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    settled: bool = False
    settle_seconds: float = 0.0
    unsettled: list[str] = field(default_factory=list)
    where: dict[str, str] = field(default_factory=dict)  # case -> folder it ended in
    alive_after_corpus: bool = False
    served_after_corpus: bool = False
    hwm: int | None = None
    guard_peak: int = 0
    guard_killed: bool = False
    exit_code: int | None = None
    died: str = ""  # how the first daemon ended early, if it did
    restart_started: bool = False
    restart_served: bool = False
    restart_settled: bool = False
    restart_hwm: int | None = None
    restart_exit_code: int | None = None
    restart_died: str = ""

    def __repr__(self) -> str:  # keeps pytest's assertion messages short
        return "<the poison run>"


def _limit_data() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))


def _locate(env: Env, poison: Poison) -> str | None:
    """The folder holding the poison file now (by name, else by content for a renamed one)."""
    for folder in (env.inbox, env.outbox, env.failed):
        if os.path.lexists(os.fsencode(folder) + b"/" + poison.name):
            return folder.name
    if poison.content is not None:
        suffix = os.fsencode(Path(os.fsdecode(poison.name)).suffix)
        for folder in (env.outbox, env.failed):
            for entry in os.scandir(os.fsencode(folder)):
                if (
                    entry.name.endswith(suffix)
                    and entry.is_file(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_size == len(poison.content)
                    and Path(os.fsdecode(entry.path)).read_bytes() == poison.content
                ):
                    return folder.name
    return None


def _good_done(env: Env, name: str, kind: str = ".task") -> bool:
    data = env.ended(name, kind)
    return bool(data and (env.outbox / f"{name}.mp4").exists())


def _settled(env: Env, corpus: list[Poison]) -> list[str]:
    """What has not reached its end yet: good work not in the outbox, poison not moved."""
    waiting = [n for n in GOOD_TASKS if not _good_done(env, n)]
    if not _good_done(env, GOOD_JOB, ".job"):
        waiting.append(GOOD_JOB)
    for poison in corpus:
        if "inbox" not in poison.ends and _locate(env, poison) in ("inbox", None):
            waiting.append(poison.case)
    return waiting


def _wait_while_alive(daemon: Daemon, predicate: Any, timeout: float) -> bool:
    """Wait for `predicate` with a deadline; give up at once if the daemon has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if daemon.proc.poll() is not None:
            return bool(predicate())
        time.sleep(0.1)
    return False


def _stop(daemon: Daemon) -> tuple[int | None, str]:
    """SIGTERM and wait 10 s; a daemon that ignores it is killed (and that is reported)."""
    if daemon.proc.poll() is not None:
        code = daemon.proc.returncode
        daemon.wait(1)
        return code, f"had exited with {code} before the stop"
    daemon.signal(signal.SIGTERM)
    try:
        return daemon.wait(10), ""
    except subprocess.TimeoutExpired:
        daemon.kill()
        return None, "ignored SIGTERM for 10 s (killed)"


def _clear_inbox(env: Env, keep: Path) -> None:
    """Move what the first round left in the inbox aside, so the corpus can be written again."""
    keep.mkdir()
    for entry in os.scandir(os.fsencode(env.inbox)):
        if entry.name in (b".wansync.lock", b".wansync"):
            continue
        os.rename(entry.path, os.fsencode(keep) + b"/" + entry.name)
    for planted in (env.inbox / ".wansync").iterdir():
        if planted.is_symlink():  # a link of ours, planted by the corpus
            planted.unlink()


def _round_one(run: Run, root: Path) -> None:
    env = run.env
    daemon = env.start(preexec_fn=_limit_data)
    guard = MemoryGuard(daemon.proc.pid, GUARD_KILL)
    try:
        daemon.wait_ready()
        daemon.signal(signal.SIGSTOP)  # every file arrives at once, and before it can act
        run.corpus = write_corpus(env.inbox, root / "outside")
        for i, name in enumerate(GOOD_TASKS):
            drop(env.inbox, name, f"good-task-{i:04d}")
        tmp = env.inbox / f".{GOOD_JOB}.job.tmp"
        tmp.write_bytes(_job(GOOD_PROMPT))
        os.rename(tmp, env.inbox / f"{GOOD_JOB}.job")
        before = tree_state(root, _folders(env))
        t0 = time.monotonic()
        daemon.signal(signal.SIGCONT)
        waiting = lambda: not _settled(env, run.corpus)  # noqa: E731
        run.settled = _wait_while_alive(daemon, waiting, SETTLE)
        run.settle_seconds = time.monotonic() - t0
        run.unsettled = _settled(env, run.corpus)
        run.where = {p.case: _locate(env, p) or "nowhere" for p in run.corpus}
        run.alive_after_corpus = daemon.proc.poll() is None
        if run.alive_after_corpus:
            drop(env.inbox, "after-corpus", "after-corpus-0001")
            run.served_after_corpus = _wait_while_alive(
                daemon, lambda: _good_done(env, "after-corpus"), 20
            )
        run.hwm = vm_bytes(daemon.proc.pid, "VmHWM")
    finally:
        guard.stop()
        run.guard_peak, run.guard_killed = guard.peak, guard.killed
        run.exit_code, run.died = _stop(daemon)
    run.outside.append((before, tree_state(root, _folders(env))))


def _round_two(run: Run, root: Path) -> None:
    """The corpus in the inbox at start-up: the daemon starts and serves a new task."""
    env = run.env
    _clear_inbox(env, root / "left-by-round-one")
    corpus = write_corpus(env.inbox, root / "outside-2")
    before = tree_state(root, _folders(env))
    daemon = env.start(preexec_fn=_limit_data)
    guard = MemoryGuard(daemon.proc.pid, GUARD_KILL)
    try:
        run.restart_started = _wait_while_alive(daemon, lambda: daemon.events("daemon.started"), 20)
        if run.restart_started:
            drop(env.inbox, "after-restart", "after-restart-001")
            run.restart_served = _wait_while_alive(
                daemon, lambda: _good_done(env, "after-restart"), 20
            )
            moved = lambda: all(  # noqa: E731
                "inbox" in p.ends or not os.path.lexists(os.fsencode(env.inbox) + b"/" + p.name)
                for p in corpus
            )
            run.restart_settled = _wait_while_alive(daemon, moved, SETTLE / 2)
        run.restart_hwm = vm_bytes(daemon.proc.pid, "VmHWM")
    finally:
        guard.stop()
        run.guard_peak = max(run.guard_peak, guard.peak)
        run.guard_killed = run.guard_killed or guard.killed
        run.restart_exit_code, run.restart_died = _stop(daemon)
    run.outside.append((before, tree_state(root, _folders(env))))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The whole scenario, once; the tests read what it saw."""
    root = tmp_path_factory.mktemp("poison")
    with Simulator(key=TEST_KEY, pending_polls=1, running_polls=1) as sim:
        env = Env(root / "env", sim)
        env.configure(log={"level": "info"}, submit={"max_per_second": 50, "search_for": 1.5})
        observed = Run(env, sim, [])
        try:
            _round_one(observed, root)
            _round_two(observed, root)
            yield observed
        finally:
            env.reap()


def _folders(env: Env) -> list[Path]:
    return [env.inbox, env.outbox, env.failed]


# -- what must hold -----------------------------------------------------------------------


def test_good_tasks_and_the_good_job_end_in_the_outbox_exactly_once(run: Run) -> None:
    """Every good task and the good job end as one verified MP4, with no NAME-2 twin."""
    env, sim = run.env, run.sim
    for name in [*GOOD_TASKS, GOOD_JOB, "after-corpus"]:
        kind = ".job" if name == GOOD_JOB else ".task"
        data = env.ended(name, kind)
        assert data and data["state"] == "succeeded", (name, data, run.unsettled)
        video = env.outbox / f"{name}.mp4"
        digest = hashlib.sha256(video.read_bytes()).hexdigest()
        assert digest == sim.video_sha256(data["task_id"]), name
        assert not list(env.outbox.glob(f"{name}-[0-9]*")), name
        assert not list(env.failed.glob(f"{name}.*")), name


def test_the_daemon_survives_the_corpus_and_still_serves_new_tasks(run: Run) -> None:
    """Alive after the corpus settled, a task dropped then is served, and SIGTERM exits 0."""
    assert run.alive_after_corpus, f"the daemon died: {run.died}; see {run.env.stderr_files[0]}"
    assert run.settled, f"not settled after {SETTLE} s: {run.unsettled}"
    assert run.served_after_corpus
    assert run.exit_code == 0, run.died


def test_each_poison_file_ends_in_failed_or_is_ignored(run: Run) -> None:
    """Refused files are moved to failed/ (tasks with a bad sidecar may finish); ignored stay."""
    wrong = {p.case: run.where[p.case] for p in run.corpus if run.where[p.case] not in p.ends}
    assert not wrong, f"poison not where SPEC puts it (case: where it is): {wrong}"


def test_every_sidecar_is_strict_json(run: Run) -> None:
    """No sidecar holds NaN or Infinity, which strict JSON parsers refuse."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    for folder in _folders(run.env):
        for path in folder.glob("*.status.json"):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < MB:
                json.loads(path.read_bytes(), parse_constant=refuse)


def test_nothing_is_read_or_written_outside_the_three_folders(run: Run) -> None:
    """Canaries behind the planted links, and everything beside the folders, are unchanged."""
    for before, after in run.outside:
        assert after == before, _diff(before, after)
    assert not run.sim.requests("task", CANARY_ID), "a symlinked .task was followed"
    sent = [r for r in run.sim.log if r["kind"] in ("policy", "upload")]
    assert not sent, f"a poison job's local file was uploaded: {sent}"


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    return f"changed outside the folders: {changed}"


def test_peak_rss_stays_under_100_mb(run: Run) -> None:
    """VmHWM of the daemon, read before it exits, stays under 100 MB (both starts)."""
    assert not run.guard_killed, f"killed by the test at {GUARD_KILL // MB} MB RSS"
    assert run.hwm is not None, f"the daemon was gone before its peak could be read: {run.died}"
    assert run.hwm < PEAK_RSS_LIMIT, f"peak RSS {run.hwm / MB:.0f} MB"
    assert run.restart_hwm is not None, run.restart_died
    assert run.restart_hwm < PEAK_RSS_LIMIT, f"peak RSS after restart {run.restart_hwm / MB:.0f} MB"


def test_no_create_request_for_a_job_that_cannot_finish(run: Run) -> None:
    """Only the good job (and a job that may finish, at most once) caused a create request."""
    made = Counter(c["prompt"] for c in run.sim.desk.created)
    assert made[GOOD_PROMPT] == 1, made
    allowed = {p.prompt: p.creates for p in run.corpus if p.prompt}
    over = {prompt: n for prompt, n in made.items() if n > allowed.get(prompt, 1)}
    assert not over, f"creates beyond what may finish: {over}"
    assert len(run.sim.requests("submit")) == sum(made.values()), "a create was sent and refused"


def test_a_restart_with_the_corpus_in_the_inbox_starts_cleanly(run: Run) -> None:
    """With the whole corpus in the inbox at start-up, it starts, serves a task, stops with 0."""
    assert run.restart_started, f"no daemon.started: {run.restart_died}"
    assert run.restart_served, "a task dropped after the restart was not served"
    assert run.restart_settled, "the corpus was not moved out of the inbox after the restart"
    assert run.restart_exit_code == 0, run.restart_died


def test_the_key_and_signed_urls_never_leak(run: Run) -> None:
    """Neither the API key nor a signed URL's query string reaches a file or a log line."""
    texts = [p.read_text(errors="replace") for p in run.env.stderr_files]
    for folder in _folders(run.env):  # regular files only: the corpus has FIFOs and 300 MB
        for path in folder.rglob("*"):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_size < MB and path.suffix != ".mp4":
                texts.append(path.read_text(errors="replace"))
    assert not [t for t in texts if TEST_KEY in t]
    logs = "\n".join(texts[: len(run.env.stderr_files)])
    assert "Signature=" not in logs and "Expires=" not in logs
