"""Hooks (docs/hooks.md): real hook processes fed the events of tasks that ended in real folders."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import shlex
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.helpers import TEST_KEY, wait_until
from wansync import config, log
from wansync.core import retry
from wansync.core.errors import ConfigError
from wansync.core.events import HookRan, TaskFailed, TaskSucceeded
from wansync.core.record import ErrorInfo, TaskRecord
from wansync.files import sidecar
from wansync.files.fsutil import write_json_atomic
from wansync.outlets.hooks import Hooks, backoff, hook_env
from wansync.run.publish import Folders

ENV_NAMES = (
    "WANSYNC_EVENT",
    "WANSYNC_NAME",
    "WANSYNC_TASK_ID",
    "WANSYNC_VIDEO",
    "WANSYNC_OUTPUTS",
    "WANSYNC_SIDECAR",
    "WANSYNC_ERROR_CODE",
    "WANSYNC_ERROR_MESSAGE",
)

# Writes what a hook sees (environment, folder, standard input) to the file named by $1,
# one JSON object per run, so a test can also count the runs.
RECORDER = """
import json, os, sys
seen = {
    "env": {k: v for k, v in os.environ.items()},
    "cwd": os.getcwd(),
    "stdin": sys.stdin.read(),
}
with open(sys.argv[1], "a") as fh:
    fh.write(json.dumps(seen) + "\\n")
for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 0):
    print(f"line {i + 1}", flush=True)
sys.exit(int(sys.argv[3]) if len(sys.argv) > 3 else 0)
"""


class Setup:
    """Three real folders, a recording hook script, and a Hooks under test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders = Folders(*(root / n for n in ("inbox", "outbox", "failed")))
        for folder in (self.folders.inbox, self.folders.outbox, self.folders.failed):
            folder.mkdir()
        self.script = root / "recorder.py"
        self.script.write_text(RECORDER)
        self.runs_file = root / "runs.jsonl"
        self.reports: list[HookRan] = []
        self.hooks: Hooks | None = None

    def command(self, lines: int = 0, exit_code: int = 0) -> str:
        args = [sys.executable, str(self.script), str(self.runs_file), str(lines), str(exit_code)]
        return shlex.join(args)

    def start(self, threads: int = 2, **hooks: Any) -> Hooks:
        cfg = config.from_mapping({"hooks": hooks}).hooks
        self.hooks = Hooks(lambda: cfg, self.folders, report=self.reports.append, threads=threads)
        return self.hooks

    def lay(
        self,
        name: str,
        event: str = "succeeded",
        hook: dict[str, Any] | None = None,
        task_id: str | None = "task-0001-abcdef",
        published_as: str | None = None,
    ) -> Path:
        """A task's final files, as publish leaves them, with a `hook` record."""
        published = published_as or name
        record = sidecar.new(name, task_id, {}, time.time())
        if event != "succeeded":
            record.error = sidecar.error("TaskFailed", "the model said no", False)
        data = sidecar.to_json(record)
        data.update(state=event, published_as=published)
        if event == "succeeded":
            folder = self.folders.outbox
            (folder / f"{published}.mp4").write_bytes(b"\0\0\0\x18ftypmp42")
            data["video"] = {"path": f"{published}.mp4", "bytes": 12}
        else:
            folder = self.folders.failed
        data["hook"] = hook or {
            "event": event,
            "state": "pending",
            "attempts": 0,
            "exit_code": None,
        }
        path = folder / f"{published}.status.json"
        write_json_atomic(path, data)
        return path

    def runs(self) -> list[dict[str, Any]]:
        if not self.runs_file.exists():
            return []
        return [json.loads(line) for line in self.runs_file.read_text().splitlines()]

    def hook_record(self, path: Path) -> dict[str, Any]:
        data = sidecar.read(path, published=True)
        assert data is not None
        return sidecar.to_json(data)["hook"]


@pytest.fixture
def setup(tmp_path):
    s = Setup(tmp_path)
    yield s
    if s.hooks is not None:
        s.hooks.stop(kill=True)


def succeeded(path: Path, name: str = "clip") -> TaskSucceeded:
    published = path.name.removesuffix(".status.json")
    return TaskSucceeded(
        at=time.time(),
        name=name,
        task_id="task-0001-abcdef",
        published_as=published,
        video=str(path.parent / f"{published}.mp4"),
        sidecar=str(path),
        polls=3,
    )


def failed(path: Path, name: str = "clip", task_id: str | None = "task-0001-abcdef") -> TaskFailed:
    return TaskFailed(
        at=time.time(),
        name=name,
        task_id=task_id,
        published_as=path.name.removesuffix(".status.json"),
        sidecar=str(path),
        code="TaskFailed",
        message="the model said no",
    )


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- configuration -----------------------------------------------------------------------
def test_hook_keys_default_to_off_60s_3_attempts():
    """No hook is set by default; a set one times out after 60 s and is tried 3 times."""
    cfg = config.from_mapping(None).hooks
    assert (cfg.on_success, cfg.on_failure, cfg.timeout, cfg.attempts) == (None, None, 60.0, 3)
    cfg = config.from_mapping({"hooks": {"on_success": "notify 'a b'", "timeout": "2m"}}).hooks
    assert cfg.on_success == "notify 'a b'" and cfg.timeout == 120.0


@pytest.mark.parametrize(
    ("hooks", "message"),
    [
        ({"on_success": "notify 'unterminated"}, "hooks.on_success: "),
        ({"on_failure": "  "}, "hooks.on_failure: "),
        ({"on_failure": ["notify"]}, "hooks.on_failure: "),
        ({"timeout": 0}, "hooks.timeout: must be greater than 0"),
        ({"attempts": 0}, "hooks.attempts: "),
        ({"attempt": 2}, "hooks.attempt: unknown key"),
    ],
)
def test_bad_hook_keys_name_the_key(hooks, message):
    """A command line shlex refuses, or a bad number, is a config error naming the key."""
    with pytest.raises(ConfigError) as info:
        config.from_mapping({"hooks": hooks})
    assert str(info.value).startswith(message)


def test_backoff_doubles_up_to_a_minute():
    """Tries are 1 s, 2 s, 4 s … apart, never more than 60 s: the one policy of core/retry,
    which a long run of errors (2.0 ** 1100 overflows) does not break."""
    assert [backoff(n) for n in (1, 2, 3, 4, 7, 30, 5000)] == [1, 2, 4, 8, 60, 60, 60]
    assert retry.backoff(0.2, 5000) == retry.MAX_BACKOFF


def test_pending_record_only_when_a_hook_is_set(setup):
    """The record the loop writes before publishing exists only for a configured event."""
    hooks = setup.start(on_success="true")
    assert sidecar.hook_json(hooks.pending_record("succeeded")) == {  # type: ignore[arg-type]
        "event": "succeeded",
        "state": "pending",
        "attempts": 0,
        "exit_code": None,
    }
    assert hooks.pending_record("failed") is None


# -- running -----------------------------------------------------------------------------
def test_success_hook_sees_spec_environment_folder_and_no_input(setup, monkeypatch):
    """WANSYNC_* as docs/hooks.md says, cwd the outbox, empty stdin; the key is in no variable."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("MY_COPY_OF_THE_KEY", f"prefix-{TEST_KEY}")
    monkeypatch.setenv("WANSYNC_ERROR_CODE", "inherited")
    monkeypatch.setenv("KEEP_ME", "yes")
    log.add_secret(TEST_KEY)
    path = setup.lay("clip", published_as="clip-2")
    hooks = setup.start(on_success=setup.command())
    hooks.consume(succeeded(path))
    assert hooks.wait(20)
    (run,) = setup.runs()
    env = run["env"]
    assert {k: env.get(k) for k in ENV_NAMES} == {
        "WANSYNC_EVENT": "succeeded",
        "WANSYNC_NAME": "clip-2",
        "WANSYNC_TASK_ID": "task-0001-abcdef",
        "WANSYNC_VIDEO": str(setup.folders.outbox / "clip-2.mp4"),
        "WANSYNC_OUTPUTS": str(setup.folders.outbox / "clip-2.mp4"),
        "WANSYNC_SIDECAR": str(path),
        "WANSYNC_ERROR_CODE": None,
        "WANSYNC_ERROR_MESSAGE": None,
    }
    assert env["KEEP_ME"] == "yes"
    assert "DASHSCOPE_API_KEY" not in env and "MY_COPY_OF_THE_KEY" not in env
    assert TEST_KEY not in json.dumps(env)
    assert run["cwd"] == str(setup.folders.outbox) and run["stdin"] == ""
    assert setup.hook_record(path) == {
        "event": "succeeded",
        "state": "done",
        "attempts": 1,
        "exit_code": 0,
    }
    assert [(r.name, r.hook_event, r.result, r.attempts) for r in setup.reports] == [
        ("clip", "succeeded", "ok", 1)
    ]


def test_failure_hook_gets_the_error_and_no_video(setup, monkeypatch):
    """A failed task's hook runs in failed/ with the sidecar's error; no id → empty."""
    monkeypatch.setenv("WANSYNC_VIDEO", "/inherited.mp4")
    monkeypatch.setenv("WANSYNC_OUTPUTS", "/inherited.png")
    path = setup.lay("broken", event="failed", task_id=None)
    hooks = setup.start(on_success="false", on_failure=setup.command())
    hooks.consume(failed(path, name="broken", task_id=None))
    assert hooks.wait(20)
    (run,) = setup.runs()
    env = run["env"]
    assert env["WANSYNC_EVENT"] == "failed" and env["WANSYNC_NAME"] == "broken"
    assert env["WANSYNC_TASK_ID"] == ""
    assert env["WANSYNC_ERROR_CODE"] == "TaskFailed"
    assert env["WANSYNC_ERROR_MESSAGE"] == "the model said no"
    assert "WANSYNC_VIDEO" not in env and "WANSYNC_OUTPUTS" not in env
    assert run["cwd"] == str(setup.folders.failed)
    assert setup.hook_record(path)["state"] == "done"


def test_environment_drops_what_is_the_daemons_alone(tmp_path):
    """systemd's credential folder and notify socket never reach a hook."""
    base = {
        "PATH": "/bin",
        "CREDENTIALS_DIRECTORY": "/run/c",
        "NOTIFY_SOCKET": "@x",
        "WATCHDOG_USEC": "1",
        "WATCHDOG_PID": "2",
        "DASHSCOPE_API_KEY": "k",
    }
    data = TaskRecord("a", "t\0x", error=ErrorInfo("C", "m" * 100_000, False))
    env = hook_env(base, data, tmp_path / "a.status.json", "failed")
    assert set(env) == {
        "PATH",
        "WANSYNC_EVENT",
        "WANSYNC_NAME",
        "WANSYNC_TASK_ID",
        "WANSYNC_SIDECAR",
        "WANSYNC_ERROR_CODE",
        "WANSYNC_ERROR_MESSAGE",
    }
    assert env["WANSYNC_TASK_ID"] == "tx" and len(env["WANSYNC_ERROR_MESSAGE"]) == 8192


def test_failing_hook_is_retried_then_failed_with_one_error_line(setup):
    """Exit 3 three times (1 s, 2 s apart): state failed, one hook.failed with the tail."""
    path = setup.lay("clip")
    with capture_logs() as logs:
        hooks = setup.start(on_success=setup.command(lines=30, exit_code=3), attempts=3)
        started = time.monotonic()
        hooks.consume(succeeded(path))
        assert hooks.wait(30)
    took = time.monotonic() - started
    assert len(setup.runs()) == 3
    assert took >= 3.0  # the back-off: 1 s, then 2 s
    assert setup.hook_record(path) == {
        "event": "succeeded",
        "state": "failed",
        "attempts": 3,
        "exit_code": 3,
    }
    failures = [e for e in logs if e["event"] == "hook.failed"]
    assert len(failures) == 1
    (line,) = failures
    assert line["log_level"] == "error" and line["exit_code"] == 3 and line["attempts"] == 3
    assert line["output"] == [f"line {i}" for i in range(11, 31)]
    retries = [e for e in logs if e["event"] == "hook.retry"]
    assert [e["retry_in"] for e in retries] == [1.0, 2.0]
    outputs = [e["line"] for e in logs if e["event"] == "hook.output"]
    assert outputs == [f"line {i}" for i in range(1, 31)] * 3
    assert [(r.result, r.exit_code, r.attempts) for r in setup.reports] == [("failed", 3, 3)]


def test_a_program_that_cannot_start_is_a_failed_try(setup):
    """No such program: a failed try with a clear reason, exit_code null."""
    path = setup.lay("clip")
    with capture_logs() as logs:
        hooks = setup.start(on_success="/nonexistent/wansync-hook --x", attempts=1)
        hooks.consume(succeeded(path))
        assert hooks.wait(20)
    assert setup.hook_record(path) == {
        "event": "succeeded",
        "state": "failed",
        "attempts": 1,
        "exit_code": None,
    }
    (line,) = [e for e in logs if e["event"] == "hook.failed"]
    assert "cannot start '/nonexistent/wansync-hook'" in line["reason"]
    assert line["exit_code"] is None


def _group_hook(root: Path, ignore_term: bool) -> str:
    script = root / "group.sh"
    trap = "trap '' TERM\n" if ignore_term else ""
    script.write_text(
        f"{trap}sleep 300 &\necho $! > child.pid\necho $$ > main.pid\necho started\nwait\n"
    )
    return f"sh {shlex.quote(str(script))}"


@pytest.mark.parametrize("ignore_term", [False, True], ids=["sigterm", "sigkill"])
def test_timeout_kills_the_whole_process_group(setup, ignore_term):
    """At hooks.timeout the hook and its children die (SIGTERM; SIGKILL 5 s later)."""
    path = setup.lay("clip")
    with capture_logs() as logs:
        hooks = setup.start(on_success=_group_hook(setup.root, ignore_term), timeout=1, attempts=1)
        started = time.monotonic()
        hooks.consume(succeeded(path))
        assert hooks.wait(30)
    took = time.monotonic() - started
    pids = [int((setup.folders.outbox / f).read_text()) for f in ("main.pid", "child.pid")]
    wait_until(lambda: not any(alive(p) for p in pids), 10, "hook and child gone")
    assert (took > 5.5) if ignore_term else (took < 5)
    assert setup.hook_record(path) == {
        "event": "succeeded",
        "state": "failed",
        "attempts": 1,
        "exit_code": None,
    }
    (line,) = [e for e in logs if e["event"] == "hook.failed"]
    assert line["exit_code"] is None and line["reason"] == "timed out after 1 s"
    assert line["output"] == ["started"]


def test_done_is_never_run_again(setup):
    """Once a hook is done, the same task's event or a start-up scan does not run it."""
    path = setup.lay("clip")
    hooks = setup.start(on_success=setup.command())
    hooks.consume(succeeded(path))
    assert hooks.wait(20)
    hooks.consume(succeeded(path))
    hooks.resume_pending()
    assert hooks.wait(20)
    assert len(setup.runs()) == 1 and setup.hook_record(path)["state"] == "done"


def test_resume_pending_runs_each_pending_hook_once(setup):
    """At start-up: pending hooks in outbox/ and failed/ run once; done, failed, none: never."""
    ok = setup.lay("ok-pending")
    bad = setup.lay("bad-pending", event="failed")
    tried = setup.lay(
        "tried", hook={"event": "succeeded", "state": "pending", "attempts": 1, "exit_code": 1}
    )
    done = setup.lay(
        "done", hook={"event": "succeeded", "state": "done", "attempts": 1, "exit_code": 0}
    )
    given_up = setup.lay(
        "given-up",
        event="failed",
        hook={"event": "failed", "state": "failed", "attempts": 3, "exit_code": 1},
    )
    plain = setup.lay("plain")
    data = sidecar.read(plain, published=True)
    data.hook = None
    sidecar.write(plain, data)
    os.symlink(ok, setup.folders.outbox / "link.status.json")  # never followed
    hooks = setup.start(on_success=setup.command(), on_failure=setup.command())
    hooks.resume_pending()
    hooks.consume(succeeded(ok))  # the same task's event meanwhile: still one run
    assert hooks.wait(20)
    names = sorted(r["env"]["WANSYNC_NAME"] for r in setup.runs())
    assert names == ["bad-pending", "ok-pending", "tried"]
    assert setup.hook_record(tried)["attempts"] == 2
    assert setup.hook_record(done)["attempts"] == 1
    assert setup.hook_record(given_up)["state"] == "failed"
    assert setup.hook_record(ok)["state"] == setup.hook_record(bad)["state"] == "done"


def test_a_deep_or_broken_sidecar_is_one_log_line_and_the_scan_goes_on(setup):
    """A planted 100,000-deep sidecar, bad UTF-8 (one line each), a FIFO: no traceback,
    and the legit pending hooks still run."""
    outbox = setup.folders.outbox
    (outbox / "aaa-evil.status.json").write_bytes(
        b'{"schema":1,"hook":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    )
    (outbox / "aab-bytes.status.json").write_bytes(b'{"schema":1,"hook":"\xff\xfe"}')
    os.mkfifo(outbox / "aac-fifo.status.json")
    legit = [setup.lay("legit1"), setup.lay("legit2", event="failed")]
    with capture_logs() as logs:
        hooks = setup.start(on_success=setup.command(), on_failure=setup.command())
        hooks.resume_pending()
        assert hooks.wait(20)
    assert sorted(r["env"]["WANSYNC_NAME"] for r in setup.runs()) == ["legit1", "legit2"]
    assert all(setup.hook_record(p)["state"] == "done" for p in legit)
    bad = [e for e in logs if e["event"] in ("hook.sidecar_invalid", "hook.scan_error")]
    assert sorted(e["file"] for e in bad) == ["aaa-evil.status.json", "aab-bytes.status.json"]
    assert {e["file"]: e["error"] for e in bad}["aaa-evil.status.json"].startswith("JSON is nested")


def test_a_planted_pending_hook_for_files_never_published_is_not_run(setup):
    """A pending hook runs only for a valid published sidecar of its own name, for the state
    it ended in, with its video beside it: planted ones are refused, each with one line."""
    outbox = setup.folders.outbox
    spoof = {"schema": 1, "name": "spoof", "task_id": "$(id)", "state": "succeeded"}
    spoof["hook"] = {"event": "succeeded", "state": "pending", "attempts": 0}
    (outbox / "spoof.status.json").write_text(json.dumps(spoof))  # no published_as, bad id
    no_video = setup.lay("no-video")
    (outbox / "no-video.mp4").unlink()
    other = setup.lay("other-name", published_as="victim")  # not a name of task other-name
    wrong = setup.lay(
        "wrong-event", event="failed", hook={"event": "succeeded", "state": "pending"}
    )
    real = setup.lay("real")
    with capture_logs() as logs:
        hooks = setup.start(on_success=setup.command(), on_failure=setup.command())
        hooks.resume_pending()
        for path in (no_video, other, wrong):
            hooks.consume(succeeded(path))  # an event naming them changes nothing
        assert hooks.wait(20)
    assert [r["env"]["WANSYNC_NAME"] for r in setup.runs()] == ["real"]
    assert setup.hook_record(real)["state"] == "done"
    refused = {e["file"] for e in logs if e["event"] == "hook.sidecar_invalid"}
    assert refused == {
        "spoof.status.json",
        "no-video.status.json",
        "victim.status.json",
        "wrong-event.status.json",
    }, refused


def test_unconfigured_hook_stays_pending(setup):
    """A pending record whose command was removed from the config is left for later."""
    path = setup.lay("clip")
    with capture_logs() as logs:
        hooks = setup.start(on_failure=setup.command())
        hooks.consume(succeeded(path))  # no on_success: not even looked at
        assert hooks.wait(20)
        assert not [e for e in logs if e["event"].startswith("hook.")]
        hooks.resume_pending()  # at start-up it is found, and left alone
        assert hooks.wait(20)
    assert setup.hook_record(path)["state"] == "pending" and setup.runs() == []
    assert [e["event"] for e in logs if e["event"].startswith("hook.")] == ["hook.not_configured"]


def test_stop_kills_a_running_hook_and_leaves_it_pending(setup):
    """SIGTERM: the running hook (and its child) is killed, its record stays pending."""
    path = setup.lay("clip")
    hooks = setup.start(on_success=_group_hook(setup.root, False))
    hooks.consume(succeeded(path))
    marker = setup.folders.outbox / "child.pid"
    wait_until(lambda: marker.exists() and marker.read_text().strip(), 20, "hook started")
    pids = [int((setup.folders.outbox / f).read_text()) for f in ("main.pid", "child.pid")]
    started = time.monotonic()
    hooks.stop(kill=True)
    assert time.monotonic() - started < 5
    wait_until(lambda: not any(alive(p) for p in pids), 10, "hook and child gone")
    assert setup.hook_record(path) == {
        "event": "succeeded",
        "state": "pending",
        "attempts": 0,
        "exit_code": None,
    }
    assert setup.reports == []
    hooks.consume(succeeded(path))  # after stop: nothing more is started
    assert hooks.wait(1)
    assert setup.hook_record(path)["state"] == "pending"


def test_a_storm_of_finishes_runs_two_hooks_at_a_time(setup):
    """Twelve tasks end at once: never more than the pool's two hooks run together."""
    running = setup.root / "running"
    running.mkdir()
    script = setup.root / "slow.py"
    script.write_text(
        "import os, sys, time\n"
        f"me = os.path.join({str(running)!r}, str(os.getpid()))\n"
        "open(me, 'w').close()\n"
        f"with open({str(setup.root / 'seen')!r}, 'a') as fh:\n"
        f"    fh.write(str(len(os.listdir({str(running)!r}))) + '\\n')\n"
        "time.sleep(0.2)\n"
        "os.unlink(me)\n"
    )
    paths = [setup.lay(f"clip-{i}") for i in range(12)]
    hooks = setup.start(on_success=shlex.join([sys.executable, str(script)]))
    for path in paths:
        hooks.consume(succeeded(path))
    assert hooks.wait(60)
    seen = [int(n) for n in (setup.root / "seen").read_text().split()]
    assert len(seen) == 12 and max(seen) <= 2
    assert all(setup.hook_record(p)["state"] == "done" for p in paths)


def test_output_is_logged_within_bounds(setup):
    """A hook that floods its output: the log gets at most 64 KiB of it, the hook ends."""
    script = setup.root / "flood.py"
    script.write_text(
        "import sys\n"
        "sys.stdout.write('x' * 3_000_000)\n"  # one endless line
        "for i in range(200_000):\n"
        "    print('flood', i)\n"
    )
    path = setup.lay("clip")
    with capture_logs() as logs:
        hooks = setup.start(on_success=shlex.join([sys.executable, str(script)]))
        hooks.consume(succeeded(path))
        assert hooks.wait(60)
    lines = [e["line"] for e in logs if e["event"] == "hook.output"]
    assert sum(len(line) + 1 for line in lines) < 70_000
    assert all(len(line) <= 1001 for line in lines)
    assert lines[-1].startswith("[wansync: output beyond")
    assert setup.hook_record(path)["state"] == "done"


def test_a_hook_that_moves_its_files_away_is_not_recreated(setup):
    """A hook may move the video and sidecar out: wansync does not write the sidecar back."""
    path = setup.lay("clip")
    elsewhere = setup.root / "archive"
    elsewhere.mkdir()
    hooks = setup.start(on_success=f"mv clip.mp4 clip.status.json {shlex.quote(str(elsewhere))}")
    hooks.consume(succeeded(path))
    assert hooks.wait(20)
    assert not path.exists() and (elsewhere / "clip.status.json").exists()
    assert [r.result for r in setup.reports] == ["ok"]


class _Webhook(BaseHTTPRequestHandler):
    """A webhook receiver: the first POST gets a 500, the others a 200; bodies are kept."""

    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append(json.loads(body))
        self.send_response(500 if len(self.bodies) == 1 else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_the_readme_webhook_hook_posts_and_is_retried(setup):
    """examples/webhook-hook.sh posts the task's event; an HTTP 500 is retried."""
    _Webhook.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        script = Path(__file__).parent.parent / "examples" / "webhook-hook.sh"
        command = f"{script} http://127.0.0.1:{server.server_address[1]}/hook"
        ok, bad = setup.lay("clip"), setup.lay("broken", event="failed")
        hooks = setup.start(on_success=command, on_failure=command)
        hooks.consume(succeeded(ok))
        assert hooks.wait(30)
        hooks.consume(failed(bad, name="broken"))
        assert hooks.wait(30)
    finally:
        server.shutdown()
        server.server_close()
    first, again, fail = _Webhook.bodies
    assert first == again
    assert again["event"] == "succeeded" and again["name"] == "clip"
    assert again["video"] == str(setup.folders.outbox / "clip.mp4")
    assert again["text"] == f"wansync: clip is ready: {again['video']}"
    assert fail["text"] == "wansync: broken failed: TaskFailed the model said no"
    assert setup.hook_record(ok) == {
        "event": "succeeded",
        "state": "done",
        "attempts": 2,
        "exit_code": 0,
    }
    assert setup.hook_record(bad)["state"] == "done"


@pytest.mark.parametrize("holds_output", [True, False], ids=["holds the pipe", "detached"])
def test_a_hooks_background_child_ends_with_the_try(setup, holds_output):
    """Issue 21 #11: `sleep 300 &` in a hook: the try ends when the hook exits, and the
    child is killed with it, whether or not it holds the hook's output open."""
    redirect = "" if holds_output else " >/dev/null 2>&1"
    path = setup.lay("clip")
    hooks = setup.start(on_success=f"sh -c 'sleep 300{redirect} & echo $! > bg.pid; echo done'")
    started = time.monotonic()
    hooks.consume(succeeded(path))
    try:
        assert hooks.wait(20)
        assert time.monotonic() - started < 10
        assert setup.hook_record(path)["state"] == "done"
        pid = int((setup.folders.outbox / "bg.pid").read_text())
        wait_until(lambda: not alive(pid), 5, "the background child to end with the hook")
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((setup.folders.outbox / "bg.pid").read_text()), 9)


@contextlib.contextmanager
def no_descriptor_left() -> Iterator[None]:
    """Every descriptor this process may open is taken until the block ends: the next
    `open` fails with a real EMFILE (the limit is lowered first, so few are needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 32, hard))
    fillers: list[int] = []
    try:
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                if exc.errno != errno.EMFILE:
                    raise
                break
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("start", ["a task ends", "start-up scan"])
def test_a_hook_that_hits_emfile_is_retried_not_dropped(setup, start):
    """Issue 21 #7/#11: out of descriptors when the hook's sidecar (or its folder) is
    read, the hook is tried again after its back-off and runs once descriptors are back."""
    path = setup.lay("clip")
    hooks = setup.start(on_success=setup.command())
    retried = "hook.error" if start == "a task ends" else "hook.scan_error"
    with capture_logs() as logs:
        with no_descriptor_left():
            if start == "a task ends":
                hooks.consume(succeeded(path))
            else:
                hooks.resume_pending()
            # the try failed and waits its back-off, or (the bug) nothing is left to do
            wait_until(lambda: any(e["event"] == retried for e in logs) or hooks.wait(0), 10)
        assert hooks.wait(20)
    assert len(setup.runs()) == 1, "the hook was dropped"
    assert setup.hook_record(path)["state"] == "done"
    line = next(e for e in logs if e["event"] == retried)
    assert line["retry_in"] == 1 and "Too many open files" in line["error"]
