"""Processes the benchmarks measure: the simulator and the daemon, each in its own process.

The simulator runs apart from the code under test so that its CPU is not counted, and
both sides stamp events with `time.monotonic()` (CLOCK_MONOTONIC is system-wide on
Linux, so stamps from different processes compare directly).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

KEY = "bench-key-0123456789"
TICK = os.sysconf("SC_CLK_TCK")


def wait_for(predicate, timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


class SimProcess:
    """`wansync simulate` on a free port of 127.0.0.1; tasks never finish unless scripted."""

    def __init__(self, polls: int = 10**9, tls: tuple[Path, Path] | None = None) -> None:
        extra = ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []
        self.tls = tls
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wansync",
                "simulate",
                "--port",
                "0",
                "--key",
                KEY,
                "--polls",
                str(polls),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        first = self.proc.stdout.readline()  # "DashScope simulator on http://127.0.0.1:P ..."
        self.url = first.split()[3]

    def _call(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        context = ssl.create_default_context(cafile=str(self.tls[0])) if self.tls else None
        with urllib.request.urlopen(req, timeout=120, context=context) as resp:
            return json.loads(resp.read())

    def add_tasks(self, specs: list[dict[str, Any]]) -> None:
        for i in range(0, len(specs), 5000):
            self._call("/_sim/tasks", {"tasks": specs[i : i + 5000]})

    def requests(self, kind: str = "task", since: float = 0.0) -> list[dict[str, Any]]:
        return self._call(f"/_sim/requests?kind={kind}&since={since}")

    def tasks(self) -> list[dict[str, Any]]:
        return self._call("/_sim/tasks")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class DaemonProcess:
    """`wansync run` on three folders under `root`, pointed at the simulator."""

    def __init__(self, root: Path, sim_url: str, **sections: Any) -> None:
        self.root = root
        self.inbox, self.outbox, self.failed = (root / n for n in ("inbox", "outbox", "failed"))
        for folder in (self.inbox, self.outbox, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "inbox": str(self.inbox),
            "outbox": str(self.outbox),
            "failed": str(self.failed),
            "api": {"base_url": sim_url},
            "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            "log": {"format": "json", "level": "info"},
        }
        for key, value in sections.items():
            settings.setdefault(key, {}).update(value)
        self.config = root / "wansync.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.proc: subprocess.Popen | None = None
        self.log_path = root / "daemon.log"

    def start(self, extra_env: dict[str, str] | None = None) -> DaemonProcess:
        env = {**os.environ, "DASHSCOPE_API_KEY": KEY, **(extra_env or {})}
        self._log = self.log_path.open("w")
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wansync", "run", "-c", str(self.config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if f'"{name}"' in line:
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
        return out

    def count(self, name: str) -> int:
        return self.log_path.read_text().count(f'"event": "{name}"')

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def drop(inbox: Path, name: str, task_id: str, in_place: bool = False) -> None:
    """A producer's write: temp + rename, or in place."""
    target = inbox / f"{name}.task"
    if in_place:
        with target.open("w") as fh:
            fh.write(task_id + "\n")
        return
    tmp = inbox / f".{name}.task.tmp"
    tmp.write_text(task_id + "\n")
    os.rename(tmp, target)


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1, so the bench can speak HTTPS like DashScope."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
