"""docs/hooks.md, docs/monitoring.md on the real daemon: hooks after the files land, metrics."""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

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
