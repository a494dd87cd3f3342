"""A job's local files: every `{path: P}` in its request, opened now as the upload will.

A job names a local file as a mapping of exactly `{path: P}` wherever the API wants a
URL (or, in the field form, as a `media` item's `path`). Each is checked before anything
is sent: a relative path is read from the inbox and may not hold `..`; no link anywhere
on the way (`pathwalk`); a regular, non-empty file with one name, of at most
`submit.max_upload_bytes`, whose extension fits what the slot takes
(`fields.FILE_CLASSES`: pictures, audio, clips), and that is not the daemon's own API
key file whatever its name (by device and inode, on the opened descriptor). What was
checked (device, inode, size) goes with it, so the upload sends that very file or
nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wansync.core.errors import JobFileError
from wansync.files import pathwalk, taskfile
from wansync.files.fsutil import NotARegularFile

MAX_LOCAL_FILES = 64  # `{path}`s one job may name (the vendor takes at most 21 inputs)

Slot = tuple[str | int, ...]  # keys from the body's root, e.g. ("input", "media", 0, "url")
Identities = frozenset[tuple[int, int]]  # (device, inode) of files never uploaded: the key's


@dataclass(frozen=True)
class LocalFile:
    """A file to upload before the submit; `slot` is where its URL goes in the body.

    `dev`, `ino` and `size` are what was checked: the upload opens the file again (a
    queue of jobs must not hold thousands of descriptors) and sends it only if the
    descriptor it opened is that same regular file, and never more than `size` bytes.
    """

    slot: Slot
    path: Path
    root: Path = pathwalk.ROOT  # the walk to the file: from here (the inbox, or `/`)...
    parts: tuple[str, ...] = ()  # ...through these names, never through a link
    dev: int = -1
    ino: int = -1
    size: int = -1


def is_path_mapping(value: Any) -> bool:
    """`{path: P}`, exactly: the one way a URL slot names a local file."""
    return isinstance(value, dict) and len(value) == 1 and "path" in value


def path_slots(node: Any, slot: Slot = ()) -> Iterator[tuple[Slot, Any]]:
    """Every `{path: P}` mapping under `node`, with where it is (depth-first, in order).

    The tree is a checked job (`bounded.check_tree`: plain values, at most 64 deep), so
    the recursion is bounded.
    """
    if is_path_mapping(node):
        yield slot, node["path"]
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from path_slots(value, (*slot, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from path_slots(value, (*slot, index))


def label(slot: Slot) -> str:
    """A slot as the user reads it: `input.media[0].url`."""
    text = ""
    for key in slot:
        text += f"[{key}]" if isinstance(key, int) else (f".{key}" if text else str(key))
    return text


def open_local(
    where: str,
    raw: Any,
    base: Path,
    limit: int,
    what: str,
    extensions: tuple[str, ...],
    keys: Identities = frozenset(),
) -> LocalFile:
    """Check one local file now (`slot` left empty for the caller to fill in); `keys`:
    the API key files (`config.key_file_ids`), refused whatever they are named.

    `JobFileError` names `where` (the field) and says what is wrong; `OutOfResources`
    when the system had no descriptor or memory to open it (the job is read again later).
    """
    if not isinstance(raw, str) or not raw.strip() or "\0" in raw:
        raise JobFileError(f"{where}: must be a file path")
    try:
        root, parts = pathwalk.split(raw, base)
    except pathwalk.BadPath as exc:
        raise JobFileError(f"{where}: {raw!r}: {exc}") from None
    path = root.joinpath(*parts)
    if not path.name.lower().endswith(extensions):
        article = "an" if what[:1] in "aeiou" else "a"
        allowed = ", ".join(extensions)
        raise JobFileError(f"{where}: {raw!r} is not {article} {what} file ({allowed})")
    try:  # no link on the way (it could point at ~/.ssh), no FIFO, no hard link
        fd, st = pathwalk.open_beneath(root, parts)
    except NotARegularFile as exc:
        raise JobFileError(f"{where}: {raw!r} {exc}") from None
    except OSError as exc:
        if exc.errno in taskfile.RESOURCE_ERRNOS:
            raise taskfile.out_of_resources(exc, path) from None
        problem = (exc.strerror or str(exc)).lower()
        if not os.path.isabs(os.path.expanduser(raw)):  # say where it was looked for
            problem += f" (looked for {path}: a relative path is read from the inbox)"
        raise JobFileError(f"{where}: {raw!r}: {problem}") from None
    os.close(fd)
    if (st.st_dev, st.st_ino) in keys:
        raise JobFileError(f"{where}: {raw!r} is wansync's API key file; it is never uploaded")
    if st.st_size == 0:
        raise JobFileError(f"{where}: {raw!r} is empty")
    if st.st_size > limit:
        raise JobFileError(f"{where}: {raw!r} is larger than submit.max_upload_bytes ({limit})")
    return LocalFile((), path, root, parts, st.st_dev, st.st_ino, st.st_size)
