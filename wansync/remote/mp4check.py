"""Is a downloaded file a whole MP4? A walk over its top-level ISO-BMFF boxes.

A host that sends `Content-Length: 100` and the first 100 bytes of a video satisfies
every HTTP check; only the file's own structure shows it is cut. Each top-level box
starts with its size and type, so a walk reads one 8 to 16 byte header per box (`os.pread`,
a few seeks, never a second pass over the bytes): the sizes must add up exactly to the
file's length, the first box must be `ftyp` and a `moov` box must be present.
"""

from __future__ import annotations

import os
import struct

MAX_BOXES = 100_000  # fragmented MP4s have thousands; a walk stays well under a second


class NotMp4(ValueError):
    """The file is not a complete MP4; the message names what is wrong and where."""


def _kind(raw: bytes, pos: int) -> str:
    """A box type is four printable characters; zeros or noise mean there is no box here."""
    if not all(32 <= b < 127 for b in raw):
        raise NotMp4(f"bytes {raw.hex()} at byte {pos} are not a box type (padding or garbage)")
    return raw.decode("ascii")


def box_types(fd: int, length: int) -> list[str]:
    """The top-level box types of the first `length` bytes of `fd`; `NotMp4` if they do not
    tile the file exactly."""
    kinds: list[str] = []
    pos = 0
    while pos < length:
        if len(kinds) >= MAX_BOXES:
            raise NotMp4(f"more than {MAX_BOXES} top-level boxes")
        head = os.pread(fd, 16, pos)
        if len(head) < 8 or pos + 8 > length:
            raise NotMp4(f"the file ends inside a box header at byte {pos}")
        size, raw = struct.unpack(">I4s", head[:8])
        kind, header = _kind(raw, pos), 8
        if size == 1:  # 64-bit largesize follows the type
            if len(head) < 16 or pos + 16 > length:
                raise NotMp4(f"the file ends inside the header of box {kind!r} at byte {pos}")
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif size == 0:  # the box runs to the end of the file
            size = length - pos
        if size < header:
            raise NotMp4(f"box {kind!r} at byte {pos} has an impossible size {size}")
        if pos + size > length:
            raise NotMp4(
                f"box {kind!r} at byte {pos} needs {size} bytes but the file ends "
                f"{length - pos} bytes later (cut short)"
            )
        kinds.append(kind)
        pos += size
    return kinds


def check(fd: int, length: int) -> None:
    """`NotMp4` unless the file is `ftyp` first, has a `moov`, and its boxes add up exactly."""
    kinds = box_types(fd, length)
    if not kinds or kinds[0] != "ftyp":
        raise NotMp4("the first box is not 'ftyp'")
    if "moov" not in kinds:
        raise NotMp4(f"no 'moov' box (top-level boxes: {', '.join(kinds[:8])})")
