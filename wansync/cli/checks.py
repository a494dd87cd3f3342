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
import stat
from dataclasses import dataclass
from pathlib import Path

from wansync import config
from wansync.core.errors import ConfigError, NoSpace, UsageError, WansyncError
from wansync.files.names import JOB_SUFFIX, SIDECAR_SUFFIX, TASK_SUFFIX

FOLDER_KEYS = ("inbox", "outbox", "failed")
DEFAULT_SERVICE_USER = "wansync"  # the units' static User= and Group= (Running as a service)
SERVICE_KEY_DIR = Path("/etc/wansync")  # where the units' LoadCredential= reads the key
LOCK_NAME = ".wansync.lock"  # as daemon.InboxLock names it


def _existing(path: Path) -> Path:
    """`path` or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


@dataclass(frozen=True)
class FolderAccess:
    """Who was refused a folder, and the folder's real mode and owners: the hint's inputs."""

    folder: Path
    mode: int
    owner: str
    owner_uid: int
    group: str
    gid: int
    group_members: tuple[str, ...]
    user: str
    uid: int
    user_gid: int  # the user's primary group
    session_gids: frozenset[int]  # the groups this login has now
    service_group: str | None  # the group the service shares with producers, if it exists


def folder_hint(a: FolderAccess) -> str:
    """What to do about a folder `a.user` may not write, from its real mode and owners.

    Joining the folder's group helps only when the group may write and is not root's
    (joining group root would hand out far more than this folder); otherwise the folder
    must change: give it to the service's group with `g+ws`, or grant the user an ACL.
    """
    q = shlex.quote(str(a.folder))
    mode = f"{a.mode & 0o7777:04o}"
    if a.uid == a.owner_uid:
        return f" (you own it, mode {mode}: `chmod u+w {q}`)"
    listed = a.user in a.group_members or a.user_gid == a.gid
    if a.gid != 0 and a.group != "root" and a.mode & 0o020:
        if listed and a.gid not in a.session_gids:
            return (
                f" (you were added to group {a.group} after logging in: log in again, "
                f"or run `newgrp {a.group}`)"
            )
        if listed:
            return ""  # a member already: an ACL or a mount refuses it, not the bits
        return (
            f" (group {a.group} may write it: `sudo usermod -aG {a.group} {a.user}`, then "
            f"log in again or run `newgrp {a.group}`)"
        )
    shared = a.service_group or "GROUP"
    give = (
        f"sudo chmod g+ws {q}"
        if shared == a.group
        else f"sudo chgrp {shared} {q} && sudo chmod g+ws {q}"
    )
    join = "" if shared == a.group and listed else f" and `sudo usermod -aG {shared} {a.user}`"
    return (
        f" (mode {mode}, owner {a.owner}:{a.group}: only {a.owner} may write it; share it "
        f"with the service's group: `{give}`{join}; or for {a.user} alone: "
        f"`sudo setfacl -m u:{a.user}:rwx {q}`)"
    )


def permission_hint(path: Path) -> str:
    """Why this user may be refused a folder they think they can write, and what to do."""
    folder = _existing(path)
    try:
        st = folder.stat()
        group = grp.getgrgid(st.st_gid)
        me = pwd.getpwuid(os.geteuid())
    except (OSError, KeyError):
        return ""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        shared: str | None = grp.getgrnam(DEFAULT_SERVICE_USER).gr_name
    except KeyError:
        shared = None
    access = FolderAccess(
        folder=folder,
        mode=st.st_mode,
        owner=owner,
        owner_uid=st.st_uid,
        group=group.gr_name,
        gid=st.st_gid,
        group_members=tuple(group.gr_mem),
        user=me.pw_name,
        uid=me.pw_uid,
        user_gid=me.pw_gid,
        session_gids=frozenset([os.getegid(), *os.getgroups()]),
        service_group=shared,
    )
    return folder_hint(access)


def describe(exc: OSError, path: Path | str | None = None) -> str:
    """`PATH: the problem`, with the group hint for a refused permission."""
    where = path if path is not None else exc.filename
    problem = (exc.strerror or str(exc)).lower()
    line = f"{where}: {problem}" if where is not None else problem
    if exc.errno in (errno.EACCES, errno.EPERM) and where is not None:
        line += permission_hint(Path(where))
    return line


def inbox_error(exc: OSError, inbox: Path, target: Path | None = None) -> WansyncError:
    """Writing `target` into the inbox failed (`add`, `submit`): name the key, the folder,
    the cause; a full disk or quota names the file and is no config error (`NoSpace`)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "no space left on the device" if exc.errno == errno.ENOSPC else "over the quota"
        return NoSpace(
            f"cannot write {target or inbox}: {why} (the filesystem of the inbox {inbox} is "
            "full); nothing was written: free some space and run the command again"
        )
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return ConfigError(f"inbox: {inbox} is not a folder")
    return ConfigError(f"inbox: cannot write {describe(exc, inbox)}")


RESERVED_SUFFIXES = (TASK_SUFFIX, JOB_SUFFIX, SIDECAR_SUFFIX)  # what wansync puts after NAME


def name_given(given: str, suffix: str) -> str:
    """`--name` of `add` (`suffix` .task) or `submit` (.job): the NAME its file is written
    under (`x.task` means `x` for `add`). A name that still ends in a suffix wansync puts
    after NAME (`add --name x.job`) would make `x.job.task`, a task no one meant: refused."""
    name = given.removesuffix(suffix)
    if "/" in name or name.startswith(".") or name in ("", ".."):
        raise UsageError(f"--name: {name!r} cannot be a file name (no '/', no leading '.')")
    for reserved in RESERVED_SUFFIXES:
        if name.endswith(reserved):
            raise UsageError(
                f"--name: {given!r} ends in {reserved}, which would write {name}{suffix}; "
                f"give the name alone (--name {name.removesuffix(reserved) or 'NAME'} writes "
                f"{name.removesuffix(reserved) or 'NAME'}{suffix})"
            )
    return name


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
    key, source, _ = locate_key(cfg, key_file)
    return key, source


def locate_key(cfg: config.Config, key_file: str | None) -> tuple[str, str, Path | None]:
    """`find_key`, and the key file it was read from (None: the environment, systemd)."""
    if key_file:
        path = Path(key_file).expanduser().absolute()
        cfg = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, key_file=path))
        try:
            return config.load_api_key(cfg), str(path), path
        except ConfigError as exc:
            raise ConfigError(str(exc).replace("api.key_file:", "--key-file:", 1)) from None
    try:
        return config.load_api_key(cfg), _key_source(cfg), cfg.api.key_file
    except ConfigError:
        fallback = service_key_file(cfg)
        if os.geteuid() != 0 or not fallback.is_file():
            raise
    with_file = dataclasses.replace(cfg, api=dataclasses.replace(cfg.api, key_file=fallback))
    return config.load_api_key(with_file), f"{fallback}, the service's key file", fallback


def key_file_exposed(path: Path) -> tuple[int, str] | None:
    """A key file its group or every user may read: its mode and who, else None.

    The key spends the account's money; the units hand it over through `LoadCredential=`
    from a root-only file, and `api.key_file` should be the service user's alone (0400).
    """
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    readers = [who for bit, who in ((0o040, "its group"), (0o004, "every user")) if mode & bit]
    return (mode, " and ".join(readers)) if readers else None


def key_file_warning(path: Path) -> str | None:
    """The warning line for an exposed key file: names the file and its mode, never the key."""
    exposed = key_file_exposed(path)
    if exposed is None:
        return None
    mode, readers = exposed
    return (
        f"key file {path} is readable by {readers} (mode {mode:04o}): "
        f"`chmod 600 {shlex.quote(str(path))}` (or 0400, owned by the service's user)"
    )


def hook_problems(cfg: config.Config) -> list[str]:
    """Hooks whose program cannot run, found as the daemon would find it (PATH for a bare name)."""
    problems = []
    for key in ("on_success", "on_failure"):
        command = getattr(cfg.hooks, key)
        if command is None:
            continue
        program = shlex.split(command)[0]
        if "/" not in program:
            if shutil.which(program) is None:
                problems.append(f"hooks.{key}: {program}: not found on $PATH")
            continue
        path = Path(program)  # made absolute against the config's folder (config.py)
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
