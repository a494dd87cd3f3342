"""Can another user (the service's) reach and run a file? Judged from the permission bits.

`wansync check` runs as root or as an administrator, who may enter every folder; the
service runs as its own user, who may not. A venv built on a Python in root's home
(pyenv's, in root's home folder, mode 0700) passes every check made as root and then fails to
start with `status=203/EXEC`. So the path is walked as the kernel walks it: every folder
on the way must let the user search it (`x`), every link is followed from where it
lives, and the file itself must let the user execute (or read) it.

POSIX ACLs are not evaluated: a folder or file that carries one is taken as passable
(no false alarm; `getfacl` says more). Root passes every folder and needs one `x` bit.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shlex
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ACL_XATTR = "system.posix_acl_access"
HOME_FOLDERS = (Path("/home"), Path("/root"), Path("/run/user"))  # ProtectHome=yes hides them
MAX_LINKS = 40  # as the kernel's ELOOP
READ, EXECUTE = 4, 1


@dataclass(frozen=True)
class User:
    """Who the check is for: a user name, its uid, and every group it is in."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def named(cls, name: str) -> User:
        """The user `name` from the system's user database; `KeyError` if there is none."""
        entry = pwd.getpwnam(name)
        return cls(name, entry.pw_uid, frozenset(os.getgrouplist(name, entry.pw_gid)))


@dataclass(frozen=True)
class Hidden:
    """Folders the service cannot see whatever their mode, and what hides them."""

    folders: tuple[Path, ...] = ()
    by: str = ""  # "ProtectHome=yes of /etc/systemd/system/wansync.service"


NOTHING_HIDDEN = Hidden()


@dataclass(frozen=True)
class Blocked:
    """Where `user` is stopped: the folder or file, why, and what would fix it."""

    path: Path
    why: str
    fix: str
    via: str = ""  # "its #! interpreter /opt/wansync/bin/python3: " when it is on its way

    def __str__(self) -> str:
        return f"{self.via}{self.path}: {self.why}; {self.fix}"


def owner_text(st: os.stat_result) -> str:
    """`root:root`: the owner and group of a file, by name where the system knows it."""
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return f"{owner}:{group}"


def allows(user: User, st: os.stat_result, bit: int) -> bool:
    """Whether the mode bits of `st` give `user` the permission `bit` (READ or EXECUTE)."""
    if user.uid == 0:  # root: anything, except executing a file no one may execute
        return bit != EXECUTE or stat.S_ISDIR(st.st_mode) or bool(st.st_mode & 0o111)
    if st.st_uid == user.uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid in user.gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _has_acl(path: Path) -> bool:
    try:
        os.getxattr(path, ACL_XATTR, follow_symlinks=False)
    except OSError:  # ENODATA: none; ENOTSUP: the filesystem has none
        return False
    return True


def _home(path: Path, folders: tuple[Path, ...]) -> Path | None:
    return next((h for h in folders if path == h or h in path.parents), None)


def _folder_fix(user: User, folder: Path) -> str:
    if _home(folder, HOME_FOLDERS) is not None:
        return (
            "install Python and wansync outside home folders (e.g. `python3 -m venv "
            "/opt/wansync` on the distribution's python3; see Running as a service)"
        )
    q = shlex.quote(str(folder))
    return f"`chmod o+x {q}`, or for this user alone `setfacl -m u:{user.name}:x {q}`"


def first_block(
    user: User, path: Path, need: int = EXECUTE, hidden: Hidden = NOTHING_HIDDEN
) -> Blocked | None:
    """The first folder or file on the way to `path` that stops `user`, or None.

    `need` is what the file itself must allow (EXECUTE for a program, READ for a script
    or a module); `hidden` are folders the service cannot see whatever their mode (a
    unit's `ProtectHome=yes`: `/home`, `/root`, `/run/user`).
    """
    todo = deque(PurePosixPath(os.path.abspath(path)).parts[1:])
    current, links = Path("/"), 0
    while todo:
        part = todo.popleft()
        blocked = _enter(user, current, hidden)
        if blocked is not None:
            return blocked
        if part == "..":
            current = current.parent
            continue
        step = current / part
        try:
            st = os.lstat(step)
        except FileNotFoundError:
            return Blocked(step, "does not exist", "install wansync there, or fix the path")
        except OSError as exc:  # this caller may not look either (not root)
            why = f"{(exc.strerror or str(exc)).lower()} even to you"
            return Blocked(step, why, "run `wansync check` as root to judge it")
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_LINKS:
                return Blocked(step, "too many levels of symbolic links", "fix the links")
            target = PurePosixPath(os.readlink(step))
            if target.is_absolute():
                current = Path("/")
            todo.extendleft(reversed(target.parts[1:] if target.is_absolute() else target.parts))
            continue
        current = step
    return _use(user, current, need)


def _enter(user: User, folder: Path, hidden: Hidden) -> Blocked | None:
    """Whether `user` may look up names in `folder` (its `x` bit)."""
    home = _home(folder, hidden.folders)
    if home is not None:
        why = f"{hidden.by} hides it from the service, whatever its mode"
        return Blocked(home, why, _folder_fix(user, home))
    st = os.stat(folder)
    if allows(user, st, EXECUTE) or _has_acl(folder):
        return None
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    return Blocked(
        folder,
        f"mode {mode}, owner {owner_text(st)}: user {user.name} may not enter it",
        _folder_fix(user, folder),
    )


def _use(user: User, path: Path, need: int) -> Blocked | None:
    """Whether `user` may execute (or read) the file `path` itself."""
    st = os.stat(path)
    q = shlex.quote(str(path))
    if need == EXECUTE and not stat.S_ISREG(st.st_mode):
        return Blocked(path, "is not a regular file", "point the unit at the wansync program")
    if allows(user, st, need) or _has_acl(path):
        return None
    mode = f"{stat.S_IMODE(st.st_mode):04o}"
    what, bits = ("execute", "a+x") if need == EXECUTE else ("read", "a+r")
    return Blocked(
        path,
        f"mode {mode}, owner {owner_text(st)}: user {user.name} may not {what} it",
        f"`chmod {bits} {q}`",
    )


def interpreter(script: Path) -> Path | None:
    """The program a `#!` line names (what the kernel runs for the script), if any."""
    try:
        with script.open("rb") as fh:
            first = fh.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return Path(words[0]) if words else None


def program_blocks(
    user: User, program: Path, hidden: Hidden = NOTHING_HIDDEN
) -> tuple[list[Path], Blocked | None]:
    """Every file the kernel needs to start `program` as `user` (the program, and for a
    script its `#!` interpreter, which must also read the script), and the first block."""
    checked = [program]
    blocked = first_block(user, program, EXECUTE, hidden)
    if blocked is not None:
        return checked, blocked
    shebang = interpreter(program)
    if shebang is None:
        return checked, None
    checked.append(shebang)
    blocked = first_block(user, program, READ, hidden)
    if blocked is None and (blocked := first_block(user, shebang, EXECUTE, hidden)):
        blocked = dataclasses.replace(blocked, via=f"its #! interpreter {shebang}: ")
    return checked, blocked
