"""Fast in-process checks of the download's pure decisions: the MP4 box walk, the low-speed
rule (with `now` passed in), the one URL parse, and how the `.part` file is opened."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import yaml

from tests.videohost import SAMPLE
from wansync import config
from wansync.core.errors import TaskFailed
from wansync.files.partfile import open_part
from wansync.remote import mp4check
from wansync.remote.download import SpeedGuard
from wansync.remote.urlcheck import parse


def box(kind: bytes, payload: bytes = b"", large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


FTYP = box(b"ftyp", b"isom\0\0\2\0isomiso2")


def walk(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "v.mp4"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        mp4check.check(fd, len(data))
    finally:
        os.close(fd)


# -- the box walk ----------------------------------------------------------------------


def test_the_real_sample_passes_the_box_walk(tmp_path):
    """The packaged sample.mp4 is ftyp first, has a moov, and its boxes tile it exactly."""
    walk(tmp_path, SAMPLE)


@pytest.mark.parametrize(
    "data",
    [
        FTYP + box(b"moov", b"x" * 20) + box(b"mdat", b"y" * 100),
        FTYP + box(b"moov") + box(b"mdat", b"y" * 100, large=True),
        FTYP + box(b"moov") + struct.pack(">I4s", 0, b"mdat") + b"y" * 100,  # size 0: to the end
    ],
    ids=["plain", "64-bit largesize", "size 0 runs to the end"],
)
def test_well_formed_layouts_pass(tmp_path, data):
    """32-bit sizes, 64-bit largesize and a last box of size 0 are all whole files."""
    walk(tmp_path, data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (SAMPLE[:100], "cut short"),
        (SAMPLE[:-1], "cut short"),
        (SAMPLE + b"\0" * 3, "ends inside a box header"),
        (SAMPLE + b"\0" * 16, "not a box type"),
        (FTYP + box(b"mdat", b"y" * 100), "no 'moov'"),
        (box(b"moov") + FTYP, "first box is not 'ftyp'"),
        (FTYP + box(b"moov") + struct.pack(">I4s", 1, b"mdat") + b"\0\0", "ends inside the header"),
        (FTYP + box(b"moov") + struct.pack(">I4s", 4, b"free"), "impossible size"),
    ],
    ids=["first 100 bytes", "one byte short", "3 stray bytes", "16 zero bytes", "no moov",
         "moov first", "cut largesize", "size below header"],
)  # fmt: skip
def test_files_whose_boxes_do_not_add_up_are_refused(tmp_path, data, reason):
    """A cut, padded or incomplete file is `NotMp4`, naming the problem."""
    with pytest.raises(mp4check.NotMp4, match=reason):
        walk(tmp_path, data)


def test_box_count_is_bounded(tmp_path):
    """A file of millions of empty boxes stops at MAX_BOXES instead of walking for ever."""
    data = FTYP + box(b"moov") + box(b"free") * (mp4check.MAX_BOXES + 1)
    with pytest.raises(mp4check.NotMp4, match="top-level boxes"):
        walk(tmp_path, data)


def test_the_walk_reads_headers_only(tmp_path, monkeypatch):
    """A few preads of at most 16 bytes, not a second pass over a large mdat."""
    data = FTYP + box(b"moov") + box(b"mdat", b"\0" * 5_000_000)
    reads: list[int] = []
    real = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, pos: reads.append(n) or real(fd, n, pos))
    walk(tmp_path, data)
    assert len(reads) == 3 and max(reads) <= 16


# -- the low-speed rule ----------------------------------------------------------------


def test_a_trickle_is_cut_after_the_window():
    """1 byte every 0.1 s under a 1000 B/s limit over 1 s is cut at about 1 s, not never."""
    guard = SpeedGuard(1000, 1.0, now=0.0)
    t = 0.0
    while not guard.too_slow(1, t):
        t += 0.1
        assert t < 1.5
    assert t >= 1.0


def test_a_fast_start_then_a_trickle_is_cut_a_window_after_the_slowdown():
    """Bytes that arrived before the slowdown slide out of the window."""
    guard = SpeedGuard(1000, 1.0, now=0.0)
    assert not guard.too_slow(50_000, 0.01)
    t = 0.01
    while not guard.too_slow(1, t):
        t += 0.1
        assert t < 2.5
    assert t >= 1.0


def test_a_steady_download_above_the_limit_is_never_cut():
    """2000 B/s in 100-byte reads under a 1000 B/s rule runs for a long time untouched."""
    guard = SpeedGuard(1000, 1.0, now=0.0)
    assert not any(guard.too_slow(100, i * 0.05) for i in range(1, 2000))


# -- the one URL parse -----------------------------------------------------------------

CFG = config.from_mapping({"download": {"allowed_hosts": ["*"], "require_https": False}}).download


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.2:9\\@8.8.8.8/x.mp4", "backslash"),
        ("http://user@8.8.8.8/x.mp4", "userinfo"),
        ("http://u:p@8.8.8.8/x.mp4", "userinfo"),
        ("http://0x7f.1/x.mp4", "unusual notation"),
        ("http://2130706433/x.mp4", "unusual notation"),
        ("http://127.1/x.mp4", "unusual notation"),
        ("http://017.0.0.1/x.mp4", "unusual notation"),
        ("http://8.8.8.8./x.mp4", "unusual notation"),
        ("http://a.b%2ec/x.mp4", "percent"),
        ("http://exa mple.com/x.mp4", "space"),
        ("http://ex\u00e4mple.com/x.mp4", "non-ASCII"),
        ("http://[::1/x.mp4", "cannot be parsed"),
        ("http:///x.mp4", "no host"),
    ],
)
def test_urls_the_parsers_would_read_differently_are_refused(url, reason):
    """Backslash, userinfo, odd IP notations, escapes: DownloadRejected before any request."""
    with pytest.raises(TaskFailed, match=reason) as caught:
        parse(url, CFG)
    assert caught.value.code == "DownloadRejected"


@pytest.mark.parametrize(
    ("url", "host", "port", "uri"),
    [
        ("https://x.oss.aliyuncs.com/v.mp4?Expires=1&S=a%2Fb", "x.oss.aliyuncs.com", None,
         "/v.mp4?Expires=1&S=a%2Fb"),
        ("http://127.0.0.1:8080/videos/t.mp4", "127.0.0.1", 8080, "/videos/t.mp4"),
        ("http://[::1]:8080/v.mp4#frag", "[::1]", 8080, "/v.mp4"),
        ("HTTP://Example.COM/v.mp4", "example.com", None, "/v.mp4"),
    ],
)  # fmt: skip
def test_ordinary_urls_parse_to_what_the_client_connects_to(url, host, port, uri):
    """The Target is the host, port and request the connection is opened with."""
    target = parse(url, CFG)
    assert (target.host, target.port, target.request_uri) == (host, port, uri)


# -- the .part file --------------------------------------------------------------------


def test_a_fifo_at_the_part_is_replaced_not_opened_for_reading(tmp_path):
    """A FIFO planted at the `.part` never blocks the download; a regular file replaces it."""
    part = tmp_path / ".x.mp4.part"
    os.mkfifo(part)
    fd = open_part(part)
    os.close(fd)
    assert part.is_file() and part.stat().st_size == 0


def test_a_folder_at_the_part_is_a_clear_error(tmp_path):
    """A folder is not ours to remove: DownloadRejected naming it."""
    part = tmp_path / ".x.mp4.part"
    part.mkdir()
    with pytest.raises(TaskFailed, match=r"\.x\.mp4\.part .* folder"):
        open_part(part)


def test_an_existing_part_is_kept_for_the_resume(tmp_path):
    """Our own regular `.part` keeps its bytes (they are resumed with Range)."""
    part = tmp_path / ".x.mp4.part"
    part.write_bytes(b"12345")
    fd = open_part(part)
    try:
        assert os.fstat(fd).st_size == 5
    finally:
        os.close(fd)


# -- the two config keys ---------------------------------------------------------------


def test_low_speed_keys_default_to_curls_rule_and_are_validated():
    """1024 B/s over 60 s unless set; a zero or negative value names the key."""
    cfg = config.from_mapping(None).download
    assert (cfg.low_speed_limit, cfg.low_speed_time) == (1024, 60)
    cfg = config.from_mapping({"download": {"low_speed_limit": 500, "low_speed_time": "2m"}})
    assert (cfg.download.low_speed_limit, cfg.download.low_speed_time) == (500, 120)
    for key, bad in (("low_speed_limit", 0), ("low_speed_time", -1)):
        with pytest.raises(config.ConfigError, match=f"download.{key}:"):
            config.from_mapping({"download": {key: bad}})


def test_the_example_config_names_the_low_speed_keys():
    """config.example.yaml documents docs/configuration.md's keys and still loads."""
    example = Path(__file__).parent.parent / "config.example.yaml"
    cfg = config.from_mapping(yaml.safe_load(example.read_text()))
    assert (cfg.download.low_speed_limit, cfg.download.low_speed_time) == (1024, 60)
