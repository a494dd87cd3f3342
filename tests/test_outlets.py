"""docs/hooks.md, docs/monitoring.md on the real daemon: hooks after the files land, metrics,
and neither can be made to starve the daemon."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import socket
import struct
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import TEST_KEY, drop, wait_until

HOOK = """\
import json, os, sys, time
out = sys.argv[1]
record = {k: v for k, v in os.environ.items() if k.startswith("WANSYNC_")}
record["cwd"] = os.getcwd()
record["key_in_env"] = any(KEY in v for v in os.environ.values())
record["stdin"] = sys.stdin.read()
with open(os.path.join(out, record["WANSYNC_NAME"] + ".json"), "w") as f:
    json.dump(record, f)
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def write_hook(root: Path) -> tuple[str, Path]:
    """A hook that records its environment, folder and input into `root/hooked/NAME.json`."""
    script = root / "hook.py"
    script.write_text(HOOK.replace("KEY", repr(TEST_KEY)))
    out = root / "hooked"
    out.mkdir()
    return f"{sys.executable} {script} {out}", out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """`/metrics` as {'name{label=value}': value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def test_hooks_run_after_the_files_land_with_the_spec_environment(env, sim):
    """on_success / on_failure run once each, in the final folder, with WANSYNC_* and no key."""
    command, out = write_hook(env.root)
    env.configure(hooks={"on_success": command, "on_failure": command})
    sim.add_task("hook-fails-0001", outcome="FAILED", code="DataInspectionFailed", message="no")
    drop(env.inbox, "good", "hook-good-0001")
    drop(env.inbox, "bad", "hook-fails-0001")
    daemon = env.start()
    good = wait_until(lambda: _json(out / "good.json"), 30, "the success hook")
    bad = wait_until(lambda: _json(out / "bad.json"), 30, "the failure hook")
    assert good["WANSYNC_EVENT"] == "succeeded"
    assert good["WANSYNC_TASK_ID"] == "hook-good-0001"
    assert good["WANSYNC_VIDEO"] == str(env.outbox / "good.mp4")
    assert Path(good["WANSYNC_VIDEO"]).stat().st_size > 0  # the video was in place first
    assert good["WANSYNC_SIDECAR"] == str(env.outbox / "good.status.json")
    assert good["cwd"] == str(env.outbox) and good["stdin"] == ""
    assert bad["WANSYNC_EVENT"] == "failed" and bad["cwd"] == str(env.failed)
    assert bad["WANSYNC_ERROR_CODE"] == "DataInspectionFailed"
    assert "WANSYNC_VIDEO" not in bad
    assert not good["key_in_env"] and not bad["key_in_env"]
    for folder, name in ((env.outbox, "good"), (env.failed, "bad")):
        wait_until(
            lambda f=folder, n=name: (
                (env.sidecar(f, n) or {}).get("hook", {}).get("state") == "done"
            ),
            10,
            f"{name}'s hook record done",
        )
    hook = env.sidecar(env.outbox, "good")["hook"]
    assert hook == {"event": "succeeded", "state": "done", "attempts": 1, "exit_code": 0}
    assert daemon.stop() == 0


def test_a_hook_killed_with_the_daemon_runs_again_once_at_the_next_start(env, sim):
    """kill -9 mid-hook leaves it pending; the next `once` runs it and waits; never a third."""
    command, out = write_hook(env.root)
    env.configure(hooks={"on_success": f"{command} 30"})
    drop(env.inbox, "clip", "hook-kill-0001")
    daemon = env.start()
    wait_until(lambda: (out / "clip.json").exists(), 30, "the hook to start")
    assert env.sidecar(env.outbox, "clip")["hook"]["state"] == "pending"
    daemon.kill()
    (out / "clip.json").unlink()
    env.configure(hooks={"on_success": command})  # the same hook, quick this time
    once = env.cli("once", "--timeout", "60")
    assert once.returncode == 0, once.stderr
    assert (out / "clip.json").exists(), "the pending hook ran again"
    assert env.sidecar(env.outbox, "clip")["hook"]["state"] == "done"  # `once` waited for it
    (out / "clip.json").unlink()
    assert env.cli("once", "--timeout", "30").returncode == 0
    assert not (out / "clip.json").exists(), "a done hook never runs again"


def test_metrics_and_health_follow_the_daemon(env, sim):
    """/metrics counts polls, 429s, bytes and endings; /healthz says ok; nothing leaks."""
    port = free_port()
    env.configure(metrics={"listen": f"127.0.0.1:{port}"})
    sim.add_fault("task", "status", status=429, retry_after="0.2", count=1)
    for i in range(3):
        drop(env.inbox, f"m{i}", f"metrics-task-{i:04d}")
    daemon = env.start()
    wait_until(lambda: len(list(env.outbox.glob("*.mp4"))) == 3, 30, "three videos")
    values = wait_until(
        lambda: (
            (v := scrape(port)).get("wansync_tasks_finished_total{outcome=succeeded}") == 3 and v
        ),
        10,
        "the finished counter",
    )
    assert values["wansync_polls_total"] >= 3 * 3  # PENDING, RUNNING, SUCCEEDED each
    assert values["wansync_rate_limited_total"] == 1
    assert values["wansync_download_bytes_total"] == sum(
        p.stat().st_size for p in env.outbox.glob("*.mp4")
    )
    assert values["wansync_tasks{state=polling}"] == 0
    assert values["wansync_api_responses_total{endpoint=task,status=429}"] == 1
    health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status == 200 and health.read().strip() == b"ok"
    page = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    assert TEST_KEY.encode() not in page and b"Signature=" not in page
    assert daemon.stop() == 0


def test_metrics_port_taken_is_a_config_error(env, sim):
    """A port that cannot be bound: exit 2, one line naming metrics.listen."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env.configure(metrics={"listen": f"127.0.0.1:{port}"})
        result = env.cli("once", "--timeout", "10")
    assert result.returncode == 2
    assert "metrics.listen" in result.stderr and "Traceback" not in result.stderr


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- issue 21, findings 7 and 9: the metrics port under a flood -----------------------------
def _threads(pid: int) -> int:
    return int(vm_field(pid, "Threads"))


def vm_field(pid: int, name: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split()[1]
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _healthz(port: int, timeout: float) -> bytes:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=timeout).read()


def _hang_up_scrapes(port: int, count: int) -> None:
    """Scrapers that ask for /metrics and reset the connection before reading the answer."""
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Flood:
    """`count` connections to the port: half idle, half trickling a header byte every
    `gap` seconds; a closed one is opened again, as an attacker would."""

    def __init__(self, port: int, count: int, gap: float = 1.0) -> None:
        self.port, self.count, self.gap = port, count, gap
        self.stop = threading.Event()
        self.socks: list[socket.socket | None] = [None] * count
        self.opened = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for i in range(self.count):
                sock = self.socks[i]
                try:
                    if sock is None:
                        sock = self.socks[i] = socket.create_connection(
                            ("127.0.0.1", self.port), timeout=1
                        )
                        sock.sendall(b"G")
                        self.opened += 1
                    elif i % 2:
                        sock.sendall(b"E")
                except OSError:
                    if sock is not None:
                        sock.close()
                    self.socks[i] = None
            self.stop.wait(self.gap)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.socks:
            if sock is not None:
                sock.close()


def test_a_flood_of_idle_metrics_connections_starves_nothing(env, sim):
    """200 idle or trickling clients, reconnecting: /healthz answers within 2 s each time,
    tasks dropped meanwhile are published, and no client costs a thread."""
    port = free_port()
    env.configure(metrics={"listen": f"127.0.0.1:{port}"})
    daemon = env.start()
    daemon.wait_ready()
    assert _healthz(port, 5).strip() == b"ok"
    threads = _threads(daemon.proc.pid)
    flood = _Flood(port, 200)
    try:
        pid = daemon.proc.pid
        wait_until(
            lambda: flood.opened >= 200 or _threads(pid) > threads + 20, 30, "200 connections"
        )
        assert _threads(pid) <= threads + 2, "a thread per connection"
        for i in range(3):
            drop(env.inbox, f"f{i}", f"flood-task-{i:04d}")
        for _ in range(5):
            started = time.monotonic()
            assert _healthz(port, 2).strip() == b"ok"
            assert time.monotonic() - started < 2
            time.sleep(0.5)
        assert _threads(pid) <= threads + 2, "a thread per connection"
        ended = env.wait_ended("f0", "f1", "f2", timeout=30)
        assert all(e["state"] == "succeeded" for e in ended.values())
    finally:
        flood.close()
    assert _healthz(port, 5).strip() == b"ok"
    assert daemon.stop() == 0


def test_scrapers_that_hang_up_leave_one_json_object_per_log_line(env, sim):
    """30 scrapers reset the connection before reading /metrics: no traceback in the log,
    and the next scrape is answered."""
    port = free_port()
    env.configure(metrics={"listen": f"127.0.0.1:{port}"})
    daemon = env.start()
    daemon.wait_ready()
    _hang_up_scrapes(port, 30)
    assert scrape(port)["wansync_healthy"] == 1
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.stderr_path.read_text()
    assert daemon.logs()  # parse_log fails on any line that is not one JSON object


def test_the_metrics_port_at_the_descriptor_limit_backs_off_instead_of_spinning(env, sim):
    """Descriptors capped a few above what the daemon uses, 60 clients reconnecting: accept
    fails with EMFILE; the daemon stays near idle (no busy accept loop), and once the
    clients are gone /healthz answers and a task is published."""
    if not hasattr(resource, "prlimit") or not Path("/proc/self/fd").is_dir():
        pytest.skip("needs Linux: resource.prlimit and /proc")
    port = free_port()
    env.configure(metrics={"listen": f"127.0.0.1:{port}"})
    daemon = env.start()
    daemon.wait_ready()
    pid = daemon.proc.pid
    limit = len(os.listdir(f"/proc/{pid}/fd")) + 8
    try:
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
    except OSError as exc:  # lowering is always allowed; a sandbox may still say no
        pytest.skip(f"cannot lower the daemon's descriptor limit here: {exc}")
    flood = _Flood(port, 60, gap=0.2)
    try:
        # EMFILE from here on: every descriptor below the limit is taken
        wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= limit - 1, 20, "the limit")
        before, started = _cpu_seconds(pid), time.monotonic()
        time.sleep(3.0)  # a measuring window, not a wait for something to happen
        share = (_cpu_seconds(pid) - before) / (time.monotonic() - started)
        assert share < 0.3, f"the daemon used {share:.0%} of a CPU at the descriptor limit"
    finally:
        flood.close()
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert wait_until(lambda: _healthz_or_none(port), 20, "/healthz after the flood") == b"ok"
    drop(env.inbox, "after", "after-flood-0001")
    assert env.wait_ended("after", timeout=30)["after"]["state"] == "succeeded"
    assert daemon.stop() == 0
    warned = daemon.events("metrics.accept_paused")
    assert 1 <= len(warned) <= 2 and "open files" in warned[0]["error"]


def _healthz_or_none(port: int) -> bytes | None:
    try:
        return _healthz(port, 2).strip()
    except OSError:
        return None


# -- issue 21, finding 11: hook results are logged, counted, never lost ---------------------
CHILD_HOOK = """\
import os, subprocess, sys, time
name, out = os.environ["WANSYNC_NAME"], sys.argv[1]
child = subprocess.Popen(["sleep", "300"])  # left behind: it must end with the hook
with open(os.path.join(out, name + ".pid"), "w") as fh:
    fh.write(str(child.pid))
deadline = time.monotonic() + 30
while name == "slow" and not os.path.exists(os.path.join(out, "release")):
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.05)
"""


def _alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _scrape_or_none(port: int) -> dict[str, float] | None:
    try:
        return scrape(port)
    except OSError:
        return None


def test_once_logs_and_counts_its_hooks_and_their_children_end_with_them(env, sim):
    """Under `once`, a hook that is done is counted while another still runs, each
    `hook.ran` is logged, and the `sleep 300` each hook left behind does not outlive it."""
    out = env.root / "hooked"
    out.mkdir()
    script = env.root / "hook.py"
    script.write_text(CHILD_HOOK)
    port = free_port()
    env.configure(
        hooks={"on_success": f"{sys.executable} {script} {out}"},
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    drop(env.inbox, "fast", "hook-fast-0001")
    drop(env.inbox, "slow", "hook-slow-0001")
    once = env.start("once", "--timeout", "60")
    pids: list[int] = []
    try:
        wait_until(
            lambda: (v := _scrape_or_none(port)) and v["wansync_hook_runs_total{result=ok}"] == 1,
            30,
            "the fast hook counted while `once` waits for the slow one",
        )
        pids.append(int((out / "fast.pid").read_text()))
        (out / "release").touch()
        assert once.wait(60) == 0
        pids.append(int((out / "slow.pid").read_text()))
        ran = sorted((e["name"], e["result"]) for e in once.events("hook.ran"))
        assert ran == [("fast", "ok"), ("slow", "ok")]
        for pid in pids:
            wait_until(lambda pid=pid: not _alive(pid), 5, "a hook's child to end with it")
    finally:  # whatever happened, no `sleep 300` of this test is left behind
        for pid_file in out.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid_file.read_text()), 9)


def _seconds(line: dict) -> float:
    return datetime.fromisoformat(line["timestamp"]).timestamp()


def test_an_idle_daemon_handles_a_hook_result_at_once(env, sim):
    """Hooks that end 1 s, 1.7 s and 2.4 s after their task: each `hook.ran` is logged
    within a second of the hook's last output line, not at the loop's next tick."""
    env.configure(
        hooks={"on_success": f"{sys.executable} -c " + shlex.quote(SLEEPY_HOOK)},
        watch={"rescan_interval": 60},
    )
    daemon = env.start()
    daemon.wait_ready()
    for i, delay in enumerate(("1.0", "1.7", "2.4")):
        drop(env.inbox, f"idle{i}-{delay}", f"hook-idle-{i:04d}")
    wait_until(lambda: len(daemon.events("hook.ran")) == 3, 30, "three hook.ran lines")
    assert daemon.stop() == 0
    for ran in daemon.events("hook.ran"):
        said = [e for e in daemon.events("hook.output", name=ran["name"]) if e["line"] == "bye"]
        assert _seconds(ran) - _seconds(said[0]) < 1.0, f"{ran['name']} waited for a tick"


SLEEPY_HOOK = """\
import os, time
time.sleep(float(os.environ["WANSYNC_NAME"].split("-")[1]))
print("bye", flush=True)
"""


def test_hook_results_queued_at_a_stop_are_logged(env, sim):
    """SIGTERM right after four hooks are recorded done: each has its `hook.ran` line."""
    env.configure(hooks={"on_success": "true"}, watch={"rescan_interval": 60})
    daemon = env.start()
    daemon.wait_ready()
    for i in range(4):
        drop(env.inbox, f"stop{i}", f"hook-stop-{i:04d}")
    wait_until(
        lambda: all(
            (env.sidecar(env.outbox, f"stop{i}") or {}).get("hook", {}).get("state") == "done"
            for i in range(4)
        ),
        30,
        "four hooks done",
    )
    assert daemon.stop() == 0
    assert sorted(e["name"] for e in daemon.events("hook.ran")) == [f"stop{i}" for i in range(4)]
