"""The systemd unit that runs this config: its `User=`, its program, its `ProtectHome=`.

`wansync check` judges the install as the service will meet it, so it reads the unit
systemd would start for the config: `wansync.service` for `/etc/wansync/config.yaml`
(or any other file), `wansync@NAME.service` (the template `wansync@.service`) for
`/etc/wansync/NAME.yaml`, with their drop-ins (`*.service.d/*.conf`, read after it).
Only the few `[Service]` keys `check` needs are read; the rest is systemd's business.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from wansync import config

UNIT_DIRS = (
    Path("/etc/systemd/system"),
    Path("/run/systemd/system"),
    Path("/usr/local/lib/systemd/system"),
    Path("/usr/lib/systemd/system"),
    Path("/lib/systemd/system"),
)
SERVICE_CONFIG_DIR = Path("/etc/wansync")
MAX_UNIT_BYTES = 256 * 1024
EXEC_PREFIXES = "@-:+!"  # ExecStart=-/path: systemd's flags before the program
HIDES_HOME = ("yes", "true", "on", "1", "tmpfs")  # ProtectHome= values that hide /home


@dataclass(frozen=True)
class Unit:
    """What `check` needs from a unit file (None: the unit does not say)."""

    path: Path
    user: str | None
    program: Path | None
    protect_home: str | None

    @property
    def hides_home(self) -> bool:
        return (self.protect_home or "no").lower() in HIDES_HOME


def unit_names(cfg: config.Config) -> list[str]:
    """The unit files that would run `cfg`: an instance's own file before its template."""
    source = cfg.source
    if source is not None and source.parent == SERVICE_CONFIG_DIR and source.stem != "config":
        return [f"wansync@{source.stem}.service", "wansync@.service"]
    return ["wansync.service"]


def find(cfg: config.Config, dirs: tuple[Path, ...] = UNIT_DIRS) -> Unit | None:
    """The unit systemd would start for `cfg` (the first found, in systemd's order)."""
    names = unit_names(cfg)
    for name in names:
        for folder in dirs:
            if (folder / name).is_file():
                dropins = [
                    conf
                    for d in dirs
                    for n in names
                    for conf in sorted((d / f"{n}.d").glob("*.conf"))
                ]
                return read(folder / name, dropins)
    return None


def read(path: Path, dropins: list[Path] | None = None) -> Unit:
    """The unit at `path` and its drop-ins, later settings winning; `OSError` if unreadable."""
    settings: dict[str, str] = {}
    for file in [path, *(dropins or [])]:
        with file.open(encoding="utf-8", errors="replace") as fh:
            settings.update(parse(fh.read(MAX_UNIT_BYTES)))
    program = None
    if command := settings.get("ExecStart", "").lstrip(EXEC_PREFIXES).strip():
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        program = Path(words[0]) if words else None
    return Unit(path, settings.get("User") or None, program, settings.get("ProtectHome"))


def parse(text: str) -> dict[str, str]:
    """`[Service]` keys of a unit file: the last value of each (`ExecStart=` empty resets)."""
    section = ""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if section == "Service" and sep:
            found[key.strip()] = value.strip()
    return found
