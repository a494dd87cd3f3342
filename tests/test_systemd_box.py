"""wansync under a real systemd (PID 1), installed as docs/service.md says: run, reload, crash.

`../shared/tools/systemd-box` boots systemd in a throwaway container over a copy-on-write
overlay of this machine's root; the box shares the host's network, so the simulator started
here on 127.0.0.1 answers the unit. One box and one install per module (docs/service.md steps 1-2),
then each unit in turn (steps 3-4): `wansync.service` and the instance `wansync@beijing`.
To add a check: `service.reconfigure(section={...})` writes the baseline config with that
section merged in and restarts the unit (it must come up); `service.box.put(path, text,
mode)` writes a file in the box (a hook script), `service.box.run(...)` runs a command
there; a server the unit listens with on 127.0.0.1 is reachable from this process too.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.helpers import parse_log, wait_until
from tests.systemd_box import (
    OUTSIDER,
    PRODUCER,
    TOOL,
    UNITS,
    WANSYNC,
    Box,
    Service,
    install_project,
    new_key,
)
from tests.test_jobs import SAMPLE_PNG
from wansync.simulator import Simulator


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    """One booted box with wansync in /opt/wansync; powered off and removed whatever happens."""
    if not TOOL.is_file():
        pytest.skip(f"{TOOL} is missing")
    if os.geteuid() != 0:
        pytest.skip("systemd-box needs root")
    where = tmp_path_factory.mktemp("systemd-box")
    try:
        up = subprocess.run(
            [str(TOOL), "up", str(where)], capture_output=True, text=True, timeout=180
        )
        if up.returncode != 0:
            pytest.skip(f"systemd-box up failed: {up.stderr.strip()[-500:]}")
        booted = Box(where)
        install_project(booted)
        yield booted
    finally:
        subprocess.run([str(TOOL), "down", str(where)], capture_output=True, timeout=180)


@pytest.fixture(scope="module", params=list(UNITS))
def installed(request: pytest.FixtureRequest, box: Box) -> Iterator[Service]:
    """docs/service.md steps 3-4 for one unit, with its own simulator; disabled and stopped after"""
    with Simulator(pending_polls=1, running_polls=1) as sim:
        service = Service(box, request.param, sim)
        try:
            service.install()
            yield service
        finally:
            box.run("systemctl", "disable", "--now", service.unit, check=False)


@pytest.fixture
def service(installed: Service) -> Service:
    """The unit running with the baseline config, whatever the test before it left."""
    installed.ensure_baseline()
    return installed


STATUS_LINE = re.compile(r"\d+ polling, \d+ downloading, (\d+) done, \d+ failed")


def test_start_returns_only_once_ready(service: Service) -> None:
    """`systemctl start` returns after READY=1: active at once, the inbox already scanned."""
    service.box.run("systemctl", "stop", service.service)
    service.drop("waiting", service.task_id("waiting"))  # there before the daemon starts
    waiting = f"{service.state}/inbox/waiting.task"
    service.box.run("runuser", "-u", PRODUCER, "--", "touch", "-d", "10 seconds ago", waiting)
    cursor = service.cursor()
    service.box.run("systemctl", "start", service.service)
    props = service.show("ActiveState", "SubState", "StatusText")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    assert STATUS_LINE.search(props["StatusText"])  # sent with READY=1, in one datagram
    service.wait_event(cursor, "daemon.started", timeout=5)
    names = [e["event"] for e in service.events(cursor)]
    assert names.index("task.discovered") < names.index("daemon.started")
    assert service.wait_ended("waiting")["waiting"]["state"] == "succeeded"


def test_a_group_member_drops_tasks_and_gets_mp4s(service: Service) -> None:
    """Tasks renamed into the inbox by a wansync-group user end as MP4s it can move out."""
    ids = {"clip-a": service.task_id("clip"), "clip-b": service.task_id("clip")}
    ids["clip-bad"] = service.task_id("fail")  # the simulator fails ids that say "fail"
    for name, task_id in ids.items():
        service.drop(name, task_id)
    ended = service.wait_ended(*ids)
    assert [ended[n]["state"] for n in ids] == ["succeeded", "succeeded", "failed"]
    assert service.video_is("clip-a", ids["clip-a"]) and service.video_is("clip-b", ids["clip-b"])
    video = f"{service.state}/outbox/clip-a.mp4"
    group, mode = service.box.run("stat", "-c", "%G %a", video).stdout.split()
    assert group == "wansync" and int(mode, 8) & 0o060 == 0o060  # UMask=0002, setgid folder
    service.box.run("runuser", "-u", PRODUCER, "--", "mv", video, f"/home/{PRODUCER}/")
    assert (service.folder("failed") / "clip-bad.task").exists()


def test_journal_is_one_json_object_per_line_and_never_the_key(service: Service) -> None:
    """`journalctl _SYSTEMD_UNIT=` gives only JSON lines; no journal field holds the key."""
    cursor = service.cursor()
    service.drop("logged", service.task_id("logged"))
    service.drop("logged-bad", service.task_id("fail"))
    service.wait_ended("logged", "logged-bad")
    service.box.run("systemctl", "reload", service.service)
    service.wait_event(cursor, "config.reloaded")
    lines = service.lines(cursor)
    events = parse_log("\n".join(lines))
    assert len(events) == len(lines) >= 6
    assert all({"timestamp", "level", "event"} <= e.keys() for e in events)
    seen = {e["event"] for e in events}
    assert {"task.discovered", "task.succeeded", "task.failed", "config.reloaded"} <= seen
    everything = service.box.run("journalctl", "-o", "json").stdout + service.status()
    everything += service.box.run("systemctl", "show", service.service).stdout
    assert service.keys and not [k for k in service.keys if k in everything]


def test_status_shows_the_live_status_line(service: Service) -> None:
    """`systemctl status` shows the daemon's STATUS= counts; `wansync status` lists the task."""
    service.drop("counted", service.task_id("counted"))
    service.wait_ended("counted")

    def done_count() -> int:
        found = re.search(r'Status: "' + STATUS_LINE.pattern, service.status())
        return int(found.group(1)) if found else 0

    wait_until(lambda: done_count() >= 1, 10, "a STATUS line with a done count")
    argv = ["/opt/wansync/bin/wansync", "status", "-c", service.config]
    listed = service.box.run("runuser", "-u", PRODUCER, "--", *argv).stdout
    assert "counted" in listed


def test_reload_applies_a_new_log_level(service: Service) -> None:
    """`systemctl reload` with log.level debug: the same process, now writing debug lines."""
    cursor, pid, restarts = service.cursor(), service.main_pid(), service.restarts()
    service.drop("quiet", service.task_id("quiet", pending_polls=4))
    service.wait_ended("quiet")
    assert not [e for e in service.events(cursor) if e["level"] == "debug"]
    service.write_config(log={"level": "debug"})
    service.box.run("systemctl", "reload", service.service)
    service.wait_event(cursor, "config.reloaded")
    service.drop("chatty", service.task_id("chatty", pending_polls=4))
    service.wait_ended("chatty")
    assert service.events(cursor, "task.polled", name="chatty", level="debug")
    assert service.main_pid() == pid and service.restarts() == restarts


def test_a_new_key_in_the_credential_file_applies_on_restart(service: Service) -> None:
    """Key file replaced as docs/service.md says + `systemctl restart`: waiting tasks finish."""
    cursor = service.cursor()
    old_key = service.sim.key
    service.sim.key = new_key()  # the account's key was rotated: the old one is refused
    service.drop("rotated", service.task_id("rotated"))
    service.wait_event(cursor, "auth.rejected")
    service.install_key(service.sim.key)
    assert service.restart().returncode == 0
    assert service.wait_ended("rotated")["rotated"]["state"] == "succeeded"
    everything = service.box.run("journalctl", "-o", "json").stdout
    assert old_key not in everything and service.sim.key not in everything


def test_reload_applies_a_new_key_from_a_key_file_the_daemon_owns(service: Service) -> None:
    """`api.key_file` owned by wansync, mode 0400: a new key there + `systemctl reload`."""
    key_file = f"/etc/wansync/{service.tag}.reloadable.key"
    service.install_key(service.sim.key, key_file, owner="wansync")
    service.reconfigure(api={"key_file": key_file})
    cursor, pid = service.cursor(), service.main_pid()
    service.sim.key = new_key()
    service.drop("reloaded", service.task_id("reloaded"))
    service.wait_event(cursor, "auth.rejected")
    service.install_key(service.sim.key, key_file, owner="wansync")
    service.box.run("systemctl", "reload", service.service)
    assert service.wait_ended("reloaded")["reloaded"]["state"] == "succeeded"
    assert service.main_pid() == pid
    service.install_key(service.sim.key)  # the credential again, for the tests after this one
    everything = service.box.run("journalctl", "-o", "json").stdout
    assert not [k for k in service.keys if k in everything]


def test_kill_9_is_restarted_and_every_task_ends_exactly_once(service: Service) -> None:
    """kill -9 mid-poll and mid-download: systemd restarts it; each task ends once, intact."""
    ids = {f"k9-poll-{i}": service.task_id("k9poll", seconds=4) for i in range(3)}
    for i in range(2):
        ids[f"k9-load-{i}"] = service.task_id("k9load", video_size=3_000_000, video_rate=1e6)
    cursor, pid, restarts = service.cursor(), service.main_pid(), service.restarts()
    for name, task_id in ids.items():
        service.drop(name, task_id)
    wait_until(lambda: len(service.events(cursor, "download.started")) >= 2, 20, "downloads")
    assert not service.events(cursor, "task.succeeded")  # everything is still in flight
    service.box.run("kill", "-9", str(pid))
    wait_until(
        lambda: service.restarts() == restarts + 1 and service.active(), 30, "a restart by systemd"
    )
    assert service.main_pid() != pid
    ended = service.wait_ended(*ids, timeout=60)
    assert all(ended[n]["state"] == "succeeded" and service.video_is(n, ids[n]) for n in ids)
    succeeded = [e["name"] for e in service.events(cursor, "task.succeeded")]
    assert sorted(succeeded) == sorted(ids)  # once each, across both processes
    published = {p.name for p in service.folder("outbox").iterdir() if p.name.startswith("k9-")}
    assert published == {f"{n}{ext}" for n in ids for ext in (".mp4", ".status.json", ".task")}
    leftovers = [p for p in service.folder("inbox").rglob("*") if "k9" in p.name]
    assert not leftovers and not list(service.folder("failed").glob("k9-*"))


def test_a_wedged_daemon_is_killed_by_the_watchdog_and_restarted(service: Service) -> None:
    """SIGSTOP: the pings stop, so after WatchdogSec (3 s by a drop-in) systemd restarts it."""
    dropin = f"/etc/systemd/system/{service.service}.d/watchdog.conf"
    try:
        service.box.put(dropin, "[Service]\nWatchdogSec=3\n")
        service.box.run("systemctl", "daemon-reload")
        service.reconfigure()
        assert service.show("WatchdogUSec")["WatchdogUSec"] == "3s"
        pinged = service.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"]
        wait_until(
            lambda: (
                service.show("WatchdogTimestampMonotonic")["WatchdogTimestampMonotonic"] != pinged
            ),
            5,
            "a watchdog ping",
        )
        cursor, pid, restarts = service.cursor(), service.main_pid(), service.restarts()
        service.box.run("kill", "-STOP", str(pid))
        wait_until(lambda: service.restarts() == restarts + 1 and service.active(), 30, "a restart")
        assert service.main_pid() != pid
        assert any("Watchdog timeout" in line for line in service.lines(cursor, unit_only=False))
        service.drop("after-watchdog", service.task_id("afterwd"))
        assert service.wait_ended("after-watchdog")["after-watchdog"]["state"] == "succeeded"
    finally:
        service.box.run("rm", "-rf", os.path.dirname(dropin))
        service.box.run("systemctl", "daemon-reload")
        service.settings = {}  # the next test restarts it without the drop-in


def test_stop_ends_with_result_success(service: Service) -> None:
    """`systemctl stop`: SIGTERM, the daemon exits 0 by itself, systemd records success."""
    cursor = service.cursor()
    service.box.run("systemctl", "stop", service.service)
    props = service.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainCode": "1",  # CLD_EXITED: it exited, it was not killed by the signal
        "ExecMainStatus": "0",
    }
    assert service.events(cursor, "daemon.stopped")


def test_a_bad_config_exits_2_and_is_not_restarted(service: Service) -> None:
    """An unknown key: exit 2 with one line naming it; failed at once, no restart scheduled."""
    service.write_config(poll={"intervall": 1})
    cursor = service.cursor()
    assert service.restart().returncode != 0
    props = service.show("ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {
        "ActiveState": "failed",
        "SubState": "failed",  # not "auto-restart": RestartPreventExitStatus=2 held
        "Result": "exit-code",
        "ExecMainStatus": "2",
        "NRestarts": "0",
    }
    assert [line for line in service.lines(cursor) if "poll.intervall" in line]


def test_metrics_answer_from_inside_the_hardened_unit(service: Service) -> None:
    """`metrics.listen` on 127.0.0.1: /metrics and /healthz answer from the sandboxed unit,
    and the finished counter follows a task dropped by a producer."""
    port = free_port()
    service.reconfigure(metrics={"listen": f"127.0.0.1:{port}"})
    base = f"http://127.0.0.1:{port}"
    health = wait_until(lambda: fetch(f"{base}/healthz"), 20, "/healthz")
    assert health == (200, "ok")
    service.drop("counted", service.task_id("counted"))
    service.wait_ended("counted")

    def finished() -> float:
        text = fetch(f"{base}/metrics")[1]
        match = re.search(r'^wansync_tasks_finished_total\{outcome="succeeded"\} (\S+)', text, re.M)
        return float(match.group(1)) if match else 0.0

    wait_until(lambda: finished() >= 1, 10, "the finished counter")
    page = fetch(f"{base}/metrics")[1]
    assert "wansync_polls_total" in page and not any(k in page for k in service.keys)


HOOK = """#!/bin/sh
# what a hook may do under the unit's sandbox: write beside the files, read its variables
out="$PWD/$WANSYNC_NAME.hooked"
{ id -un; echo "$WANSYNC_EVENT $WANSYNC_VIDEO"; env; } > "$out"
# and what it may not: write outside the state folder, read the key's folder
touch /etc/wansync/hook-was-here 2>/dev/null && echo "wrote /etc" >> "$out"
cat /etc/wansync/*key* >/dev/null 2>&1 && echo "read the key" >> "$out"
exit 0
"""


def test_a_hook_runs_under_the_units_sandbox(service: Service) -> None:
    """hooks.on_success runs as `wansync` in the outbox with WANSYNC_*, never sees the key,
    and cannot write outside the state folder or read the key file."""
    service.box.put("/usr/local/bin/wansync-test-hook", HOOK, "0755")
    service.reconfigure(hooks={"on_success": "/usr/local/bin/wansync-test-hook"})
    service.drop("hooked", service.task_id("hooked"))
    service.wait_ended("hooked")
    # The hook writes its file a line at a time: read it once the hook has exited (its
    # record says done), never while it is still writing.
    wait_until(
        lambda: (service.ended("hooked") or {}).get("hook", {}).get("state") == "done",
        30,
        "the hook to run and exit 0",
    )
    text = (service.folder("outbox") / "hooked.hooked").read_text()
    lines = text.splitlines()
    assert lines[0] == "wansync"
    assert lines[1] == f"succeeded {service.state}/outbox/hooked.mp4"
    assert "wrote /etc" not in text and "read the key" not in text
    assert not any(key in text for key in service.keys)


def test_a_producer_in_the_group_follows_the_service_with_submit_wait(service: Service) -> None:
    """A member of the wansync group, with no API key and no access to the lock, runs
    `submit --wait` while the service runs: it follows the service and prints the MP4."""
    inbox = f"{service.state}/inbox"
    picture = f"{inbox}/pictures/{service.tag}-frame.png"  # where the service can read it
    service.box.path(picture).parent.mkdir(exist_ok=True)
    service.box.path(picture).write_bytes(SAMPLE_PNG)
    name = f"member-{service.tag}"
    argv = [WANSYNC, "submit", picture, "--prompt", "a producer waits", "--name", name]
    result = service.as_user(PRODUCER, *argv, "--wait", "--timeout", "60", "-c", service.config)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{service.state}/outbox/{name}.mp4"
    assert "following the wansync that runs this inbox" in result.stderr
    assert "Traceback" not in result.stderr and "no API key" not in result.stderr
    owner_mode = service.box.run("stat", "-c", "%U %a", f"{inbox}/.wansync.lock").stdout
    assert owner_mode.split() == ["wansync", "600"]
    status = service.as_user(PRODUCER, WANSYNC, "status", "-c", service.config)
    assert f"the daemon of {inbox} runs (PID {service.main_pid()}" in status.stderr


def test_a_picture_in_the_producers_home_is_refused_before_any_job(service: Service) -> None:
    """`ProtectHome=yes`: the service cannot see /home. `submit` of a picture there says so
    at once (exit 2, where to put it) and writes no job."""
    picture = f"/home/{PRODUCER}/{service.tag}-home.png"
    service.box.path(picture).write_bytes(SAMPLE_PNG)
    service.box.run("chown", f"{PRODUCER}:", picture)
    name = f"home-{service.tag}"
    argv = [WANSYNC, "submit", picture, "--prompt", "from home", "--name", name]
    result = service.as_user(PRODUCER, *argv, "-c", service.config)
    assert result.returncode == 2, result.stderr
    said = f"{picture}: the daemon of {service.state}/inbox runs as user wansync, who cannot"
    assert said in result.stderr
    assert "/home: the unit's ProtectHome=yes hides it from the service" in result.stderr
    assert not (service.folder("inbox") / f"{name}.job").exists()


HOLDER = """
import fcntl, os, sys, time
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
except PermissionError:
    print("refused", flush=True)
    sys.exit(13)
print("opened", flush=True)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
time.sleep(120)
"""


def test_a_user_outside_the_group_cannot_keep_the_service_from_restarting(
    service: Service,
) -> None:
    """Any local user may read the inbox. One waits for a flock on the lock, to take it
    the moment the daemon stops: the restart must still come up (not exit 3)."""
    holder = f"wansync-test-holder-{service.tag}"
    lock = f"{service.state}/inbox/.wansync.lock"
    run = ["systemd-run", f"--uid={OUTSIDER}", f"--unit={holder}", "--collect"]
    service.box.run(*run, "/usr/bin/python3", "-c", HOLDER, lock)
    said = f"_SYSTEMD_UNIT={holder}.service"

    def holder_said() -> str:
        return service.box.run("journalctl", "-q", "-o", "cat", said).stdout

    try:
        wait_until(lambda: holder_said().strip(), 20, "the outsider's try")
        result = service.restart()
        assert result.returncode == 0, f"{result.stderr}\n{service.status()}"
        assert service.active(), service.status()
        assert holder_said().split() == ["refused"]
        service.drop("after-outsider", service.task_id("outsider"))
        assert service.wait_ended("after-outsider")["after-outsider"]["state"] == "succeeded"
    finally:
        service.box.run("systemctl", "stop", f"{holder}.service", check=False)


SWAPPER = """
import fcntl, os, sys, time
inbox = sys.argv[1]
os.rename(inbox, inbox + ".real")  # the member may write its parent (2775, the group's)
os.mkdir(inbox)
os.chmod(inbox, 0o2775)  # the service may write it, as it may the real one
with open(os.path.join(inbox, "theirs.task"), "w") as f:
    f.write("theirs-task-00001\\n")
fd = os.open(os.path.join(inbox, ".wansync.lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("holding", flush=True)
time.sleep(120)
"""


def test_a_member_who_puts_a_locked_folder_in_place_of_the_inbox_cannot_keep_it_down(
    service: Service,
) -> None:
    """A group member renames the inbox away and puts a folder of their own there, holding
    a lock of their own in it. The restart must come up (before: exit 3, "belongs to user
    nobody… start the service"): their folder is moved aside whole, the journal says so
    naming it, and a new inbox does the work."""
    holder = f"wansync-test-swapper-{service.tag}"
    inbox = f"{service.state}/inbox"
    run = ["systemd-run", f"--uid={PRODUCER}", f"--unit={holder}", "--collect"]
    service.box.run(*run, "/usr/bin/python3", "-c", SWAPPER, inbox)
    said = f"_SYSTEMD_UNIT={holder}.service"

    def holder_said() -> str:
        return service.box.run("journalctl", "-q", "-o", "cat", said).stdout

    try:
        wait_until(lambda: holder_said().strip(), 20, "the member's swap")
        assert holder_said().split() == ["holding"]
        cursor = service.cursor()
        result = service.restart()
        assert result.returncode == 0, f"{result.stderr}\n{service.status()}"
        assert service.active(), service.status()
        [moved] = service.events(cursor, "inbox.not_ours")
        [aside] = service.box.path(service.state).glob("inbox.not-ours.*")
        assert moved["path"] == inbox and moved["moved_to"] == f"{service.state}/{aside.name}"
        assert "PrivateUsers=yes" in moved["owner"]  # the unit cannot name them: not "nobody"
        assert sorted(p.name for p in aside.iterdir()) == [".wansync.lock", "theirs.task"]
        service.drop("after-swap", service.task_id("swap"))
        assert service.wait_ended("after-swap")["after-swap"]["state"] == "succeeded"
    finally:
        service.box.run("systemctl", "stop", f"{holder}.service", check=False)
        service.box.run("sh", "-c", f"rm -rf {inbox}.real {inbox}.not-ours.*", check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode().strip()
    except OSError:
        return None
