"""Every file name wansync derives from a task's NAME, and the one check that they all fit.

A task `NAME` (from `NAME.task` or `NAME.job`) gives: its `.task` (which wansync writes
for a job through a scratch temp file, and `wansync add` through a producer-style one),
its sidecar and the sidecar's scratch temp file, the hidden `.part` of each file it
downloads (`.NAME.mp4.part`, or `.NAME.1.png.part`, `.NAME.2.png.part` … for several),
and the published `NAME[-k].*` files (`NAME.mp4`, or `NAME.1.png` …: `group_suffix`).
Most filesystems refuse names over 255 bytes. All derived names except `NAME.task` and
`NAME.job` themselves are built from `stem(NAME)`, which is NAME shortened with a hash
when long, so the only limit a user meets is NAME.task (and so NAME) within 255 bytes.
`check` proves it for every derived name at once, before anything is sent or written.
"""

from __future__ import annotations

import hashlib
import os

from wansync.core.shapes import MAX_FILES

NAME_MAX = 255  # bytes, the limit of ext4, xfs, btrfs, tmpfs, NFS...
MAX_STEM_BYTES = 200  # leaves room for ".status.json", "-k", ".part" and temp suffixes
TASK_SUFFIX = ".task"
JOB_SUFFIX = ".job"
SIDECAR_SUFFIX = ".status.json"
MP4 = ".mp4"
PART_SUFFIX = ".mp4.part"
TEMP_SUFFIX = ".wansync-tmp"
PUBLISHED_SUFFIXES = (MP4, SIDECAR_SUFFIX, TASK_SUFFIX, JOB_SUFFIX)
FILE_EXTENSIONS = ("mp4", "png", "jpg", "webp")  # what a task's files may be
PART_TAIL = ".part"
MAX_K = 999_999  # the largest `-k` a publish may add (a folder of a million same names)
PID_MAX = 4_194_304  # Linux's largest pid_max: the longest pid a temp name can hold
HASH_HEX = 24  # hex characters of sha256 in a shortened name: 96 bits
TOKEN_HEX = 8  # characters of randomness in a scratch temp name


class BadName(ValueError):
    """A name wansync cannot build its files from; the message says why."""


def fit(name: str, limit: int) -> str:
    """`name`, or when its UTF-8 form passes `limit` bytes, a shortened name plus a hash.

    The hash is of the full name, so two long names that share a beginning stay apart:
    96 bits of it, so no one can search out two names that share a stem (32 bits took a
    birthday search of minutes) and make two tasks share one `.part` and sidecar.
    """
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return name
    cut = raw[: limit - 2 - HASH_HEX].decode("utf-8", "ignore")  # "~" + hash fit in `limit`
    return f"{cut}~{hashlib.sha256(raw).hexdigest()[:HASH_HEX]}"


def stem(name: str) -> str:
    """The base of every file wansync makes for task `name` (sidecar, `.part`, published).

    It is `name` itself, unless that would push a derived name (`.NAME.mp4.part`,
    `NAME-2.status.json`) past 255 bytes; then a shortened name plus a hash of the full
    one. The sidecar's `name` always keeps the full name.
    """
    return fit(name, MAX_STEM_BYTES)


def group_suffix(index: int, count: int, extension: str) -> str:
    """The suffix of file `index` (from 0) of a task's `count` files: `.EXT` for its only
    file, `.k.EXT` (k from 1) for one of several (docs/folders.md, Outputs)."""
    return f".{extension}" if count == 1 else f".{index + 1}.{extension}"


def part_name(name: str, index: int, count: int, extension: str) -> str:
    """`.NAME[.k].EXT.part`: where file `index` of task `name`'s `count` files grows."""
    return f".{stem(name)}{group_suffix(index, count, extension)}{PART_TAIL}"


def part_owners(filename: str) -> tuple[str, ...]:
    """The stems whose task may own the hidden file `filename` as a partial download.

    `.X.EXT.part` is the only file of task X, or, when X is `Y.k`, file k of task Y;
    a name of no partial download has no owner (an empty tuple).
    """
    if not (filename.startswith(".") and filename.endswith(PART_TAIL)):
        return ()
    base, dot, extension = filename[1 : -len(PART_TAIL)].rpartition(".")
    if not (dot and base and extension in FILE_EXTENSIONS):
        return ()
    head, dot, k = base.rpartition(".")
    several = bool(dot and head and k.isascii() and k.isdigit() and k[0] != "0")
    return (base, head) if several else (base,)


def escape(name: str) -> str:
    """A file name that is not valid UTF-8, made printable: byte 0xFF becomes `\\xff`.

    `os.listdir` hands such names over with surrogates, which cannot be written as UTF-8
    (JSON, logs); the escaped form can, and says which bytes were wrong.
    """
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def producer_temp(filename: str, pid: int) -> str:
    """`.NAME.task.PID.tmp`, the producers' temp name (docs/folders.md), shortened if too long."""
    tail = f".{pid}.tmp"
    return "." + fit(filename, NAME_MAX - 1 - len(tail)) + tail


def scratch_temp(filename: str, token: str) -> str:
    """`NAME.status.json.TOKEN.wansync-tmp`: a sidecar's next version (or a job's `.task`),
    in the scratch folder.

    Random, so a link planted at a guessable name is never ours to open.
    """
    tail = f".{token}{TEMP_SUFFIX}"
    return fit(filename, NAME_MAX - len(tail)) + tail


def derived(name: str) -> dict[str, str]:
    """Each file name wansync may build from NAME, by what it is (longest variants)."""
    base = stem(name)
    last = f"{base}-{MAX_K}"
    sidecar = f"{base}{SIDECAR_SUFFIX}"
    names = {
        "task file": f"{name}{TASK_SUFFIX}",
        "job file": f"{name}{JOB_SUFFIX}",
        "task file's temp file": producer_temp(f"{name}{TASK_SUFFIX}", PID_MAX),
        "sidecar": sidecar,
        "sidecar's temp file": scratch_temp(sidecar, "f" * TOKEN_HEX),
        "partial download": f".{base}{PART_SUFFIX}",
        "partial download of a picture": part_name(name, MAX_FILES - 1, MAX_FILES, "webp"),
    }
    names.update({f"published {s}": f"{last}{s}" for s in PUBLISHED_SUFFIXES})
    names["published picture"] = f"{last}{group_suffix(MAX_FILES - 1, MAX_FILES, 'webp')}"
    return names


def check(name: str) -> None:
    """Raise `BadName` unless NAME is valid UTF-8 and every name derived from it fits."""
    if not name or "/" in name or "\0" in name:
        raise BadName(f"{name!r} is not a file name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadName(f"file name is not valid UTF-8 (shown as {escape(name)!r})") from None
    for what, derived_name in derived(name).items():
        size = len(derived_name.encode("utf-8"))
        if size > NAME_MAX:
            raise BadName(
                f"name is too long: {len(name.encode())} bytes, so its {what} would be "
                f"{size} bytes (the limit is {NAME_MAX}); use a name of at most "
                f"{NAME_MAX - len(TASK_SUFFIX)} bytes"
            )


def check_published(chosen: str) -> None:
    """Raise `BadName` unless `chosen` (a sidecar's `published_as`) is a plain name.

    It is read back from a file anyone in the group may edit: `../../x` or `/etc/x`
    would move the task's files out of the three folders.
    """
    if not chosen or chosen.startswith(".") or "/" in chosen or "\0" in chosen:
        raise BadName(f"published_as {chosen[:80]!r} is not a plain file name")
    try:
        size = max(len(f"{chosen}{s}".encode()) for s in PUBLISHED_SUFFIXES)
    except UnicodeEncodeError:
        raise BadName("published_as is not valid UTF-8") from None
    if size > NAME_MAX:
        raise BadName(f"published_as is too long ({size} bytes with its suffix)")
