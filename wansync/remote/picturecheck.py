"""Is a downloaded file a whole picture? Its signature says what it is: PNG, JPEG or WebP.

Like the MP4 box walk (`mp4check.py`), this reads a few bytes with `os.pread` and never
makes a second pass over the file: the first 33 bytes (the signature and, for PNG, the
IHDR chunk with its CRC) and the last 12. The ends matter as much as the start: a host
that sends `Content-Length: 100` and the first 100 bytes of a picture satisfies every
HTTP check, and only the file's own end shows it was cut:

- PNG: the 8-byte signature, then an IHDR chunk (length 13, a CRC that matches, a size
  that is not zero); the file ends with the IEND chunk.
- JPEG: starts with SOI and a marker (`FF D8 FF`), ends with EOI (`FF D9`).
- WebP: `RIFF`, a size, `WEBP` and a `VP8 `/`VP8L`/`VP8X` chunk; the RIFF size is the
  file's length less 8 (the container's own length check).

Anything else (an HTML error page, an XML expiry notice, a video) is `NotPicture`, with a
message that says what the bytes looked like. The extension comes from the bytes, never
from the URL: the `NAME.EXT` of docs/folders.md is `png`, `jpg` or `webp` from what came.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass

HEAD = 33  # a PNG's signature (8) and IHDR chunk (4 + 4 + 13 + 4)
TAIL = 12
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
WEBP_CHUNKS = (b"VP8 ", b"VP8L", b"VP8X")


class NotPicture(ValueError):
    """The file is not a whole PNG, JPEG or WebP picture; the message says why."""


@dataclass(frozen=True, slots=True)
class Picture:
    """What the bytes are: the sidecar's `content_type` and the published file's extension."""

    content_type: str
    extension: str


PNG = Picture("image/png", "png")
JPEG = Picture("image/jpeg", "jpg")
WEBP = Picture("image/webp", "webp")


def sniff(head: bytes) -> Picture | None:
    """The picture type the first bytes announce (no check of the rest), or None."""
    if head.startswith(PNG_SIGNATURE):
        return PNG
    if head.startswith(JPEG_SOI):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    return None


def check(fd: int, length: int) -> Picture:
    """The picture the first `length` bytes of `fd` hold; `NotPicture` unless it is whole."""
    head = os.pread(fd, HEAD, 0)[: max(0, length)]
    tail = os.pread(fd, TAIL, max(0, length - TAIL)) if length >= TAIL else b""
    picture = sniff(head)
    if picture is None:
        raise NotPicture(f"not a PNG, JPEG or WebP picture: it starts with {_shown(head)}")
    if picture is PNG:
        _check_png(head, tail, length)
    elif picture is JPEG:
        _check_jpeg(tail, length)
    else:
        _check_webp(head, length)
    return picture


def _check_png(head: bytes, tail: bytes, length: int) -> None:
    if len(head) < HEAD or length < HEAD + len(PNG_IEND):
        raise NotPicture(f"a PNG of {length} bytes is cut short (no room for IHDR and IEND)")
    size, kind = struct.unpack(">I4s", head[8:16])
    if kind != b"IHDR" or size != 13:
        raise NotPicture("a PNG whose first chunk is not a 13-byte IHDR")
    if zlib.crc32(head[12:29]) != struct.unpack(">I", head[29:33])[0]:  # over type + data
        raise NotPicture("a PNG whose IHDR checksum does not match (damaged)")
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        raise NotPicture(f"a PNG of {width}x{height} pixels")
    if tail != PNG_IEND:
        raise NotPicture("a PNG that does not end with IEND (cut short)")


def _check_jpeg(tail: bytes, length: int) -> None:
    if length < len(JPEG_SOI) + len(JPEG_EOI) + 1:
        raise NotPicture(f"a JPEG of {length} bytes is cut short")
    if not tail.endswith(JPEG_EOI):
        raise NotPicture("a JPEG that does not end with EOI (FF D9): cut short")


def _check_webp(head: bytes, length: int) -> None:
    if len(head) < 16:
        raise NotPicture(f"a WebP of {length} bytes is cut short")
    (riff_size,) = struct.unpack("<I", head[4:8])
    if riff_size + 8 != length:
        raise NotPicture(f"a WebP whose RIFF size says {riff_size + 8} bytes, not {length}")
    if head[12:16] not in WEBP_CHUNKS:
        raise NotPicture(f"a WebP whose first chunk is {_shown(head[12:16])}, not VP8/VP8L/VP8X")


def _shown(raw: bytes) -> str:
    """A few bytes as a reader can take them: hex, and the text if it is printable."""
    sample = raw[:8]
    text = sample.decode("ascii", "replace")
    readable = f" ({text!r})" if text.isprintable() and text.strip() else ""
    return (sample.hex(" ") or "nothing (an empty file)") + readable
