"""`wansync check` as the service will meet the install: can its user start wansync?

`check` runs as root or as an administrator; the service runs as its own user, under
its unit's sandbox. Whose eyes: `--user`, else the `User=` of the unit that runs this
config (`--unit FILE`, or the installed one, see unit.py), else, as root, the units'
static user `wansync` if it exists. What: the unit's `ExecStart=` program (or this
install's `wansync` entry point), its `#!` interpreter, and for this install the
standard library and wansync's own files. A block is a `ConfigError` naming the folder
or file, its mode and owner, and a fix (reach.py).
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from wansync import config
from wansync.cli import reach
from wansync.cli import unit as service_unit
from wansync.cli.checks import DEFAULT_SERVICE_USER, describe
from wansync.core.errors import ConfigError


def service_user(unit: service_unit.Unit | None, explicit: str | None) -> tuple[str, str] | None:
    """Whose eyes `check` looks through, and why: `--user`, the unit's `User=`, or (as
    root, with no unit installed yet) the units' `wansync` if that user exists."""
    if explicit:
        return explicit, "--user"
    if unit is not None and unit.user:
        return unit.user, f"User= of {unit.path}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(DEFAULT_SERVICE_USER)
        except KeyError:
            return None
        return DEFAULT_SERVICE_USER, "the service's user"
    return None


def own_programs() -> list[Path]:
    """What runs wansync here: the installed `wansync` entry point, else this interpreter."""
    entry = Path(sys.prefix) / "bin" / "wansync"
    return [entry] if entry.is_file() else [Path(sys.executable)]


def own_modules() -> list[Path]:
    """Files the interpreter reads at start-up: the standard library and wansync itself."""
    import wansync

    return [Path(os.__file__), Path(wansync.__file__)]


def hidden_by(unit: service_unit.Unit | None) -> reach.Hidden:
    """The home folders, unless the unit lets the service see them; with no unit
    installed yet, as the units wansync ships (`ProtectHome=yes`) will hide them."""
    if unit is None:
        return reach.Hidden(reach.HOME_FOLDERS, "ProtectHome=yes (of the units wansync ships)")
    if unit.hides_home:
        return reach.Hidden(reach.HOME_FOLDERS, f"ProtectHome={unit.protect_home} of {unit.path}")
    return reach.NOTHING_HIDDEN


def check(cfg: config.Config, explicit_user: str | None, unit_file: str | None) -> str | None:
    """`service: ok (…)` when the service's user can start what runs `cfg`, else a
    `ConfigError`; None when no service user is known (not root, no `--user`, no unit)."""
    try:
        unit = service_unit.read(Path(unit_file)) if unit_file else service_unit.find(cfg)
    except OSError as exc:
        raise ConfigError(f"--unit: {describe(exc, unit_file)}") from None
    who = service_user(unit, explicit_user)
    if who is None:
        return None
    name, why = who
    try:
        user = reach.User.named(name)
    except KeyError:
        raise ConfigError(
            f"service: no user {name} on this machine ({why}); create it first, e.g. "
            f"`useradd --system --shell /usr/sbin/nologin {name}` (see Running as a service)"
        ) from None
    checked = _programs(user, f"user {name} ({why})", unit)
    shown = ", ".join(str(p) for p in checked)
    return f"service: ok (user {name}, {why}, can start {shown})"


def _programs(user: reach.User, who: str, unit: service_unit.Unit | None) -> list[Path]:
    """Every file checked on the way to starting wansync; `ConfigError` at the first block."""
    hidden = hidden_by(unit)
    own = own_programs()
    programs, named = own, ""
    if unit is not None and unit.program is not None:
        programs, named = [unit.program], f" (ExecStart= of {unit.path})"
    checked: list[Path] = []
    for program in programs:
        files, blocked = reach.program_blocks(user, program, hidden)
        checked += files
        if blocked is not None:
            raise ConfigError(f"service: {who} cannot start {program}{named}: {blocked}")
    if {p.resolve() for p in programs} & {p.resolve() for p in own}:  # this very install
        for module in own_modules():
            if blocked := reach.first_block(user, module, reach.READ, hidden):
                raise ConfigError(f"service: {who} cannot load wansync: {blocked}")
    return checked
