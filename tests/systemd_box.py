"""Machinery for test_systemd_box.py: a booted systemd-box and a wansync unit inside it.

`Box` runs commands inside the box as root with a clean environment; `Service` is one
installed unit with its own simulator and key, and what the tests do to it: write the
config and restart, read `systemctl show` and the journal, drop tasks as a group member.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import parse_log, wait_until
from wansync.simulator import Simulator

REPO = Path(__file__).resolve().parent.parent
# beside the repository in the project's workspace; $WANSYNC_SYSTEMD_BOX for a worktree
# (or a checkout) that lives elsewhere
TOOL = Path(
    os.environ.get("WANSYNC_SYSTEMD_BOX") or REPO.parent / "shared" / "tools" / "systemd-box"
)
SRC = "/usr/local/src/wansync"  # the checkout, copied into the box
WHEELS = "/usr/local/src/wheelhouse"  # built on the host, so pip in the box needs no network
PRODUCER = "pipeline"  # a user in the wansync group: docs/service.md `usermod -aG wansync …`
OUTSIDER = "mallory"  # any other local user: may read the inbox (it is 2775), no more
WANSYNC = "/opt/wansync/bin/wansync"
BOX_ENV = (
    "PATH=/usr/sbin:/usr/bin:/sbin:/bin",  # so `python3` is the distribution's /usr/bin/python3
    "LANG=C.UTF-8",
    "HOME=/root",
    "PIP_CONFIG_FILE=/dev/null",
    "SYSTEMD_COLORS=0",
)
UNITS = {  # unit: (unit file, config, key file, state directory), as docs/service.md lays them out
    "wansync": (
        "wansync.service",
        "/etc/wansync/config.yaml",
        "/etc/wansync/dashscope_api_key",
        "/var/lib/wansync",
    ),
    "wansync@beijing": (
        "wansync@.service",
        "/etc/wansync/beijing.yaml",
        "/etc/wansync/beijing.key",
        "/var/lib/wansync/beijing",
    ),
}


class Box:
    """A booted systemd-box; commands run inside as root with a clean environment."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.root = where / "root"

    def run(
        self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(TOOL), "exec", str(self.where), "env", "-i", *BOX_ENV, *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr[-2000:]}")
        return result

    def put(self, inside: str, text: str, mode: str = "0644", *options: str) -> None:
        """Write a file in the box as root (`install`: hooks, drop-ins, configs, keys)."""
        self.run("install", "-D", "-m", mode, *options, "/dev/stdin", inside, input=text)

    def path(self, inside: str) -> Path:
        """Where a file of the box is seen from the host (to read what the daemon wrote)."""
        return self.root / inside.lstrip("/")


def install_project(box: Box) -> None:
    """docs/service.md steps 1-2, as root in the box; pip installs the checkout from wheels."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"
    )
    shutil.copytree(REPO, box.path(SRC), ignore=ignore)
    # the box's python3 is the host's /usr/bin/python3 (same root): build wheels for it
    pip = [sys.executable, "-m", "pip", "--python", "/usr/bin/python3"]
    wheels = [*pip, "wheel", "-q", "-w", str(box.path(WHEELS))]
    built = subprocess.run(
        [*wheels, str(box.path(SRC)), "setuptools>=77"], capture_output=True, text=True, timeout=600
    )
    assert built.returncode == 0, built.stderr[-2000:]
    box.run("python3", "-m", "venv", "/opt/wansync")
    assert "home = /usr/bin" in box.path("/opt/wansync/pyvenv.cfg").read_text()
    box.run("/opt/wansync/bin/pip", "install", "-q", "--no-index", "--find-links", WHEELS, SRC)
    box.run(
        "sh", "-c", "useradd --system --home-dir /var/lib/wansync --shell /usr/sbin/nologin wansync"
    )
    box.run("useradd", "--create-home", PRODUCER)
    box.run("usermod", "-aG", "wansync", PRODUCER)
    box.run("useradd", "--create-home", OUTSIDER)  # a local user, not in the group


def new_key() -> str:
    return f"sk-box-{secrets.token_hex(12)}"


class Service:
    """One installed unit, its own simulator and key, and what the tests do to it."""

    def __init__(self, box: Box, unit: str, sim: Simulator) -> None:
        self.box, self.unit, self.sim = box, unit, sim
        self.unit_file, self.config, self.key_file, self.state = UNITS[unit]
        self.service = f"{unit}.service"
        self.tag = unit.replace("@", "-")
        self.keys: list[str] = []  # every key ever used: none may reach the journal
        self.settings: dict[str, Any] = {}
        self.counter = 0

    # -- set-up -----------------------------------------------------------------------
    def baseline(self) -> dict[str, Any]:
        return {
            "inbox": f"{self.state}/inbox",
            "outbox": f"{self.state}/outbox",
            "failed": f"{self.state}/failed",
            "api": {"base_url": self.sim.url, "timeout": 2},
            # The task list at the tests' pace, as the polls: a watched task is asked directly
            # only every 40 x interval, and a simulator task that counts looks moves on at each
            # list pass (the default 5 s would hold every job's task back for seconds).
            "poll": {"interval": 0.2, "max_per_second": 50, "list_interval": 0.2},
            "download": {"allowed_hosts": ["127.0.0.1"], "require_https": False},
            "watch": {"rescan_interval": 2},
        }

    def write_config(self, **sections: Any) -> None:
        """The baseline config with `sections` merged in (a dict updates that section)."""
        settings = self.baseline()
        for key, value in sections.items():
            if isinstance(value, dict):
                settings.setdefault(key, {}).update(value)
            else:
                settings[key] = value
        self.box.put(self.config, yaml.safe_dump(settings))
        self.settings = settings

    def install_key(self, key: str, path: str | None = None, owner: str | None = None) -> None:
        """docs/service.md: a root-only KEYFILE (0600) holding the key; the simulator takes it.

        With `owner`, a file that user alone reads (0400), for `api.key_file`.
        """
        options = ("-o", owner) if owner else ()
        self.box.put(path or self.key_file, key + "\n", "0400" if owner else "0600", *options)
        self.sim.key = key
        self.keys.append(key)

    def install(self) -> None:
        """docs/service.md steps 3-4: config, key, `check --online` as root, the unit, enable --now.

        `check` runs with no key in its environment: as root it must find the unit's own
        key file for this config (`dashscope_api_key`, or `NAME.key` for `NAME.yaml`).
        """
        self.box.run("install", "-d", "-m", "0755", "/etc/wansync")
        self.write_config()
        self.install_key(new_key())
        check = self.box.run("/opt/wansync/bin/wansync", "check", "-c", self.config, "--online")
        assert f"key: found ({self.key_file}, the service's key file)" in check.stdout, check
        assert "api: ok" in check.stdout, check.stdout
        self.box.run("cp", f"{SRC}/systemd/{self.unit_file}", "/etc/systemd/system/")
        self.box.run("systemctl", "daemon-reload")
        self.box.run("systemctl", "enable", "--now", self.unit)
        assert self.show("ActiveState")["ActiveState"] == "active", self.status()

    def restart(self) -> subprocess.CompletedProcess[str]:
        """`systemctl restart`, after clearing the start-rate limit that test restarts reach."""
        self.box.run("systemctl", "reset-failed", self.service, check=False)
        return self.box.run("systemctl", "restart", self.service, check=False)

    def reconfigure(self, **sections: Any) -> None:
        """Write the baseline config with `sections` merged in, restart; the unit must come up."""
        self.write_config(**sections)
        result = self.restart()
        assert result.returncode == 0, f"{result.stderr}\n{self.status()}"
        assert self.show("ActiveState")["ActiveState"] == "active", self.status()

    def ensure_baseline(self) -> None:
        if self.settings != self.baseline() or not self.active():
            self.reconfigure()

    # -- what systemd says -------------------------------------------------------------
    def show(self, *props: str) -> dict[str, str]:
        argv = ["systemctl", "show", self.service, *(f"--property={p}" for p in props)]
        lines = self.box.run(*argv).stdout.splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def active(self) -> bool:
        return self.show("ActiveState")["ActiveState"] == "active"

    def main_pid(self) -> int:
        return int(self.show("MainPID")["MainPID"])

    def restarts(self) -> int:
        return int(self.show("NRestarts")["NRestarts"])

    def status(self) -> str:
        return self.box.run(
            "systemctl", "status", "--no-pager", "-n", "5", self.service, check=False
        ).stdout

    # -- the journal -------------------------------------------------------------------
    def cursor(self) -> str:
        out = self.box.run("journalctl", "-q", "-n", "0", "--show-cursor").stdout
        return out.split("-- cursor: ", 1)[1].strip()

    def lines(self, after: str, *, unit_only: bool = True) -> list[str]:
        """Journal lines after cursor `after`: the daemon's own, or with `-u` also systemd's.

        `--after-cursor` with a match skips the first matching entry when the cursor's own
        entry does not match (systemd 252), so: `--cursor` and drop the cursor's entry.
        """
        match = f"_SYSTEMD_UNIT={self.service}" if unit_only else f"--unit={self.service}"
        argv = ["journalctl", "-q", "-o", "json", "--output-fields=MESSAGE", match]
        entries = [
            json.loads(line)
            for line in self.box.run(*argv, f"--cursor={after}").stdout.splitlines()
        ]
        return [str(e["MESSAGE"]) for e in entries if e["__CURSOR"] != after]

    def events(self, after: str, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        """The daemon's log after `after`; a line that is not one JSON object fails the test."""
        return [
            e
            for e in parse_log("\n".join(self.lines(after)))
            if event in (None, e.get("event")) and all(e.get(k) == v for k, v in match.items())
        ]

    def wait_event(self, after: str, event: str, timeout: float = 20, **match: Any) -> None:
        wait_until(lambda: self.events(after, event, **match), timeout, f"{event} in the journal")

    # -- the folders -------------------------------------------------------------------
    def task_id(self, what: str, **spec: Any) -> str:
        """A fresh task id for this unit; `spec` scripts it in the simulator."""
        self.counter += 1
        task_id = f"{what}-{self.tag}-{self.counter:04d}"
        if spec:
            self.sim.add_task(task_id, **spec)
        return task_id

    def drop(self, name: str, task_id: str) -> None:
        """A member of the wansync group writes `.NAME.task.tmp`, then renames it."""
        script = 'printf "%s\\n" "$1" > "$2/.$3.task.tmp" && mv "$2/.$3.task.tmp" "$2/$3.task"'
        inbox = f"{self.state}/inbox"
        self.box.run(
            "runuser", "-u", PRODUCER, "--", "sh", "-c", script, "sh", task_id, inbox, name
        )

    def as_user(
        self, user: str, *argv: str, timeout: float = 90
    ) -> subprocess.CompletedProcess[str]:
        """A command run as `user` (`runuser`), with no API key in its environment."""
        return self.box.run("runuser", "-u", user, "--", *argv, check=False, timeout=timeout)

    def folder(self, name: str) -> Path:
        return self.box.path(f"{self.state}/{name}")

    def ended(self, name: str) -> dict[str, Any] | None:
        """The final sidecar of `name` once its files are all in outbox/ or failed/."""
        for folder in (self.folder("outbox"), self.folder("failed")):
            sidecar, task = folder / f"{name}.status.json", folder / f"{name}.task"
            inbox_sidecar = self.folder("inbox") / f"{name}.status.json"
            if sidecar.exists() and task.exists() and not inbox_sidecar.exists():
                return dict(json.loads(sidecar.read_text()))
        return None

    def wait_ended(self, *names: str, timeout: float = 30) -> dict[str, dict[str, Any]]:
        ended: dict[str, dict[str, Any]] = {}
        for name in names:
            ended[name] = wait_until(partial(self.ended, name), timeout, f"{name} to end")
        return ended

    def video_is(self, name: str, task_id: str) -> bool:
        video = self.folder("outbox") / f"{name}.mp4"
        return hashlib.sha256(video.read_bytes()).hexdigest() == self.sim.video_sha256(task_id)
