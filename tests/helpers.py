"""Shared test machinery: wait on conditions with a deadline, drive the daemon subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

TEST_KEY = "wansync-test-key-7d3f9b2c41e8"


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    what: str | Callable[[], str] = "condition",
    step: float = 0.02,
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline
    (a callable `what` is asked then, so it can say what is still missing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
        time.sleep(step)


def searches(sim: Any) -> list[dict[str, Any]]:
    """The task-list requests of job searches (each names the job's model), not the list
    passes of list-assisted polling (every model, `poll.list_interval`), which share the
    endpoint and its `kind` in the simulator's log."""
    return [r for r in sim.requests("list") if r["query"].get("model_name")]


def drop(inbox: Path, name: str, content: str | bytes) -> Path:
    """Write a task file the way producers should: hidden temp file, then rename."""
    data = content.encode() if isinstance(content, str) else content
    tmp = inbox / f".{name}.task.tmp"
    tmp.write_bytes(data)
    target = inbox / f"{name}.task"
    os.rename(tmp, target)
    return target


class Env:
    """Three folders, a config file, and the simulator's address: one wansync set-up."""

    def __init__(self, root: Path, sim: Any, **overrides: Any) -> None:
        self.root = root
        self.sim = sim
        self.inbox, self.outbox, self.failed = (root / n for n in ("inbox", "outbox", "failed"))
        for folder in (self.inbox, self.outbox, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "wansync.yaml"
        self.settings: dict[str, Any] = {
            "inbox": str(self.inbox),
            "outbox": str(self.outbox),
            "failed": str(self.failed),
            "api": {"base_url": sim.url, "timeout": 2},
            # The task list at the tests' pace, as the polls: a watched task is asked directly
            # only every 40 x interval, and a simulator task that counts looks moves on at each
            # list pass (the default 5 s would hold every job's task back for seconds).
            "poll": {"interval": 0.2, "max_per_second": 50, "list_interval": 0.2},
            "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            "log": {"format": "json", "level": "debug"},
            "watch": {"rescan_interval": 2},
        }
        self.configure(**overrides)
        self.extra_env: dict[str, str] = {}  # for every process it starts (a clock shim)
        self.stderr_files: list[Path] = []
        self.daemons: list[Daemon] = []

    def configure(self, **sections: Any) -> None:
        for key, value in sections.items():
            if isinstance(value, dict):
                self.settings.setdefault(key, {}).update(value)
            else:
                self.settings[key] = value
        self.config_path.write_text(yaml.safe_dump(self.settings))

    def env(self, key: str | None = TEST_KEY) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("DASHSCOPE_API_KEY", "WANSYNC_CONFIG")
        }
        env.update(self.extra_env)
        if key is not None:
            env["DASHSCOPE_API_KEY"] = key
        return env

    def cli(
        self, *args: str, key: str | None = TEST_KEY, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        """Run `wansync ARGS -c CONFIG` to completion."""
        return subprocess.run(
            [sys.executable, "-m", "wansync", *args, "-c", str(self.config_path)],
            env=self.env(key),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(
        self,
        command: str = "run",
        *extra: str,
        key: str | None = TEST_KEY,
        preexec_fn: Callable[[], None] | None = None,
    ) -> Daemon:
        stderr = self.root / f"daemon-{len(self.stderr_files)}.log"
        self.stderr_files.append(stderr)
        daemon = Daemon(
            [sys.executable, "-m", "wansync", command, "-c", str(self.config_path), *extra],
            self.env(key),
            stderr,
            preexec_fn,
            self.inbox / ".wansync.lock",
        )
        self.daemons.append(daemon)
        return daemon

    def reap(self) -> None:
        """Kill whatever a failed test left running, so no daemon outlives its test."""
        for daemon in self.daemons:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(10)

    # -- what the folders hold ----------------------------------------------------------
    def sidecar(self, folder: Path, name: str) -> dict[str, Any] | None:
        try:
            return json.loads((folder / f"{name}.status.json").read_text())
        except (OSError, ValueError):
            return None

    def ended(self, name: str, kind: str = ".task") -> dict[str, Any] | None:
        """The final sidecar of `name` once it is complete in outbox/ or failed/.

        `kind` is the file that moved with it: `.task`, or `.job` for a job (which may
        have failed before it ever had a `.task`).
        """
        for folder in (self.outbox, self.failed):
            data = self.sidecar(folder, name)
            if (
                data
                and (folder / f"{name}{kind}").exists()
                and not (self.inbox / f"{name}.status.json").exists()
            ):
                return data
        return None

    def wait_ended(
        self, *names: str, timeout: float = 30, kind: str = ".task"
    ) -> dict[str, dict[str, Any]]:
        return {
            n: wait_until(lambda n=n: self.ended(n, kind), timeout, f"{n} to end") for n in names
        }

    def all_logs(self) -> list[dict[str, Any]]:
        lines = []
        for path in self.stderr_files:
            lines.extend(parse_log(path.read_text(errors="replace")))
        return lines

    def every_file_text(self) -> str:
        """Everything under the three folders and the logs, for leak checks."""
        out = []
        for folder in (self.inbox, self.outbox, self.failed):
            for path in folder.rglob("*"):
                if path.is_file() and not path.name.endswith(".mp4"):
                    out.append(path.read_text(errors="replace"))
        for path in self.stderr_files:
            out.append(path.read_text(errors="replace"))
        return "\n".join(out)


def parse_log(text: str) -> list[dict[str, Any]]:
    """Every stderr line must be one JSON object; anything else fails the test."""
    events = []
    for line in text.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"stderr line is not JSON: {line[:200]!r}") from None
    return events


def sigint_default() -> None:
    """In a child before exec: SIGINT back to its default action.

    A shell runs a background job (`pytest &`) with SIGINT ignored, children inherit the
    ignore, and a Python started that way never gets KeyboardInterrupt: every test that
    sends SIGINT starts its child through this.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def with_sigint_default(first: Callable[[], None] | None) -> Callable[[], None]:
    """`first` (a test's own preexec_fn), then `sigint_default`."""

    def both() -> None:
        if first is not None:
            first()
        sigint_default()

    return both


class Daemon:
    """`wansync run` (or `once`) as a real subprocess; stderr goes to a file."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        stderr: Path,
        preexec_fn: Callable[[], None] | None = None,
        lock: Path | None = None,
    ) -> None:
        self.lock = lock
        self.stderr_path = stderr
        self._stderr = stderr.open("w")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            text=True,
            preexec_fn=with_sigint_default(preexec_fn),
        )

    def logs(self) -> list[dict[str, Any]]:
        return parse_log(self.stderr_path.read_text(errors="replace"))

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.logs()
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_event(self, event: str, timeout: float = 20, **match: Any) -> dict[str, Any]:
        return wait_until(lambda: self.events(event, **match), timeout, f"log event {event}")[0]

    def wait_ready(self, timeout: float = 20) -> None:
        self.wait_event("daemon.started", timeout)

    def holds_lock(self) -> bool:
        try:
            return self.lock is not None and self.lock.read_text().strip() == str(self.proc.pid)
        except OSError:
            return False

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM a daemon that is up, and wait; the contract says exit 0 within 10 s."""
        if self.proc.poll() is None:
            wait_until(
                lambda: self.proc.poll() is not None or self.holds_lock(),
                20,
                "the daemon to take its lock (its signal handlers are set by then)",
            )
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._stderr.close()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._stderr.close()
