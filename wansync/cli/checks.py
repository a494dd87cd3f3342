"""What the commands check before they act, and the one-line messages when a check fails.

`wansync check` changes nothing: it looks at the folders as they are and says what `run`
would create. `run`, `once`, `add` and `submit` create what is missing; every `OSError`
on the way becomes a `ConfigError` naming the config key, the path and the problem.
"""

from __future__ import annotations

import dataclasses
import errno
import grp
import os
import pwd
import shlex
import shutil
from pathlib import Path

from wansync import config
from wansync.core.errors import ConfigError

FOLDER_KEYS = ("inbox", "outbox", "failed")
SERVICE_KEY_DIR = Path("/etc/wansync")  # where the units' LoadCredential= reads the key
LOCK_NAME = ".wansync.lock"  # as daemon.InboxLock names it


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def permission_hint(path: Path) -> str:
    """Why a user may be refused a folder they think they can write, and what to do."""
    try:
        gid = _existing(path).stat().st_gid
        group = grp.getgrgid(gid).gr_name
        members = grp.getgrgid(gid).gr_mem
        user = pwd.getpwuid(os.geteuid()).pw_name
    except (OSError, KeyError):
        return ""
    if user in members and gid not in os.getgroups():
        return (
            f" (you were added to group {group} after logging in: log in again, "
            f"or run `newgrp {group}`)"
        )
    return (
        f" (it belongs to group {group}; a user just added to it, e.g. by "
        f"`usermod -aG {group} USER`, must log in again or run `newgrp {group}`)"
    )


def describe(exc: OSError, path: Path | str | None = None) -> str:
    """`PATH: the problem`, with the group hint for a refused permission."""
    where = path if path is not None else exc.filename
    problem = (exc.strerror or str(exc)).lower()
    line = f"{where}: {problem}" if where is not None else problem
    if exc.errno in (errno.EACCES, errno.EPERM) and where is not None:
        line += permission_hint(Path(where))
    return line


def inbox_error(exc: OSError, inbox: Path) -> ConfigError:
    """Writing into the inbox failed (`add`, `submit`): name the key, the folder, the cause."""
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return ConfigError(f"inbox: {inbox} is not a folder")
    return ConfigError(f"inbox: cannot write {describe(exc, inbox)}")


def make_inbox(inbox: Path) -> bool:
    """Create the inbox (and its parents) if missing, for `add`/`submit`; True when it had to."""
    if inbox.is_dir():
        return False
    inbox.mkdir(parents=True, exist_ok=True)
    return True


def prepare_folders(cfg: config.Config) -> None:
    """Create the three folders if missing (for `run`/`once`), then check them."""
    for key in FOLDER_KEYS:
        folder: Path = getattr(cfg, key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise ConfigError(f"{key}: {folder} exists and is not a folder") from None
        except OSError as exc:
            raise ConfigError(f"{key}: cannot create {describe(exc, folder)}") from None
    check_folders(cfg)


def check_folders(cfg: config.Config) -> list[str]:
    """Check without changing anything; returns the folders `run` would still create.

    All three must be on one filesystem (publishing is a rename, never a copy) and
    writable by this user, or, when missing, creatable below their nearest existing parent.
    """
    devices: dict[str, int] = {}
    missing: list[str] = []
    for key in FOLDER_KEYS:
        folder: Path = getattr(cfg, key)
        base = _existing(folder)
        try:
            is_dir = base.is_dir()
            devices[key] = base.stat().st_dev
        except OSError as exc:
            raise ConfigError(f"{key}: {describe(exc, base)}") from None
        if base == folder and not is_dir:
            raise ConfigError(f"{key}: {folder} exists and is not a folder")
        if not is_dir:
            raise ConfigError(f"{key}: {folder} cannot be created: {base} is not a folder")
        _check_storage(key, folder, base)
        if not os.access(base, os.W_OK | os.X_OK):
            what = "is not writable" if base == folder else f"cannot be created in {base}"
            raise ConfigError(f"{key}: {folder} {what}" + permission_hint(base))
        if base != folder:
            missing.append(f"{key} {folder}")
    for key in ("outbox", "failed"):
        if devices[key] != devices["inbox"]:
            raise ConfigError(f"{key}: must be on the same filesystem as inbox (moves are renames)")
    return missing


def _check_storage(key: str, folder: Path, base: Path) -> None:
    """Refuse what `access()` cannot see: a read-only mount, or /proc-like virtual ones."""
    try:
        info = os.statvfs(base)
    except OSError as exc:
        raise ConfigError(f"{key}: {describe(exc, base)}") from None
    if info.f_flag & os.ST_RDONLY:
        raise ConfigError(f"{key}: {folder}: {base} is on a read-only filesystem")
    if info.f_blocks == 0:
        raise ConfigError(f"{key}: {folder}: {base} is on a virtual filesystem (like /proc)")


def service_key_file(cfg: config.Config) -> Path:
    """The key file the systemd unit hands over for this config (see systemd/*.service).

    `wansync.service` reads `/etc/wansync/dashscope_api_key`; instance NAME of
    `wansync@.service` reads `/etc/wansync/NAME.yaml` and `/etc/wansync/NAME.key`.
    """
    source = cfg.source
    if source is not None and source.parent == SERVICE_KEY_DIR and source.stem != "config":
        return SERVICE_KEY_DIR / f"{source.stem}.key"
    return SERVICE_KEY_DIR / config.CREDENTIAL_NAME


def _key_source(cfg: config.Config) -> str:
    """Where `config.load_api_key` found the key, in its own order."""
    if cfg.api.key_file is not None:
        return f"api.key_file {cfg.api.key_file}"
    if os.environ.get(config.KEY_ENV, "").strip():
        return f"${config.KEY_ENV}"
    return f"the systemd credential {config.CREDENTIAL_NAME}"


def find_key(cfg: config.Config, key_file: str | None) -> tuple[str, str]:
    """The API key and where it came from, for `check`.

    `--key-file` wins; then the daemon's own order; then, as root only, the file the
    service unit reads (the key reaches the service alone, through LoadCredential=).
    """
    if key_file:
        path = Path(key_file).expanduser().absolute()
        cfg = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, key_file=path))
        try:
            return config.load_api_key(cfg), str(path)
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("api.key_file:", "--key-file:", 1)) from None
    try:
        return config.load_api_key(cfg), _key_source(cfg)
    except ConfigError:
        fallback = service_key_file(cfg)
        if os.geteuid() != 0 or not fallback.is_file():
            raise
    with_file = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, key_file=fallback))
    return config.load_api_key(with_file), f"{fallback}, the service's key file"


def hook_problems(cfg: config.Config) -> list[str]:
    """Hooks whose program cannot run, found as the daemon would find it (PATH for a bare name)."""
    problems = []
    for key, runs_in in (("on_success", cfg.outbox), ("on_failure", cfg.failed)):
        command = getattr(cfg.hooks, key)
        if command is None:
            continue
        program = shlex.split(command)[0]
        if "/" not in program:
            if shutil.which(program) is None:
                problems.append(f"hooks.{key}: {program}: not found on $PATH")
            continue
        path = runs_in / program  # a hook runs in the folder its task ended in
        if not path.exists():
            problems.append(f"hooks.{key}: {program}: no such file")
        elif path.is_dir() or not os.access(path, os.X_OK):
            problems.append(f"hooks.{key}: {program}: not an executable file")
    return problems


def lock_message(inbox: Path) -> str:
    """`inbox is locked` with the holder's PID, which the lock file holds."""
    path = inbox / LOCK_NAME
    pid = ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            text = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        pid = f" (PID {text})" if text.isdigit() else ""
    except OSError:
        pass
    return f"{path}: another wansync{pid} is running on this inbox"
