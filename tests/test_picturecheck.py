"""A picture is checked by its signature and its end: PNG, JPEG, WebP, or refused.

Real small files written to tmp_path: the simulator's own pictures (`imagefiles`, checked
here against the format's own rules: the PNG decoded with zlib, the JPEG's markers walked,
and both JPEG and WebP decoded by djpeg / dwebp where those are installed), and the bad
files a storage host really sends (HTML, XML, a video, a cut download).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from wansync.remote import picturecheck
from wansync.remote.picturecheck import JPEG, PNG, WEBP, NotPicture
from wansync.simulator import imagefiles
from wansync.simulator.model import sample_video

PIXELS = imagefiles.gradient(64, 48, seed=5)


def check_file(path: Path) -> picturecheck.Picture:
    fd = os.open(path, os.O_RDONLY)
    try:
        return picturecheck.check(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def refused(tmp_path: Path, data: bytes) -> str:
    with pytest.raises(NotPicture) as caught:
        check_file(write(tmp_path, "bad", data))
    return str(caught.value)


# -- the simulator's pictures are real ------------------------------------------------------
def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Decode an 8-bit RGB, filter-0 PNG with the stdlib (independent of the encoder)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + size]
        (crc,) = struct.unpack(">I", data[pos + 8 + size : pos + 12 + size])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append((kind, body))
        pos += 12 + size
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(chunks[1][1])
    assert len(raw) == height * (1 + 3 * width)
    assert all(raw[row * (1 + 3 * width)] == 0 for row in range(height))
    return width, height, raw


def test_the_png_decodes_to_its_pixels():
    width, height, raw = png_pixels(imagefiles.png(PIXELS))
    assert (width, height) == (64, 48)
    first_row = raw[1 : 1 + 3 * width]
    assert tuple(first_row[:3]) == PIXELS[0][0]
    assert tuple(first_row[-3:]) == PIXELS[0][63]


def test_the_jpeg_is_a_baseline_jpeg_with_every_table_it_uses():
    data = imagefiles.jpeg(PIXELS)
    markers, pos = [], 2
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    while data[pos + 1] != 0xDA:  # the header segments, up to the scan
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        markers.append(data[pos + 1])
        pos += 2 + length
    assert markers == [0xE0, 0xDB, 0xC0, 0xC4, 0xC4]  # JFIF, DQT, SOF0, DHT DC, DHT AC
    sof = data.index(b"\xff\xc0")
    precision, height, width, components = struct.unpack(">BHHB", data[sof + 4 : sof + 10])
    assert (precision, height, width, components) == (8, 48, 64, 3)


def decoded_by(tool: str, path: Path, *args: str) -> bytes | None:
    """The PPM an independent decoder makes of `path`, or None when it is not installed."""
    if shutil.which(tool) is None:
        return None
    out = subprocess.run([tool, *args], capture_output=True, check=True, timeout=30)
    return out.stdout or path.with_suffix(".ppm").read_bytes()


def test_libjpeg_decodes_the_jpeg_close_to_its_pixels(tmp_path):
    path = write(tmp_path, "p.jpg", imagefiles.jpeg(PIXELS))
    ppm = decoded_by("djpeg", path, "-ppm", str(path))
    if ppm is None:
        pytest.skip("djpeg (libjpeg-turbo-progs) is not installed")
    body = ppm[ppm.index(b"255\n") + 4 :]
    source = bytes(c for row in PIXELS for p in row for c in p)
    error = sum(abs(a - b) for a, b in zip(body, source, strict=True)) / len(source)
    assert error < 6, f"mean error {error:.1f} of 255: not the same picture"


def test_libwebp_decodes_the_webp_to_its_colour(tmp_path):
    path = write(tmp_path, "p.webp", imagefiles.webp(16, 8, (200, 30, 90)))
    ppm = decoded_by("dwebp", path, str(path), "-ppm", "-o", str(path.with_suffix(".ppm")))
    if ppm is None:
        pytest.skip("dwebp (webp) is not installed")
    assert ppm.startswith(b"P6\n16 8\n255\n")
    assert ppm[ppm.index(b"255\n") + 4 :] == bytes([200, 30, 90]) * 16 * 8


# -- whole pictures pass, by their signature ------------------------------------------------
@pytest.mark.parametrize(
    ("data", "picture"),
    [
        (imagefiles.png(PIXELS), PNG),
        (imagefiles.jpeg(PIXELS), JPEG),
        (imagefiles.webp(64, 48, (1, 2, 3)), WEBP),
        (imagefiles.webp(1, 1, (0, 0, 0)), WEBP),
    ],
)
def test_a_whole_picture_is_named_by_its_bytes(tmp_path, data, picture):
    found = check_file(write(tmp_path, "named-wrongly.mp4", data))
    assert found == picture
    assert (found.content_type, found.extension) in {
        ("image/png", "png"),
        ("image/jpeg", "jpg"),
        ("image/webp", "webp"),
    }
    assert picturecheck.sniff(data[:16]) == picture


def test_only_the_ends_are_read_so_a_huge_file_is_checked_at_once(tmp_path):
    """A 4 GiB sparse PNG: the signature, IHDR and IEND are read, nothing in between."""
    head = imagefiles.png(PIXELS)[:33]
    path = tmp_path / "huge.png"
    with path.open("wb") as out:
        out.write(head)
        out.seek(4 * 1024**3 - len(picturecheck.PNG_IEND))
        out.write(picturecheck.PNG_IEND)
    assert check_file(path) == PNG


# -- what is not a whole picture is refused, saying why --------------------------------------
def test_pages_and_videos_are_not_pictures(tmp_path):
    html = refused(tmp_path, b"<html><body>Access page</body></html>")
    assert "not a PNG, JPEG or WebP picture: it starts with 3c 68 74 6d" in html
    assert "'<html><b'" in html
    xml = b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>'
    assert "it starts with 3c 3f 78 6d" in refused(tmp_path, xml)
    assert "it starts with 00 00" in refused(tmp_path, sample_video())
    assert "nothing (an empty file)" in refused(tmp_path, b"")
    assert "it starts with 47 49 46" in refused(tmp_path, b"GIF89a" + b"\0" * 40)


@pytest.mark.parametrize("cut", [1, 10, 100, 1000])
def test_a_cut_png_is_refused(tmp_path, cut):
    data = imagefiles.png(PIXELS)
    words = refused(tmp_path, data[: len(data) - cut])
    assert "IEND" in words or "cut short" in words


def test_a_png_with_a_damaged_header_is_refused(tmp_path):
    data = bytearray(imagefiles.png(PIXELS))
    data[17] ^= 0xFF  # a width byte: the IHDR checksum no longer matches
    assert "IHDR checksum does not match" in refused(tmp_path, bytes(data))
    data = bytearray(imagefiles.png(PIXELS))
    data[12:16] = b"IDAT"
    assert "first chunk is not a 13-byte IHDR" in refused(tmp_path, bytes(data))
    assert "cut short" in refused(tmp_path, imagefiles.png(PIXELS)[:40])
    assert "cut short" in refused(tmp_path, b"\x89PNG\r\n\x1a\n")


def test_a_png_of_no_pixels_is_refused(tmp_path):
    ihdr = struct.pack(">IIBBBBB", 0, 48, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    data = b"\x89PNG\r\n\x1a\n" + chunk + picturecheck.PNG_IEND
    assert "a PNG of 0x48 pixels" in refused(tmp_path, data)


def test_a_cut_jpeg_is_refused(tmp_path):
    data = imagefiles.jpeg(PIXELS)
    assert "does not end with EOI" in refused(tmp_path, data[:-1])
    assert "does not end with EOI" in refused(tmp_path, data[: len(data) // 2])
    assert "cut short" in refused(tmp_path, b"\xff\xd8\xff\xd9")


def test_a_cut_or_padded_webp_is_refused(tmp_path):
    data = imagefiles.webp(64, 48, (1, 2, 3))
    assert f"RIFF size says {len(data)} bytes, not {len(data) - 2}" in refused(tmp_path, data[:-2])
    assert "not" in refused(tmp_path, data + b"\0\0")
    assert "cut short" in refused(tmp_path, data[:14])
    other = data[:12] + b"ALPH" + data[16:]
    assert "first chunk is 41 4c 50 48 ('ALPH'), not VP8/VP8L/VP8X" in refused(tmp_path, other)
    wave = b"RIFF" + struct.pack("<I", 8) + b"WAVEfmt "
    assert "it starts with 52 49 46 46" in refused(tmp_path, wave)


def test_a_length_shorter_than_the_file_is_what_is_checked(tmp_path):
    """The caller's length rules: the `.part` may hold more than what was announced."""
    data = imagefiles.jpeg(PIXELS)
    path = write(tmp_path, "p.jpg", data + b"extra bytes")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert picturecheck.check(fd, len(data)) == JPEG
        with pytest.raises(NotPicture):
            picturecheck.check(fd, len(data) + 3)
    finally:
        os.close(fd)
